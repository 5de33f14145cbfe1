"""Motion-capture files on the canonical skeleton: ``read_motion(path, fps)``.

Formats, by extension (docs/motion_formats.md has the details and joint mappings):

- ``.bvh``: any rig with CMU (cgspeed), Bandai Namco or Mixamo joint names (``bvh.py``);
- ``.json``: Dance-with-Melody ``skeletons.json`` with its ``config.json`` (``tang.py``);
- ``.pkl``: AIST++ motion pickles, keypoints3d or SMPL parameters (``aist.py``);
- ``.npy`` / ``.npz``: joint arrays (T, J, 3) in a named layout (``arrays.py``);
- a folder: a Dance-with-Melody sequence folder (``skeletons.json`` + ``config.json``).

Every reader returns joint positions on H36M-17 in its file's units; this module then
detects the units, the up axis, left/right and the facing direction from the data, fixes
them, resamples to ``fps`` and restores constant bone lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import MotionError
from kakashi.inputs import require
from kakashi.motion import orient
from kakashi.motion.resample import resample

__all__ = ["RawMotion", "read_motion"]


@dataclass
class RawMotion:
    """What a format reader hands back: canonical joints in the file's own frame and units."""

    joints: np.ndarray  # (T, 17, 3) world positions, H36M-17 order, file units and axes
    source_fps: float
    meta: dict
    toes: np.ndarray | None = None  # (T, 2, 3) left and right toe, a facing cue
    units: float | None = None  # metres per file unit when the format fixes it
    root_height_suspect: bool = False  # the file's root height is not to be trusted


# Metres per unit for the units motion files use; the body height picks one.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "inch": 0.0254, "cmu_asf": 0.0254 / 0.45}
# Ankle-to-head-top distance of a standing adult, metres (about 0.9 x body height).
_TYPICAL_EXTENT = 1.5


def detect_units(joints: np.ndarray) -> tuple[str, float]:
    """The unit that makes the ankle-to-head extent most like an adult's."""
    head = joints[:, skeleton.INDEX["head"]]
    ankles = joints[:, list(skeleton.ANKLES)].mean(axis=1)
    extent = float(np.percentile(np.linalg.norm(head - ankles, axis=1), 90))
    if not np.isfinite(extent) or extent <= 0:
        raise ValueError("the body has no extent")
    name = min(UNITS, key=lambda unit: abs(math.log(extent * UNITS[unit] / _TYPICAL_EXTENT)))
    return name, UNITS[name]


def read_motion(
    path: Path,
    fps: int,
    skeleton_layout: str | None = None,
    source_fps: float | None = None,
) -> Dance:
    """Read a motion file onto the canonical skeleton at ``fps`` (see the module doc).

    ``skeleton_layout`` names an array layout (h36m17, coco17, tang23) for ``.npy``/``.npz``;
    ``source_fps`` overrides or supplies the file's frame rate.
    """
    path = require(
        path, "motion file", MotionError, "check the source column of the sheet", "either"
    )
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == ".json":
        from kakashi.motion.tang import read_tang

        raw = read_tang(path, source_fps)
    elif suffix == ".bvh":
        from kakashi.motion.bvh import read_bvh

        raw = read_bvh(path, source_fps)
    elif suffix == ".pkl":
        from kakashi.motion.aist import read_aist

        raw = read_aist(path, source_fps)
    elif suffix in (".npy", ".npz"):
        from kakashi.motion.arrays import read_array

        raw = read_array(path, skeleton_layout, source_fps)
    else:
        raise MotionError(
            f"{path}: unknown motion format {suffix!r}; use .bvh, .json (Dance with Melody), "
            ".pkl (AIST++), .npy or .npz"
        )
    return canonicalise(raw, fps, path)


def canonicalise(raw: RawMotion, fps: float, path: Path) -> Dance:
    """Units, up axis, left/right, facing, resampling and bone lengths (module doc)."""
    joints = np.asarray(raw.joints, dtype=np.float64)
    toes = None if raw.toes is None else np.asarray(raw.toes, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[1:] != (17, 3) or len(joints) < 2:
        raise MotionError(f"{path}: need at least 2 frames of 17 joints, got {joints.shape}")
    if not np.isfinite(joints).all():
        raise MotionError(f"{path}: the motion holds NaN or infinite positions; fix the file")
    if not raw.source_fps or raw.source_fps <= 0:
        raise MotionError(f"{path}: unknown frame rate; give it in the fps column of the sheet")
    meta = dict(raw.meta)
    if raw.units is None:
        try:
            unit_name, scale = detect_units(joints)
        except ValueError as exc:
            raise MotionError(f"{path}: {exc}; is this a human skeleton?") from exc
        meta["units"] = unit_name
    else:
        scale = raw.units
    joints = joints * scale
    toes = None if toes is None else toes * scale

    rotation, up_name = orient.up_rotation(joints)
    joints = joints @ rotation.T
    toes = None if toes is None else toes @ rotation.T
    meta["up_axis"] = up_name

    score = orient.left_right_score(joints, toes)
    meta["left_right_score_m"] = round(score, 4)
    if score < 0:
        joints = orient.swap_left_right(joints)
        toes = None if toes is None else toes[:, ::-1]
    meta["left_right_swapped"] = bool(score < 0)

    turn, heading = orient.facing_rotation(joints, raw.source_fps)
    joints = joints @ turn.T
    toes = None if toes is None else toes @ turn.T
    meta["initial_heading_deg"] = round(heading, 2)

    if raw.root_height_suspect:
        joints, info = fix_root_height(joints, toes)
        meta.update(info)

    joints = resample(joints, raw.source_fps, fps)
    joints, lengths = orient.rigidify(joints)
    meta["bone_lengths_m"] = [round(float(x), 4) for x in lengths]
    meta["source_fps"] = float(raw.source_fps)
    root = joints[:, 0].copy()
    pose = joints - root[:, None]
    return Dance(
        pose=pose.astype(np.float32), root=root.astype(np.float32), fps=float(fps), meta=meta
    )


def fix_root_height(
    joints: np.ndarray, toes: np.ndarray | None
) -> tuple[np.ndarray, dict[str, float]]:
    """Rescale the pelvis's vertical travel so the feet stay on one floor; floor at y=0.

    Some datasets (Dance with Melody) store a root height that moves several times more
    than the body: the feet would rise and sink with it. The factor k in [0, 1] that makes
    the lowest foot's height most constant is the least-squares fit of the root height to
    the negated lowest foot height relative to the root.
    """
    root_y = joints[:, 0, 1]
    feet = joints[:, list(skeleton.ANKLES), 1]
    if toes is not None:
        feet = np.concatenate([feet, toes[:, :, 1]], axis=1)
    lowest = feet.min(axis=1) - root_y
    variance = float(np.var(root_y))
    k = 1.0 if variance < 1e-12 else -float(np.cov(root_y, lowest)[0, 1]) / variance
    k = min(max(k, 0.0), 1.0)
    new_root_y = root_y.mean() + k * (root_y - root_y.mean())
    out = joints.copy()
    out[:, :, 1] += (new_root_y - root_y)[:, None]
    floor = float(np.percentile(lowest + new_root_y, 5))
    out[:, :, 1] -= floor
    return out, {"root_height_scale": round(k, 4), "floor_shift_m": round(-floor, 4)}
