"""Resampling motion to the project frame rate.

Frame k of the output plays at k / fps; the output has round(duration * fps) frames,
where the source lasts T / source_fps seconds. Positions are interpolated linearly
(the caller restores bone lengths afterwards).
"""

from __future__ import annotations

import numpy as np


def resample(values: np.ndarray, source_fps: float, fps: float) -> np.ndarray:
    """Resample (T, ...) values from ``source_fps`` to ``fps`` by linear interpolation."""
    count = len(values)
    frames = max(1, round(count / source_fps * fps))
    if frames == count and abs(source_fps - fps) < 1e-9:
        return values.copy()
    position = np.minimum(np.arange(frames) * (source_fps / fps), count - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, count - 1)
    weight = (position - low).reshape((-1,) + (1,) * (values.ndim - 1))
    return values[low] * (1.0 - weight) + values[high] * weight
