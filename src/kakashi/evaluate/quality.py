"""Motion quality: metrics that catch frozen, jittery and sliding dances.

Pure numpy over world positions ``(T, 17, 3)`` (H36M-17, metres, y up) and their fps.
Every metric is computed per *whole dance* (never per clip, so a freeze or a slide is never
cut at a clip boundary) and a row aggregates its dances weighted by time. The definitions
and the reasons for each constant are in docs/evaluation.md ("Motion quality"):

- speed: mean over frames of the mean root-centred speed of the 16 non-root joints (m/s),
  velocities by central differences; *liveliness* is the row's speed / ground truth's;
- freeze: frames whose speed, after a running median over ``2 round(0.1 fps) + 1`` frames,
  is under 0.1 m/s; the longest run (s) and the share of time;
- jerk: mean norm of the third finite difference of the world positions of all 17 joints
  times ``fps^3`` (m/s^3); *jitter* is the row's jerk / ground truth's;
- foot skating: share of frames in which an ankle is in contact (within 5 cm of the floor,
  the 5th percentile of ankle height over the 10 s around the frame, and moving vertically
  under 0.1 m/s) and moves horizontally faster than 0.5 m/s;
- travel: horizontal path length of the root sampled every 0.2 s, per minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from kakashi import skeleton

# Freeze: a body whose joints move at under 0.1 m/s on average (about 3 mm per frame at
# 30 fps) is holding a pose; real dances of Dance with Melody stay under it 1-9 % of
# the time, for at most ~2 s at once.
FREEZE_SPEED_M_S = 0.1
# Running median over +-0.1 s: a one- to three-frame spike (at 30 fps) cannot break a freeze.
FREEZE_MEDIAN_HALF_S = 0.1
# Foot contact: ankle within 5 cm of the floor (Lodge's foot-height threshold) and not
# moving vertically faster than 0.1 m/s (landing and push-off move the ankle up or down).
CONTACT_HEIGHT_M = 0.05
CONTACT_VERTICAL_M_S = 0.1
# The floor under a frame: the 5th percentile of the heights of both ankles over the 10 s
# around it (the whole dance if shorter), evaluated every 0.5 s and interpolated between.
# Local, because a floor can drift: Dance with Melody's sits a few cm higher in some
# parts of a sequence than in others (docs/evaluation.md).
FLOOR_PERCENTILE = 5.0
FLOOR_WINDOW_S = 10.0
FLOOR_STEP_S = 0.5
# Skating: an ankle in contact moving horizontally faster than 0.5 m/s (1.7 cm per frame at
# 30 fps; Lodge's 0.01 m/frame on the mean of the x and z steps is 0.4-0.6 m/s at 30 fps).
SKATE_SPEED_M_S = 0.5
# Travel: the root is sampled every 0.2 s, so frame-to-frame jitter does not add distance.
TRAVEL_STEP_S = 0.2
# Ground-truth travel under this many metres per minute means an unmeasured root (video):
# the travel ratio is then undefined.
TRAVEL_MIN_M_MIN = 1.0

ANKLES = skeleton.ANKLES
RAW_KEYS = (
    "speed_m_s",
    "freeze_max_s",
    "freeze_share",
    "jerk_m_s3",
    "foot_contact_share",
    "skate_rate",
    "travel_m_min",
)
RATIO_KEYS = ("liveliness", "jitter", "skate_ratio", "travel_ratio")
# Ratio key -> the raw key it divides by ground truth's.
RATIO_OF = {
    "liveliness": "speed_m_s",
    "jitter": "jerk_m_s3",
    "skate_ratio": "skate_rate",
    "travel_ratio": "travel_m_min",
}
GROUND_TRUTH = "ground_truth"


def _positions(world: np.ndarray) -> np.ndarray:
    world = np.asarray(world, dtype=np.float64)
    if world.ndim != 3 or world.shape[1:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"motion quality needs positions (T, 17, 3), got {world.shape}")
    return world


def joint_speed(world: np.ndarray, fps: float) -> np.ndarray:
    """Mean root-centred speed of the 16 non-root joints per frame, (T,) in m/s.

    Central differences inside, one-sided at both ends (``np.gradient``); needs T >= 2.
    Root-centred, so a body that slides without moving its limbs has speed 0 (its motion
    is travel, measured apart).
    """
    world = _positions(world)
    if len(world) < 2:
        raise ValueError(f"joint speed needs at least 2 frames, got {len(world)}")
    centred = world[:, 1:] - world[:, :1]
    return np.linalg.norm(np.gradient(centred, axis=0), axis=-1).mean(axis=1) * fps


def running_median(values: np.ndarray, half: int) -> np.ndarray:
    """Centred running median over ``2 half + 1`` samples, edges padded with the end values."""
    if half <= 0 or len(values) == 0:
        return np.asarray(values, dtype=np.float64)
    padded = np.pad(values, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def frozen_frames(world: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: the running median of the joint speed is under ``FREEZE_SPEED_M_S``."""
    speed = running_median(joint_speed(world, fps), round(FREEZE_MEDIAN_HALF_S * fps))
    return speed < FREEZE_SPEED_M_S


