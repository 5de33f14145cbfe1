"""Benchmark the dance models on CPU: training throughput, generation speed, long-song drift.

Run from the repository root::

    .venv/bin/python bench/models.py [--checkpoint results/models/rnn.pt]
        [--shards results/shards] [--song data/demo/music/Kevin_MacLeod_-_Vibe_Ace.hq.ogg]
        [--hidden 128] [--layers 2] [--minutes 10] [--threads 2]

Without ``--checkpoint`` a small seed RNN is trained first (a few epochs on ``--shards``).

- Training throughput: predicted frames per second of wall time for one optimiser step
  on a batch of 16 windows of 4 s, with teacher forcing (one LSTM call per window) and
  with scheduled sampling (one LSTM step per frame, as teacher_prob < 1 needs).
- Generation: realtime factor (seconds of dance per second of wall time) on the song.
- Drift: a dance for the song's features repeated to ``--minutes`` minutes; per minute,
  the worst bone-length error against the training skeleton, the joint speed (to see a
  collapse to a frozen pose) and the distance of the root from where it started.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from kakashi import skeleton  # noqa: E402
from kakashi.features import audio_features, settings_of  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.config import resolve  # noqa: E402
from kakashi.models.distributed import train  # noqa: E402
from kakashi.models.rnn import DanceRNN  # noqa: E402
from kakashi.models.stats import MOTION_DIM  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--shards", type=Path, default=REPO / "results" / "shards")
    parser.add_argument(
        "--song", type=Path, default=REPO / "data/demo/music/Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return parser.parse_args()


def training_throughput(hidden: int, layers: int, fps: float = 30.0) -> dict[str, float]:
    torch.manual_seed(0)
    model = DanceRNN(35, MOTION_DIM, hidden, layers, 0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    window = round(4 * fps)
    audio, motion = torch.randn(16, window + 1, 35), torch.randn(16, window + 1, MOTION_DIM)
    out = {}
    for name, teacher in (("teacher_forced", 1.0), ("scheduled_sampling", 0.5)):
        times = []
        for _ in range(4):
            start = time.perf_counter()
            loss = ((model(audio, motion, teacher_prob=teacher) - motion[:, 1:]) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
        out[name] = 16 * window / float(np.median(times[1:]))
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), CPU")
    for name, fps in training_throughput(args.hidden, args.layers).items():
        print(f"train {name:<19} hidden {args.hidden} x {args.layers}: {fps:9.0f} frames/s")

    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = Path(tempfile.mkdtemp()) / "rnn.pt"
        start = time.perf_counter()
        config = resolve("rnn", {}, dict(
            shards=str(args.shards), out=str(checkpoint), hidden=args.hidden,
            layers=args.layers, epochs=4, teacher_min=0.7,
        ))  # fmt: skip
        train(config, progress=False)
        print(f"trained a 4-epoch seed RNN on {args.shards} in {time.perf_counter() - start:.1f} s")
    model = load_model(checkpoint)
    stats = model.stats
    kinds, n_mfcc = settings_of(stats.feature_names)
    features = audio_features(
        args.song, fps=stats.fps, hop_length=stats.hop_length, feature_set=kinds, n_mfcc=n_mfcc
    ).values

    start = time.perf_counter()
    pose, _ = model.generate_motion(features, stats.mean_pose(), 0)
    seconds = time.perf_counter() - start
    duration = len(features) / stats.fps
    print(
        f"generate {args.song.name}: {len(features)} frames ({duration:.1f} s) in {seconds:.2f} s,"
        f" realtime factor {duration / seconds:.1f}x"
    )

    frames = round(args.minutes * 60 * stats.fps)
    long = np.concatenate([features] * (frames // len(features) + 1))[:frames]
    start = time.perf_counter()
    pose, root = model.generate_motion(long, stats.mean_pose(), 0)
    seconds = time.perf_counter() - start
    print(
        f"drift check: {args.minutes:g} min ({frames} frames) in {seconds:.1f} s, "
        f"realtime factor {frames / stats.fps / seconds:.1f}x"
    )
    print("minute  max bone error  mean joint speed (m/s)  root distance (m)")
    per_minute = round(60 * stats.fps)
    bones = np.abs(skeleton.bone_lengths(pose) / stats.bone_lengths - 1)
    speed = np.linalg.norm(np.diff(pose, axis=0), axis=-1).mean(-1) * stats.fps
    for m in range(0, frames, per_minute):
        span = slice(m, m + per_minute)
        print(
            f"{m // per_minute + 1:>6}  {bones[span].max() * 100:13.2f}%"
            f"  {speed[span].mean():22.3f}  {np.linalg.norm(root[span][-1] - root[0]):17.3f}"
        )
    verdict = "PASS" if bones.max() < 0.05 else "FAIL"
    print(f"bone lengths within 5% of training over the whole dance: {verdict}")


if __name__ == "__main__":
    main()
