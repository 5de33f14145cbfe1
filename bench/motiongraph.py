"""Benchmark motiongraph on CPU: building the library at 1 minute to 5 hours of motion,
generating a 3-minute song, and a 10-minute song without a freeze.

Run from the repository root::

    .venv/bin/python bench/motiongraph.py [--shards results/m2d/shards]
        [--song PATH] [--hours 0.0167,0.5,5]

- Build: the train split (mirrored, as training does) cut or replicated to each duration;
  wall time and peak memory of ``build_library`` (the nearest-neighbour search dominates).
  Replicated data is what a bigger library costs, not what it dances like.
- Generate: one 3-minute song (the song's features repeated or cut to 180 s) with the
  library of the shards as they are: the features of the song file (cold, once), then the
  plan (Viterbi) and the assembly, best of 3.
- Long song: 10 minutes, the longest freeze and the joint speed per minute.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from kakashi.evaluate.quality import frozen_frames, joint_speed, longest_run  # noqa: E402
from kakashi.features import audio_features, settings_of  # noqa: E402
from kakashi.models import motiongraph as mg  # noqa: E402
from kakashi.models.config import resolve  # noqa: E402
from kakashi.models.data import (  # noqa: E402
    Sequence,
    compute_stats,
    load_training_data,
)
from kakashi.models.motiongraph_train import build_library  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, default=REPO / "results" / "m2d" / "shards")
    parser.add_argument(
        "--song", type=Path, default=REPO / "data/demo/music/Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
    )
    parser.add_argument("--hours", default="0.0167,0.5,5", help="library sizes to build")
    return parser.parse_args()


def sized(train: list[Sequence], hours: float) -> list[Sequence]:
    """The sequences cut (or replicated, with new names) to ``hours`` of motion."""
    want = hours * 3600 * train[0].fps
    out, total, copy = [], 0, 0
    while total < want:
        for seq in train:
            take = int(min(len(seq.pose), want - total))
            if take < 2 * seq.fps:
                break
            out.append(
                Sequence(f"{seq.name}#{copy}", seq.audio[:take], seq.pose[:take],
                         seq.root[:take], seq.conf[:take], seq.fps, seq.feature_names,
                         seq.hop_length)
            )  # fmt: skip
            total += take
        else:
            copy += 1
            continue
        break
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    args = parse_args()
    train, _, stats = load_training_data(args.shards, mirror=True)
    minutes = sum(len(s.pose) for s in train) / train[0].fps / 60
    print(f"shards {args.shards}: {len(train)} sequences with mirrors, {minutes:.1f} min")

    print("\nbuild (library of N hours of motion)")
    for hours in [float(h) for h in args.hours.split(",")]:
        seqs = sized(train, hours)
        started = time.perf_counter()
        biggest_stats = compute_stats(seqs)
        result = build_library(seqs, biggest_stats, resolve("motiongraph"))
        seconds = time.perf_counter() - started
        biggest = mg.build(result["arch"])
        biggest.load_state_dict(result["model"])
        print(
            f"  {hours * 60:7.1f} min: {int(result['summary']['segments']):7d} segments, "
            f"{seconds:6.1f} s, peak RSS so far {peak_mb():6.0f} MB"
        )

    result = build_library(train, stats, resolve("motiongraph"))
    net = mg.build(result["arch"])
    net.load_state_dict(result["model"])
    kinds, n_mfcc = settings_of(stats.feature_names)
    started = time.perf_counter()
    features = audio_features(
        args.song, fps=stats.fps, hop_length=stats.hop_length, feature_set=kinds, n_mfcc=n_mfcc
    )
    feature_s = time.perf_counter() - started
    started = time.perf_counter()
    audio_features(
        args.song, fps=stats.fps, hop_length=stats.hop_length, feature_set=kinds, n_mfcc=n_mfcc
    )
    warm_s = time.perf_counter() - started
    frames = int(180 * stats.fps)
    audio = np.resize(features.values, (frames, features.values.shape[1]))
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        pose, root = mg.generate_motion(net, stats, audio, stats.mean_pose(), 0)
        timings.append(time.perf_counter() - started)
    print(
        f"\ngenerate a 3-minute song: features of {args.song.name} "
        f"({features.duration_s:.0f} s) cold {feature_s:.2f} s (numba compiles), warm "
        f"{warm_s:.2f} s; plan + assembly best of 3: {min(timings):.2f} s"
    )
    started = time.perf_counter()
    mg.generate_motion(biggest, biggest_stats, audio, biggest_stats.mean_pose(), 0)
    print(f"  with the largest library above: {time.perf_counter() - started:.2f} s")

    frames = int(600 * stats.fps)
    audio = np.resize(features.values, (frames, features.values.shape[1]))
    pose, root = mg.generate_motion(net, stats, audio, stats.mean_pose(), 1)
    world = pose + root[:, None]
    speed = joint_speed(world, stats.fps)
    per_minute = speed[: len(speed) // int(60 * stats.fps) * int(60 * stats.fps)]
    per_minute = per_minute.reshape(-1, int(60 * stats.fps)).mean(axis=1)
    freeze = longest_run(frozen_frames(world, stats.fps)) / stats.fps
    print(
        f"\n10-minute song: longest freeze {freeze:.1f} s; joint speed per minute (m/s) "
        + " ".join(f"{v:.2f}" for v in per_minute)
    )


if __name__ == "__main__":
    main()
