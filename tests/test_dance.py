"""Dance files: the format generate, render, export and evaluate share."""

from __future__ import annotations

import numpy as np
import pytest

from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.errors import DanceFileError
from kakashi.features import AudioFeatures
from kakashi.shards import align, write_shard


def test_round_trip_and_world(tmp_path) -> None:
    rng = np.random.default_rng(1)
    dance = Dance(rng.normal(size=(20, 17, 3)), rng.normal(size=(20, 3)), 30)
    dance.save(tmp_path / "d.npz")
    loaded = Dance.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(loaded.pose, dance.pose)
    assert loaded.fps == 30 and loaded.duration_s == pytest.approx(20 / 30)
    np.testing.assert_allclose(loaded.world()[:, 0], dance.pose[:, 0] + dance.root)


@pytest.mark.parametrize(
    ("pose", "root", "message"),
    [
        (np.zeros((5, 16, 3)), np.zeros((5, 3)), "pose must be (T, 17, 3)"),
        (np.zeros((5, 17, 3)), np.zeros((4, 3)), "root must be (5, 3)"),
        (np.full((5, 17, 3), np.nan), np.zeros((5, 3)), "5 frame(s) contain NaN"),
    ],
)
def test_malformed_dances_fail_naming_the_file(tmp_path, pose, root, message) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, pose=pose, root=root, fps=30.0)
    with pytest.raises(DanceFileError) as error:
        Dance.load(path)
    assert "bad.npz" in str(error.value) and message in str(error.value)


def test_not_a_dance_file(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DanceFileError, match="cannot read dance file .*junk.npz"):
        Dance.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", values=np.zeros(3))
    with pytest.raises(DanceFileError, match="missing fps, pose, root"):
        Dance.load(tmp_path / "other.npz")


def test_export_dance_from_a_shard(tmp_path) -> None:
    rng = np.random.default_rng(2)
    pose = Dance(
        rng.normal(size=(40, 17, 3)).astype(np.float32),
        rng.normal(size=(40, 3)).astype(np.float32),
        30.0,
        np.ones(40, np.float32),
    )
    features = AudioFeatures(np.zeros((40, 2), np.float32), ["mfcc_0", "beat"], 30.0, 40 / 30, 512)
    shard = tmp_path / "split=train" / "s.parquet"
    write_shard(shard, "s", align(pose, features, 2, "s"), features, {})
    assert main(["export-dance", str(shard), "-o", str(tmp_path / "s.npz")]) == 0
    dance = Dance.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(dance.pose, pose.pose)
    np.testing.assert_array_equal(dance.root, pose.root)
    assert main(["export-dance", str(tmp_path / "missing.parquet"), "-o", "x.npz"]) != 0
