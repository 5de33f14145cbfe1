"""Parquet shards, the dataset: the only module that writes or reads them.

Schema and metadata: docs/contracts.md. One row per frame; ``audio``, ``pose`` and
``root`` are fixed-size lists of float32, so a reader gets (T, F), (T, 51), (T, 3)
arrays without copying row by row. The metadata records the audio-feature settings (fps,
hop_length, feature set, n_mfcc, column names): readers check them against what they
expect and fail naming both values, never silently recompute.

The workflow writes a manifest (``SHARDS/_manifest.tsv``) of the shards of the current
sheet; readers list shards through :func:`list_shards`, which follows it, so shards left
by an earlier sheet or split never count. (pyarrow.dataset skips names starting with
``_``, so the folder still reads as a hive-partitioned dataset.)
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
from kakashi.atomic import atomic_output, atomic_write_text
from kakashi.dance import Dance
from kakashi.errors import AlignError, ShardError
from kakashi.features import AudioFeatures
from kakashi.inputs import require

log = logging.getLogger("kakashi.shards")


@dataclass
class Sequence:
    """One dance and its music, frame by frame: audio features (T, F), pose (T, 17, 3),
    root (T, 3), conf (T,) at ``fps``, with the feature settings. What a shard holds: built
    by :func:`align`, read back for training (``kakashi.models.data``)."""

    name: str
    audio: np.ndarray
    pose: np.ndarray
    root: np.ndarray
    conf: np.ndarray
    fps: float
    feature_names: list[str]
    hop_length: int
    trimmed: int = 0  # frames cut off the longer of pose and audio by align()
    style: str = ""  # the sheet's style column ("" when not given); shard metadata "style"


def align(pose: Dance, features: AudioFeatures, tolerance_frames: int, name: str) -> Sequence:
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
    return Sequence(
        name=name,
        audio=features.values[:frames].astype(np.float32),
        pose=pose.pose[:frames].astype(np.float32),
        root=pose.root[:frames].astype(np.float32),
        conf=pose.conf[:frames].astype(np.float32),
        fps=features.fps,
        feature_names=list(features.names),
        hop_length=features.hop_length,
        trimmed=difference,
    )


def _fixed_list(values: np.ndarray) -> pa.FixedSizeListArray:
    flat = values.reshape(len(values), -1).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


MANIFEST = "_manifest.tsv"
POSE_DIM = skeleton.NUM_JOINTS * 3
# Metadata every reader relies on; a shard without it was written by an older Kakashi.
REQUIRED_METADATA = ("fps", "hop_length", "feature_names", "num_features")
# The audio settings a model or an evaluation must agree on with the shards it reads.
AUDIO_SETTINGS = ("fps", "hop_length", "feature_names")


def root_source(meta: dict) -> str:
    """Where a pose file's root came from: ``video`` (estimated by kakashi.pose.root),
    ``motion_capture`` (the motion stage), or ``none`` (zeros, not measured)."""
    if not meta.get("root_measured", False):
        return "none"
    return meta.get("root_source", "motion_capture" if meta.get("backend") == "motion" else "video")


def build_shard(
    pose_path: str | Path,
    features_path: str | Path,
    seq: str,
    split: str,
    output: str | Path,
    tolerance_frames: int,
    source: dict,
) -> int:
    """The ``shard`` stage: align a pose file with its features file and write the shard.

    ``source`` holds where it came from (source_kind, source_uri, config_hash). Returns the
    number of frames written.
    """
    pose = Dance.load(pose_path)
    features = AudioFeatures.load(features_path)
    aligned = align(pose, features, tolerance_frames, seq)
    metadata = {
        **source,
        "split": split,
        "pose_backend": pose.meta.get("backend", "unknown"),
        "root_measured": bool(pose.meta.get("root_measured", False)),
        # How: "video" (kakashi.pose.root, with its camera assumptions in "root_estimate"),
        # "motion_capture", or "none" when the root is zeros.
        "root_source": root_source(pose.meta),
        # The camera and floor of a video root (fov_deg, focal_px, floor drift, ...).
        **({"root_estimate": pose.meta["root"]} if "root" in pose.meta else {}),
        # The temporal filter and its constants (kakashi.pose.smoothing); motion capture
        # and pose files from before the filter were not filtered.
        "pose_smoothing": pose.meta.get("smoothing", {"method": "none"}),
    }
    write_shard(output, seq, aligned, features, metadata)
    return len(aligned.pose)


def write_shard(
    path: str | Path,
    seq: str,
    aligned: Sequence,
    features: AudioFeatures,
    metadata: dict,
) -> None:
    """Write one sequence as a Parquet file (atomically: temp file, then rename)."""
    frames = len(aligned.pose)
    fps = features.fps
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
        **features.settings(),
        "num_features": len(features.names),
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
    """The key-value metadata of a shard, JSON values decoded; missing keys an error."""
    try:
        raw = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise ShardError(f"cannot read shard {path}: {exc}; re-create it") from exc
    decoded = {}
    for key, value in raw.items():
        key, value = key.decode(), value.decode()
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:  # written by another tool
            decoded[key] = value
    missing = [key for key in REQUIRED_METADATA if key not in decoded]
    if missing:
        raise ShardError(
            f"shard {path} has no {', '.join(missing)} in its metadata (written by an older "
            "Kakashi or another tool); rebuild it: delete it and run snakemake again"
        )
    return decoded


def check_audio_settings(meta: dict, expected: dict, path: str | Path, expected_from: str) -> None:
    """Fail, naming both values, unless the shard's audio settings are ``expected``'s."""
    for key in AUDIO_SETTINGS:
        ours, theirs = meta.get(key), expected.get(key)
        same = (
            abs(float(ours) - float(theirs)) < 1e-6
            if key == "fps" and ours is not None and theirs is not None
            else ours == theirs
        )
        if not same:
            show = (
                (lambda v: f"{len(v)} columns ({', '.join(v[:3])}, ...)" if v else "none")
                if key == "feature_names"
                else repr
            )
            raise ShardError(
                f"{path}: {key} is {show(ours)} but {expected_from} has {show(theirs)}; "
                "build the shards and the model with one config (same fps and features)"
            )


def read_shard(path: str | Path, columns: list[str]) -> tuple[dict[str, np.ndarray], dict]:
    """Columns of one shard as float32 arrays (``audio`` (T, F), ``pose`` (T, 51), ``root``
    (T, 3), ``conf`` (T,)) and its metadata. A damaged file is a ShardError naming it."""
    meta = read_metadata(path)
    try:
        table = pq.read_table(path, columns=columns)
        widths = {"audio": int(meta["num_features"]), "pose": POSE_DIM, "root": 3}
        arrays = {
            name: _column(table, name, widths[name])
            if name in widths
            else table.column(name).to_numpy().astype(np.float32)
            for name in columns
        }
    except Exception as exc:  # pyarrow and numpy raise several kinds for a damaged file
        raise ShardError(f"cannot read shard {path}: {exc}; re-create it") from exc
    return arrays, meta


def _column(table: pa.Table, name: str, width: int) -> np.ndarray:
    """A fixed-size-list column as a (T, width) float32 array, without a per-row copy."""
    flat = table.column(name).combine_chunks().flatten().to_numpy()
    return flat.astype(np.float32).reshape(-1, width)


def read_dance(path: str | Path) -> Dance:
    """The ground-truth dance stored in one shard (pose, root, conf, fps)."""
    require(path, "shard", ShardError, "list shards with `kakashi dataset info`")
    return _dance(path, *read_shard(path, ["pose", "root", "conf"]))


def read_sequence(path: str | Path) -> tuple[Dance, np.ndarray, dict]:
    """A whole shard in memory: its dance, its audio features (T, F) and its metadata."""
    arrays, meta = read_shard(path, ["pose", "root", "conf", "audio"])
    return _dance(path, arrays, meta), arrays["audio"], meta


def _dance(path: str | Path, arrays: dict[str, np.ndarray], meta: dict) -> Dance:
    pose = arrays["pose"].reshape(-1, skeleton.NUM_JOINTS, 3)
    dance = Dance(pose, arrays["root"], float(meta["fps"]), arrays["conf"])
    return dance.validate(str(path))


# ---------------------------------------------------------------- listing and manifest


def write_manifest(root: str | Path, sequences: list[tuple[str, str]]) -> Path:
    """List the shards of the current sheet (``(seq, split)`` pairs) in ``ROOT/_manifest.tsv``.

    Every listed shard must exist: the manifest is written once they all do.
    """
    root = Path(root)
    missing = [
        f"split={split}/{seq}.parquet"
        for seq, split in sequences
        if not (root / f"split={split}" / f"{seq}.parquet").is_file()
    ]
    if missing:
        raise ShardError(
            f"{len(missing)} shard(s) of the sheet are missing under {root}, e.g. "
            f"{missing[0]}; build them first (snakemake)"
        )
    lines = ["seq\tsplit"] + [f"{seq}\t{split}" for seq, split in sorted(sequences)]
    path = root / MANIFEST
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def list_shards(root: str | Path, split: str | None = None) -> list[Path]:
    """The shards under ``root`` (of ``split``, or all), sorted: those in the manifest when
    the folder has one (the current sheet's), else every ``split=*/SEQ.parquet``."""
    root = Path(root)
    manifest = root / MANIFEST
    if manifest.is_file():
        rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:] if line]
        paths = [
            root / f"split={row_split}" / f"{seq}.parquet"
            for seq, row_split in rows
            if split is None or row_split == split
        ]
        gone = [path for path in paths if not path.is_file()]
        if gone:
            raise ShardError(
                f"{manifest} lists {gone[0]}, which does not exist; rebuild the dataset "
                "(snakemake results/dataset_info.txt)"
            )
        return sorted(paths)
    pattern = f"split={split}/*.parquet" if split else "split=*/*.parquet"
    return sorted(root.glob(pattern))


