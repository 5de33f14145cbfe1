"""COCO-17 <-> H36M-17 keypoint conversions (2-D or 3-D, with or without a score column).

MMPose's 2-D models (RTMPose, HRNet, ...) predict the 17 COCO keypoints; its lifters
(VideoPose3D, MotionBERT) expect and predict H36M-17, the canonical skeleton. The mapping
is the one MMPose uses (``mmpose.apis.convert_keypoint_definition(..., 'coco', 'h36m')``),
kept here so that it runs without MMPose and is tested against COCO ground truth:

- pelvis = mid-hip, thorax = mid-shoulder, spine = mid-pelvis-thorax,
- neck/nose = COCO nose, head = mid-eye (COCO has no head top),
- the 12 limb joints (hips, knees, ankles, shoulders, elbows, wrists) are copied.

Averaging a score column averages the scores, so a derived joint is as confident as its
sources on average.
"""

from __future__ import annotations

import numpy as np

from kakashi import skeleton

COCO_JOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
COCO = {name: i for i, name in enumerate(COCO_JOINTS)}

# H36M joint <- COCO keypoint, for the joints both skeletons measure directly. The
# round trip COCO -> H36M -> COCO is exact on these.
SHARED: dict[str, str] = {
    "right_hip": "right_hip",
    "right_knee": "right_knee",
    "right_ankle": "right_ankle",
    "left_hip": "left_hip",
    "left_knee": "left_knee",
    "left_ankle": "left_ankle",
    "neck": "nose",
    "left_shoulder": "left_shoulder",
    "left_elbow": "left_elbow",
    "left_wrist": "left_wrist",
    "right_shoulder": "right_shoulder",
    "right_elbow": "right_elbow",
    "right_wrist": "right_wrist",
}
H36M_SHARED = np.array([skeleton.INDEX[h] for h in SHARED])
COCO_SHARED = np.array([COCO[c] for c in SHARED.values()])


def _mid(points: np.ndarray, a: int, b: int) -> np.ndarray:
    return 0.5 * (points[..., a, :] + points[..., b, :])


def coco_to_h36m(coco: np.ndarray) -> np.ndarray:
    """COCO-17 keypoints (..., 17, C) -> H36M-17 (..., 17, C), same units and axes."""
    coco = np.asarray(coco)
    if coco.shape[-2] != len(COCO_JOINTS):
        raise ValueError(f"expected (..., 17, C) COCO keypoints, got {coco.shape}")
    out = np.zeros(coco.shape, dtype=np.result_type(coco.dtype, np.float32))
    out[..., H36M_SHARED, :] = coco[..., COCO_SHARED, :]
    pelvis = _mid(coco, COCO["left_hip"], COCO["right_hip"])
    thorax = _mid(coco, COCO["left_shoulder"], COCO["right_shoulder"])
    out[..., skeleton.INDEX["pelvis"], :] = pelvis
    out[..., skeleton.INDEX["thorax"], :] = thorax
    out[..., skeleton.INDEX["spine"], :] = 0.5 * (pelvis + thorax)
    out[..., skeleton.INDEX["head"], :] = _mid(coco, COCO["left_eye"], COCO["right_eye"])
    return out


def h36m_to_coco(h36m: np.ndarray) -> np.ndarray:
    """H36M-17 (..., 17, C) -> COCO-17 (..., 17, C).

    The 13 shared joints are copied exactly. H36M has no eyes or ears: all four are set to
    the H36M head point (the mid-eye point when the pose came from COCO), which is an
    approximation, good enough for drawing, not for COCO keypoint metrics.
    """
    h36m = np.asarray(h36m)
    if h36m.shape[-2] != skeleton.NUM_JOINTS:
        raise ValueError(f"expected (..., 17, C) H36M keypoints, got {h36m.shape}")
    out = np.zeros(h36m.shape, dtype=np.result_type(h36m.dtype, np.float32))
    out[..., COCO_SHARED, :] = h36m[..., H36M_SHARED, :]
    head = h36m[..., skeleton.INDEX["head"], :]
    for name in ("left_eye", "right_eye", "left_ear", "right_ear"):
        out[..., COCO[name], :] = head
    return out


# MMPose lifters predict in camera axes: x right, y down, z away from the camera. The
# canonical skeleton has y up and a dancer who faces the camera facing +z: a 180-degree
# turn about x, which keeps the frame right-handed and lengths (metres) unchanged.
CAMERA_TO_CANONICAL = np.diag([1.0, -1.0, -1.0])


def lifter_to_canonical(camera: np.ndarray) -> np.ndarray:
    """H36M-17 joints (..., 17, 3) in camera axes, metres -> canonical axes, root-centred."""
    canonical = np.asarray(camera) @ CAMERA_TO_CANONICAL.T
    return canonical - canonical[..., :1, :]
