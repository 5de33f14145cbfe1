"""Benchmark the data stage on the demo video: cut, pose, audio features, whole workflow.

Run from the repository root::

    .venv/bin/python bench/data.py [--video data/demo/dancer.avi] [--workers 2]
                                   [--skip-workflow] [--json results.json]

Realtime factor (RTF) = seconds of clip processed / seconds of wall time; above 1 is
faster than realtime. Targets: pose >= 2x realtime, warm audio features >= 200x.
Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's kakashi, installed or not

from kakashi.cut import CutResult, cut_video  # noqa: E402
from kakashi.features import FEATURE_KINDS, audio_features, compute_features, load_audio  # noqa: E402

FPS = 30
HOP_LENGTH = 512
POSE_TARGET_RTF = 2.0
AUDIO_TARGET_RTF = 200.0
WARM_REPEATS = 3
LOAD_WARN = 0.1  # cores; above this, other processes distort the figures
FEATURE_GROUPS = {"mfcc": ("mfcc",), "chroma": ("chroma",), "onset+beat+peak": FEATURE_KINDS[2:]}

# Times `audio_features` in a fresh interpreter: the import of kakashi.features (cheap: it
# imports librosa lazily), the first call (librosa, scipy and numba start-up, JIT or numba
# cache load), then a second call for comparison.
COLD_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from kakashi.features import audio_features
t1 = time.perf_counter()
audio_features(sys.argv[1], fps={fps}, hop_length={hop}, feature_set={kinds!r}, n_mfcc=20)
t2 = time.perf_counter()
audio_features(sys.argv[1], fps={fps}, hop_length={hop}, feature_set={kinds!r}, n_mfcc=20)
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "call_s": t2 - t1, "second_call_s": t3 - t2}}))
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", type=Path, default=Path("data/demo/dancer.avi"))
    parser.add_argument("--workers", type=int, default=2, help="pose workers to compare with 1")
    parser.add_argument("--skip-workflow", action="store_true", help="skip the snakemake run")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return parser.parse_args()


def verdict(value: float, target: float) -> str:
    return "PASS" if value >= target else "MISS"


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    busy: float  # CPU seconds all processes spent, from /proc/stat
    own: float  # CPU seconds of this process and its waited-for children


def cpu_snapshot() -> CpuSnapshot:
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    busy = (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # up to steal, no guest
    times = os.times()
    own = times.user + times.system + times.children_user + times.children_system
    return CpuSnapshot(time.perf_counter(), busy, own)


def other_load(since: CpuSnapshot) -> float:
    """Average cores other processes kept busy since ``since`` (0 on an idle machine)."""
    now = cpu_snapshot()
    foreign = (now.busy - since.busy) - (now.own - since.own)
    return max(0.0, foreign / (now.wall - since.wall))


def report_load(figures: dict[str, Any], since: CpuSnapshot) -> None:
    """Record and print how busy other processes kept the machine (a noisy-run flag)."""
    load = other_load(since)
    figures["other_load_cores"] = round(load, 2)
    warning = "  WARNING: machine not idle, figures are pessimistic" if load > LOAD_WARN else ""
    print(f"   other processes kept {load:.2f} cores busy meanwhile{warning}")


def best_of(function: Callable[[], Any], repeats: int = WARM_REPEATS) -> float:
    """Best wall time of ``repeats`` calls after one untimed warm-up call."""
    function()
    return min(timed(function)[1] for _ in range(repeats))


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {
        "cpu": models[0] if models else platform.processor() or "unknown",
        "cores": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kb / 2**20, 1),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "mediapipe": version("mediapipe"),
        "librosa": version("librosa"),
        "snakemake": version("snakemake"),
        "command": shlex.join(sys.orig_argv),
    }


def print_header(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def print_machine(info: dict[str, Any]) -> None:
    print_header("machine")
    print(f"cpu:      {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM")
    print(f"date:     {info['date']}")
    print(
        f"versions: Python {info['python']}, mediapipe {info['mediapipe']}, "
        f"librosa {info['librosa']}, snakemake {info['snakemake']}"
    )
    print(f"command:  {info['command']}")


def bench_cut(video: Path, workdir: Path) -> tuple[CutResult, dict[str, Any]]:
    print_header(f"cut: {video} -> {FPS} fps clip + WAV")
    clip, wall = timed(
        lambda: cut_video(video, workdir / "clip.mp4", workdir / "clip.wav", fps=FPS)
    )
    seconds = clip.end_s - clip.start_s
    figures = {
        "clip_s": seconds,
        "frames": clip.frames,
        "size": list(clip.size),
        "wall_s": wall,
        "rtf": seconds / wall,
    }
    print(f"clip:      {seconds:.2f} s, {clip.frames} frames, {clip.size[0]}x{clip.size[1]}")
    print(f"wall:      {wall:.2f} s  (realtime factor {figures['rtf']:.1f}x)")
    return clip, figures


def bench_pose(clip: CutResult, workers: int) -> dict[str, Any]:
    """End-to-end ``estimate`` (frame count, model load, process start-up included)."""
    from kakashi.pose import get_backend

    backend = get_backend("mediapipe", workers=workers)
    since = cpu_snapshot()
    sequence, wall = timed(lambda: backend.estimate(clip.video))
    seconds = clip.end_s - clip.start_s
    rtf = seconds / wall
    figures = {
        "workers": workers,
        "chunks": len(sequence.meta["chunks"]),
        "frames": len(sequence),
        "person_frames": int((sequence.conf > 0).sum()),
        "wall_s": wall,
        "fps": len(sequence) / wall,
        "rtf": rtf,
        "verdict": verdict(rtf, POSE_TARGET_RTF),
    }
    print(
        f"workers={workers} ({figures['chunks']} chunk(s)): {wall:6.2f} s, "
        f"{figures['fps']:5.1f} frames/s, realtime factor {rtf:.2f}x, "
        f"person in {figures['person_frames']}/{figures['frames']} frames "
        f"(target >= {POSE_TARGET_RTF:g}x): {figures['verdict']}"
    )
    report_load(figures, since)
    return figures


def bench_pose_all(clip: CutResult, workers: int) -> dict[str, Any]:
    print_header(f"pose: mediapipe BlazePose on the {FPS} fps clip")
    print(
        f"{POSE_TARGET_RTF:g}x realtime needs {POSE_TARGET_RTF * 25:g} frames/s at 25 fps, "
        f"{POSE_TARGET_RTF * FPS:g} at {FPS} fps (the clip); end to end: frame count, "
        "process start, model load"
    )
    results = {"workers_1": bench_pose(clip, 1)}
    if workers != 1:
        results[f"workers_{workers}"] = bench_pose(clip, workers)
        speedup = results["workers_1"]["wall_s"] / results[f"workers_{workers}"]["wall_s"]
        results["speedup"] = speedup
        print(f"speed-up workers={workers} over workers=1: {speedup:.2f}x")
    return results


def run_cold(wav: Path, numba_cache: Path | None) -> dict[str, float]:
    """First call in a fresh interpreter; ``numba_cache`` set = empty cache, full JIT."""
    python_path = [str(REPO / "src"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, python_path)))
    if numba_cache is not None:
        env["NUMBA_CACHE_DIR"] = str(numba_cache)
    code = COLD_SNIPPET.format(fps=FPS, hop=HOP_LENGTH, kinds=list(FEATURE_KINDS))
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, str(wav)], env=env, capture_output=True, text=True, check=True
    )
    process_s = time.perf_counter() - start
    inner = json.loads(done.stdout.strip().splitlines()[-1])
    return {**inner, "process_s": process_s}


def bench_audio(wav: Path, seconds: float, workdir: Path) -> dict[str, Any]:
    print_header("audio features: 35-d AIST++ set (mfcc 20, chroma 12, onset, beat, peak)")
    sr = FPS * HOP_LENGTH
    cold = run_cold(wav, None)
    cold_jit = run_cold(wav, workdir / "empty-numba-cache")
    warm = best_of(
        lambda: audio_features(
            wav, fps=FPS, hop_length=HOP_LENGTH, feature_set=FEATURE_KINDS, n_mfcc=20
        )
    )
    samples = load_audio(wav, sr)
    groups = {
        name: best_of(lambda kinds=kinds: compute_features(samples, sr, FPS, HOP_LENGTH, kinds, 20))
        for name, kinds in FEATURE_GROUPS.items()
    }
    decode = best_of(lambda: load_audio(wav, sr))
    decode_native = best_of(lambda: load_audio(wav, None))  # no resampling: the WAV as is
    figures: dict[str, Any] = {
        "audio_s": seconds,
        "cold": {**cold, "rtf": seconds / (cold["import_s"] + cold["call_s"])},
        "cold_empty_numba_cache": {
            **cold_jit,
            "rtf": seconds / (cold_jit["import_s"] + cold_jit["call_s"]),
        },
        "warm": {"wall_s": warm, "rtf": seconds / warm},
        "groups_s": {"decode+resample": decode, "decode only": decode_native, **groups},
    }
    figures["warm"]["verdict"] = verdict(figures["warm"]["rtf"], AUDIO_TARGET_RTF)
    print_audio(figures)
    return figures


def print_audio(figures: dict[str, Any]) -> None:
    seconds = figures["audio_s"]
    for key, label in (("cold", "cold"), ("cold_empty_numba_cache", "cold, empty numba cache")):
        run = figures[key]
        print(
            f"{label + ':':<25} import {run['import_s']:.2f} s + first call {run['call_s']:.2f} s"
            f" = realtime factor {run['rtf']:.1f}x"
        )
        print(
            f"{'':<25} (whole process {run['process_s']:.2f} s; "
            f"a second call in it took {run['second_call_s']:.2f} s)"
        )
    warm = figures["warm"]
    print(
        f"{'warm (best of 3):':<25} {warm['wall_s']:.3f} s = realtime factor {warm['rtf']:.0f}x "
        f"(target >= {AUDIO_TARGET_RTF:g}x): {warm['verdict']}"
    )
    print(f"where warm time goes (best of {WARM_REPEATS} each, {seconds:.1f} s of audio):")
    for name, wall in figures["groups_s"].items():
        share = wall / warm["wall_s"]
        print(f"  {name:<17} {wall:.3f} s  ({seconds / wall:6.0f}x realtime, {share:4.0%} of warm)")


def snakemake_command(workdir: Path) -> list[str]:
    return [
        str(Path(sys.executable).parent / "snakemake"),
        "--cores",
        "2",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(REPO / "config.yaml"),
        "--config",
        f"sources={REPO / 'data/demo/sources.tsv'}",
    ]


def rule_times(workdir: Path) -> dict[str, float]:
    """Summed wall seconds per rule from the rules' ``benchmark:`` files."""
    totals: dict[str, float] = {}
    for tsv in sorted((workdir / "results/benchmarks").glob("*/*.tsv")):
        rows = np.genfromtxt(tsv, names=True, delimiter="\t", dtype=None, encoding="utf-8")
        totals[tsv.parent.name] = totals.get(tsv.parent.name, 0.0) + float(np.sum(rows["s"]))
    return totals


