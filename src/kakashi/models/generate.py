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
- Edits (docs/editing.md): ``edit`` (:class:`kakashi.models.editing.EditRequest`) keeps
  frames of a dance (``--continue``, ``--regenerate``), a body part (``--keep``) or poses
  at given times (``--keyframes``). A model whose ``generate_motion`` takes
  ``constraints`` gets them; any other makes the free frames (each free span from the
  kept frame before it); then :func:`kakashi.models.editing.enforce` applies them. The
  dance's metadata records the edit (``edit``).
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
from kakashi.models.editing import Constraints, EditRequest, enforce
from kakashi.models.stats import Stats
from kakashi.models.styles import StyleChoice, choose_style

log = logging.getLogger("kakashi.models.generate")
# Seconds of kept dance a span's generation starts before the span (see _edited_motion).
LEAD_S = 1.0


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
    constraints: Constraints | None = None,
) -> Dance:
    """The dance for raw audio features (T, F), seeded so it never depends on what ran before.
    ``only``: a glob of training recording ids the dance may use (motiongraph); ``style``:
    from :func:`kakashi.models.styles.choose_style` (None: the checkpoint knows no styles);
    ``constraints``: what the dance keeps (an edit: see the module doc)."""
    import torch

    torch.manual_seed(seed)
    options = {} if only is None else {"only": only}
    meta = {"model": model.name, "seed": seed, "root_measured": False, **options}
    if style is not None:
        conditioned = model.takes_option("style")
        if conditioned:
            options["style"] = style.style
            if style.source != "requested" and model.takes_option("strict_style"):
                options["strict_style"] = False  # inferred: a preference, not a restriction
        meta.update(style.meta(), style_conditioned=conditioned)
    if constraints is None:
        pose, root = model.generate_motion(audio, first_pose, seed, **options)
    else:
        pose, root = _edited_motion(model, audio, first_pose, seed, options, constraints)
        meta["inpainted"] = model.takes_option("constraints")
    return Dance(pose, root, model.stats.fps, meta=meta)


def _edited_motion(
    model: LoadedModel, audio, first_pose, seed: int, options: dict, constraints: Constraints
):
    """(pose, root) that keep ``constraints``: the model inpaints if it can; otherwise each
    span between exact frames is made on its own, from the kept frames before it (the
    model starts a dance at its first pose), to the kept frame after it."""
    if model.takes_option("constraints"):
        first = constraints.pose[0] if constraints.exact[0] else first_pose
        made = model.generate_motion(audio, first, seed, constraints=constraints, **options)
        return enforce(*made, constraints, model.stats.fps)
    exact = constraints.exact
    if not exact.any():
        made = model.generate_motion(audio, first_pose, seed, **options)
        return enforce(*made, constraints, model.stats.fps)
    pose = np.where(exact[:, None, None], constraints.pose, 0).astype(np.float32)
    root = np.where(exact[:, None], constraints.root, 0).astype(np.float32)
    edges = np.diff(np.r_[0, (~exact).astype(np.int8), 0])
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        # From the kept frame before the span to the one after it: the seams' offsets are
        # measured on those two (enforce overwrites them with the kept frames).
        # It starts LEAD_S earlier, from the kept pose there, so that the model's start
        # (motiongraph blends its first pose into a segment within 3 frames: jerk up to
        # 12,600 m/s^3) lies in kept frames and the seam meets its running motion.
        start, end = max(a - round(LEAD_S * model.stats.fps), 0), min(b + 1, len(exact))
        first = constraints.pose[start] if a > 0 else first_pose
        part_pose, part_root = model.generate_motion(audio[start:end], first, seed, **options)
        if a > 0:  # the root goes on from where the kept frame stands
            part_root = part_root - part_root[a - 1 - start] + constraints.root[a - 1]
        pose[start:end], root[start:end] = part_pose, part_root
    return enforce(pose, root, constraints, model.stats.fps)


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
    edit: EditRequest | None = None,
    sampling: list[str] | None = None,
) -> Dance:
    """Generate a dance for ``song`` with a trained checkpoint and save it to ``output``;
    ``style``: a style the checkpoint knows, ``auto`` or None; ``edit``: the edit flags
    (see the module doc); ``sampling``: ``KEY=VALUE`` generation settings that override
    the checkpoint's (:meth:`kakashi.models.checkpoint.LoadedModel.set_sampling`)."""
    if edit is not None:
        edit.check()  # before any work
    song = require(song, "song", MediaError, "give an audio file (WAV, OGG, FLAC, MP3, M4A)")
    model = load_model(checkpoint)
    changed = model.set_sampling(sampling, checkpoint)
    stats = model.stats
    features = song_features(song, stats, checkpoint)
    constraints, edited = None, None
    if edit is not None and edit.any():
        constraints, edited = edit.plan(len(features.values), stats.fps)
    choice = choose_style(model.payload, style, features.values, checkpoint, song.name)
    first = start_pose(start, stats)
    dance = dance_for_audio(model, features.values, first, seed, only, choice, constraints)
    if edited is not None:
        dance.meta["edit"] = edited
    if changed:
        dance.meta["sampling"] = changed
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
    sampling: list[str] | None = None,
) -> list[Path]:
    """A dance for every shard of ``split``, driven by the audio features stored in the shard.

    This is what evaluation scores: one process loads the model once for the whole split,
    and each dance has exactly its ground truth's frame count, since both come from the
    same shard. Every dance is ``OUT_DIR/SEQ.npz``, the name `kakashi evaluate` pairs with
    the shard; with ``takes`` > 1, ``OUT_DIR/SEQ__seedN.npz`` for the seeds ``seed`` ...
    ``seed + takes - 1`` (the variety across seeds of the evaluation). Only the manifest's
    shards count when the folder has one. ``style``: as for :func:`generate`, per shard
    (``auto`` infers each one's style from its music: what evaluation scores);
    ``sampling``: as for :func:`generate`.
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
    changed = model.set_sampling(sampling, checkpoint)
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
            if changed:
                dance.meta["sampling"] = changed
            dance.save(target)
            written.append(target)
    log.info("%s: %d dances for split %s -> %s", checkpoint, len(written), split, out_dir)
    return written
