"""Skeleton-aware helpers every dance model's generation shares: bone-length projection
(so bones never drift over a long song), the leaky root integration and keeping planted
feet planted.

The root is the running sum of the predicted root velocity, made leaky: each frame it
loses 1/(ROOT_LEAK_S * fps) of its distance from the start spot. A small bias in the
predicted velocity otherwise walks the dancer away in a straight line (3.9 m per minute
measured on Dance with Melody); the leak keeps travel within a few seconds' worth of
steps while leaving the motion of each step as predicted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from kakashi import skeleton

if TYPE_CHECKING:
    import torch

# Time constant (seconds) of the leaky root integration (see the module docstring).
ROOT_LEAK_S = 4.0
ANKLES = skeleton.ANKLES
LOCK_EASE_S = 0.05  # sigma (s) of the Gaussian that eases a foot lock in and out

# Bones in an order where every parent is placed before its children.
_TREE = [(skeleton.PARENTS[c], c) for c in range(1, skeleton.NUM_JOINTS)]
_BONE_INDEX = {child: i for i, (_, child) in enumerate(skeleton.BONES)}


def project_bones(pose: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Re-place joints along the kinematic tree so every bone has its training length.

    ``pose`` (..., 17, 3) root-centred; ``lengths`` (16,) in ``skeleton.BONES`` order.
    Each bone keeps the direction the model gave it.
    """
    import torch

    out = [pose[..., 0, :] * 0] + [None] * (skeleton.NUM_JOINTS - 1)
    for parent, child in _TREE:
        direction = pose[..., child, :] - pose[..., parent, :]
        norm = direction.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        out[child] = out[parent] + direction / norm * lengths[_BONE_INDEX[child]]
    return torch.stack(out, dim=-2)


# Joints grouped by depth in the kinematic tree: a group's parents are all placed earlier.
_DEPTH: dict[int, int] = {0: 0}
for _child in range(1, skeleton.NUM_JOINTS):
    _DEPTH[_child] = _DEPTH[skeleton.PARENTS[_child]] + 1
_LEVELS = [
    np.array([j for j in range(1, skeleton.NUM_JOINTS) if _DEPTH[j] == d])
    for d in range(1, max(_DEPTH.values()) + 1)
]


def project_bones_np(pose: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """numpy ``project_bones`` for a pose (17, 3) or a sequence (..., 17, 3), one tree level
    at a time (generation projects frame by frame, the pose stage a whole sequence)."""
    parents = np.asarray(skeleton.PARENTS)
    bone = np.array([_BONE_INDEX.get(j, 0) for j in range(skeleton.NUM_JOINTS)])
    out = np.zeros_like(pose)
    for level in _LEVELS:
        direction = pose[..., level, :] - pose[..., parents[level], :]
        norm = np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-6)
        placed = direction / norm * lengths[bone[level], None]
        out[..., level, :] = out[..., parents[level], :] + placed
    return out


# The frames a token model's root velocity can be written in (``root_frame`` of motif and
# maskdance): "world" as stored, or "body", the horizontal velocity in the dancer's heading
# frame (HumanML3D, MoMask), so "travel forward" is one code whatever the facing.
ROOT_FRAMES = ("world", "body")
_ACROSS = (
    (skeleton.INDEX["left_hip"], skeleton.INDEX["right_hip"]),
    (skeleton.INDEX["left_shoulder"], skeleton.INDEX["right_shoulder"]),
)


def heading(pose: np.ndarray) -> np.ndarray:
    """(T, 2) cos and sin of each frame's yaw from its pose (T, 17, 3), world-oriented:
    the facing is perpendicular to the hips' and shoulders' right-to-left line, yaw 0
    facing +z (the skeleton's rest facing); a frame without a horizontal line keeps yaw 0."""
    pose = np.asarray(pose, dtype=np.float64)
    across = sum(pose[:, left] - pose[:, right] for left, right in _ACROSS)
    x, z = across[:, 0], across[:, 2]
    norm = np.hypot(x, z)
    ok = norm > 1e-9
    safe = np.where(ok, norm, 1.0)
    # left = (cos, 0, -sin), forward = (sin, 0, cos): yaw 0 has left +x, forward +z.
    return np.stack([np.where(ok, x / safe, 1.0), np.where(ok, -z / safe, 0.0)], axis=1)


def _turned(velocity: np.ndarray, pose: np.ndarray, sign: float) -> np.ndarray:
    """``velocity`` (T, 3) turned about the vertical by ``sign`` times each frame's yaw."""
    cos, sin = heading(pose).T
    sin = sign * sin
    v = np.asarray(velocity, dtype=np.float64)
    out = v.copy()
    out[:, 0] = cos * v[:, 0] - sin * v[:, 2]
    out[:, 2] = sin * v[:, 0] + cos * v[:, 2]
    return out.astype(np.asarray(velocity).dtype)


