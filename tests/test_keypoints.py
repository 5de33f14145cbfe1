"""COCO-17 <-> H36M-17 conversions, checked on real COCO ground-truth keypoints.

Runs without MMPose. The ground truth is ``images_mmpose_coco/test_coco.json`` from the
shared data (14 annotated people); tests skip with the reason when it is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared_file
from kakashi import skeleton
from kakashi.pose.keypoints import COCO, COCO_JOINTS, SHARED, coco_to_h36m, h36m_to_coco

H = skeleton.INDEX


@pytest.fixture(scope="module")
def coco_people() -> np.ndarray:
    """Ground-truth COCO keypoints (people, 17, 3): x, y in pixels and visibility 0/1/2."""
    path = shared_file("images_mmpose_coco/test_coco.json")
    annotations = json.loads(path.read_text())["annotations"]
    people = np.array([a["keypoints"] for a in annotations], dtype=np.float64)
    assert people.shape == (14, 51)
    return people.reshape(-1, 17, 3)


def _labelled(people: np.ndarray, *names: str) -> np.ndarray:
    """People in whom every named COCO keypoint is labelled (visibility > 0)."""
    return np.all([people[:, COCO[n], 2] > 0 for n in names], axis=0)


def test_derived_joints_on_ground_truth(coco_people: np.ndarray) -> None:
    h36m = coco_to_h36m(coco_people)
    hips = _labelled(coco_people, "left_hip", "right_hip")
    shoulders = _labelled(coco_people, "left_shoulder", "right_shoulder")
    eyes = _labelled(coco_people, "left_eye", "right_eye")
    # The fixture must exercise each rule on several people, else this test proves little.
    assert hips.sum() >= 5 and shoulders.sum() >= 5 and eyes.sum() >= 5
    mid_hip = 0.5 * (coco_people[:, COCO["left_hip"], :2] + coco_people[:, COCO["right_hip"], :2])
    mid_shoulder = 0.5 * (
        coco_people[:, COCO["left_shoulder"], :2] + coco_people[:, COCO["right_shoulder"], :2]
    )
    np.testing.assert_allclose(h36m[hips, H["pelvis"], :2], mid_hip[hips])
    np.testing.assert_allclose(h36m[shoulders, H["thorax"], :2], mid_shoulder[shoulders])
    both = hips & shoulders
    np.testing.assert_allclose(
        h36m[both, H["spine"], :2], 0.5 * (mid_hip[both] + mid_shoulder[both])
    )
    mid_eye = 0.5 * (coco_people[:, COCO["left_eye"], :2] + coco_people[:, COCO["right_eye"], :2])
    np.testing.assert_allclose(h36m[eyes, H["head"], :2], mid_eye[eyes])
    # Image y grows downwards: on standing people, the thorax is above the pelvis and
    # the head above the thorax.
    upright = both & eyes
    assert np.all(h36m[upright, H["thorax"], 1] < h36m[upright, H["pelvis"], 1])
    assert np.all(h36m[upright, H["head"], 1] < h36m[upright, H["thorax"], 1])


def test_shared_joints_keep_side_and_order(coco_people: np.ndarray) -> None:
    h36m = coco_to_h36m(coco_people)
    for h36m_name, coco_name in SHARED.items():
        np.testing.assert_array_equal(h36m[:, H[h36m_name]], coco_people[:, COCO[coco_name]])
    # Left stays left: the H36M left chain is COCO's left hip/knee/ankle, not the right one.
    np.testing.assert_array_equal(h36m[:, H["left_knee"]], coco_people[:, COCO["left_knee"]])
    assert not np.array_equal(h36m[:, H["left_knee"]], h36m[:, H["right_knee"]])


def test_round_trip_exact_on_shared_joints(coco_people: np.ndarray) -> None:
    back = h36m_to_coco(coco_to_h36m(coco_people))
    for coco_name in SHARED.values():
        np.testing.assert_array_equal(back[:, COCO[coco_name]], coco_people[:, COCO[coco_name]])
    # Eyes and ears come back as the head (mid-eye) point: exact for the eyes' midpoint.
    np.testing.assert_allclose(
        0.5 * (back[:, COCO["left_eye"]] + back[:, COCO["right_eye"]]),
        coco_to_h36m(coco_people)[:, H["head"]],
    )
    # And H36M -> COCO -> H36M is exact on every joint derived from shared ones.
    h36m = coco_to_h36m(coco_people)
    again = coco_to_h36m(h36m_to_coco(h36m))
    for name in [*SHARED, "pelvis", "thorax", "spine", "head"]:
        np.testing.assert_allclose(again[:, H[name]], h36m[:, H[name]])


def test_3d_and_batched_shapes() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(size=(4, 5, len(COCO_JOINTS), 3))
    out = coco_to_h36m(points)
    assert out.shape == (4, 5, 17, 3)
    np.testing.assert_allclose(out[1, 2], coco_to_h36m(points[1, 2]))
    with pytest.raises(ValueError, match="17"):
        coco_to_h36m(np.zeros((3, 18, 2)))


def test_lifter_camera_axes_to_canonical() -> None:
    """A person standing 3 m in front of the camera, facing it, in camera axes (y down)."""
    from kakashi.pose.keypoints import lifter_to_canonical

    camera = np.zeros((17, 3))
    camera[:] = [0.0, 0.0, 3.0]
    camera[H["head"]] = [0.0, -0.7, 3.0]  # above the pelvis: smaller image y
    camera[H["left_ankle"]] = [0.15, 0.9, 3.0]  # subject's left = image right when facing us
    camera[H["right_ankle"]] = [-0.15, 0.9, 3.0]
    camera[H["neck"]] = [0.0, -0.5, 2.9]  # the nose is nearer the camera than the neck line
    camera[H["thorax"]] = [0.0, -0.5, 3.0]
    pose = lifter_to_canonical(camera)
    np.testing.assert_array_equal(pose[H["pelvis"]], 0.0)  # root-centred
    assert pose[H["head"], 1] == pytest.approx(0.7)  # y up, metres kept
    assert pose[H["left_ankle"], 1] == pytest.approx(-0.9)
    assert pose[H["left_ankle"], 0] > 0  # x = subject's left when facing the camera
    # The face points at the camera, which is +z in the canonical frame.
    assert pose[H["neck"], 2] - pose[H["thorax"], 2] == pytest.approx(0.1)
    # A rotation: bone lengths (metres) unchanged, handedness kept.
    np.testing.assert_allclose(skeleton.bone_lengths(pose), skeleton.bone_lengths(camera))
    from kakashi.pose.keypoints import CAMERA_TO_CANONICAL

    assert np.linalg.det(CAMERA_TO_CANONICAL) == pytest.approx(1.0)
