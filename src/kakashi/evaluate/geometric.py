"""Geometric features (32): the AIST++ "manual" boolean pose relations, averaged over frames.

These are Muller et al. (2005) motion templates as ported by the AIST++ API
(``aist_plusplus/features/manual.py``), here on H36M-17 world positions (metres, y up).
Each relation is evaluated on frames 1..T-1 (velocity relations need the previous frame)
and the clip's feature is the fraction of frames where it holds.

SMPL-24 joint -> H36M-17 joint used here (see docs/evaluation.md for why):

    root -> 0 pelvis        lhip/rhip -> 4/1         lknee/rknee -> 5/2
    lankle/rankle -> 6/3    ltoes/rtoes -> 6/3 (ankles: H36M has no toes)
    belly -> 0 pelvis       chest -> 7 spine         neck -> 8 thorax (neck base)
    lshoulder/rshoulder -> 11/14   lelbow/relbow -> 12/15   lwrist/rwrist -> 13/16

Body-size thresholds use the AIST++ constants (SMPL mean humerus length ``HL``, shoulder
width ``SW``, hip width ``HW``, in metres). Velocities use the clip's real frame time
``1/fps`` (the AIST++ copy assumes 1/120 s whatever the data rate). A relation whose
geometry is degenerate (zero-length direction) counts as false.
"""

from __future__ import annotations

import numpy as np

# SMPL mean-body joint positions (metres) from which AIST++ derives its size thresholds.
_SMPL = {
    "lshoulder": (1.99113488e-01, 2.36807942e-01, -1.80702247e-02),
    "lelbow": (4.54445392e-01, 2.21158922e-01, -4.10167128e-02),
    "rshoulder": (-1.91692337e-01, 2.36928746e-01, -1.23055102e-02),
    "lhip": (5.64076714e-02, -3.23069185e-01, 1.09197125e-02),
    "rhip": (-6.24834076e-02, -3.31302464e-01, 1.50412619e-02),
}


def _length(a: str, b: str) -> float:
    return float(np.linalg.norm(np.subtract(_SMPL[a], _SMPL[b])))


HL = _length("lshoulder", "lelbow")  # humerus length, ~0.257 m
SW = _length("lshoulder", "rshoulder")  # shoulder width, ~0.391 m
HW = _length("lhip", "rhip")  # hip width, ~0.120 m

J = {
    "root": 0, "rhip": 1, "rknee": 2, "rankle": 3, "lhip": 4, "lknee": 5, "lankle": 6,
    "belly": 0, "chest": 7, "neck": 8, "lshoulder": 11, "lelbow": 12, "lwrist": 13,
    "rshoulder": 14, "relbow": 15, "rwrist": 16, "ltoes": 6, "rtoes": 3,
}  # fmt: skip

# (kind, joints, threshold or angle range, name); same order as the AIST++ list.
RELATIONS: tuple[tuple[str, tuple[str, ...], object, str], ...] = (
    ("nmove", ("neck", "rhip", "lhip", "rwrist"), 1.8 * HL, "rwrist_moves_back"),
    ("nmove", ("neck", "lhip", "rhip", "lwrist"), 1.8 * HL, "lwrist_moves_forward"),
    ("nplane", ("chest", "neck", "neck", "rwrist"), 0.2 * HL, "rwrist_above_neck"),
    ("nplane", ("chest", "neck", "neck", "lwrist"), 0.2 * HL, "lwrist_above_neck"),
    ("move", ("belly", "chest", "chest", "rwrist"), 1.8 * HL, "rwrist_moves_up"),
    ("move", ("belly", "chest", "chest", "lwrist"), 1.8 * HL, "lwrist_moves_up"),
    ("angle", ("relbow", "rshoulder", "relbow", "rwrist"), (0, 110), "relbow_bent"),
    ("angle", ("lelbow", "lshoulder", "lelbow", "lwrist"), (0, 110), "lelbow_bent"),
    ("nplane", ("lshoulder", "rshoulder", "lwrist", "rwrist"), 2.5 * SW, "wrists_apart"),
    ("move", ("lwrist", "rwrist", "rwrist", "lwrist"), 1.4 * HL, "always_false"),
    ("move", ("rwrist", "root", "lwrist", "root"), 1.4 * HL, "rwrist_moves_from_root"),
    ("move", ("lwrist", "root", "rwrist", "root"), 1.4 * HL, "lwrist_moves_from_root"),
    ("fast", ("rwrist",), 2.5 * HL, "rwrist_fast"),
    ("fast", ("lwrist",), 2.5 * HL, "lwrist_fast"),
    ("plane", ("root", "lhip", "ltoes", "rankle"), 0.38 * HL, "rankle_before_lleg"),
    ("plane", ("root", "rhip", "rtoes", "lankle"), 0.38 * HL, "lankle_behind_rleg"),
    ("nplane", ("zero", "y_unit", "y_min", "rankle"), 1.2 * HL, "rankle_raised"),
    ("nplane", ("zero", "y_unit", "y_min", "lankle"), 1.2 * HL, "lankle_raised"),
    ("nplane", ("lhip", "rhip", "lankle", "rankle"), 2.1 * HW, "feet_apart"),
    ("angle", ("rknee", "rhip", "rknee", "rankle"), (0, 110), "rknee_bent"),
    ("angle", ("lknee", "lhip", "lknee", "lankle"), (0, 110), "lknee_bent"),
    ("fast", ("rankle",), 2.5 * HL, "rankle_fast"),
    ("fast", ("lankle",), 2.5 * HL, "lankle_fast"),
    ("angle", ("neck", "root", "rshoulder", "relbow"), (25, 180), "rarm_from_body"),
    ("angle", ("neck", "root", "lshoulder", "lelbow"), (25, 180), "larm_from_body"),
    ("angle", ("neck", "root", "rhip", "rknee"), (50, 180), "rleg_raised"),
    ("angle", ("neck", "root", "lhip", "lknee"), (50, 180), "lleg_raised"),
    ("plane", ("rankle", "neck", "lankle", "root"), 0.5 * HL, "root_before_feet"),
    ("angle", ("neck", "root", "zero", "y_unit"), (70, 110), "torso_horizontal"),
    ("nplane", ("zero", "minus_y_unit", "y_min", "rwrist"), -1.2 * HL, "rwrist_low"),
    ("nplane", ("zero", "minus_y_unit", "y_min", "lwrist"), -1.2 * HL, "lwrist_low"),
    ("fast", ("root",), 2.3 * HL, "root_fast"),
)
NAMES: tuple[str, ...] = tuple(relation[3] for relation in RELATIONS)
NUM_GEOMETRIC = len(RELATIONS)


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", a, b)


