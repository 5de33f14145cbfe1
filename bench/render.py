"""Benchmark the output stage on the demo dance: MP4 render speed, viewer size, BVH and GLB
export (and the GLB's size for a 3-minute song).

Run from the repository root after the demo workflow made its shards::

    .venv/bin/python bench/render.py [--shard results/shards/split=train/dancer-a.parquet]
                                     [--audio results/clips/dancer-a.wav] [--size 1280x720]
                                     [--repeat 2] [--style character|stick]

Realtime factor (RTF) = seconds of video / seconds of wall time (targets at 1280x720, 30 fps,
on 2 cores: >= 5 for the stick figure, >= 3 for the character). CPU seconds (this process,
its llvmpipe threads and ffmpeg) are printed too: on a busy machine the wall time says more
about the neighbours than about the renderer.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from kakashi.cli.outputs import parse_size
from kakashi.dance import Dance
from kakashi.outputs.bvh import export_bvh
from kakashi.outputs.glb import export_glb
from kakashi.outputs.render import render_dance
from kakashi.outputs.viewer import write_viewer
from kakashi.shards import read_dance


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shard", default="results/shards/split=train/dancer-a.parquet")
    parser.add_argument("--audio", default="results/clips/dancer-a.wav")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--repeat", type=int, default=2, help="renders; the fastest counts")
    parser.add_argument("--preset", default="superfast", help="x264 preset (render --preset)")
    parser.add_argument("--style", default="character", choices=("character", "stick"))
    args = parser.parse_args()
    if not Path(args.shard).is_file():
        print(f"{args.shard} is missing: run the demo first (snakemake --cores 2)", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as folder:
        dance_path = Path(folder) / "dance.npz"
        dance = read_dance(args.shard)
        dance.save(dance_path)
        print(f"dance {args.shard}: {len(dance)} frames at {dance.fps:g} fps "
              f"({dance.duration_s:.1f} s), song {args.audio}")  # fmt: skip

        best = None
        for run in range(args.repeat):
            cpu = _cpu_seconds()
            stats = render_dance(dance_path, args.audio, Path(folder) / "dance.mp4",
                                 size=parse_size(args.size), preset=args.preset,
                                 style=args.style)  # fmt: skip
            cpu = _cpu_seconds() - cpu
            size_mb = (Path(folder) / "dance.mp4").stat().st_size / 1e6
            print(f"render {args.style} {args.size} {args.preset} run {run + 1}: "
                  f"{stats.seconds:.2f} s wall for "
                  f"{stats.duration_s:.1f} s of video = {stats.realtime_factor:.1f}x realtime; "
                  f"{cpu:.1f} CPU s ({stats.duration_s / cpu * 2:.1f}x realtime if 2 idle "
                  f"cores); {size_mb:.1f} MB")  # fmt: skip
            best = stats if best is None or stats.seconds < best.seconds else best
        target = 3 if args.style == "character" else 5
        print(f"RENDER_RTF {best.realtime_factor:.2f}  (target >= {target})")

        started = time.perf_counter()
        html_bytes = write_viewer(dance_path, args.audio, Path(folder) / "dance.html")
        audio_mb = Path(args.audio).stat().st_size / 1e6
        print(f"VIEWER_HTML_MB {html_bytes / 1e6:.2f}  (song file {audio_mb:.2f} MB; "
              f"built in {time.perf_counter() - started:.2f} s)")  # fmt: skip

        started = time.perf_counter()
        report = export_bvh(dance_path, Path(folder) / "dance.bvh")
        bvh_mb = (Path(folder) / "dance.bvh").stat().st_size / 1e6
        print(f"BVH export: {time.perf_counter() - started:.2f} s, {bvh_mb:.2f} MB, joint error "
              f"vs the dance mean {report.mean_error_m * 100:.2f} cm, "
              f"max {report.max_error_m * 100:.1f} cm")  # fmt: skip

        started = time.perf_counter()
        glb_bytes = export_glb(dance_path, Path(folder) / "dance.glb")
        print(f"GLB export: {time.perf_counter() - started:.2f} s, {glb_bytes / 1e6:.2f} MB "
              f"for {dance.duration_s:.1f} s")  # fmt: skip
        # A 3-minute song: the real dance repeated (the file grows with frames only).
        repeats = int(np.ceil(180 * dance.fps / len(dance)))
        order = np.arange(round(180 * dance.fps)) % len(dance)
        long = Dance(np.tile(dance.pose, (repeats, 1, 1))[: len(order)],
                     np.tile(dance.root, (repeats, 1))[: len(order)], dance.fps)  # fmt: skip
        long.save(Path(folder) / "long.npz")
        started = time.perf_counter()
        glb_bytes = export_glb(Path(folder) / "long.npz", Path(folder) / "long.glb")
        print(f"GLB_3MIN_MB {glb_bytes / 1e6:.2f}  ({len(long)} frames, exported in "
              f"{time.perf_counter() - started:.2f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
