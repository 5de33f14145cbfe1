"""Alignment and the Parquet shard format (schema, metadata, dataset info)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from kakashi.errors import AlignError
from kakashi.features import AudioFeatures
from kakashi.pose import PoseSequence
from kakashi.shards import align, dataset_info, format_info, read_metadata, write_shard


def _pose(frames: int, fps: float = 30.0) -> PoseSequence:
    rng = np.random.default_rng(frames)
    conf = np.ones(frames, np.float32)
    conf[:2] = 0
    return PoseSequence(
        rng.normal(size=(frames, 17, 3)).astype(np.float32),
        np.zeros((frames, 3), np.float32),
        conf,
        fps,
        {"backend": "mediapipe", "root_measured": False},
    )


def _features(frames: int, fps: float = 30.0) -> AudioFeatures:
    values = np.arange(frames * 4, dtype=np.float32).reshape(frames, 4)
    return AudioFeatures(values, ["a", "b", "c", "d"], fps, frames / fps)


def test_align_trims_within_tolerance() -> None:
    aligned = align(_pose(100), _features(102), tolerance_frames=2, name="s")
    assert len(aligned.pose) == len(aligned.audio) == 100 and aligned.trimmed == 2


def test_align_fails_beyond_tolerance_with_both_counts() -> None:
    with pytest.raises(AlignError, match="s1: pose has 100 frames but audio features have 104"):
        align(_pose(100), _features(104), tolerance_frames=2, name="s1")
    with pytest.raises(AlignError, match="25.0 fps"):
        align(_pose(100, 25.0), _features(100), tolerance_frames=2, name="s2")


def test_shard_schema_and_metadata(tmp_path) -> None:
    aligned = align(_pose(50), _features(50), 2, "s")
    for split, seq in (("train", "one"), ("train", "two"), ("test", "three")):
        path = tmp_path / f"split={split}" / f"{seq}.parquet"
        write_shard(path, seq, aligned, 30.0, ["a", "b", "c", "d"], {"source_kind": "video"})
    dataset = ds.dataset(tmp_path, format="parquet", partitioning="hive")
    table = dataset.to_table(filter=ds.field("split") == "train")
    assert table.num_rows == 100
    schema = pa.parquet.read_schema(tmp_path / "split=train" / "one.parquet")
    assert schema.field("audio").type == pa.list_(pa.float32(), 4)
    assert schema.field("pose").type == pa.list_(pa.float32(), 51)
    assert schema.field("root").type == pa.list_(pa.float32(), 3)
    assert schema.field("frame").type == pa.int32()
    assert schema.field("time_s").type == pa.float32()
    one = pa.parquet.read_table(tmp_path / "split=train" / "one.parquet")
    pose = np.stack(one.column("pose").to_numpy(zero_copy_only=False)).reshape(-1, 17, 3)
    np.testing.assert_array_equal(pose, aligned.pose)
    meta = read_metadata(tmp_path / "split=train" / "one.parquet")
    assert meta["fps"] == 30.0 and meta["feature_names"] == ["a", "b", "c", "d"]
    assert meta["num_features"] == 4 and meta["skeleton"] == "h36m17"
    assert meta["source_kind"] == "video" and meta["frames_without_person"] == 2
    assert "kakashi_version" in meta
    assert not list(tmp_path.rglob("*.part"))

    summary = dataset_info(tmp_path)
    assert summary["sequences"] == 3 and summary["frames"] == 150
    assert summary["splits"]["train"]["sequences"] == 2
    assert summary["no_person_frames"] == 6
    text = format_info(summary, tmp_path)
    assert "total" in text and "150" in text
