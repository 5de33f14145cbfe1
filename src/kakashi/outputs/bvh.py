"""Export a dance as BVH: the H36M-17 tree with rotations solved from joint positions.

Hierarchy: ``skeleton.PARENTS``, with the pelvis as ``Hips`` (6 channels: position, then
``Zrotation Xrotation Yrotation``), every other joint 3 rotation channels, and an
``End Site`` after each leaf (ankles, head, wrists). Lengths are centimetres by default
(``units="m"`` for metres); axes are the dance's: y up, the dancer initially facing +z.

Rest pose (all rotations zero): a T-pose with the dance's mean bone lengths. At the two
joints with several children (pelvis: hips and spine; thorax: neck and shoulders) the rest
directions are the dance's average geometry in that joint's frame, so a rigid rotation fits
every frame as closely as the data allow.

Rotations, per frame, in tree order:

* a joint with several children gets the best rigid rotation (Kabsch) taking its rest
  offsets onto the bones towards its children;
* a joint with one child gets the shortest-arc (swing) rotation, relative to its parent's
  frame, taking the rest bone onto the bone. The twist is therefore inherited from the
  parent, whose frame is fixed by the hip or shoulder plane: stable and continuous;
* each bone aims from the *reconstructed* joint towards the *measured* child, so errors
  from varying bone lengths stay local instead of accumulating down the chain.

A rigid skeleton cannot follow bone lengths that change from frame to frame (video-derived
poses vary by 1-4 cm); ``stretch=True`` adds position channels to every joint, which makes
the file reproduce the positions exactly at the cost of a less standard rig.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.atomic import atomic_output
from kakashi.dance import Dance
from kakashi.skeleton import BVH_NAMES

_PARENTS = np.array(skeleton.PARENTS)
_CHILDREN: list[list[int]] = [
    [c for c, p in enumerate(skeleton.PARENTS) if p == j] for j in range(skeleton.NUM_JOINTS)
]

# T-pose directions of each bone (parent -> joint); left is +x, up is +y, front is +z.
_TPOSE = {
    "right_hip": (-1, 0, 0), "right_knee": (0, -1, 0), "right_ankle": (0, -1, 0),
    "left_hip": (1, 0, 0), "left_knee": (0, -1, 0), "left_ankle": (0, -1, 0),
    "spine": (0, 1, 0), "thorax": (0, 1, 0), "neck": (0, 1, 0), "head": (0, 1, 0),
    "left_shoulder": (1, 0, 0), "left_elbow": (1, 0, 0), "left_wrist": (1, 0, 0),
    "right_shoulder": (-1, 0, 0), "right_elbow": (-1, 0, 0), "right_wrist": (-1, 0, 0),
}  # fmt: skip
_END_SITE_FRACTION = 0.3  # end sites continue the leaf bone by this fraction of its length


@dataclass
class BvhReport:
    """How closely the written file reproduces the dance (forward kinematics, metres)."""

    frames: int
    mean_error_m: float
    max_error_m: float


@dataclass
class BvhMotion:
    """A solved BVH: rest offsets (17, 3) and per-frame channels, all in metres/degrees."""

    offsets: np.ndarray  # (17, 3) rest offset of each joint from its parent
    root_position: np.ndarray  # (T, 3)
    local_rotations: np.ndarray  # (T, 17, 3, 3)
    local_positions: np.ndarray | None  # (T, 17, 3) with stretch, else None
    fps: float


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-9)


def _kabsch(rest: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) taking the rest vectors (K, 3) best onto targets (T, K, 3)."""
    covariance = np.einsum("ki,tkj->tij", rest, targets)
    u, _, vt = np.linalg.svd(covariance)
    v = np.swapaxes(vt, 1, 2)
    sign = np.sign(np.linalg.det(v @ np.swapaxes(u, 1, 2)))
    correction = np.tile(np.eye(3), (len(targets), 1, 1))
    correction[:, 2, 2] = sign  # never a reflection
    return v @ correction @ np.swapaxes(u, 1, 2)


