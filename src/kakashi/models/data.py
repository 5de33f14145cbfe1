"""Shards -> normalised training windows.

The motion target per frame is the root-centred pose (51) followed by the root velocity
(3, metres per frame): 54 numbers. Velocity, not position, so a model never has to know
where on the floor the dancer stands; generation integrates it back.

Normalisation statistics come from the train split only (after mirror augmentation, so the
mean pose is left-right symmetric) and travel inside the checkpoint: generation on any song
uses exactly what training used. The test split is never read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.errors import ModelError
from kakashi.features import column_kind
from kakashi.kinematics import root_velocity
from kakashi.models.stats import STD_FLOOR, Stats
from kakashi.models.styles import style_columns, style_index
from kakashi.shards import Sequence, list_shards, read_shard


def read_split(shards: str | Path, split: str) -> list[Sequence]:
    """Every shard of ``split`` under ``shards`` (``split=NAME/SEQ.parquet``), sorted by name."""
    if split == "test":
        raise ModelError("the test split is for evaluation only; training never reads it")
    shards = Path(shards)
    if not shards.is_dir():
        raise ModelError(
            f"shard folder {shards} does not exist; run the data workflow first "
            "(snakemake --cores 2 results/dataset_info.txt)"
        )
    sequences = []
    for path in list_shards(shards, split):
        arrays, meta = read_shard(path, ["audio", "pose", "root", "conf"])
        sequences.append(
            Sequence(
                name=path.stem,
                audio=arrays["audio"],
                pose=arrays["pose"].reshape(-1, skeleton.NUM_JOINTS, 3),
                root=arrays["root"],
                conf=arrays["conf"],
                fps=float(meta["fps"]),
                feature_names=list(meta["feature_names"]),
                hop_length=int(meta["hop_length"]),
                style=meta.get("style") or "",
            )
        )
    _check_consistent(sequences, shards)
    return sequences


def _check_consistent(sequences: list[Sequence], shards: Path) -> None:
    if not sequences:
        return
    first = sequences[0]
    for seq in sequences[1:]:
        if (seq.fps, seq.feature_names, seq.hop_length) != (
            first.fps,
            first.feature_names,
            first.hop_length,
        ):
            raise ModelError(
                f"shards under {shards} disagree: {first.name} has {first.fps} fps, hop "
                f"{first.hop_length} and {len(first.feature_names)} features, {seq.name} has "
                f"{seq.fps} fps, hop {seq.hop_length} and {len(seq.feature_names)}; rebuild "
                "them with one config"
            )


def mirror_sequence(seq: Sequence) -> Sequence:
    """The left-right mirror image (audio unchanged): negate x, swap left/right joints."""
    pose, root = skeleton.mirror(seq.pose, seq.root)
    return Sequence(
        seq.name + "~mirror",
        seq.audio,
        pose,
        root,
        seq.conf,
        seq.fps,
        seq.feature_names,
        seq.hop_length,
        style=seq.style,
    )


def stretch_sequence(seq: Sequence, rate: float) -> Sequence:
    """The dance and its music ``rate`` times as fast (1.1: 10 % faster, 10 % fewer frames):
    pose, root and the continuous audio columns interpolated at the new frames' times, each
    beat and onset peak moved to its nearest new frame (mfcc and chroma keep their values:
    a time stretch, not a resampling that would shift the pitch)."""
    frames = len(seq.pose)
    count = max(2, round(frames / rate))
    t = np.minimum(np.arange(count) * rate, frames - 1)
    lo = np.floor(t).astype(int)
    hi, w = np.minimum(lo + 1, frames - 1), (t - lo)

    def resample(x: np.ndarray) -> np.ndarray:
        shape = (count,) + (1,) * (x.ndim - 1)
        return (x[lo] * (1 - w).reshape(shape) + x[hi] * w.reshape(shape)).astype(x.dtype)

    audio = resample(seq.audio)
    for c, name in enumerate(seq.feature_names):
        if column_kind(name) in ("beat", "peak"):
            hits = np.flatnonzero(seq.audio[:, c])
            audio[:, c] = 0
            audio[np.minimum(np.round(hits / rate).astype(int), count - 1), c] = seq.audio[hits, c]
    return Sequence(
        f"{seq.name}~tempo{rate:g}",
        audio,
        resample(seq.pose),
        resample(seq.root),
        seq.conf[np.round(t).astype(int)],
        seq.fps,
        seq.feature_names,
        seq.hop_length,
        style=seq.style,
    )


def motion_of(pose: np.ndarray, root: np.ndarray, root_frame: str = "world") -> np.ndarray:
    """(T, 54): flattened root-centred pose and the root velocity (0 at the first frame), in
    the world frame or the body frame of each pose (:func:`kakashi.kinematics.root_velocity`)."""
    velocity = root_velocity(root, pose, root_frame)
    return np.concatenate([pose.reshape(len(pose), -1), velocity], axis=1).astype(np.float32)


def compute_stats(train: list[Sequence], root_frame: str = "world") -> Stats:
    """Statistics of the train split (pass it already augmented, so they match training),
    the root velocity in ``root_frame`` (what the model is trained on)."""
    if not train:
        raise ModelError("no training sequences: the train split is empty")
    audio = np.concatenate([s.audio for s in train])
    motion = np.concatenate([motion_of(s.pose, s.root, root_frame) for s in train])
    person = np.concatenate([s.conf for s in train]) > 0
    poses = np.concatenate([s.pose for s in train])[person]
    return Stats(
        audio_mean=audio.mean(0),
        audio_std=np.maximum(audio.std(0), STD_FLOOR),
        motion_mean=motion.mean(0),
        motion_std=np.maximum(motion.std(0), STD_FLOOR),
        bone_lengths=np.median(skeleton.bone_lengths(poses), axis=0).astype(np.float32),
        fps=train[0].fps,
        feature_names=train[0].feature_names,
        hop_length=train[0].hop_length,
    )


@dataclass
class Windows:
    """Normalised windows: audio (N, W+1, F), motion (N, W+1, 54), mask (N, W+1).

    Frame 0 of each window is context only (the "previous" frame of the first prediction);
    a model predicts frames 1..W. ``mask`` is 0 on frames without a person (``conf == 0``),
    whose interpolated pose the loss ignores. Cut with ``styles``, the audio ends in one
    column per style, 1 at the window's own (all 0: unlabelled), and ``style`` (N,) holds
    each window's style index (:func:`kakashi.models.styles.style_index`).
    """

    audio: np.ndarray
    motion: np.ndarray
    mask: np.ndarray
    style: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.audio)


def make_windows(
    sequences: list[Sequence],
    stats: Stats,
    window: int | None,
    stride: int,
    styles: list[str] | tuple = (),
) -> list[Windows]:
    """Cut sequences into windows of ``window`` predicted frames; ``None`` keeps whole songs.

    Returns one ``Windows`` batch source per distinct length: a list with one entry for
    fixed windows, and one entry per sequence for whole songs (they differ in length).
    ``styles``: the style columns and indices of :class:`Windows` (none when empty).
    """
    if not sequences:
        return []
    if window is None:
        return [_normalise([s], stats, [(0, len(s.audio))], styles) for s in sequences]
    if window < 1 or stride < 1:
        raise ModelError(f"window ({window}) and stride ({stride}) must be at least one frame")
    chunks_audio, chunks_motion, chunks_mask, chunks_style = [], [], [], []
    for seq in sequences:
        length = window + 1
        starts = list(range(0, len(seq.audio) - length + 1, stride))
        if not starts:
            continue  # shorter than one window
        part = _normalise([seq], stats, [(start, start + length) for start in starts], styles)
        chunks_audio.append(part.audio)
        chunks_motion.append(part.motion)
        chunks_mask.append(part.mask)
        chunks_style.append(part.style)
    if not chunks_audio:
        longest = max(len(s.audio) for s in sequences)
        raise ModelError(
            f"every sequence is shorter than one window ({window + 1} frames; the longest has "
            f"{longest}); lower train.window_s"
        )
    return [
        Windows(
            np.concatenate(chunks_audio),
            np.concatenate(chunks_motion),
            np.concatenate(chunks_mask),
            np.concatenate(chunks_style) if styles else None,
        )
    ]


def _normalise(
    sequences: list[Sequence], stats: Stats, spans: list[tuple[int, int]], styles=()
) -> Windows:
    (seq,) = sequences
    audio = (seq.audio - stats.audio_mean) / stats.audio_std
    if styles:
        audio = np.concatenate([audio, style_columns(len(audio), styles, seq.style)], axis=1)
    motion = (motion_of(seq.pose, seq.root) - stats.motion_mean) / stats.motion_std
    mask = (seq.conf > 0).astype(np.float32)
    return Windows(
        np.stack([audio[a:b] for a, b in spans]).astype(np.float32),
        np.stack([motion[a:b] for a, b in spans]).astype(np.float32),
        np.stack([mask[a:b] for a, b in spans]),
        _style_indices(styles, seq.style, len(spans)),
    )


def _style_indices(styles, style: str | None, count: int) -> np.ndarray | None:
    return np.full(count, style_index(list(styles), style), dtype=np.int64) if styles else None


def load_training_data(
    shards: str | Path, mirror: bool = True, root_frame: str = "world", tempo_stretch: float = 0
) -> tuple[list[Sequence], list[Sequence], Stats]:
    """(train, val, stats): train augmented with mirrors if asked, then with every train
    sequence at (1 - ``tempo_stretch``) and (1 + ``tempo_stretch``) times its tempo if above
    0; stats from train only, the root velocity in ``root_frame``."""
    train = read_split(shards, "train")
    if not train:
        raise ModelError(
            f"no training shards under {Path(shards) / 'split=train'}; the sources sheet "
            "must give at least one sequence the train split"
        )
    if mirror:
        train = train + [mirror_sequence(s) for s in train]
    if tempo_stretch > 0:
        rates = (1 - tempo_stretch, 1 + tempo_stretch)
        train = train + [stretch_sequence(s, rate) for rate in rates for s in train]
    val = read_split(shards, "val")
    return train, val, compute_stats(train, root_frame)
