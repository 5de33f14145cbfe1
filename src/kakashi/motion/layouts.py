"""Joint layouts and how each maps onto the canonical H36M-17 skeleton.

Array layouts are linear maps: each canonical joint is a weighted sum of source joints
(a midpoint, or a short extrapolation for the head top), so one (17, J) matrix turns a
(T, J, 3) array into canonical joints. BVH rigs are matched by joint name, with candidate
names for the CMU (cgspeed), Bandai Namco and Mixamo rigs; docs/motion_formats.md lists
every mapping. Left/right labels from a layout are only a first guess: the reader checks
them against the data (``orient.fix_left_right``).
"""

from __future__ import annotations

import numpy as np

from kakashi import skeleton

_J = skeleton.INDEX

COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip",
    "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# Dance with Melody (Tang et al. 2018): the order of its drawing code. Side A (3-11) is the
# dancer's right: in all 35 sequences the knees bend towards cross(A_hip - B_hip, up) the
# wrong way for a left side, and the foot points agree. 0 and 1 are two head points at the
# same height (front and back of the head); 5 sits 12 cm from the elbow, so the wrist is
# taken from the "hand" point 6 (forearm about 25 cm). 21 and 22 are hand-direction points.
TANG23 = (
    "head_a", "head_b", "waist", "right_shoulder", "right_elbow", "right_wrist_a",
    "right_hand", "right_hip", "right_knee", "right_ankle", "right_foot_a", "right_foot_b",
    "left_shoulder", "left_elbow", "left_wrist_a", "left_hand", "left_hip", "left_knee",
    "left_ankle", "left_foot_a", "left_foot_b", "hand_dir_a", "hand_dir_b",
)  # fmt: skip

# Canonical joint -> {source joint: weight}. Weights of one joint sum to 1.
_H36M_FROM_COCO: dict[str, dict[str, float]] = {
    "pelvis": {"left_hip": 0.5, "right_hip": 0.5},
    "right_hip": {"right_hip": 1},
    "right_knee": {"right_knee": 1},
    "right_ankle": {"right_ankle": 1},
    "left_hip": {"left_hip": 1},
    "left_knee": {"left_knee": 1},
    "left_ankle": {"left_ankle": 1},
    "spine": {"left_hip": 0.25, "right_hip": 0.25, "left_shoulder": 0.25, "right_shoulder": 0.25},
    "thorax": {"left_shoulder": 0.5, "right_shoulder": 0.5},
    "neck": {"nose": 1},
    # Head top: half an ear-to-thorax length above the ears (COCO has no head top).
    "head": {"left_ear": 0.75, "right_ear": 0.75, "left_shoulder": -0.25, "right_shoulder": -0.25},
    "left_shoulder": {"left_shoulder": 1},
    "left_elbow": {"left_elbow": 1},
    "left_wrist": {"left_wrist": 1},
    "right_shoulder": {"right_shoulder": 1},
    "right_elbow": {"right_elbow": 1},
    "right_wrist": {"right_wrist": 1},
}

# Tang's body joints carry COCO's names; only the head and the wrists differ.
_H36M_FROM_TANG: dict[str, dict[str, float]] = {
    **_H36M_FROM_COCO,
    "neck": {"head_a": 0.5, "head_b": 0.5},
    # Head top: the head points sit about 20 cm above the shoulders; go half that again.
    "head": {"head_a": 0.75, "head_b": 0.75, "left_shoulder": -0.25, "right_shoulder": -0.25},
    "left_wrist": {"left_hand": 1},
    "right_wrist": {"right_hand": 1},
}


def _matrix(names: tuple[str, ...], mapping: dict[str, dict[str, float]]) -> np.ndarray:
    index = {name: i for i, name in enumerate(names)}
    weights = np.zeros((skeleton.NUM_JOINTS, len(names)), dtype=np.float64)
    for joint, parts in mapping.items():
        for source, weight in parts.items():
            weights[_J[joint], index[source]] = weight
    return weights