def _along(vector: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Component of ``vector`` along ``direction`` (NaN where the direction has no length)."""
    norm = np.linalg.norm(direction, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _dot(vector, direction) / np.where(norm > 0, norm, np.nan)


class _Frames:
    """Positions of named points at frames 1..T-1 (``now``) and 0..T-2 (``prev``)."""

    def __init__(self, world: np.ndarray) -> None:
        self.world = world
        n = len(world) - 1
        self.virtual = {
            "zero": np.zeros((n, 3)),
            "y_unit": np.tile([0.0, 1.0, 0.0], (n, 1)),
            "minus_y_unit": np.tile([0.0, -1.0, 0.0], (n, 1)),
            # The lowest joint of the frame stands in for the floor under the dancer.
            "y_min": np.stack([np.zeros(n), world[1:, :, 1].min(axis=1), np.zeros(n)], axis=1),
        }

    def now(self, name: str) -> np.ndarray:
        if name in self.virtual:
            return self.virtual[name]
        return self.world[1:, J[name]]

    def prev(self, name: str) -> np.ndarray:
        return self.world[:-1, J[name]]


def _relation(frames: _Frames, kind: str, names: tuple[str, ...], arg, dt: float) -> np.ndarray:
    p = [frames.now(name) for name in names]
    with np.errstate(invalid="ignore"):
        if kind == "fast":
            speed = np.linalg.norm(p[0] - frames.prev(names[0]), axis=-1) / dt
            return speed > arg
        if kind == "plane":  # signed distance of p4 from the plane through p1, p2, p3
            normal = np.cross(p[2] - p[0], p[1] - p[0])
            return _along(p[3] - p[0], normal) > arg
        if kind == "nplane":  # signed distance of p4 from the plane through p3, normal p1->p2
            return _along(p[3] - p[2], p[1] - p[0]) > arg
        if kind == "angle":  # angle between p1->p2 and p3->p4 inside the open range
            a, b = p[1] - p[0], p[3] - p[2]
            cos = _along(a, b) / np.linalg.norm(a, axis=-1)
            angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
            return (angle > arg[0]) & (angle < arg[1])
        # Velocity of p4 relative to p1, along a direction.
        rel_velocity = (p[3] - p[0] - (frames.prev(names[3]) - frames.prev(names[0]))) / dt
        if kind == "move":  # direction p1 -> p2
            return _along(rel_velocity, p[1] - p[0]) > arg
        if kind == "nmove":  # normal of the plane through p1, p2, p3
            return _along(rel_velocity, np.cross(p[2] - p[0], p[1] - p[0])) > arg
    raise ValueError(f"unknown relation kind {kind!r}")


def geometric_frames(world: np.ndarray, fps: float) -> np.ndarray:
    """The 32 boolean relations per frame, (T-1, 32), for frames 1..T-1."""
    world = np.asarray(world, dtype=np.float64)
    if world.ndim != 3 or world.shape[1:] != (17, 3) or len(world) < 2:
        raise ValueError(f"geometric features need positions (T>=2, 17, 3), got {world.shape}")
    frames = _Frames(world)
    columns = [_relation(frames, kind, names, arg, 1.0 / fps) for kind, names, arg, _ in RELATIONS]
    return np.stack(columns, axis=1)


def geometric_features(world: np.ndarray, fps: float) -> np.ndarray:
    """Geometric features (32,): the fraction of frames where each relation holds."""
    return geometric_frames(world, fps).mean(axis=0)
