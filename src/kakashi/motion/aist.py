"""AIST++ motion pickles (Li et al., ICCV 2021), 60 fps, y up, cm.

Two kinds of pickle are read:

- keypoints3d files: ``keypoints3d`` and ``keypoints3d_optim`` (T, 17, 3) COCO-17 joint
  positions; the optimised set is preferred when present (it is the smoothed one);
- motion files (``smpl_poses`` (T, 72) axis-angle, ``smpl_trans`` (T, 3), ``smpl_scaling``
  (1,)). Joint positions given as ``smpl_joints`` / ``joints3d`` (T, 24, 3) are used as
  they are; otherwise forward kinematics of the 24 SMPL joints runs on the rest offsets of
  the SMPL neutral template (``SMPL_OFFSETS``, metres; the numbers public dance models such
  as EDGE use), with the pelvis at ``smpl_trans / smpl_scaling``. That body has the
  template's proportions, not the dancer's own shape (betas need the licensed model).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from kakashi.errors import MotionError
from kakashi.motion import RawMotion
from kakashi.motion.layouts import ARRAY_LAYOUTS, SMPL24_FROM, SMPL24_TOES

FPS = 60.0


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            data = pickle.load(handle)  # a file the user points us at
    except (pickle.UnpicklingError, EOFError, ValueError, OSError, AttributeError) as exc:
        raise MotionError(f"{path} is not a readable pickle ({exc}); is it truncated?") from exc
    if not isinstance(data, dict):
        raise MotionError(f"{path}: expected an AIST++ dict pickle, got {type(data).__name__}")
    return data


def _array(path: Path, data: dict, key: str, joints: int) -> np.ndarray:
    array = np.asarray(data[key], dtype=np.float64)
    if array.ndim != 3 or array.shape[1:] != (joints, 3) or len(array) < 2:
        raise MotionError(f"{path}: {key} must have shape (frames, {joints}, 3), got {array.shape}")
    return array


def read_aist(path: Path, source_fps: float | None = None) -> RawMotion:
    """Canonical joints of an AIST++ pickle (see the module doc)."""
    data = _load(path)
    fps = float(source_fps) if source_fps else FPS
    meta: dict = {"format": "aist++", "frames_in_file": 0}
    toes = None
    key = next((k for k in ("keypoints3d_optim", "keypoints3d") if k in data), None)
    if key is not None:
        world = _array(path, data, key, 17)
        joints = np.einsum("kj,tjc->tkc", ARRAY_LAYOUTS["coco17"], world)
        meta.update(layout="coco17", key=key)
    else:
        key = next((k for k in ("smpl_joints", "joints3d") if k in data), None)
        if key is not None:
            world = _array(path, data, key, 24)
        elif "smpl_poses" in data:
            key = "smpl_poses"
            world = _smpl_positions(path, data)
        else:
            given = ", ".join(sorted(map(str, data)))
            raise MotionError(
                f"{path}: no AIST++ motion in it (keys: {given}); expected keypoints3d, "
                "keypoints3d_optim or smpl_poses with smpl_trans and smpl_scaling"
            )
        joints = np.einsum("kj,tjc->tkc", SMPL24_FROM, world)
        left, right = SMPL24_TOES
        toes = world[:, [left, right]]
        meta.update(layout="smpl24", key=key)
        if "smpl_scaling" in data:
            meta["smpl_scaling"] = float(np.asarray(data["smpl_scaling"]).reshape(-1)[0])
    meta["frames_in_file"] = len(world)
    return RawMotion(joints=joints, source_fps=fps, meta=meta, toes=toes)


# Rest offsets of each SMPL joint from its parent, metres, SMPL neutral template, y up,
# facing +z, left on +x. Parents: SMPL_PARENTS.
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
SMPL_OFFSETS = np.array(
    [
        [0.0, 0.0, 0.0],
        [0.05858135, -0.08228004, -0.01766408],
        [-0.06030973, -0.09051332, -0.01354254],
        [0.00443945, 0.12440352, -0.03838522],
        [0.04345142, -0.38646945, 0.008037],
        [-0.04325663, -0.38368791, -0.00484304],
        [0.00448844, 0.1379564, 0.02682033],
        [-0.01479032, -0.42687458, -0.037428],
        [0.01905555, -0.4200455, -0.03456167],
        [-0.00226458, 0.05603239, 0.00285505],
        [0.04105436, -0.06028581, 0.12204243],
        [-0.03483987, -0.06210566, 0.13032329],
        [-0.0133902, 0.21163553, -0.03346758],
        [0.07170245, 0.11399969, -0.01889817],
        [-0.08295366, 0.11247234, -0.02370739],
        [0.01011321, 0.08893734, 0.05040987],
        [0.12292141, 0.04520509, -0.019046],
        [-0.11322832, 0.04685326, -0.00847207],
        [0.2553319, -0.01564902, -0.02294649],
        [-0.26012748, -0.01436928, -0.03126873],
        [0.26570925, 0.01269811, -0.00737473],
        [-0.26910836, 0.00679372, -0.00602676],
        [0.08669055, -0.01063603, -0.01559429],
        [-0.0887537, -0.00865157, -0.01010708],
    ]
)


def axis_angle_to_matrix(rotvec: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: (..., 3) axis-angle vectors to (..., 3, 3) rotation matrices."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / np.maximum(angle, 1e-12)
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    cross = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(
        (*rotvec.shape[:-1], 3, 3)
    )
    angle = angle[..., None]
    return np.eye(3) + np.sin(angle) * cross + (1.0 - np.cos(angle)) * (cross @ cross)


def _smpl_positions(path: Path, data: dict) -> np.ndarray:
    """Forward kinematics of AIST++ SMPL parameters on the template skeleton (metres)."""
    poses = np.asarray(data["smpl_poses"], dtype=np.float64)
    if poses.ndim != 2 or poses.shape[1] != 72 or len(poses) < 2:
        raise MotionError(f"{path}: smpl_poses must have shape (frames, 72), got {poses.shape}")
    trans = np.asarray(data.get("smpl_trans", np.zeros((len(poses), 3))), dtype=np.float64)
    if trans.shape != (len(poses), 3):
        raise MotionError(
            f"{path}: smpl_trans must have shape ({len(poses)}, 3) like smpl_poses, "
            f"got {trans.shape}"
        )
    scaling = float(np.asarray(data.get("smpl_scaling", [1.0]), dtype=np.float64).reshape(-1)[0])
    if not scaling > 0:
        raise MotionError(f"{path}: smpl_scaling must be positive, got {scaling}")
    local = axis_angle_to_matrix(poses.reshape(len(poses), 24, 3))
    positions = np.zeros((len(poses), 24, 3))
    rotations = np.zeros((len(poses), 24, 3, 3))
    for joint, parent in enumerate(SMPL_PARENTS):
        if parent < 0:
            positions[:, joint] = trans / scaling
            rotations[:, joint] = local[:, joint]
        else:
            positions[:, joint] = positions[:, parent] + rotations[:, parent] @ SMPL_OFFSETS[joint]
            rotations[:, joint] = rotations[:, parent] @ local[:, joint]
    return positions