ARRAY_LAYOUTS: dict[str, np.ndarray] = {
    "h36m17": np.eye(skeleton.NUM_JOINTS),
    "coco17": _matrix(COCO17, _H36M_FROM_COCO),
    "tang23": _matrix(TANG23, _H36M_FROM_TANG),
}

# Toe points (left, right) per layout, a second facing cue besides the knees.
ARRAY_TOES: dict[str, tuple[tuple[int, ...], tuple[int, ...]] | None] = {
    "h36m17": None,
    "coco17": None,
    "tang23": ((19, 20), (10, 11)),
}


def array_layout_for(joints: int) -> str | None:
    """The only array layout with this many joints, or None when ambiguous."""
    matches = [name for name, m in ARRAY_LAYOUTS.items() if m.shape[1] == joints]
    return matches[0] if len(matches) == 1 else None


# BVH: canonical joint -> candidate joint names (lower case, "mixamorig:" prefix removed),
# the first one present wins. "X_end" is the End Site below joint X.
BVH_NAMES: dict[str, tuple[str, ...]] = {
    "pelvis": ("hips", "pelvis", "hip"),
    "right_hip": ("rightupleg", "righthip", "upperleg_r", "rightupperleg", "rthigh"),
    "right_knee": ("rightleg", "rightknee", "lowerleg_r", "rightlowerleg", "rshin"),
    "right_ankle": ("rightfoot", "rightankle", "foot_r", "rfoot"),
    "left_hip": ("leftupleg", "lefthip", "upperleg_l", "leftupperleg", "lthigh"),
    "left_knee": ("leftleg", "leftknee", "lowerleg_l", "leftlowerleg", "lshin"),
    "left_ankle": ("leftfoot", "leftankle", "foot_l", "lfoot"),
    "spine": ("spine1", "chest", "spine"),
    "thorax": ("lowerneck", "neck", "neck1"),
    "neck": ("head",),
    "head": ("headtop_end", "head_end"),
    "left_shoulder": ("leftarm", "leftshoulder", "upperarm_l", "lshldr", "leftupperarm"),
    "left_elbow": ("leftforearm", "leftelbow", "lowerarm_l", "lforearm", "leftlowerarm"),
    "left_wrist": ("lefthand", "leftwrist", "hand_l", "lhand"),
    "right_shoulder": ("rightarm", "rightshoulder", "upperarm_r", "rshldr", "rightupperarm"),
    "right_elbow": ("rightforearm", "rightelbow", "lowerarm_r", "rforearm", "rightlowerarm"),
    "right_wrist": ("righthand", "rightwrist", "hand_r", "rhand"),
}
BVH_TOES: dict[str, tuple[str, ...]] = {
    "left": ("lefttoebase", "lefttoe", "toes_l", "lefttoe_end"),
    "right": ("righttoebase", "righttoe", "toes_r", "righttoe_end"),
}


def bvh_key(name: str) -> str:
    """The lookup form of a BVH joint name: lower case, no Mixamo namespace."""
    name = name.lower()
    return name.split(":", 1)[1] if ":" in name else name


SMPL24 = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)  # fmt: skip
SMPL24_FROM = _matrix(
    SMPL24,
    {
        "pelvis": {"pelvis": 1},
        "right_hip": {"right_hip": 1},
        "right_knee": {"right_knee": 1},
        "right_ankle": {"right_ankle": 1},
        "left_hip": {"left_hip": 1},
        "left_knee": {"left_knee": 1},
        "left_ankle": {"left_ankle": 1},
        "spine": {"spine2": 1},
        "thorax": {"spine3": 0.5, "neck": 0.5},
        "neck": {"head": 1},  # SMPL's head joint sits mid-skull, near the nose's height
        "head": {"head": 2.1, "neck": -1.1},  # head top ~11 cm above the skull centre
        "left_shoulder": {"left_shoulder": 1},
        "left_elbow": {"left_elbow": 1},
        "left_wrist": {"left_wrist": 1},
        "right_shoulder": {"right_shoulder": 1},
        "right_elbow": {"right_elbow": 1},
        "right_wrist": {"right_wrist": 1},
    },
)
SMPL24_TOES = (10, 11)
