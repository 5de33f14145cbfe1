"""Baseline rows, computed by the same harness as the models.

- ``ground_truth``: the real test-split dances with their own music. The noise floor.
- ``random_retrieval``: for each clip of each test song, a real train-split segment of the
  clip's duration from a random other sequence and offset (seeded), danced to that part of
  the test song: real motion, wrong music. Real motion scores well on FID; BAS shows
  what chance alignment looks like.
- ``mean_pose``: the train split's mean root-centred pose, held still at the origin for
  the length of each test song. The floor every model must beat.
"""

from __future__ import annotations

import numpy as np

from kakashi.errors import EvaluationError
from kakashi.evaluate.harness import EvalDance

BASELINES = ("ground_truth", "random_retrieval", "mean_pose")


def ground_truth(test: list[EvalDance]) -> list[EvalDance]:
    return list(test)


def random_retrieval(
    train: list[EvalDance], test: list[EvalDance], clip_s: float, seed: int = 0
) -> list[EvalDance]:
    """Per clip of each test song, a train segment of that clip's duration (seeded).

    Drawn clip by clip, so the row has as many clips as the ground truth even when the
    train sequences are shorter than the test songs; never from the song's own sequence.
    """
    rng = np.random.default_rng(seed)
    out = []
    for song in test:
        pool = [d for d in train if d.name != song.name] or train
        length = max(1, round(clip_s * song.fps))
        for index in range(max(1, len(song.world) // length)):
            start, stop = index * length, min(len(song.world), (index + 1) * length)
            t0, t1 = start / song.fps, stop / song.fps
            source = pool[rng.integers(len(pool))]
            frames = min(len(source.world), round((t1 - t0) * source.fps))
            offset = int(rng.integers(len(source.world) - frames + 1))
            beats = song.music_beats
            if beats is not None:
                beats = beats[(beats >= t0) & (beats < t1)] - t0
            out.append(
                EvalDance(
                    f"{source.name}[{offset}:{offset + frames}]->{song.name}@{t0:g}s",
                    source.world[offset : offset + frames],
                    source.fps,
                    beats,
                )
            )
    return out


def mean_pose(train: list[EvalDance], test: list[EvalDance]) -> list[EvalDance]:
    """The mean root-centred train pose, root still at the origin, one per test song."""
    centred = np.concatenate([d.world - d.world[:, :1] for d in train])
    pose = centred.mean(axis=0)
    return [
        EvalDance(f"mean_pose->{song.name}", np.repeat(pose[None], len(song.world), axis=0),
                  song.fps, song.music_beats)
        for song in test
    ]  # fmt: skip


def build(
    names: list[str],
    train: list[EvalDance],
    test: list[EvalDance],
    clip_s: float = 10.0,
    seed: int = 0,
) -> dict[str, list[EvalDance]]:
    """The requested baseline dance sets, by name."""
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise EvaluationError(
            f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}"
        )
    if not test:
        raise EvaluationError(
            "baselines need the real test split: pass shards (split=test/*.parquet) as "
            "--reference or --music, or --baselines none"
        )
    if not train:
        raise EvaluationError("baselines need a non-empty reference (train) set")
    makers = {
        "ground_truth": lambda: ground_truth(test),
        "random_retrieval": lambda: random_retrieval(train, test, clip_s, seed),
        "mean_pose": lambda: mean_pose(train, test),
    }
    return {name: makers[name]() for name in names}
