"""Beat alignment score (BAS), as in Bailando, in seconds so any frame rate works.

- Music beats: ``librosa.beat.beat_track`` at the motion fps (hop ``sr / fps``). For a
  shard this is its ``beat`` audio column, which the features stage computed exactly so.
- Motion beats: local minima of the mean joint speed after Gaussian smoothing. Bailando
  smooths with sigma = 5 frames at 60 fps; here sigma is that time, 5/60 s, in frames of
  the clip. The speed between frames t and t+1 sits at time (t + 0.5) / fps.
- Score: mean over music beats of ``exp(-d^2 / (2 sigma^2))``, ``d`` the distance to the
  nearest motion beat, sigma = 50 ms (3 frames at 60 fps). No motion beat: 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import argrelextrema

SIGMA_S = 0.05
SMOOTH_S = 5.0 / 60.0


def motion_speed(world: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed mean joint speed (T-1,) in m/s and the time (s) of each sample."""
    world = np.asarray(world, dtype=np.float64)
    speed = np.linalg.norm(np.diff(world, axis=0), axis=-1).mean(axis=1) * fps
    smoothed = gaussian_filter1d(speed, SMOOTH_S * fps) if len(speed) > 1 else speed
    return smoothed, (np.arange(len(speed)) + 0.5) / fps


def motion_beats(world: np.ndarray, fps: float) -> np.ndarray:
    """Times (s) of the motion beats: local minima of the smoothed mean joint speed."""
    speed, times = motion_speed(world, fps)
    return times[argrelextrema(speed, np.less)[0]]


def beat_alignment(music_beats: np.ndarray, motion_beats_s: np.ndarray) -> float:
    """BAS of beat times (s); NaN when there is no music beat (the clip does not count)."""
    music = np.asarray(music_beats, dtype=np.float64)
    motion = np.asarray(motion_beats_s, dtype=np.float64)
    if music.size == 0:
        return float("nan")
    if motion.size == 0:
        return 0.0
    nearest = np.min(np.abs(music[:, None] - motion[None, :]), axis=1)
    return float(np.mean(np.exp(-(nearest**2) / (2 * SIGMA_S**2))))


def beats_from_column(column: np.ndarray, fps: float) -> np.ndarray:
    """Beat times (s) from a one-hot ``beat`` feature column at ``fps``."""
    return np.flatnonzero(np.asarray(column) > 0.5) / fps


def song_beats(path: str | Path, fps: float) -> np.ndarray:
    """Beat times (s) of a song: ``beat_track`` at the motion fps (the features stage's way)."""
    from kakashi.features import audio_features
    from kakashi.settings import default

    # The features stage's hop, so a song's beats are found as a shard's were.
    hop = default("features.hop_length")
    features = audio_features(path, fps=fps, hop_length=hop, feature_set=["beat"], n_mfcc=0)
    return beats_from_column(features.values[:, 0], fps)
