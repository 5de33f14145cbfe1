"""A dance for any song, or for every shard of a split, with any trained model.

- The features are computed with the settings of the training shards, read from the
  checkpoint (fps, hop_length, the feature set and n_mfcc behind the column names), so the
  model sees the same kind of input it was trained on. Shards given to ``--shards`` must
  have been built with the same settings: a mismatch is an error naming both values.
- The dance has exactly ``round(duration_s * fps)`` frames (a shard's frame count with
  ``--shards``). Frame 0 is the start pose (the training mean pose by default).
- A checkpoint trained on styled shards dances in a style (:mod:`kakashi.models.styles`):
  ``style`` = a name, or ``auto``/None to infer it from the song; the dance's metadata
  records ``style``, ``style_source`` (auto or requested), ``style_confidence`` (auto) and
  ``style_conditioned`` (whether this model's generation takes the style).
- Which model it is only matters to :func:`kakashi.models.checkpoint.load_model`, which
  builds the network through the registry; no training code is imported.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from kakashi.dance import Dance
from kakashi.errors import MediaError, ModelError
from kakashi.inputs import require
from kakashi.models.checkpoint import LoadedModel, load_model
from kakashi.models.stats import Stats
from kakashi.models.styles import StyleChoice, choose_style

log = logging.getLogger("kakashi.models.generate")


def start_pose(spec: str, stats: Stats) -> np.ndarray:
    """``mean`` -> training mean pose; a path -> the first pose of that dance file."""
    if spec == "mean":
        return stats.mean_pose()
    return Dance.load(spec, frames=1).pose[0]  # one pose: never the whole file


def dance_for_audio(
    model: LoadedModel,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int,
    only: str | None = None,
    style: StyleChoice | None = None,
) -> Dance:
    """The dance for raw audio features (T, F), seeded so it never depends on what ran before.
    ``only``: a glob of training recording ids the dance may use (motiongraph); ``style``:
    from :func:`kakashi.models.styles.choose_style` (None: the checkpoint knows no styles)."""
    import torch

    torch.manual_seed(seed)
    options = {} if only is None else {"only": only}
    meta = {"model": model.name, "seed": seed, "root_measured": False, **options}
    if style is not None:
        conditioned = model.takes_option("style")
        if conditioned:
            options["style"] = style.style
        meta.update(style.meta(), style_conditioned=conditioned)
    pose, root = model.generate_motion(audio, first_pose, seed, **options)
    return Dance(pose, root, model.stats.fps, meta=meta)


def song_features(song: str | Path, stats: Stats, checkpoint: str | Path):
    """The features of ``song`` the way the model of ``checkpoint`` (whose ``stats`` these
    are) expects them: the training shards' fps, hop, feature set and MFCC count. Errors
    name ``checkpoint`` (the studio passes the file's name only)."""
    from kakashi.features import remembered_audio_features, settings_of

    kinds, n_mfcc = settings_of(stats.feature_names)
    # Cached per song in the user cache: another model or take on the same song skips librosa.
    features = remembered_audio_features(
        song, fps=stats.fps, hop_length=stats.hop_length, feature_set=kinds, n_mfcc=n_mfcc
    )
    if features.names != stats.feature_names:
        raise ModelError(
            f"{checkpoint}: the features of {Path(song).name} do not match the training features"
        )
    if len(features.values) < 2:
        raise MediaError(f"the song lasts {features.duration_s:.3f} s, less than two frames")
    return features


def generate(
    song: str | Path,
    checkpoint: str | Path,
    output: str | Path,
    seed: int = 0,
    start: str = "mean",
    only: str | None = None,
    style: str | None = None,
) -> Dance:
    """Generate a dance for ``song`` with a trained checkpoint and save it to ``output``;
    ``style``: a style the checkpoint knows, ``auto`` or None (see the module doc)."""
    song = require(song, "song", MediaError, "give an audio file (WAV, OGG, FLAC, MP3, M4A)")
    model = load_model(checkpoint)
    stats = model.stats
    features = song_features(song, stats, checkpoint)
    choice = choose_style(model.payload, style, features.values, checkpoint, song.name)
    first = start_pose(start, stats)
    dance = dance_for_audio(model, features.values, first, seed, only, choice)
    dance.save(output)
    log.info(
        "%s: %d frames (%.1f s at %g fps) -> %s",
        song,
        len(dance),
        features.duration_s,
        stats.fps,
        output,
    )
    return dance


def generate_split(
    shards: str | Path,
    split: str,
    checkpoint: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    start: str = "mean",
    only: str | None = None,
    takes: int = 1,
    style: str | None = None,
) -> list[Path]:
    """A dance for every shard of ``split``, driven by the audio features stored in the shard.

    This is what evaluation scores: one process loads the model once for the whole split,
    and each dance has exactly its ground truth's frame count, since both come from the
    same shard. Every dance is ``OUT_DIR/SEQ.npz``, the name `kakashi evaluate` pairs with
    the shard; with ``takes`` > 1, ``OUT_DIR/SEQ__seedN.npz`` for the seeds ``seed`` ...
    ``seed + takes - 1`` (the variety across seeds of the evaluation). Only the manifest's
    shards count when the folder has one. ``style``: as for :func:`generate`, per shard
    (``auto`` infers each one's style from its music: what evaluation scores).
    """
    if takes < 1:
        raise ModelError(f"--takes must be at least 1, got {takes}")
    from kakashi.shards import check_audio_settings, list_shards, read_shard

    paths = list_shards(shards, split)
    if not paths:
        raise ModelError(
            f"no shards of split {split!r} under {shards}; build the data first (snakemake "
            f"results/dataset_info.txt) or check that the sheet puts sources in that split"
        )
    model = load_model(checkpoint)
    first_pose = start_pose(start, model.stats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        arrays, meta = read_shard(path, ["audio"])
        check_audio_settings(meta, model.stats.audio_settings(), path, str(checkpoint))
        choice = choose_style(model.payload, style, arrays["audio"], checkpoint, path.stem)
        for take in range(takes):
            name = path.stem if takes == 1 else f"{path.stem}__seed{seed + take}"
            target = out_dir / f"{name}.npz"
            dance = dance_for_audio(model, arrays["audio"], first_pose, seed + take, only, choice)
            dance.save(target)
            written.append(target)
    log.info("%s: %d dances for split %s -> %s", checkpoint, len(written), split, out_dir)
    return written
