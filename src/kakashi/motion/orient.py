"""Put canonical joints the contract's way round: y up, left is left, facing +z at the start.

Nothing here trusts a file's conventions. The up axis is the dominant axis of the
ankle-to-head vector; left and right are checked by which way the knees bend (a knee
always flexes forwards, and forward = cross(left_hip - right_hip, up) when the labels are
right), with the toes as a second cue when the layout has them; the facing direction is
the mean hip/shoulder normal over the first second.
"""

from __future__ import annotations

import numpy as np

from kakashi import skeleton

_J = skeleton.INDEX
_UP = np.array([0.0, 1.0, 0.0])


def up_rotation(world: np.ndarray) -> tuple[np.ndarray, str]:
    """The rotation taking the data's up axis (snapped to +-x/y/z) to +y, and its name."""
    head = world[:, _J["head"]]
    ankles = world[:, list(skeleton.ANKLES)].mean(axis=1)
    up = np.median(head - ankles, axis=0)
    axis = int(np.argmax(np.abs(up)))
    sign = 1.0 if up[axis] > 0 else -1.0
    name = ("+" if sign > 0 else "-") + "xyz"[axis]
    rotations = {
        "+y": np.eye(3),
        "-y": np.diag([1.0, -1.0, -1.0]),  # 180 degrees about x
        "+z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),  # -90 degrees about x
        "-z": np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]]),
        "+x": np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]),  # +90 degrees about z
        "-x": np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]]),
    }
    return rotations[name], name


def _forward(world: np.ndarray) -> np.ndarray:
    """Per-frame horizontal forward direction from the hip and shoulder lines (T, 3)."""
    side = (world[:, _J["left_hip"]] - world[:, _J["right_hip"]]) + (
        world[:, _J["left_shoulder"]] - world[:, _J["right_shoulder"]]
    )
    forward = np.cross(side, _UP)
    forward[:, 1] = 0.0
    return forward / np.maximum(np.linalg.norm(forward, axis=1, keepdims=True), 1e-9)


def left_right_score(world: np.ndarray, toes: np.ndarray | None = None) -> float:
    """Positive when the left/right labels agree with the data, negative when swapped.

    The median over frames of how far the knees sit in front of the hip-ankle lines along
    the labelled forward direction, plus the toes' reach along it (``toes`` (T, 2, 3)
    world positions of left and right toe, or None), in the data's units.
    """
    forward = _forward(world)
    score = np.zeros(len(world))
    for side in ("left", "right"):
        hip, knee, ankle = f"{side}_hip", f"{side}_knee", f"{side}_ankle"
        bend = world[:, _J[knee]] - 0.5 * (world[:, _J[hip]] + world[:, _J[ankle]])
        score += np.sum(bend * forward, axis=1)
    if toes is not None:
        for side, ankle in ((0, "left_ankle"), (1, "right_ankle")):
            reach = toes[:, side] - world[:, _J[ankle]]
            score += np.sum(reach * forward, axis=1)
    return float(np.median(score))


def swap_left_right(world: np.ndarray) -> np.ndarray:
    """Swap left and right labels (no geometric mirroring)."""
    return world[:, list(skeleton.MIRROR_PERMUTATION)]


def facing_rotation(world: np.ndarray, fps: float) -> tuple[np.ndarray, float]:
    """Rotation about y that turns the facing over the first second to +z; and its angle."""
    first = _forward(world[: max(1, round(fps))]).mean(axis=0)
    angle = float(np.arctan2(first[0], first[2]))  # heading measured from +z towards +x
    c, s = np.cos(-angle), np.sin(-angle)
    rotation = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    return rotation, float(np.degrees(angle))


def rigidify(world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give every bone its median length in every frame, keeping each bone's direction.

    Marker and keypoint data (and linear resampling) let bones stretch by centimetres;
    rebuilding the tree from the pelvis with constant lengths keeps the pose and makes
    the skeleton a body. Returns the new joints and the (16,) bone lengths.
    """
    lengths = np.median(skeleton.bone_lengths(world), axis=0)
    out = world.copy()
    for bone, (parent, child) in enumerate(skeleton.BONES):
        direction = world[:, child] - world[:, parent]
        norm = np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
        out[:, child] = out[:, parent] + direction / norm * lengths[bone]
    return out, lengths
