"""Kinetic features (51 = 17 joints x 3) of one clip.

For each joint: mean over frames of the squared horizontal speed (x, z), the mean of the
squared vertical speed (y), and the mean acceleration magnitude. Velocity is
``(p[t] - p[t-1]) / dt`` with the whole difference divided by ``dt`` (the AIST++ API's copy
divides only the second term, a known bug).
"""

from __future__ import annotations

import numpy as np

NUM_KINETIC = 51
# Per joint, in this order: horizontal kinetic term, vertical kinetic term, acceleration.
COMPONENTS = ("speed_h2", "speed_v2", "accel")


def kinetic_features(world: np.ndarray, fps: float) -> np.ndarray:
    """Kinetic features (51,) of world positions ``(T, 17, 3)`` at ``fps``; needs T >= 3."""
    world = np.asarray(world, dtype=np.float64)
    if world.ndim != 3 or world.shape[1:] != (17, 3) or len(world) < 3:
        raise ValueError(f"kinetic features need positions (T>=3, 17, 3), got {world.shape}")
    dt = 1.0 / fps
    velocity = np.diff(world, axis=0) / dt  # (T-1, 17, 3), m/s
    acceleration = np.diff(velocity, axis=0) / dt  # (T-2, 17, 3), m/s^2
    horizontal = (velocity[..., 0] ** 2 + velocity[..., 2] ** 2).mean(axis=0)
    vertical = (velocity[..., 1] ** 2).mean(axis=0)
    accel = np.linalg.norm(acceleration, axis=-1).mean(axis=0)
    return np.stack([horizontal, vertical, accel], axis=1).reshape(-1)
