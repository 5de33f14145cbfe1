"""Alignment and the Parquet shard format (schema, metadata, dataset info)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from kakashi.dance import Dance
from kakashi.errors import AlignError
from kakashi.features import AudioFeatures
from kakashi.shards import align, dataset_info, format_info, read_metadata, write_shard

NAMES = ["mfcc_0", "mfcc_1", "onset_strength", "beat"]


def _pose(frames: int, fps: float = 30.0) -> Dance:
    rng = np.random.default_rng(frames)
    conf = np.ones(frames, np.float32)
    conf[:2] = 0
    return Dance(
        rng.normal(size=(frames, 17, 3)).astype(np.float32),
        np.zeros((frames, 3), np.float32),
        fps,
        conf,
        {"backend": "mediapipe", "root_measured": False},
    )


def _features(frames: int, fps: float = 30.0) -> AudioFeatures:
    values = np.arange(frames * 4, dtype=np.float32).reshape(frames, 4)
    return AudioFeatures(values, NAMES, fps, frames / fps, 512)


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
        write_shard(path, seq, aligned, _features(50), {"source_kind": "video"})
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
    assert meta["fps"] == 30.0 and meta["feature_names"] == NAMES and meta["hop_length"] == 512
    assert meta["feature_set"] == ["mfcc", "onset", "beat"] and meta["n_mfcc"] == 2
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


def test_manifest_keeps_stale_shards_out(tmp_path) -> None:
    """Shards left by an earlier sheet stay on disk but never count once a manifest exists."""
    from conftest import DEMO_VIDEO, write_sheet
    from kakashi.cli import main
    from kakashi.shards import MANIFEST, list_shards

    root = tmp_path / "shards"
    aligned = align(_pose(50), _features(50), 2, "s")
    for split, seq in (("train", "one"), ("train", "old"), ("test", "three")):
        write_shard(root / f"split={split}" / f"{seq}.parquet", seq, aligned, _features(50), {})
    assert len(list_shards(root)) == 3  # no manifest: every shard in the folder
    sheet = write_sheet(
        tmp_path / "sheet.tsv",
        [
            {"id": "one", "source": str(DEMO_VIDEO), "split": "train"},
            {"id": "three", "source": str(DEMO_VIDEO), "split": "test"},
        ],
    )
    assert main(["dataset", "info", str(root), "--sheet", str(sheet)]) == 0
    assert (root / MANIFEST).read_text().splitlines() == [
        "seq\tsplit",
        "one\ttrain",
        "three\ttest",
    ]
    assert [p.stem for p in list_shards(root)] == ["three", "one"]  # by path: split=test first
    assert [p.stem for p in list_shards(root, "train")] == ["one"]
    summary = dataset_info(root)
    assert summary["sequences"] == 2 and summary["ignored"] == 1
    assert "1 other shard file(s)" in format_info(summary, root)
    # pyarrow still reads the folder as a dataset: it skips names starting with "_".
    assert ds.dataset(root, format="parquet", partitioning="hive").count_rows() == 150
    # A sheet row whose shard is missing: the manifest is not written, the error says so.
    write_sheet(sheet, [{"id": "gone", "source": str(DEMO_VIDEO), "split": "val"}])
    assert main(["dataset", "info", str(root), "--sheet", str(sheet)]) == 1


def test_audio_settings_mismatch_names_both_values(tmp_path) -> None:
    from kakashi.errors import ShardError
    from kakashi.shards import check_audio_settings

    path = tmp_path / "split=train" / "s.parquet"
    write_shard(path, "s", align(_pose(50), _features(50), 2, "s"), _features(50), {})
    meta = read_metadata(path)
    expected = {"fps": 30.0, "hop_length": 512, "feature_names": NAMES}
    check_audio_settings(meta, expected, path, "model.pt")  # the same: no error
    with pytest.raises(ShardError, match=r"hop_length is 512 but model.pt has 256"):
        check_audio_settings(meta, {**expected, "hop_length": 256}, path, "model.pt")
    with pytest.raises(ShardError, match=r"feature_names is 4 columns .* but model.pt has 2"):
        check_audio_settings(meta, {**expected, "feature_names": NAMES[:2]}, path, "model.pt")
    # A shard without the settings (an older writer) is an error, not a silent default.
    table = pa.parquet.read_table(path)
    raw = {k: v for k, v in table.schema.metadata.items() if k != b"hop_length"}
    pa.parquet.write_table(table.replace_schema_metadata(raw), tmp_path / "old.parquet")
    with pytest.raises(ShardError, match="no hop_length in its metadata"):
        read_metadata(tmp_path / "old.parquet")


def test_dataset_info_counts_hours_per_style(tmp_path) -> None:
    aligned = align(_pose(90), _features(90), 2, "s")
    for split, seq, style in (("train", "a", "waltz"), ("train", "b", "rumba"),
                              ("test", "c", "waltz"), ("val", "d", None)):  # fmt: skip
        metadata = {"style": style} if style else {}
        write_shard(tmp_path / f"split={split}" / f"{seq}.parquet", seq, aligned,
                    _features(90), metadata)  # fmt: skip
    assert read_metadata(tmp_path / "split=train" / "a.parquet")["style"] == "waltz"
    summary = dataset_info(tmp_path)
    assert summary["styles"]["waltz"]["train"] == {"sequences": 1, "hours": 3.0 / 3600}
    assert summary["styles"]["waltz"]["test"]["sequences"] == 1
    assert summary["styles"][""]["val"]["sequences"] == 1  # no style given
    text = format_info(summary, tmp_path)
    assert "waltz" in text and "rumba" in text and "(none)" in text
    # Shards without any style: no style table.
    plain = tmp_path / "plain"
    write_shard(plain / "split=train" / "x.parquet", "x", aligned, _features(90), {})
    assert dataset_info(plain)["styles"] == {} and "style" not in format_info(
        dataset_info(plain), plain
    )
