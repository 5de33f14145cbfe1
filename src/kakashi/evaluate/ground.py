"""Ground contact beyond skating: penetration depth and floating share.

Skeleton2Stage (Jia et al., arXiv 2602.13778) counts foot-ground contact anomalies of the
body mesh: a body sunk into the floor or floating above it. Its exact formulas were not in
the stored copy of the paper available here (only its abstract), so the joint-level
version is defined here. Per frame the lowest joint's height is compared with the
dance's own floor, the median of that height over the dance (a dancer has a foot on the
floor most of the time; a fixed y = 0 would not hold for video dances whose root height is
estimated, nor for models that do not place the root). A frame *penetrates* when its lowest
joint is more than ``BAND_M`` under that floor and *floats* when it is more than ``BAND_M``
over it. **Penetration depth** (cm) is the mean depth of the penetrating frames (0 when
none), **floating share** the share of floating frames; both pooled over a row's frames.
"""

from __future__ import annotations

import numpy as np

BAND_M = 0.05


def ground_contact(dances: list[tuple[np.ndarray, float]]) -> dict:
    depths, floating, frames = [], 0, 0
    for world, _ in dances:
        lowest = np.asarray(world)[:, :, 1].min(axis=1)
        floor = float(np.median(lowest))
        under = floor - lowest
        depths.append(under[under > BAND_M])
        floating += int((lowest - floor > BAND_M).sum())
        frames += len(lowest)
    depth = np.concatenate(depths) if depths else np.zeros(0)
    return {
        "penetration_cm": float(100 * depth.mean()) if len(depth) else 0.0,
        "penetration_share": float(len(depth) / frames) if frames else None,
        "floating_share": float(floating / frames) if frames else None,
    }
