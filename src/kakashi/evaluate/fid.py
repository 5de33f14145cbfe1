"""Frechet distance between Gaussians fitted to two feature sets (FID_k, FID_g).

Both sets are standardised with the *real* set's mean and standard deviation first. A
feature that is constant in the real set (std below 1e-8, e.g. the pelvis speed of video
data whose root is not measured) is only centred, not divided, so it neither explodes nor
vanishes. A caller may also floor the std (``std_floor``): the geometric features are
fractions of frames, and a relation the reference almost never shows (std 0.0005 on the
Dance-with-Melody train split) would otherwise turn a few frames of difference into a
distance of tens of thousands; see GEOMETRIC_STD_FLOOR in harness.py.

``sqrtm`` handling (as pytorch-fid): ``scipy.linalg.sqrtm(S1 @ S2)``; if the result is not
finite (singular product, common with fewer clips than features) both covariances get
``1e-6 * I`` added and the root is taken again; a complex result keeps its real part (the
imaginary part is round-off). A distance below zero from round-off is reported as 0.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

STD_FLOOR = 1e-8
SQRTM_EPS = 1e-6


def standardise(real: np.ndarray, *others: np.ndarray, std_floor: float = 0.0) -> list[np.ndarray]:
    """``[real, *others]`` standardised with the real set's per-feature mean and std."""
    real = np.asarray(real, dtype=np.float64)
    mean = real.mean(axis=0)
    std = np.maximum(real.std(axis=0), std_floor)
    std = np.where(std < STD_FLOOR, 1.0, std)
    return [(np.asarray(x, dtype=np.float64) - mean) / std for x in (real, *others)]


def _gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = features.mean(axis=0)
    if len(features) < 2:  # one clip: a point mass, no spread
        return mean, np.zeros((features.shape[1], features.shape[1]))
    return mean, np.atleast_2d(np.cov(features, rowvar=False))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``|mu1 - mu2|^2 + tr(S1 + S2 - 2 sqrt(S1 S2))``, with the sqrtm handling above."""
    diff = mu1 - mu2
    # A singular product is expected with few clips; it is handled below, not an accident.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(len(sigma1)) * SQRTM_EPS
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return max(float(value), 0.0)


def fid(real: np.ndarray, generated: np.ndarray, std_floor: float = 0.0) -> float:
    """FID between feature sets (N, D) and (M, D), standardised with the real set's stats."""
    real_std, gen_std = standardise(real, generated, std_floor=std_floor)
    return frechet_distance(*_gaussian(real_std), *_gaussian(gen_std))
