"""Video-like noise on real mocap and the pose filter's scores (see the package doc)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kakashi import settings
from kakashi.pose import smoothing

NOISE_FILE = Path(__file__).resolve().parent.parent / "video_noise.json"

FPS = 30


# Accents: frames where a joint's clean speed is a local maximum in its top 5 %.
ACCENT_PERCENTILE = 95


MAX_LAG_FRAMES = 6


def jerk_speed_ratio(pose: np.ndarray, fps: float) -> float:
    """Mean jerk (third difference) / mean joint speed of the 16 non-root joints of a
    root-centred pose, 1/s^2 (the issue's shake measure: 168 on Dance with Melody)."""
    jerk = np.linalg.norm(np.diff(pose[:, 1:], n=3, axis=0), axis=-1).mean() * fps**3
    return float(jerk / mean_speed(pose, fps))


def mean_speed(pose: np.ndarray, fps: float) -> float:
    """Mean joint speed (first difference) of the 16 non-root joints, m/s."""
    return float(np.linalg.norm(np.diff(pose[:, 1:], axis=0), axis=-1).mean() * fps)


def joint_speeds(pose: np.ndarray, fps: float) -> np.ndarray:
    """(T, 16) speeds of the non-root joints (central differences), m/s."""
    return np.linalg.norm(np.gradient(pose[:, 1:], axis=0), axis=-1) * fps


def speed_lag(clean: np.ndarray, filtered: np.ndarray, fps: float) -> float:
    """Frames by which the filtered joint speed trails the clean one: the peak of their
    cross-correlation (summed over joints), refined by a parabola through its neighbours."""
    a = joint_speeds(clean, fps)
    b = joint_speeds(filtered, fps)
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    lags = np.arange(-MAX_LAG_FRAMES, MAX_LAG_FRAMES + 1)
    n = len(a)
    score = np.array(
        [(a[max(0, -k) : n - max(0, k)] * b[max(0, k) : n - max(0, -k)]).sum() for k in lags]
    )
    best = int(np.argmax(score))
    if 0 < best < len(lags) - 1:
        left, mid, right = score[best - 1 : best + 2]
        offset = 0.5 * (left - right) / (left - 2 * mid + right)
        return float(lags[best] + offset)
    return float(lags[best])


def peak_retention(clean: np.ndarray, filtered: np.ndarray, fps: float) -> float:
    """Mean over accents of the filtered joint speed / the clean one (1 = kept whole).

    Accents are local maxima of each joint's clean speed in its top ``ACCENT_PERCENTILE``;
    the filtered speed is its maximum within one frame of the accent (a peak may move a
    frame; the lag is measured apart)."""
    a = joint_speeds(clean, fps)
    b = joint_speeds(filtered, fps)
    ratios = []
    for j in range(a.shape[1]):
        s = a[:, j]
        threshold = np.percentile(s, ACCENT_PERCENTILE)
        peaks = np.flatnonzero((s[1:-1] > s[:-2]) & (s[1:-1] >= s[2:]) & (s[1:-1] > threshold))
        peaks += 1
        for p in peaks:
            near = b[max(0, p - 1) : p + 2, j].max()
            ratios.append(near / s[p])
    return float(np.mean(ratios))


def accent_retention(clean: np.ndarray, filtered: np.ndarray, fps: float) -> float:
    """Like :func:`peak_retention` for the accents of the whole body: local maxima of the
    mean joint speed (whose minima are the motion beats of the BAS metric) in its top
    ``ACCENT_PERCENTILE``."""
    a = joint_speeds(clean, fps).mean(axis=1)
    b = joint_speeds(filtered, fps).mean(axis=1)
    threshold = np.percentile(a, ACCENT_PERCENTILE)
    peaks = np.flatnonzero((a[1:-1] > a[:-2]) & (a[1:-1] >= a[2:]) & (a[1:-1] > threshold)) + 1
    return float(np.mean([b[max(0, p - 1) : p + 2].max() / a[p] for p in peaks]))


def position_error_mm(clean: np.ndarray, other: np.ndarray) -> float:
    """Mean joint position error (the 16 non-root joints), mm."""
    return float(np.linalg.norm(other[:, 1:] - clean[:, 1:], axis=-1).mean() * 1000)


def load_noise(path: Path = NOISE_FILE) -> dict:
    return json.loads(Path(path).read_text())


def draw_noise(model: dict, frames: int, seed: int) -> np.ndarray:
    """(frames, 17, 3) noise with the model's spectrum (Gaussian, random phase)."""
    rng = np.random.default_rng(seed)
    freqs = np.asarray(model["freqs_hz"])
    psd = np.asarray(model["psd_m2_per_hz"])  # (17, 3, F)
    grid = np.fft.rfftfreq(frames, 1 / FPS)
    white = rng.standard_normal((frames, 17, 3))
    spectrum = np.fft.rfft(white, axis=0)  # unit white noise: flat power 2/FPS per Hz
    shape = np.stack(
        [[np.interp(grid, freqs, psd[j, k]) for k in range(3)] for j in range(17)]
    ).transpose(2, 0, 1)
    # One-sided density of unit white noise sampled at FPS is 2 / FPS.
    return np.fft.irfft(spectrum * np.sqrt(shape * FPS / 2), n=frames, axis=0)


def default_settings() -> dict:
    return settings.defaults("pose.smoothing")


def filter_pose(pose: np.ndarray, setting: dict, conf=None, joint_conf=None) -> np.ndarray:
    """``pose`` filtered by one bench setting (a pose.smoothing dict, or a baseline)."""
    conf = np.ones(len(pose)) if conf is None else conf
    if setting["method"] == "one_euro_causal":
        weight = smoothing.confidence_weight(conf, joint_conf, setting["min_weight"])
        return smoothing.one_euro_pass(
            pose, FPS, setting["min_cutoff"], setting["beta"], setting["d_cutoff"], weight
        )
    return smoothing.smooth_pose(pose, FPS, conf, joint_conf, setting)


def score(clean: np.ndarray, observed: np.ndarray, setting: dict) -> dict:
    """One setting on one sequence: ``observed`` (clean + noise) filtered against the clean
    motion, and the clean motion filtered (what the filter alone takes from accents)."""
    filtered = filter_pose(observed, setting)
    return {
        "error_mm": position_error_mm(clean, filtered),
        "ratio": jerk_speed_ratio(filtered, FPS),
        "speed": mean_speed(filtered, FPS),
        "lag": speed_lag(clean, filtered, FPS),
        "peak": peak_retention(clean, filtered, FPS),
        "accent": accent_retention(clean, filtered, FPS),
        "accent_clean": accent_retention(clean, filter_pose(clean, setting), FPS),
    }


def noisy_mocap(mocap, noise: dict, seed: int = 0):
    """(name, clean, clean + noise) for every sequence, the noise seeded per sequence."""
    return [
        (name, clean, clean + draw_noise(noise, len(clean), seed + i))
        for i, (name, clean) in enumerate(mocap)
    ]
