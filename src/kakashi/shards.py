"""Align pose with audio features and write one Parquet shard per sequence.

Schema and metadata: docs/contracts.md. One row per frame; ``audio``, ``pose`` and
``root`` are fixed-size lists of float32, so a reader gets (T, F), (T, 51), (T, 3)
arrays without copying row by row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kakashi import __version__, skeleton
from kakashi.atomic import atomic_output
from kakashi.errors import AlignError
from kakashi.features import AudioFeatures
from kakashi.pose import PoseSequence

log = logging.getLogger("kakashi.shards")


@dataclass
class Aligned:
    """Pose and audio of one sequence with equal frame counts."""

    audio: np.ndarray
    pose: np.ndarray
    root: np.ndarray
    conf: np.ndarray
    trimmed: int


def align(pose: PoseSequence, features: AudioFeatures, tolerance_frames: int, name: str) -> Aligned:
    """Check that pose and audio frame counts agree; trim a difference up to the tolerance."""
    pose_frames, audio_frames = len(pose), len(features.values)
    if abs(pose.fps - features.fps) > 1e-3:
        raise AlignError(
            f"{name}: pose is at {pose.fps} fps but audio features at {features.fps} fps; "
            "recompute both with the same fps"
        )
    difference = abs(pose_frames - audio_frames)
    if difference > tolerance_frames:
        raise AlignError(
            f"{name}: pose has {pose_frames} frames but audio features have {audio_frames} "
            f"(difference {difference} > align.tolerance_frames = {tolerance_frames}); "
            "the clip's video and audio streams differ in length, re-cut it or check the source"
        )
    frames = min(pose_frames, audio_frames)
    if difference:
        log.info(
            "%s: pose %d frames, audio %d frames: trimmed to %d",
            name,
            pose_frames,
            audio_frames,
            frames,
        )
    return Aligned(
        audio=features.values[:frames].astype(np.float32),
        pose=pose.pose[:frames].astype(np.float32),
        root=pose.root[:frames].astype(np.float32),
        conf=pose.conf[:frames].astype(np.float32),
        trimmed=difference,
    )


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    flat = values.reshape(len(values), -1).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


def write_shard(
    path: str | Path,
    seq: str,
    aligned: Aligned,
    fps: float,
    feature_names: list[str],
    metadata: dict,
) -> None:
    """Write one sequence as a Parquet file (atomically: temp file, then rename)."""
    frames = len(aligned.pose)
    table = pa.table(
        {
            "seq": pa.array([seq] * frames, pa.string()),
            "frame": pa.array(np.arange(frames, dtype=np.int32)),
            "time_s": pa.array((np.arange(frames) / fps).astype(np.float32)),
            "audio": _fixed_list(aligned.audio),
            "pose": _fixed_list(aligned.pose),
            "root": _fixed_list(aligned.root),
            "conf": pa.array(aligned.conf.astype(np.float32)),
        }
    )
    kv = {
        "fps": fps,
        "feature_names": feature_names,
        "num_features": len(feature_names),
        "skeleton": skeleton.NAME,
        "kakashi_version": __version__,
        "frames_trimmed": aligned.trimmed,
        "frames_without_person": int((aligned.conf <= 0).sum()),
        **metadata,
    }
    # Every value is JSON, so a reader gets back exactly the type that was written.
    encoded = {key: json.dumps(value) for key, value in kv.items()}
    table = table.replace_schema_metadata(encoded)
    # The hidden temporary name also keeps the partial file out of pyarrow.dataset discovery.
    with atomic_output(path) as partial:
        pq.write_table(table, partial, compression="zstd")


def read_metadata(path: str | Path) -> dict:
    """The key-value metadata of a shard, JSON values decoded."""
    raw = pq.read_schema(path).metadata or {}
    decoded = {}
    for key, value in raw.items():
        key, value = key.decode(), value.decode()
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:  # written by another tool
            decoded[key] = value
    return decoded


def dataset_info(root: str | Path) -> dict:
    """Summary of a shard folder: sequences, frames, hours, per split, frames without a person."""
    root = Path(root)
    files = sorted(root.glob("split=*/*.parquet"))
    summary: dict = {"sequences": 0, "frames": 0, "hours": 0.0, "no_person_frames": 0, "splits": {}}
    for file in files:
        split = file.parent.name.removeprefix("split=")
        conf = pq.read_table(file, columns=["conf"]).column("conf").to_numpy()
        fps = float(read_metadata(file).get("fps", 30))
        entry = summary["splits"].setdefault(
            split, {"sequences": 0, "frames": 0, "hours": 0.0, "no_person_frames": 0}
        )
        for target in (summary, entry):
            target["sequences"] += 1
            target["frames"] += len(conf)
            target["hours"] += len(conf) / fps / 3600
            target["no_person_frames"] += int((conf <= 0).sum())
    return summary


def format_info(summary: dict, root: str | Path) -> str:
    """The human-readable table that ``kakashi dataset info`` prints."""
    lines = [f"shards in {root}"]
    header = (
        f"{'split':<8}{'sequences':>10}{'frames':>12}{'hours':>10}{'minutes':>10}{'no person':>11}"
    )
    lines.append(header)
    rows = [
        (name, summary["splits"][name])
        for name in ("train", "val", "test")
        if name in summary["splits"]
    ]
    rows.append(("total", summary))
    for name, entry in rows:
        lines.append(
            f"{name:<8}{entry['sequences']:>10}{entry['frames']:>12}{entry['hours']:>10.3f}"
            f"{entry['hours'] * 60:>10.2f}{entry['no_person_frames']:>11}"
        )
    return "\n".join(lines)