def root_to_body(velocity: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World root velocity (T, 3) -> the body frame of each frame's pose (T, 17, 3): x to
    the dancer's left, z forward, y (up) unchanged. Same dtype as ``velocity``."""
    return _turned(velocity, pose, 1.0)


def root_to_world(velocity: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The inverse of :func:`root_to_body` with the same poses (the decoded pose keeps its
    world orientation, so no yaw is integrated)."""
    return _turned(velocity, pose, -1.0)


def root_velocity(root: np.ndarray, pose: np.ndarray, root_frame: str = "world") -> np.ndarray:
    """(T, 3) per-frame root velocity (0 at the first frame) in ``root_frame``, the dtype of
    ``root``; ``pose`` (T, 17, 3) gives the body frame's heading."""
    if root_frame not in ROOT_FRAMES:
        raise ValueError(f"root_frame must be one of {ROOT_FRAMES}, got {root_frame!r}")
    velocity = np.zeros_like(root)
    velocity[1:] = root[1:] - root[:-1]
    return root_to_body(velocity, pose) if root_frame == "body" else velocity


def leaky_integral(velocity: np.ndarray, time_constant_frames: float) -> np.ndarray:
    """Running sum of ``velocity`` (T, 3) that decays towards 0 with the given time constant.

    A constant velocity v settles at ``v * time_constant_frames`` instead of growing without
    bound; motion much faster than the time constant passes almost unchanged.
    """
    keep = 1.0 - 1.0 / max(time_constant_frames, 1.0)
    root = np.zeros_like(velocity, dtype=np.float64)
    for t in range(1, len(velocity)):
        root[t] = root[t - 1] * keep + velocity[t]
    return root


def settle_planted_feet(
    root_step: np.ndarray,
    source_feet_step: np.ndarray,
    feet_step: np.ndarray,
    planted: np.ndarray,
    foot_lock: float,
    fps: float,
) -> np.ndarray:
    """Horizontal root steps (T-1, 2) that keep planted feet planted.

    ``root_step`` (T-1, 2) and ``feet_step`` (T-1, 2 ankles, 2) are the root's and the
    root-centred ankles' horizontal motion from frame t to t + 1 as the dance stands;
    ``source_feet_step`` the ankles' motion in the source the dance should follow (the
    segment it came from, or the dance itself); ``planted`` (T-1, 2) where an ankle is on
    the floor. Where a foot is planted, the root takes up whatever moves that foot over the
    floor differently from the source, minus ``foot_lock`` of the source's own glide (0: it
    slides as in the source; 1: it never moves), averaged over the planted feet. A lock
    switching on and off would jerk the root, so with ``foot_lock > 0`` the change is eased
    over ``LOCK_EASE_S``.
    """
    from scipy.ndimage import gaussian_filter1d

    source_world = (root_step[:, None, :] + source_feet_step) * (1 - foot_lock)
    wanted = source_world - feet_step  # the root step that would put each foot there
    count = planted.sum(axis=1, keepdims=True)
    settled = (wanted * planted[..., None]).sum(axis=1) / np.maximum(count, 1)
    change = np.where(count > 0, settled - root_step, 0.0)
    if foot_lock > 0:
        change = gaussian_filter1d(change, LOCK_EASE_S * fps, axis=0, mode="nearest")
    return root_step + change


def settle_own_feet(pose: np.ndarray, root: np.ndarray, fps: float, foot_lock: float) -> np.ndarray:
    """``root`` (T, 3) changed so that where the dance itself has a foot planted, that foot
    glides ``1 - foot_lock`` as far over the floor as it did (a generated dance has no
    source to follow). Contact is the evaluation's own (kakashi.evaluate.quality: ankle
    within 5 cm of the local floor, moving vertically under 0.1 m/s), so a foot the metrics
    would call skating is exactly one this settles. The height is untouched."""
    from kakashi.evaluate.quality import foot_contact

    if foot_lock <= 0 or len(root) < 3:
        return root
    planted = foot_contact(pose + root[:, None, :], fps)[0]
    feet_step = np.diff(pose[:, list(ANKLES)], axis=0)[..., [0, 2]].astype(np.float64)
    step = np.diff(root[:, [0, 2]], axis=0).astype(np.float64)
    step = settle_planted_feet(step, feet_step, feet_step, planted[:-1], foot_lock, fps)
    settled = root.astype(np.float64).copy()
    settled[1:, [0, 2]] = settled[0, [0, 2]] + np.cumsum(step, axis=0)
    return settled.astype(root.dtype)
