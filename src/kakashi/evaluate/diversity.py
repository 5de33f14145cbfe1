"""Diversity (Div_k, Div_g): mean Euclidean distance over all pairs of generated clips.

Features are standardised with the real reference set's statistics (as for FID), so the
number is comparable between rows of one table.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import pdist

from kakashi.evaluate.fid import standardise


def mean_pairwise_distance(features: np.ndarray) -> float:
    """Mean distance over all pairs of rows; NaN for fewer than two rows (undefined)."""
    features = np.asarray(features, dtype=np.float64)
    if len(features) < 2:
        return float("nan")
    return float(pdist(features).mean())


def diversity(real: np.ndarray, generated: np.ndarray, std_floor: float = 0.0) -> float:
    """Div of ``generated`` clips, standardised with the ``real`` set's mean and std."""
    _, gen_std = standardise(real, generated, std_floor=std_floor)
    return mean_pairwise_distance(gen_std)
