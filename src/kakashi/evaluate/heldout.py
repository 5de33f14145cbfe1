"""FID_k and FID_g against held-out real dancing, and variety across takes.

The train-referenced FID (:mod:`kakashi.evaluate.harness`) rewards copying: any replay of
train motion is near the train set. Here the reference is the real *test* dances (the
same clips for every row) and the *real line* is another set of real dances the models
never saw (the val split) scored against it exactly like a model; a row's ratio to the
real line says how far it is from real new dancing. Clips are ``clip_s`` long every
``hop_s`` (eval.heldout_clip_s, eval.heldout_hop_s: 5 s every 2.5 s give ~110 clips on the
4-song m2d test split, twice the 51 kinetic features, for a stable covariance).

Variety: for every song with two takes or more, the mean distance between the features
(kinetic and geometric, standardised with the reference's statistics) of the same clip
of two takes, over clips and take pairs, divided by the same distance between the clips
of two different real test dances. Identical takes (a model that ignores its seed) score
0; takes as different from each other as two real dances score 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from kakashi.evaluate.fid import fid, standardise
from kakashi.evaluate.geometric import geometric_features
from kakashi.evaluate.kinetic import kinetic_features
from kakashi.evaluate.windows import window_starts

GEOMETRIC_STD_FLOOR = 0.01  # as harness.GEOMETRIC_STD_FLOOR


@dataclass
class ClipFeatures:
    kinetic: np.ndarray  # (clips, 51)
    geometric: np.ndarray  # (clips, 32)
    dance: np.ndarray  # (clips,) index of the dance
    index: np.ndarray  # (clips,) clip number within the dance


def clip_features(dances: list[tuple[np.ndarray, float]], clip_s: float, hop_s: float):
    kinetic, geometric, owner, number = [], [], [], []
    for d, (world, fps) in enumerate(dances):
        length = max(3, round(clip_s * fps))
        for i, start in enumerate(window_starts(len(world) / fps, clip_s, hop_s)):
            a = round(start * fps)
            clip = world[a : a + length]
            if len(clip) < 3:
                continue
            kinetic.append(kinetic_features(clip, fps))
            geometric.append(geometric_features(clip, fps))
            owner.append(d)
            number.append(i)
    return ClipFeatures(np.array(kinetic), np.array(geometric), np.array(owner),
                        np.array(number))  # fmt: skip


def heldout_fid(reference: ClipFeatures, row: ClipFeatures) -> tuple[float, float]:
    return (
        fid(reference.kinetic, row.kinetic),
        fid(reference.geometric, row.geometric, GEOMETRIC_STD_FLOOR),
    )


def _standardised(reference: ClipFeatures, row: ClipFeatures) -> np.ndarray:
    _, kinetic = standardise(reference.kinetic, row.kinetic)
    _, geometric = standardise(reference.geometric, row.geometric, std_floor=GEOMETRIC_STD_FLOOR)
    return np.concatenate([kinetic, geometric], axis=1)


def _paired_distance(features: np.ndarray, clips: ClipFeatures, groups: list[list[int]]):
    """Mean distance between the same clip of two dances of one group, over all pairs."""
    distances = []
    for group in groups:
        for a, b in itertools.combinations(group, 2):
            for i in np.intersect1d(clips.index[clips.dance == a], clips.index[clips.dance == b]):
                fa = features[(clips.dance == a) & (clips.index == i)][0]
                fb = features[(clips.dance == b) & (clips.index == i)][0]
                distances.append(np.linalg.norm(fa - fb))
    return float(np.mean(distances)) if distances else None


def real_spread(reference: ClipFeatures) -> float | None:
    """The distance between the same clips of two different real dances (the denominator)."""
    features = _standardised(reference, reference)
    dances = sorted(set(reference.dance.tolist()))
    return _paired_distance(features, reference, [dances])


def variety(reference: ClipFeatures, row: ClipFeatures, songs: list[str]) -> float | None:
    """Variety of a row whose dance ``d`` is danced to ``songs[d]``; None without takes."""
    by_song: dict[str, list[int]] = {}
    for d, song in enumerate(songs):
        by_song.setdefault(song, []).append(d)
    groups = [g for g in by_song.values() if len(g) > 1]
    spread = real_spread(reference)
    if not groups or not spread:
        return None
    distance = _paired_distance(_standardised(reference, row), row, groups)
    return None if distance is None else distance / spread