def dataset_info(root: str | Path) -> dict:
    """Summary of a shard folder: sequences, frames, hours, per split, frames without a person;
    and per style (the sheet's ``style`` column) the sequences and hours of each split
    (``styles`` is empty when no shard has a style).

    Counts the manifest's shards when there is one; ``ignored`` is how many other shard
    files the folder holds (left by an earlier sheet or split).
    """
    root = Path(root)
    files = list_shards(root)
    summary: dict = {
        "sequences": 0, "frames": 0, "hours": 0.0, "no_person_frames": 0, "splits": {},
        "styles": {},
    }  # fmt: skip
    summary["ignored"] = len(set(root.glob("split=*/*.parquet")) - set(files))
    for file in files:
        split = file.parent.name.removeprefix("split=")
        arrays, meta = read_shard(file, ["conf"])
        conf = arrays["conf"]
        fps = float(meta["fps"])
        entry = summary["splits"].setdefault(
            split, {"sequences": 0, "frames": 0, "hours": 0.0, "no_person_frames": 0}
        )
        for target in (summary, entry):
            target["sequences"] += 1
            target["frames"] += len(conf)
            target["hours"] += len(conf) / fps / 3600
            target["no_person_frames"] += int((conf <= 0).sum())
        # Hours per style (the sheet's style column) and split; "" for unlabelled shards.
        style = summary["styles"].setdefault(meta.get("style") or "", {})
        cell = style.setdefault(split, {"sequences": 0, "hours": 0.0})
        cell["sequences"] += 1
        cell["hours"] += len(conf) / fps / 3600
    if set(summary["styles"]) == {""}:
        summary["styles"] = {}
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
    if summary.get("styles"):
        splits = [name for name in ("train", "val", "test") if name in summary["splits"]]
        lines.append("")
        lines.append(f"{'style':<14}" + "".join(f"{name + ' h':>10}" for name in splits)
                     + f"{'total h':>10}{'sequences':>10}")  # fmt: skip
        for style in sorted(summary["styles"]):
            cells = summary["styles"][style]
            hours = [cells.get(name, {}).get("hours", 0.0) for name in splits]
            count = sum(cell["sequences"] for cell in cells.values())
            lines.append(f"{style or '(none)':<14}" + "".join(f"{h:>10.3f}" for h in hours)
                         + f"{sum(hours):>10.3f}{count:>10}")  # fmt: skip
    if summary.get("ignored"):
        lines.append(
            f"({summary['ignored']} other shard file(s) in the folder are not in the "
            f"manifest {MANIFEST} of the current sheet and are ignored)"
        )
    return "\n".join(lines)
