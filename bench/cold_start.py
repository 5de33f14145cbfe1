"""Cold start of `kakashi generate`: a 3-minute song, a fresh process, every model.

Issue 29's target: a 3-minute song in <= 3 s cold on 2 cores, every model. Two measurements:

1. ``kakashi generate SONG --checkpoint MODEL.pt`` as a user runs it, each model ``--repeat``
   times, interleaved (the machine may be shared: compare in one run, read the medians), with
   wall time and peak memory (``/usr/bin/time``-style, from ``wait4``);
   once with an empty feature cache (a new song) and once with the features of earlier runs
   remembered (the same song again: another model, another take);
2. where the time goes, in one fresh process per model (the same steps as `kakashi generate`,
   timed one by one): the imports (kakashi's CLI, torch, librosa), the numba warm-up, the
   audio decoding, the features, the checkpoint, the model's step and the write.

Run from the repository root after the demo (or name any checkpoints)::

    .venv/bin/python bench/cold_start.py [--song SONG] [--repeat 3] [MODEL.pt ...]

The song defaults to the demo's two songs joined and cut to 180 s (a WAV in a temporary
folder), so the bench needs nothing outside the repository; ``--song`` takes any file
(e.g. an MP3 of ../shared/data/m2d_tang2018/audio). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MUSIC = REPO / "data" / "demo" / "music"
SONG_S = 180.0
TARGET_S = 3.0

# The steps of `kakashi generate`, one by one, in a fresh process (printed as JSON).
PHASES = r"""
import json, sys, time
marks = [("start", time.perf_counter(), time.process_time())]
def mark(name):
    marks.append((name, time.perf_counter(), time.process_time()))
import kakashi.cli
kakashi.cli.build_parser()
mark("cli import + parser")
import torch
mark("import torch")
from kakashi.models.checkpoint import load_model
mark("import kakashi.models")
model = load_model(sys.argv[2])
mark("load checkpoint")
from kakashi import features as F
mark("import kakashi.features")
F.warm_up(model.stats.fps, model.stats.hop_length)
mark("librosa import + numba warm-up")
sr = round(model.stats.fps * model.stats.hop_length)
samples = F.load_audio(sys.argv[1], sr)
mark("decode + resample audio")
kinds, n_mfcc = F.settings_of(model.stats.feature_names)
values = F.compute_features(samples, sr, model.stats.fps, model.stats.hop_length, kinds, n_mfcc)
mark("audio features")
from kakashi.models.generate import dance_for_audio, start_pose
dance = dance_for_audio(model, values, start_pose("mean", model.stats), 0)
mark("model step")
dance.save(sys.argv[3])
mark("save")
print(json.dumps([(b[0], b[1] - a[1], b[2] - a[2]) for a, b in zip(marks, marks[1:])]))
"""


def three_minute_song(folder: Path) -> Path:
    """The demo's two songs joined, cut to 180 s, at 44.1 kHz: a WAV, decoded like any song."""
    import librosa
    import numpy as np
    import soundfile

    parts = [librosa.load(path, sr=44100, mono=True)[0] for path in sorted(MUSIC.glob("*.ogg"))]
    song = np.concatenate(parts)
    while len(song) < SONG_S * 44100:
        song = np.concatenate([song, song])
    path = folder / "three-minutes.wav"
    soundfile.write(path, song[: int(SONG_S * 44100)], 44100)
    return path


