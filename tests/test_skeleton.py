"""The canonical skeleton and the BlazePose mapping, on small real arrays."""

from __future__ import annotations

import numpy as np

from kakashi import skeleton
from kakashi.pose.mediapipe_backend import blazepose_to_h36m


def test_mirror_swaps_sides_negates_x_and_is_an_involution() -> None:
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(5, 17, 3)).astype(np.float32)
    root = rng.normal(size=(5, 3)).astype(np.float32)
    mirrored, mirrored_root = skeleton.mirror(pose, root)
    left_hip, right_hip = skeleton.INDEX["left_hip"], skeleton.INDEX["right_hip"]
    np.testing.assert_array_equal(mirrored[:, left_hip, 0], -pose[:, right_hip, 0])
    np.testing.assert_array_equal(mirrored[:, left_hip, 1:], pose[:, right_hip, 1:])
    np.testing.assert_array_equal(mirrored_root[:, 0], -root[:, 0])
    back, back_root = skeleton.mirror(mirrored, mirrored_root)
    np.testing.assert_array_equal(back, pose)
    np.testing.assert_array_equal(back_root, root)


def test_tree_is_consistent() -> None:
    assert len(skeleton.JOINTS) == len(skeleton.PARENTS) == 17
    assert len(skeleton.BONES) == 16
    for child, parent in enumerate(skeleton.PARENTS):
        assert parent < child  # parents come first: forward kinematics in one pass
    for a, b in enumerate(skeleton.MIRROR_PERMUTATION):
        assert skeleton.MIRROR_PERMUTATION[b] == a
        if "left" in skeleton.JOINTS[a]:
            assert skeleton.JOINTS[b] == skeleton.JOINTS[a].replace("left", "right")


def _blazepose_facing_camera() -> np.ndarray:
    """A standing person facing the camera in BlazePose world axes (x right, y down, z away)."""
    points = np.zeros((33, 3))
    # The subject's left side appears on the image's right (+x).
    side = {"left": 1.0, "right": -1.0}
    for name, sign in side.items():
        offset = 0 if name == "left" else 1
        points[11 + offset] = (0.18 * sign, -0.5, 0.0)  # shoulder
        points[13 + offset] = (0.22 * sign, -0.25, 0.0)  # elbow
        points[15 + offset] = (0.24 * sign, 0.0, 0.0)  # wrist
        points[23 + offset] = (0.1 * sign, 0.0, 0.0)  # hip
        points[25 + offset] = (0.1 * sign, 0.42, 0.0)  # knee
        points[27 + offset] = (0.1 * sign, 0.82, 0.0)  # ankle
    points[7], points[8] = (0.07, -0.68, 0.05), (-0.07, -0.68, 0.05)  # ears
    points[0] = (0.0, -0.66, -0.1)  # nose, towards the camera (smaller z)
    return points


def test_blazepose_mapping_axes_and_sides() -> None:
    pose = blazepose_to_h36m(_blazepose_facing_camera())
    index = skeleton.INDEX
    np.testing.assert_allclose(pose[index["pelvis"]], 0.0, atol=1e-12)
    assert pose[index["left_hip"], 0] > 0 > pose[index["right_hip"], 0]  # facing +z
    assert pose[index["head"], 1] > pose[index["thorax"], 1] > 0 > pose[index["left_ankle"], 1]
    assert pose[index["neck"], 2] > 0  # the nose points where the dancer faces: +z
    height = pose[index["head"], 1] - pose[index["left_ankle"], 1]
    assert 1.5 < height < 1.9
    batch = blazepose_to_h36m(np.stack([_blazepose_facing_camera()] * 3))
    assert batch.shape == (3, 17, 3)
