"""Physical foot contact score (PFC), as EDGE computes it, with ankles as the feet.

Per clip: the root (pelvis) acceleration from second differences, its vertical component
clamped at zero (only upward pushes need a foot on the floor), its norm divided by the
clip's maximum; the horizontal (x, z) speed of each ankle; score = mean over frames of
left speed x right speed x normalised root acceleration, x 10,000. EDGE measures foot
speed as displacement per frame at 30 fps; here it is the speed in m/s times 1/30 s, the
same number at 30 fps and independent of the frame rate otherwise. A clip whose root does
not accelerate (e.g. video without a measured root) scores 0.
"""

from __future__ import annotations

import numpy as np

SCALE = 10_000.0
EDGE_FRAME_S = 1.0 / 30.0
LEFT_FOOT, RIGHT_FOOT = 6, 3  # ankles of H36M-17


def physical_foot_contact(world: np.ndarray, fps: float) -> float:
    """PFC of one clip of world positions ``(T, 17, 3)``; needs T >= 3."""
    world = np.asarray(world, dtype=np.float64)
    if len(world) < 3:
        raise ValueError(f"PFC needs at least 3 frames, got {len(world)}")
    dt = 1.0 / fps
    root_velocity = np.diff(world[:, 0], axis=0) / dt
    root_accel = np.diff(root_velocity, axis=0) / dt  # (T-2, 3)
    root_accel[:, 1] = np.maximum(root_accel[:, 1], 0.0)
    magnitude = np.linalg.norm(root_accel, axis=-1)
    peak = magnitude.max()
    if peak <= 0:
        return 0.0
    magnitude /= peak
    feet = world[:, [LEFT_FOOT, RIGHT_FOOT]][:, :, [0, 2]]
    # Foot speed over frames t..t+1 pairs with the root acceleration at t (as in EDGE).
    foot_speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1)[1:] / dt * EDGE_FRAME_S
    return float(np.mean(foot_speed[:, 0] * foot_speed[:, 1] * magnitude) * SCALE)
