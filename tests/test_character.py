"""The character: its asset, retargeting a real dance onto the rig (forward kinematics of the
rig against the dance's limbs), the GLB export read back by an independent reader and
checked by the Khronos validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_file
from kakashi import skeleton
from kakashi.outputs.character import _JOINT_POINTS, load_character, retarget
from kakashi.outputs.stage import _ANKLE_HEIGHT, stage_positions

LIMBS = (
    ("left_shoulder", "left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow", "right_wrist"),
    ("left_hip", "left_knee", "left_ankle"),
    ("right_hip", "right_knee", "right_ankle"),
)


@pytest.fixture(scope="module")
def chacha(tmp_path_factory) -> Path:
    """Dance with Melody's cha-cha DANCE_C_2 (63 s of optical mocap) as a dance file."""
    from kakashi.motion import read_motion

    dance = read_motion(shared_file("m2d_tang2018/joints/DANCE_C_2.npy"), 30, "tang23", 25)
    path = tmp_path_factory.mktemp("character") / "chacha.npz"
    dance.save(path)
    return path


def rig_joints(motion, character) -> np.ndarray:
    """The rig's stand-ins for the 17 joints, posed (T, 17, 3), by its forward kinematics."""
    points = np.zeros((len(motion.heads), skeleton.NUM_JOINTS, 3))
    for joint, (bone, end) in _JOINT_POINTS.items():
        b = character.index(bone)
        point = motion.heads[:, b]
        if end == "tail":
            point = point + motion.rotations[:, b] @ (character.tails[b] - character.heads[b])
        points[:, skeleton.INDEX[joint]] = point
    return points


def test_asset_is_a_skinned_body():
    character = load_character()
    assert len(character.positions) == 13380 and len(character.bones) == 52
    assert character.bones[0] == "Hips" and character.parents[0] == -1
    assert (character.parents[1:] < np.arange(1, 52)).all()  # parents before children
    np.testing.assert_allclose(character.weights.sum(axis=1), 1, atol=1e-5)
    assert character.joints.max() < 52 and character.triangles.max() < 13380
    height = np.ptp(character.positions[:, 1])
    assert 1.5 < height < 1.9 and abs(character.positions[:, 1].min()) < 1e-6


def test_retarget_follows_the_limbs_and_plants_the_feet(chacha):
    from kakashi.dance import Dance

    dance = Dance.load(chacha)
    character = load_character()
    motion = retarget(dance, character)
    rig = rig_joints(motion, character)
    stage = stage_positions(dance) * motion.scale
    rest = character.rest_joints()
    stage[..., 1] += rest[list(skeleton.ANKLES), 1].mean() - _ANKLE_HEIGHT * motion.scale

    # Each limb rebuilt from its root along the dance's bone directions with the rig's bone
    # lengths (the dance "after scaling"): the rig's elbows, wrists and knees. (The ankles are
    # checked in world space below: IK puts them at the dance's ankles rather than along its
    # bone directions from the rig's wider hips, 2.5-3.1 cm mean off those here.)
    for limb in LIMBS:
        root, middle, end = (skeleton.INDEX[name] for name in limb)
        expected = rig[:, root].copy()
        for parent, joint in ((root, middle), (middle, end)):
            length = np.linalg.norm(rig[:, joint] - rig[:, parent], axis=-1, keepdims=True)
            bone = stage[:, joint] - stage[:, parent]
            expected = expected + length * bone / np.linalg.norm(bone, axis=-1, keepdims=True)
            error = np.linalg.norm(rig[:, joint] - expected, axis=-1)
            if "ankle" not in skeleton.JOINTS[joint]:
                assert error.mean() < 0.03, (limb, joint, error.mean())
    # The ankles go where the scaled dance puts them (two-bone IK): no sliding, no floating.
    ankles = list(skeleton.ANKLES)
    error = np.linalg.norm(rig[:, ankles] - stage[:, ankles], axis=-1)
    assert np.percentile(error, 95) < 0.03, np.percentile(error, 95)

    # Planted frames (the lower ankle in its lowest third): the posed body's lowest vertex
    # (a sole) is on the floor, within 3 cm.
    low = stage[:, ankles, 1].min(axis=1)
    planted = np.flatnonzero(low < np.percentile(low, 30))[::25]
    soles = np.array([motion.skin(character, frame)[:, 1].min() for frame in planted])
    assert np.abs(np.median(soles)) < 0.03 and (np.abs(soles) < 0.05).mean() > 0.9, soles
