"""AIST++ motion pickles (Li et al., ICCV 2021), 60 fps, y up, cm.

Two kinds of pickle are read:

- keypoints3d files: ``keypoints3d`` and ``keypoints3d_optim`` (T, 17, 3) COCO-17 joint
  positions; the optimised set is preferred when present (it is the smoothed one);
- motion files (``smpl_poses`` (T, 72), ``smpl_trans`` (T, 3), ``smpl_scaling`` (1,)) that
  also carry joint positions as ``smpl_joints`` / ``joints3d`` (T, 24, 3) in SMPL order.

SMPL rotations alone do not give positions without the SMPL body model, which Kakashi
cannot ship (its license forbids it); such a file fails with a message pointing at the
keypoints3d file AIST++ ships for every sequence.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from kakashi.motion import MotionError, RawMotion
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
        if key is None:
            given = ", ".join(sorted(map(str, data)))
            raise MotionError(
                f"{path}: holds no joint positions (keys: {given}); SMPL rotations need the "
                "SMPL body model. Use the AIST++ keypoints3d pickle of the same sequence"
            )
        world = _array(path, data, key, 24)
        joints = np.einsum("kj,tjc->tkc", SMPL24_FROM, world)
        left, right = SMPL24_TOES
        toes = world[:, [left, right]]
        meta.update(layout="smpl24", key=key)
        if "smpl_scaling" in data:
            meta["smpl_scaling"] = float(np.asarray(data["smpl_scaling"]).reshape(-1)[0])
    meta["frames_in_file"] = len(world)
    return RawMotion(joints=joints, source_fps=fps, meta=meta, toes=toes)