def _swing(rest: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Shortest-arc rotations (T, 3, 3) taking the unit vector ``rest`` onto unit targets."""
    axis = np.cross(rest, targets)
    cosine = np.einsum("i,ti->t", rest, targets)
    skew = np.zeros((len(targets), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    skew -= np.swapaxes(skew, 1, 2)
    opposite = cosine < -1 + 1e-6
    factor = 1 / np.where(opposite, 1.0, 1 + cosine)
    rotation = np.eye(3) + skew + (skew @ skew) * factor[:, None, None]
    if opposite.any():  # half turn about any axis perpendicular to rest
        helper = np.array([1.0, 0, 0]) if abs(rest[0]) < 0.9 else np.array([0, 1.0, 0])
        perpendicular = _unit(np.cross(rest, helper))
        rotation[opposite] = 2 * np.outer(perpendicular, perpendicular) - np.eye(3)
    return rotation


def _rest_directions(world: np.ndarray) -> np.ndarray:
    """Unit rest direction of each bone (17, 3); row 0 (the root) is zero."""
    rest = np.zeros((skeleton.NUM_JOINTS, 3))
    for name, direction in _TPOSE.items():
        rest[skeleton.INDEX[name]] = direction
    for joint, children in enumerate(_CHILDREN):
        if len(children) < 2:
            continue
        bones = _unit(world[:, children] - world[:, joint : joint + 1])
        for _ in range(3):  # settle on the mean geometry in the joint's own frame
            rotation = _kabsch(rest[children], bones)
            local = np.einsum("tji,tkj->tki", rotation, bones)  # R^T applied to each bone
            rest[children] = _unit(local.mean(axis=0))
    return rest


def solve_rotations(
    world: np.ndarray, rest: np.ndarray, lengths: np.ndarray, stretch: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global and local rotations (T, 17, 3, 3) of a skeleton with unit rest directions
    ``rest`` (17, 3) and bone ``lengths`` (16,) that best follow ``world`` (T, 17, 3), and the
    joint positions it then has (T, 17, 3). Also the character's retargeting solver."""
    frames = len(world)
    offsets = np.zeros((skeleton.NUM_JOINTS, 3))
    offsets[1:] = rest[1:] * lengths[:, None]
    identity = np.tile(np.eye(3), (frames, 1, 1))
    global_rot = np.tile(np.eye(3), (frames, skeleton.NUM_JOINTS, 1, 1))
    local_rot = global_rot.copy()
    rebuilt = world.copy()  # joint positions as the rigid skeleton places them
    for joint in range(skeleton.NUM_JOINTS):
        parent = _PARENTS[joint]
        parent_rot = global_rot[:, parent] if parent >= 0 else identity
        children = _CHILDREN[joint]
        origin = world[:, joint] if stretch else rebuilt[:, joint]
        if len(children) > 1:
            targets = _unit(world[:, children] - origin[:, None])
            rotation = _kabsch(rest[children], targets)
            local = np.swapaxes(parent_rot, 1, 2) @ rotation
        elif len(children) == 1:
            target = _unit(world[:, children[0]] - origin)
            in_parent = np.einsum("tji,tj->ti", parent_rot, target)
            local = _swing(rest[children[0]], in_parent)
            rotation = parent_rot @ local
        else:
            rotation, local = parent_rot, identity
        global_rot[:, joint], local_rot[:, joint] = rotation, local
        for child in children:
            rebuilt[:, child] = rebuilt[:, joint] + rotation @ offsets[child]
    return global_rot, local_rot, rebuilt


def solve(dance: Dance, stretch: bool = False) -> BvhMotion:
    """Solve rest offsets and per-frame local rotations from the dance's positions."""
    world = dance.world().astype(np.float64)
    lengths = np.linalg.norm(world[:, 1:] - world[:, _PARENTS[1:]], axis=-1).mean(axis=0)
    rest = _rest_directions(world)
    offsets = np.zeros((skeleton.NUM_JOINTS, 3))
    offsets[1:] = rest[1:] * lengths[:, None]
    global_rot, local_rot, _ = solve_rotations(world, rest, lengths, stretch)

    local_positions = None
    if stretch:
        local_positions = np.zeros_like(world)
        bones = world[:, 1:] - world[:, _PARENTS[1:]]
        parent_rot = global_rot[:, _PARENTS[1:]]
        local_positions[:, 1:] = np.einsum("tkji,tkj->tki", parent_rot, bones)
    return BvhMotion(offsets, world[:, 0].copy(), local_rot, local_positions, dance.fps)


def euler_zxy(rotation: np.ndarray) -> np.ndarray:
    """Degrees (..., 3) as (z, x, y) with R = Rz(z) Rx(x) Ry(y), BVH's ZXY channel order."""
    x = np.arcsin(np.clip(rotation[..., 2, 1], -1, 1))
    y = np.arctan2(-rotation[..., 2, 0], rotation[..., 2, 2])
    z = np.arctan2(-rotation[..., 0, 1], rotation[..., 1, 1])
    return np.degrees(np.stack([z, x, y], axis=-1))


def matrix_zxy(degrees: np.ndarray) -> np.ndarray:
    """Inverse of :func:`euler_zxy`: rotation matrices (..., 3, 3)."""
    z, x, y = np.moveaxis(np.radians(degrees), -1, 0)
    cz, sz, cx, sx, cy, sy = np.cos(z), np.sin(z), np.cos(x), np.sin(x), np.cos(y), np.sin(y)
    return np.stack(
        [
            np.stack([cz * cy - sz * sx * sy, -sz * cx, cz * sy + sz * sx * cy], -1),
            np.stack([sz * cy + cz * sx * sy, cz * cx, sz * sy - cz * sx * cy], -1),
            np.stack([-cx * sy, sx, cx * cy], -1),
        ],
        -2,
    )


def forward_kinematics(motion: BvhMotion, angles: np.ndarray) -> np.ndarray:
    """Joint positions (T, 17, 3) from ZXY angles (T, 17, 3), as a BVH player computes them."""
    local = matrix_zxy(angles)
    frames = len(angles)
    positions = np.zeros((frames, skeleton.NUM_JOINTS, 3))
    global_rot = np.zeros((frames, skeleton.NUM_JOINTS, 3, 3))
    for joint in range(skeleton.NUM_JOINTS):
        parent = _PARENTS[joint]
        if parent < 0:
            positions[:, joint] = motion.root_position
            global_rot[:, joint] = local[:, joint]
            continue
        offset = (
            motion.offsets[joint]
            if motion.local_positions is None
            else (motion.local_positions[:, joint])
        )
        positions[:, joint] = positions[:, parent] + np.einsum(
            "tij,tj->ti", global_rot[:, parent], np.broadcast_to(offset, (frames, 3))
        )
        global_rot[:, joint] = global_rot[:, parent] @ local[:, joint]
    return positions


def _hierarchy(motion: BvhMotion, scale: float) -> str:
    lines = ["HIERARCHY"]
    position = "Xposition Yposition Zposition"
    rotation = "Zrotation Xrotation Yrotation"

    def write(joint: int, depth: int) -> None:
        pad = "  " * depth
        offset = motion.offsets[joint] * scale
        keyword = "ROOT" if joint == 0 else "JOINT"
        channels = (
            f"6 {position} {rotation}"
            if joint == 0 or motion.local_positions is not None
            else f"3 {rotation}"
        )
        lines.append(f"{pad}{keyword} {BVH_NAMES[joint]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        lines.append(f"{pad}  CHANNELS {channels}")
        if _CHILDREN[joint]:
            for child in _CHILDREN[joint]:
                write(child, depth + 1)
        else:
            end = motion.offsets[joint] * _END_SITE_FRACTION * scale
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {end[0]:.6f} {end[1]:.6f} {end[2]:.6f}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    write(0, 0)
    return "\n".join(lines) + "\n"


def _frame_table(motion: BvhMotion, angles: np.ndarray, scale: float) -> np.ndarray:
    """One row per frame, joints in file (depth-first) order."""
    columns = []
    for joint in _depth_first():
        if joint == 0:
            columns.append(motion.root_position * scale)
        elif motion.local_positions is not None:
            columns.append(motion.local_positions[:, joint] * scale)
        columns.append(angles[:, joint])
    return np.concatenate(columns, axis=1)


def _depth_first(joint: int = 0) -> list[int]:
    order = [joint]
    for child in _CHILDREN[joint]:
        order += _depth_first(child)
    return order


def export_bvh(
    dance_path: str | Path, output: str | Path, units: str = "cm", stretch: bool = False
) -> BvhReport:
    """Write the dance in ``dance_path`` as the BVH file ``output``; report the FK error."""
    if units not in ("cm", "m"):
        raise ValueError(f"units must be 'cm' or 'm', not {units!r}")
    scale = 100.0 if units == "cm" else 1.0
    dance = Dance.load(dance_path)
    motion = solve(dance, stretch=stretch)
    # Unwrapping keeps each channel continuous (no 359 -> -359 jumps for interpolators).
    angles = np.degrees(np.unwrap(np.radians(euler_zxy(motion.local_rotations)), axis=0))
    rebuilt = forward_kinematics(motion, angles)
    error = np.linalg.norm(rebuilt - dance.world(), axis=-1)

    text = _hierarchy(motion, scale)
    text += f"MOTION\nFrames: {len(dance)}\nFrame Time: {1 / dance.fps:.8f}\n"
    table = _frame_table(motion, angles, scale)
    rows = "\n".join(" ".join(f"{value:.5f}" for value in row) for row in table)
    with atomic_output(output) as temporary:
        temporary.write_text(text + rows + "\n")
    return BvhReport(len(dance), float(error.mean()), float(error.max()))
