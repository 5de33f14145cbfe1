"""The mediapipe backend on the real demo dancer: canonical skeleton, metres, y up."""

from __future__ import annotations

import numpy as np
import pytest

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import PoseError
from kakashi.pose import fill_missing, get_backend
from kakashi.pose.mediapipe_backend import MediaPipeBackend


@pytest.fixture(scope="module")
def demo_pose(demo_clip) -> Dance:
    clip, _ = demo_clip
    return get_backend("mediapipe", workers=1).estimate(clip)


def test_demo_pose_is_canonical(demo_pose, tmp_path) -> None:
    pose = demo_pose
    assert pose.pose.shape == (240, 17, 3) and pose.root.shape == (240, 3)
    assert pose.fps == 30
    assert (pose.conf > 0).mean() > 0.95
    np.testing.assert_allclose(pose.pose[:, skeleton.INDEX["pelvis"]], 0, atol=1e-6)
    assert 1.3 < skeleton.standing_height(pose.pose) < 2.1
    index = skeleton.INDEX
    found = pose.conf > 0
    # The dancer faces the camera: left hip at +x, nose ahead (+z), head above the feet.
    assert np.median(pose.pose[found, index["left_hip"], 0]) > 0
    assert np.median(pose.pose[found, index["neck"], 2]) > 0
    assert (pose.pose[found, index["head"], 1] > pose.pose[found, index["left_ankle"], 1]).all()
    # Bones of a real body are steady: thighs vary by less than 10 % over the clip.
    thighs = skeleton.bone_lengths(pose.pose[found])[:, [1, 4]]
    assert (thighs.std(axis=0) / thighs.mean(axis=0) < 0.1).all()
    assert pose.meta["root_measured"] is False
    # Per-joint visibility for the temporal filter: in [0, 1], 0 where nobody was found.
    assert pose.joint_conf.shape == (240, 17)
    assert pose.joint_conf.min() >= 0 and pose.joint_conf.max() <= 1
    assert (pose.joint_conf[~found] == 0).all() and pose.joint_conf[found].mean() > 0.5
    pose.save(tmp_path / "p.npz")
    loaded = Dance.load(tmp_path / "p.npz")
    np.testing.assert_array_equal(loaded.pose, pose.pose)
    np.testing.assert_array_equal(loaded.joint_conf, pose.joint_conf)
    assert loaded.meta == pose.meta


def test_parallel_chunks_agree_with_one_process(demo_pose, demo_clip) -> None:
    clip, _ = demo_clip
    # 240 frames make one chunk by default; smaller chunks exercise the process pool.
    parallel = MediaPipeBackend(workers=2, min_chunk_frames=60).estimate(clip)
    assert parallel.meta["chunks"] == [[0, 120], [120, 240]]
    assert len(parallel) == len(demo_pose)
    both = (parallel.conf > 0) & (demo_pose.conf > 0)
    # Away from the restart at frame 120, the two runs see the same person.
    difference = np.abs(parallel.pose[both] - demo_pose.pose[both]).mean()
    assert difference < 0.05


def test_fill_missing_interpolates_and_counts() -> None:
    pose = np.zeros((5, 17, 3), dtype=np.float32)
    pose[:, 1, 0] = [0.0, 9.0, 9.0, 3.0, 4.0]
    conf = np.array([1, 0, 0, 1, 1], dtype=np.float32)
    sequence = Dance(pose, np.zeros((5, 3), np.float32), 30.0, conf)
    filled = fill_missing(sequence, "test", 0.5)
    np.testing.assert_allclose(filled.pose[:, 1, 0], [0, 1, 2, 3, 4])
    assert filled.meta["frames_without_person"] == 2
    assert (filled.conf[1:3] == 0).all()


def test_no_person_fails_naming_the_source() -> None:
    sequence = Dance(
        np.zeros((10, 17, 3), np.float32),
        np.zeros((10, 3), np.float32),
        30.0,
        np.array([0] * 9 + [1], np.float32),
    )
    with pytest.raises(PoseError, match="no person found in 9 of 10 frames of empty-room"):
        fill_missing(sequence, "empty-room", 0.5)