def bench_workflow(workdir: Path) -> dict[str, Any]:
    print_header("whole demo data stage: snakemake --cores 2 in a fresh directory")
    command = snakemake_command(workdir)
    print(f"command: {shlex.join(command)}")
    log = workdir / "snakemake.log"
    with log.open("w") as handle:
        done, wall = timed(
            lambda: subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, check=False)
        )
    figures: dict[str, Any] = {"wall_s": wall, "exit_code": done.returncode}
    status = "OK" if done.returncode == 0 else "FAILED"
    print(f"wall:    {wall:.1f} s, exit code {done.returncode}: {status}")
    if done.returncode != 0:
        print("last lines of the snakemake log:")
        print("\n".join(log.read_text().splitlines()[-20:]))
        return figures
    figures["rule_s"] = rule_times(workdir)
    per_rule = ", ".join(f"{name} {s:.1f} s" for name, s in figures["rule_s"].items())
    print(f"per rule (summed over jobs, jobs overlap on 2 cores): {per_rule}")
    print((workdir / "results/dataset_info.txt").read_text().rstrip())
    return figures


def main() -> None:
    args = parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    os.environ.setdefault("GLOG_minloglevel", "2")  # quiet mediapipe's C++ logging
    results: dict[str, Any] = {"machine": machine_info()}
    print_machine(results["machine"])
    with tempfile.TemporaryDirectory(prefix="kakashi-bench-") as tmp:
        workdir = Path(tmp)
        since = cpu_snapshot()
        clip, results["cut"] = bench_cut(args.video, workdir)
        report_load(results["cut"], since)
        since = cpu_snapshot()
        results["audio"] = bench_audio(clip.audio, clip.end_s - clip.start_s, workdir)
        report_load(results["audio"], since)
        results["pose"] = bench_pose_all(clip, args.workers)
        if not args.skip_workflow:
            flow_dir = workdir / "workflow"
            flow_dir.mkdir()
            since = cpu_snapshot()
            results["workflow"] = bench_workflow(flow_dir)
            report_load(results["workflow"], since)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    if results.get("workflow", {}).get("exit_code", 0) != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
