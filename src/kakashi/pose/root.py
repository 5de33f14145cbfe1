"""Root motion from video: where the dancer's pelvis is, in metres, from one static camera.

Both pose backends know two things per frame: where the joints are in the image (2-D
keypoints, pixels) and the metric 3-D pose around the pelvis in camera-aligned axes
(MediaPipe's world landmarks, the MMPose lifter's output: x right, y down, z away from the
camera, pelvis at the origin). The pelvis position ``t`` that makes the 3-D pose project
onto the keypoints through a pinhole camera of focal length ``f`` (pixels) and principal
point ``(cx, cy)`` (the image centre) solves, for every joint ``j`` with camera-frame
offset ``(X, Y, Z)`` and keypoint ``(u, v)``,

    u - cx = f (X + tx) / (Z + tz),   v - cy = f (Y + ty) / (Z + tz),

which is linear in ``t`` once multiplied out:

    f tx - (u - cx) tz = (u - cx) Z - f X,   f ty - (v - cy) tz = (v - cy) Z - f Y.

:func:`solve_camera_translation` solves these 2 x 17 equations per frame by least squares,
each joint weighted by its confidence. The pose's rotation is taken as it is (camera-aligned,
not re-estimated), which is what both backends give.

Assumptions (docs/contracts.md, "Root from video"):

- **One static camera**, a pinhole with its principal point at the image centre and an
  **assumed field of view** across the image's longer side (``pose.root_fov_deg``). The
  depth ``tz`` is known only up to that assumption: it scales with the focal length
  (``tz ~ f x body size / image size``), so a wrong field of view stretches or shrinks the
  distance to the camera and any travel towards or away from it by the ratio of the
  focal lengths (60 degrees assumed, 70 true: depth 21 % too long). Sideways and vertical
  motion are measured against the body's own size and hardly depend on it.
- **One dancer**, the one the backend follows.
- **A flat floor**: the root's height is set so that the lowest ankle, over the clip (its
  ``FLOOR_PERCENTILE``), stands ``ANKLE_HEIGHT_M`` above y = 0. The axes stay the
  camera's (contracts: "the axes belong to the camera"), so a camera that looks down on
  the floor sees it tilted: travel towards the camera then moves the floor in y.

A camera that moves breaks all of this; :func:`floor_drift` measures how far the floor
under the dancer wanders over the clip and the pose stage logs a warning when it is more
than ``FLOOR_DRIFT_WARN_M``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import PoseError
from kakashi.pose.keypoints import CAMERA_TO_CANONICAL

log = logging.getLogger("kakashi.pose.root")

ROOT_MODES = ("estimate", "none")
# The height of the ankle joint above the floor when the foot is planted: the 5th
# percentile of the lowest ankle over real motion capture whose floor is y = 0 (CMU
# subject 131: 0.089 m; Dance with Melody C_2 and R_2: 0.068 and 0.063 m).
ANKLE_HEIGHT_M = 0.08
# The lowest ankle of a frame is "on the floor" at this percentile over the clip's frames
# with a person: low enough for the planted foot, robust to a few frames of a keypoint
# sunk below the floor (the same percentile as the foot-contact metrics' floor).
FLOOR_PERCENTILE = 5.0
# Floor drift: the floor (FLOOR_PERCENTILE of the lowest ankle) in windows of this length,
# every FLOOR_DRIFT_STEP_S; a dancer spends at least some of every 2 s on a foot.
FLOOR_DRIFT_WINDOW_S = 2.0
FLOOR_DRIFT_STEP_S = 1.0
# More drift than this (between the highest and the lowest window's floor) means the
# camera moved, or the floor is not flat, or the dancer left it for seconds on end: the
# root is then unreliable. Static cameras measured 2-9 cm (docs/contracts.md).
FLOOR_DRIFT_WARN_M = 0.2
# A solve needs the pelvis in front of the camera; closer than this is not a person in view.
MIN_DEPTH_M = 0.1


def focal_length_px(width: float, height: float, fov_deg: float) -> float:
    """The focal length in pixels of a pinhole whose field of view across the image's
    longer side is ``fov_deg`` degrees."""
    if not 0 < fov_deg < 180:
        raise PoseError(f"pose.root_fov_deg is {fov_deg}; it must be between 0 and 180 degrees")
    if width <= 0 or height <= 0:
        raise PoseError(
            f"the video's header gives a frame size of {width}x{height}; re-encode it (kakashi "
            "cut does) or set pose.root: none"
        )
    return 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2)


def solve_camera_translation(
    points: np.ndarray,
    keypoints: np.ndarray,
    weight: np.ndarray,
    focal_px: float,
    centre_px: tuple[float, float],
) -> np.ndarray:
    """(T, 3) camera-frame pelvis position per frame (metres; x right, y down, z forward).

    ``points`` (T, J, 3): the pelvis-centred pose in camera axes (metres); ``keypoints``
    (T, J, 2): the same joints in the image (pixels); ``weight`` (T, J) >= 0: each joint's
    say (its confidence). A frame whose solve is undetermined (total weight 0, fewer than
    two weighted joints) or puts the pelvis behind the camera is NaN.
    """
    points = np.asarray(points, dtype=np.float64)
    u = np.asarray(keypoints[..., 0], dtype=np.float64) - centre_px[0]
    v = np.asarray(keypoints[..., 1], dtype=np.float64) - centre_px[1]
    w = np.asarray(weight, dtype=np.float64)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    f = float(focal_px)
    # Normal equations of the 2J rows [f, 0, -u] and [0, f, -v] (see the module docstring).
    sw = w.sum(axis=1)
    normal = np.zeros((len(points), 3, 3))
    normal[:, 0, 0] = normal[:, 1, 1] = f * f * sw
    normal[:, 0, 2] = normal[:, 2, 0] = -f * (w * u).sum(axis=1)
    normal[:, 1, 2] = normal[:, 2, 1] = -f * (w * v).sum(axis=1)
    normal[:, 2, 2] = (w * (u * u + v * v)).sum(axis=1)
    bx, by = u * z - f * x, v * z - f * y
    right = np.stack(
        [f * (w * bx).sum(axis=1), f * (w * by).sum(axis=1), -(w * (u * bx + v * by)).sum(axis=1)],
        axis=1,
    )
    solvable = (np.count_nonzero(w > 0, axis=1) >= 2) & (sw > 0)
    out = np.full((len(points), 3), np.nan)
    if solvable.any():
        solved = np.linalg.solve(normal[solvable], right[solvable][..., None])[..., 0]
        out[solvable] = solved
    out[~(out[:, 2] > MIN_DEPTH_M)] = np.nan  # also catches NaN rows
    return out


def camera_root(
    pose_camera: np.ndarray,
    keypoints: np.ndarray,
    weight: np.ndarray,
    found: np.ndarray,
    image_size: tuple[float, float],
    fov_deg: float,
) -> tuple[np.ndarray, dict]:
    """The root (T, 3) in canonical axes (y up, z towards the camera; the pose's frame)
    from a backend's camera-axes pose and keypoints, and what the solve assumed (meta).

    Frames without a person (``found`` false) or without a solution are 0 and counted in
    ``root_frames_unsolved``: the pose stage interpolates them with the pose (their conf
    is 0) or, for a failed solve in a frame with a person, here.
    """
    width, height = image_size
    focal = focal_length_px(width, height, fov_deg)
    weight = np.where(np.asarray(found)[:, None], weight, 0.0)
    translation = solve_camera_translation(
        pose_camera, keypoints, weight, focal, (width / 2, height / 2)
    )
    solved = np.isfinite(translation).all(axis=1)
    unsolved_with_person = np.flatnonzero(found & ~solved)
    root = np.zeros_like(translation)
    if solved.any():
        root = translation @ CAMERA_TO_CANONICAL.T
        index = np.arange(len(root))
        for axis in range(3):
            root[~solved, axis] = np.interp(index[~solved], index[solved], root[solved, axis])
        root[~found] = 0.0  # the pose stage fills frames without a person, pose and root alike
    meta = {
        "fov_deg": float(fov_deg),
        "focal_px": round(focal, 2),
        "image_size": [int(width), int(height)],
        "frames_unsolved": len(unsolved_with_person),
    }
    return root.astype(np.float32), meta


def lowest_ankle(world: np.ndarray) -> np.ndarray:
    """(T,) height of the lower ankle in each frame of world positions (T, 17, 3)."""
    return np.asarray(world)[:, list(skeleton.ANKLES), 1].min(axis=1)


def floor_offset(world: np.ndarray, conf: np.ndarray) -> float:
    """How far (m) to lower the root so that the floor is y = 0: the lowest ankle's
    ``FLOOR_PERCENTILE`` over the frames with a person, less ``ANKLE_HEIGHT_M``."""
    found = np.asarray(conf) > 0
    heights = lowest_ankle(world)[found if found.any() else slice(None)]
    return float(np.percentile(heights, FLOOR_PERCENTILE) - ANKLE_HEIGHT_M)


def floor_drift(world: np.ndarray, conf: np.ndarray, fps: float) -> float:
    """How far (m) the floor under the dancer wanders over the clip: the spread between
    the highest and the lowest floor (``FLOOR_PERCENTILE`` of the lowest ankle) of
    ``FLOOR_DRIFT_WINDOW_S`` windows every ``FLOOR_DRIFT_STEP_S`` (frames with a person);
    0 for a clip shorter than two windows."""
    heights = lowest_ankle(world)
    found = np.asarray(conf) > 0
    width = max(1, round(FLOOR_DRIFT_WINDOW_S * fps))
    step = max(1, round(FLOOR_DRIFT_STEP_S * fps))
    floors = []
    for start in range(0, len(heights) - width + 1, step):
        window = heights[start : start + width][found[start : start + width]]
        if len(window) >= width // 2:  # half the window with a person, or not counted
            floors.append(np.percentile(window, FLOOR_PERCENTILE))
    return float(max(floors) - min(floors)) if len(floors) >= 2 else 0.0


def place_on_floor(sequence: Dance, source: str) -> Dance:
    """Lower (or raise) a video root so the floor is y = 0 and warn, naming ``source``,
    when the floor drifts like a moving camera's. Records both in ``meta['root']``."""
    world = sequence.world()
    offset = floor_offset(world, sequence.conf)
    sequence.root[:, 1] -= offset
    drift = floor_drift(world, sequence.conf, sequence.fps)
    record = sequence.meta.setdefault("root", {})
    record.update(floor_offset_m=round(offset, 4), floor_drift_m=round(drift, 4))
    if drift > FLOOR_DRIFT_WARN_M:
        record["camera_moving_warning"] = True
        log.warning(
            "%s: the floor under the dancer drifts by %.0f cm over the clip (more than %.0f): "
            "the camera probably moves (or the floor is not flat), so the estimated root "
            "motion is unreliable; use a static-camera video or set pose.root: none",
            source,
            100 * drift,
            100 * FLOOR_DRIFT_WARN_M,
        )
    return sequence
