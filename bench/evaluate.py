"""Benchmark ``kakashi evaluate``: wall time to score the test split with all baselines.

Run from the repository root::

    .venv/bin/python bench/evaluate.py [--shards results/m2d/shards] [--clip-s 10] [--repeat 3]

Prints the shard folder, the test-split size (dances, minutes), the wall time of a whole
evaluation (load shards, features of the reference and of the three baselines, FID, Div,
BAS, PFC, report and plots), and the feature throughput in clip-seconds per wall second.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's kakashi, installed or not

from kakashi.evaluate.geometric import geometric_features  # noqa: E402
from kakashi.evaluate.harness import clips_of, load_split  # noqa: E402
from kakashi.evaluate.kinetic import kinetic_features  # noqa: E402
from kakashi.evaluate.run import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = REPO / "results" / "m2d" / "shards"
    if not default.is_dir():
        default = REPO / "results" / "shards"
    parser.add_argument("--shards", type=Path, default=default)
    parser.add_argument("--clip-s", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    test = load_split(args.shards, "test")
    train = load_split(args.shards, "train")
    test_s = sum(len(d.world) / d.fps for d in test)
    train_s = sum(len(d.world) / d.fps for d in train)
    print(f"shards: {args.shards}")
    print(f"test split: {len(test)} dances, {test_s / 60:.2f} min; train: {len(train)}, "
          f"{train_s / 60:.2f} min; clips of {args.clip_s:g} s")  # fmt: skip

    clips = [c for d in test for c in clips_of(d, args.clip_s)]
    start = time.perf_counter()
    for clip in clips:
        kinetic_features(clip.world, clip.fps)
    kinetic_s = time.perf_counter() - start
    start = time.perf_counter()
    for clip in clips:
        geometric_features(clip.world, clip.fps)
    geometric_s = time.perf_counter() - start
    clip_s_total = sum(len(c.world) / c.fps for c in clips)
    print(f"kinetic features: {len(clips)} clips in {kinetic_s * 1000:.1f} ms "
          f"({clip_s_total / kinetic_s:.0f} clip-s per s)")  # fmt: skip
    print(f"geometric features: {len(clips)} clips in {geometric_s * 1000:.1f} ms "
          f"({clip_s_total / geometric_s:.0f} clip-s per s)")  # fmt: skip

    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            start = time.perf_counter()
            evaluate(args.shards, {}, Path(tmp) / f"run{run}", clip_s=args.clip_s)
            times.append(time.perf_counter() - start)
    print(f"evaluate (3 baselines, report, plots): best {min(times):.2f} s, "
          f"median {sorted(times)[len(times) // 2]:.2f} s over {args.repeat} runs")  # fmt: skip


if __name__ == "__main__":
    main()