def timed(command: list[str], env: dict) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, stderr) of one command, from wait4's resource usage."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode()
    process.stdout.close()
    process.stderr.close()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", type=Path)
    parser.add_argument("--song", type=Path, help="default: the demo's songs, 180 s")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument(
        "--src",
        type=Path,
        default=REPO / "src",
        help="the kakashi to time (A/B: another checkout's src)",
    )
    args = parser.parse_args()
    checkpoints = args.checkpoints or sorted((REPO / "results" / "models").glob("*.pt"))
    checkpoints = [path for path in checkpoints if not path.name.endswith(".last.pt")]
    if not checkpoints:
        raise SystemExit("no checkpoints: run the demo first (snakemake --cores 2)")
    env = {**os.environ, "PYTHONPATH": str(args.src)}
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"kakashi: {args.src}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        song = args.song or three_minute_song(folder)
        print(f"song: {song}")
        # "new song": an empty feature cache (XDG_CACHE_HOME), as the first run on a song;
        # "same song": the cache the previous runs filled, as another model or another take
        # on that song (kakashi.features.remembered_audio_features).
        remembered = folder / "cache-remembered"
        modes = ("new song", "same song")
        runs = {(mode, p.stem): [] for mode in modes for p in checkpoints}
        for repeat in range(args.repeat):
            for path in checkpoints:  # interleaved: a busy spell hits every model alike
                command = [sys.executable, "-m", "kakashi", "generate", str(song)]
                command += ["--checkpoint", str(path), "-o", str(folder / f"{path.stem}.npz")]
                for mode in modes:
                    cache = (
                        remembered
                        if mode == "same song"
                        else folder / f"cache-{repeat}-{path.stem}"
                    )
                    if mode == "same song" and not remembered.exists():  # fill it first
                        timed(command, {**env, "XDG_CACHE_HOME": str(remembered)})
                    wall, cpu, rss, _ = timed(command, {**env, "XDG_CACHE_HOME": str(cache)})
                    runs[mode, path.stem].append((wall, cpu, rss))
        # On a shared machine the wall time is mostly waiting for a core; the CPU time is what
        # the command costs, and on 2 free cores wall ~ CPU (it runs on one core at a time,
        # but for torch's two threads in the model step).
        figures: dict = {"load": load, "song": str(song), "models": {}}
        for mode in modes:
            print(
                f"\ncold `kakashi generate` of a {SONG_S:.0f}-s song, {mode}, "
                f"{args.repeat} runs each"
            )
            print(f"{'model':<12} {'wall median':>11} {'min':>6} {'CPU median':>10} {'min':>6} "
                  f"{'peak MB':>8}  target (CPU)")  # fmt: skip
            for path in checkpoints:
                values = runs[mode, path.stem]
                walls = [wall for wall, _, _ in values]
                cpus = [cpu for _, cpu, _ in values]
                verdict = "PASS" if statistics.median(cpus) <= TARGET_S else "MISS"
                peak = max(rss for _, _, rss in values)
                print(
                    f"{path.stem:<12} {statistics.median(walls):>11.2f} {min(walls):>6.2f} "
                    f"{statistics.median(cpus):>10.2f} {min(cpus):>6.2f} {peak:>8.0f}"
                    f"  <= {TARGET_S:g} s {verdict}"
                )
                figures["models"].setdefault(path.stem, {})[mode] = {
                    "walls_s": walls,
                    "cpus_s": cpus,
                    "peak_mb": peak,
                }
        print("\nwhere the time goes (one fresh process per model, CPU s (wall s)):")
        for path in checkpoints:
            command = [sys.executable, "-c", PHASES, str(song), str(path)]
            command.append(str(folder / f"{path.stem}.phases.npz"))
            result = subprocess.run(
                command,
                env={**env, "XDG_CACHE_HOME": str(folder / "cache-phases")},
                capture_output=True,
                text=True,
                check=True,
            )
            phases = json.loads(result.stdout.strip().splitlines()[-1])
            total = sum(cpu for _, _, cpu in phases)
            parts = ", ".join(f"{name} {cpu:.2f} ({wall:.2f})" for name, wall, cpu in phases)
            print(f"{path.stem}: {total:.2f} CPU s = {parts}")
            figures["models"][path.stem]["phases_cpu_wall_s"] = {
                name: (cpu, wall) for name, wall, cpu in phases
            }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
