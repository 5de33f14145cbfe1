"""Benchmark ``kakashi evaluate``: wall time to score the test split with all baselines.

Run from the repository root::

    .venv/bin/python bench/evaluate.py [--shards results/m2d/shards] [--clip-s 10] [--repeat 3]
        [--dances results/m2d/eval/dances] [--clip-study]

Prints the shard folder, the test-split size (dances, minutes), the wall time of a whole
evaluation (load shards, features of the reference and of the three baselines, FID, Div,
BAS, PFC, the held-out FID, style, novelty, variety and ground columns, report and plots)
with the time of each of the new parts, and the feature throughput in clip-seconds per
wall second. ``--dances`` adds every model folder under it (``MODEL/*.npz``, the workflow's
test dances) as rows, as the workflow's evaluate job does. ``--clip-study`` prints how the
held-out FID of every row moves with the clip length and hop.
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
    parser.add_argument("--dances", type=Path, help="folder of MODEL/ folders of test dances")
    parser.add_argument("--clip-study", action="store_true", help="held-out FID vs clips")
    args = parser.parse_args()
    generated = {}
    if args.dances:
        generated = {p.name: p for p in sorted(args.dances.iterdir()) if any(p.glob("*.npz"))}

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
            result = evaluate(args.shards, generated, Path(tmp) / f"run{run}", clip_s=args.clip_s)
            times.append(time.perf_counter() - start)
            print(f"  run {run}: {times[-1]:.1f} s; new columns: {result['heldout']['timings_s']}")
    rows = ", ".join(row["name"] for row in result["rows"])
    print(f"evaluate ({rows}; report, plots): best {min(times):.2f} s, "
          f"median {sorted(times)[len(times) // 2]:.2f} s over {args.repeat} runs")  # fmt: skip
    if args.clip_study:
        clip_study(args.shards, generated, args.clip_s)


def clip_study(shards: Path, generated: dict[str, Path], clip_s: float) -> None:
    """The held-out FID_k / FID_g of every row for several clip lengths and hops."""
    from kakashi.evaluate import baselines, columns, heldout
    from kakashi.evaluate.harness import dance_files, load_dance_file

    test, train = load_split(shards, "test"), load_split(shards, "train")
    real, _ = columns.real_line_of(load_split(shards, "val"), test)
    sets = {"real_val": real, "random_retrieval": baselines.random_retrieval(train, test, clip_s),
            "mean_pose": baselines.mean_pose(train, test)}  # fmt: skip
    for name, folder in generated.items():
        sets[name] = [load_dance_file(p) for p in dance_files(folder)]
    print("held-out FID_k / FID_g by clip length and hop (s); reference clips in brackets")
    print(f"{'clip/hop':<12}" + "".join(f"{name:>22}" for name in sets))
    for clip, hop in ((10, 5), (5, 5), (5, 2.5), (4, 2), (2.5, 1.25)):
        reference = heldout.clip_features([(d.world, d.fps) for d in test], clip, hop)
        cells = []
        for dances in sets.values():
            row = heldout.clip_features([(d.world, d.fps) for d in dances], clip, hop)
            fid_k, fid_g = heldout.heldout_fid(reference, row)
            cells.append(f"{fid_k:>12.1f} / {fid_g:<7.1f}")
        print(f"{f'{clip:g}/{hop:g} [{len(reference.kinetic)}]':<12}" + "".join(cells))


if __name__ == "__main__":
    main()
