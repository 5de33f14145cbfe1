"""The canonical skeleton: H36M-17 (see docs/contracts.md).

Metres, right-handed, y up, the dancer initially facing +z. A sequence is stored as
``pose`` (T, 17, 3), root-centred, plus ``root`` (T, 3), the pelvis trajectory.
"""

from __future__ import annotations

import numpy as np

NAME = "h36m17"

JOINTS: tuple[str, ...] = (
    "pelvis",
    "right_hip",
    "right_knee",
    "right_ankle",
    "left_hip",
    "left_knee",
    "left_ankle",
    "spine",
    "thorax",
    "neck",
    "head",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "right_shoulder",
    "right_elbow",
    "right_wrist",
)
NUM_JOINTS = len(JOINTS)
INDEX = {name: i for i, name in enumerate(JOINTS)}
# The two ankles (left, right): feet on the floor, floors, contact and skating. A tuple;
# index arrays with ``list(ANKLES)`` (a tuple index would mean one element per axis).
ANKLES = (INDEX["left_ankle"], INDEX["right_ankle"])

# Joint names in Kakashi's BVH files (written by kakashi.outputs.bvh, recognised by the
# BVH reader), in JOINTS order.
BVH_NAMES: tuple[str, ...] = (
    "Hips",
    "RightUpLeg",
    "RightLeg",
    "RightFoot",
    "LeftUpLeg",
    "LeftLeg",
    "LeftFoot",
    "Spine",
    "Thorax",
    "Neck",
    "Head",
    "LeftArm",
    "LeftForeArm",
    "LeftHand",
    "RightArm",
    "RightForeArm",
    "RightHand",
)

# Parent of each joint in the kinematic tree (-1 for the root).
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)

# Mirroring swaps each left joint with its right twin.
MIRROR_PERMUTATION: tuple[int, ...] = (0, 4, 5, 6, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 11, 12, 13)

BONES: tuple[tuple[int, int], ...] = tuple(
    (parent, child) for child, parent in enumerate(PARENTS) if parent >= 0
)


def mirror(
    pose: np.ndarray, root: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mirror a sequence left-right: negate x and swap left/right joints.

    ``pose`` is (..., 17, 3); ``root`` is (..., 3) or None. Mirroring twice is the identity.
    """
    mirrored = pose[..., MIRROR_PERMUTATION, :].copy()
    mirrored[..., 0] *= -1
    if root is None:
        return mirrored, None
    mirrored_root = root.copy()
    mirrored_root[..., 0] *= -1
    return mirrored, mirrored_root


def bone_lengths(pose: np.ndarray) -> np.ndarray:
    """Lengths of the 16 bones, shape (..., 16), in the pose's units."""
    parents = np.array([p for p, _ in BONES])
    children = np.array([c for _, c in BONES])
    return np.linalg.norm(pose[..., children, :] - pose[..., parents, :], axis=-1)


def standing_height(pose: np.ndarray) -> float:
    """A robust body height in metres: head top to the mean ankle height, median over frames."""
    head_y = pose[:, INDEX["head"], 1]
    ankle_y = pose[:, list(ANKLES), 1].mean(axis=1)
    return float(np.median(head_y - ankle_y))