def longest_run(mask: np.ndarray) -> int:
    """Length of the longest run of True in a 1-D bool array (0 if none)."""
    edges = np.diff(np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((stops - starts).max()) if len(starts) else 0


def mean_jerk(world: np.ndarray, fps: float) -> float:
    """Mean norm of the third difference of all 17 world positions x fps^3, m/s^3; T >= 4."""
    world = _positions(world)
    if len(world) < 4:
        raise ValueError(f"jerk needs at least 4 frames, got {len(world)}")
    return float(np.linalg.norm(np.diff(world, n=3, axis=0), axis=-1).mean() * fps**3)


def floor_height(world: np.ndarray, fps: float) -> np.ndarray:
    """The floor under each frame, (T,) in metres (see ``FLOOR_WINDOW_S``).

    Every ``FLOOR_STEP_S`` the ``FLOOR_PERCENTILE`` of both ankles' heights over the
    ``FLOOR_WINDOW_S`` centred there (shifted to stay inside the dance), linearly
    interpolated between; a dance shorter than the window has one floor.
    """
    heights = _positions(world)[:, list(ANKLES), 1]  # (T, 2)
    frames = len(heights)
    width = min(frames, 2 * round(FLOOR_WINDOW_S * fps / 2) + 1)
    if width == frames:
        return np.full(frames, np.percentile(heights, FLOOR_PERCENTILE))
    step = max(1, round(FLOOR_STEP_S * fps))
    centres = np.arange(0, frames, step)
    if centres[-1] != frames - 1:
        centres = np.append(centres, frames - 1)
    starts = np.clip(centres - width // 2, 0, frames - width)
    windows = np.lib.stride_tricks.sliding_window_view(heights, width, axis=0)[starts]
    floors = np.percentile(windows.reshape(len(starts), -1), FLOOR_PERCENTILE, axis=1)
    return np.interp(np.arange(frames), centres, floors)


def foot_contact(world: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Per frame and ankle (left, right): in contact, and skating; two (T, 2) bool arrays."""
    world = _positions(world)
    if len(world) < 2:
        raise ValueError(f"foot contact needs at least 2 frames, got {len(world)}")
    ankles = world[:, list(ANKLES)]  # (T, 2, 3)
    velocity = np.gradient(ankles, axis=0) * fps
    floor = floor_height(world, fps)[:, None]
    contact = (ankles[..., 1] - floor < CONTACT_HEIGHT_M) & (
        np.abs(velocity[..., 1]) < CONTACT_VERTICAL_M_S
    )
    horizontal = np.linalg.norm(velocity[..., [0, 2]], axis=-1)
    return contact, contact & (horizontal > SKATE_SPEED_M_S)


def skate_rate(world: np.ndarray, fps: float) -> float:
    """Share of frames in which at least one ankle skates (see :func:`foot_contact`)."""
    return float(foot_contact(world, fps)[1].any(axis=1).mean())


def travel_distance(world: np.ndarray, fps: float) -> float:
    """Horizontal path length (m) of the root sampled every ``TRAVEL_STEP_S`` (and last frame)."""
    world = _positions(world)
    step = max(1, round(TRAVEL_STEP_S * fps))
    index = np.arange(0, len(world), step)
    if index[-1] != len(world) - 1:
        index = np.append(index, len(world) - 1)
    root = world[index, 0][:, [0, 2]]
    return float(np.linalg.norm(np.diff(root, axis=0), axis=-1).sum())


@dataclass
class DanceQuality:
    """The quality sums of one dance, from which a row's values are time-weighted means."""

    seconds: float  # T / fps
    speed_m_s: float  # time-mean of joint_speed
    frozen_s: float
    longest_freeze_s: float
    jerk_m_s3: float | None  # None below 4 frames
    contact_s: float  # time with at least one ankle in contact
    skate_s: float  # time with at least one ankle skating
    travel_m: float
    travel_s: float  # (T - 1) / fps, the time the path spans


def dance_quality(world: np.ndarray, fps: float) -> DanceQuality:
    """Every quality measure of one whole dance of at least 2 frames."""
    world = _positions(world)
    frames = len(world)
    frozen = frozen_frames(world, fps)
    contact, skating = foot_contact(world, fps)
    return DanceQuality(
        seconds=frames / fps,
        speed_m_s=float(joint_speed(world, fps).mean()),
        frozen_s=float(frozen.sum()) / fps,
        longest_freeze_s=longest_run(frozen) / fps,
        jerk_m_s3=mean_jerk(world, fps) if frames >= 4 else None,
        contact_s=float(contact.any(axis=1).sum()) / fps,
        skate_s=float(skating.any(axis=1).sum()) / fps,
        travel_m=travel_distance(world, fps),
        travel_s=(frames - 1) / fps,
    )


def row_quality(dances: Iterable[tuple[np.ndarray, float]]) -> dict:
    """The raw quality values of a row (keys ``RAW_KEYS``) from its ``(world, fps)`` dances.

    Means and shares are weighted by each dance's duration; ``freeze_max_s`` is the longest
    freeze of any dance. Dances under 2 frames are skipped; ``None`` where nothing is left.
    """
    parts = [dance_quality(world, fps) for world, fps in dances if len(world) >= 2]
    seconds = sum(p.seconds for p in parts)
    if not parts or seconds <= 0:
        return dict.fromkeys(RAW_KEYS)
    jerk_parts = [p for p in parts if p.jerk_m_s3 is not None]
    jerk_s = sum(p.seconds for p in jerk_parts)
    travel_s = sum(p.travel_s for p in parts)
    return {
        "speed_m_s": sum(p.speed_m_s * p.seconds for p in parts) / seconds,
        "freeze_max_s": max(p.longest_freeze_s for p in parts),
        "freeze_share": sum(p.frozen_s for p in parts) / seconds,
        "jerk_m_s3": (
            sum(p.jerk_m_s3 * p.seconds for p in jerk_parts) / jerk_s if jerk_parts else None
        ),
        "foot_contact_share": sum(p.contact_s for p in parts) / seconds,
        "skate_rate": sum(p.skate_s for p in parts) / seconds,
        "travel_m_min": sum(p.travel_m for p in parts) / travel_s * 60.0 if travel_s else 0.0,
    }


def ratios(row: dict, reference: dict | None) -> dict:
    """The ratio keys of ``row`` against the ground-truth row ``reference`` (None: all None).

    A ratio is None where either value is missing or the reference value is 0; the travel
    ratio also where the reference travels under ``TRAVEL_MIN_M_MIN`` (root not measured).
    """
    out = dict.fromkeys(RATIO_KEYS)
    if reference is None:
        return out
    for key, raw in RATIO_OF.items():
        value, base = row.get(raw), reference.get(raw)
        if value is None or base is None or base <= 0:
            continue
        if key == "travel_ratio" and base < TRAVEL_MIN_M_MIN:
            continue
        out[key] = value / base
    return out


def add_ratios(rows: list[dict]) -> dict | None:
    """Fill the ratio keys of every row against the row named ``ground_truth``, in place.

    Returns the ground-truth row, or None (then every ratio is None).
    """
    reference = next((row for row in rows if row["name"] == GROUND_TRUTH), None)
    for row in rows:
        row.update(ratios(row, reference))
    return reference
