"""Benchmark workflow planning: `snakemake -n` on large synthetic sources sheets.

Run from the repository root::

    .venv/bin/python bench/plan.py [--sizes 100 1000 10000] [--target 60] [--profile]

Each sheet has N rows pointing at the demo video (data/demo/dancer.avi) with distinct
ids and start/end times, as a 10,000-video dataset would. Planning is everything before
the first job runs: parsing and validating the sheet, building the DAG (about four jobs
per source) and checking outputs. A cluster run plans once on the login node, and each
Slurm job parses the Snakefile (and so the sheet) again, so planning time matters twice.

Prints one line per size and `OK` or `MISS` against the target for the largest (10,000
rows: under 60 s on 2 cores). Exits 0 either way: figures, not a test. `--profile` also
writes a cProfile of the largest run next to the sheets and prints its top functions.
"""

from __future__ import annotations

import argparse
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO_VIDEO = REPO / "data" / "demo" / "dancer.avi"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
DEMO_SECONDS = 62  # the demo video's length; every synthetic row cuts within it


def write_sheet(path: Path, rows: int) -> Path:
    """A sources sheet of `rows` 8-second cuts of the demo video, ids src00000..."""
    lines = ["id\tsource\tstart\tend"]
    for index in range(rows):
        start = (index * 7) % (DEMO_SECONDS - 8)
        lines.append(f"src{index:05d}\t{DEMO_VIDEO}\t{start}\t{start + 8}")
    path.write_text("\n".join(lines) + "\n")
    return path


def plan(
    workdir: Path,
    sheet: Path,
    profile_to: Path | None = None,
    dry_run: bool = True,
    extra: tuple[str, ...] = (),
) -> tuple[float, float, int]:
    """Wall and CPU seconds `snakemake -n` takes on `sheet`, and the jobs it planned.

    CPU time (user + system of the child) is printed beside wall time because this
    machine is shared: under load, wall time grows while CPU time stays honest.
    """
    command = [str(SNAKEMAKE), *plan_args(workdir, sheet, dry_run), *extra]
    if profile_to is not None:
        command = [sys.executable, "-m", "cProfile", "-o", str(profile_to), "-m", "snakemake"]
        command += [*plan_args(workdir, sheet, dry_run), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"snakemake -n failed on {sheet}:\n{result.stderr[-3000:]}")
    return seconds, cpu, _job_count(result.stdout + result.stderr)


def plan_args(workdir: Path, sheet: Path, dry_run: bool = True) -> list[str]:
    """Arguments for `snakemake -n` on `sheet`, or for `--summary` (DAG only)."""
    mode = ["-n", "--quiet", "rules"] if dry_run else ["--summary"]
    return [
        "--snakefile",
        str(REPO / "Snakefile"),
        "--configfile",
        str(REPO / "config.yaml"),
        "--directory",
        str(workdir),
        "--config",
        f"sources={sheet}",
        "--cores",
        "2",
        # -n --quiet rules: the job stats table only, not 40,000 job blocks (the jobs
        # are still formatted: half of -n's time is Snakemake logging each job).
        *mode,
    ]


def startup_seconds() -> float:
    """Wall seconds of `snakemake --version`: imports and plugin discovery, no workflow."""
    started = time.perf_counter()
    subprocess.run([str(SNAKEMAKE), "--version"], capture_output=True, check=True)
    return time.perf_counter() - started


def _job_count(output: str) -> int:
    """The `total` line of Snakemake's job stats table (0 if absent)."""
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "total" and parts[1].isdigit():
            return int(parts[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--target", type=float, default=60.0, help="seconds, largest size")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest size")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    print(f"cores={os.cpu_count()} load={load:.1f} snakemake={SNAKEMAKE}")
    startup = startup_seconds()
    print(f"snakemake startup (--version): {startup:.1f} s wall, included in every figure below")
    if startup > 5:
        print(
            "note: slow startup. The Slurm executor plugin runs `scontrol show config` when "
            "Snakemake imports it; with Slurm's client installed but no controller answering, "
            "that waits for Slurm's message timeout (about 10 s). Start the controller "
            "(scripts/slurm-up.sh) or measure on a machine without a dead slurm.conf."
        )
    if load > 0.5 * (os.cpu_count() or 1):
        print("note: the machine is busy; figures are upper bounds")
    with tempfile.TemporaryDirectory(prefix="kakashi-plan-") as folder:
        root = Path(folder)
        seconds = 0.0
        for size in args.sizes:
            workdir = root / f"run{size}"
            workdir.mkdir()
            sheet = write_sheet(root / f"sources{size}.tsv", size)
            seconds, cpu, jobs = plan(workdir, sheet)
            # The DAG alone (what a real run does before its first sbatch), for contrast.
            dag_seconds, dag_cpu, _ = plan(workdir, sheet, dry_run=False)
            rate = jobs / seconds if seconds else 0.0
            print(
                f"sources={size:>6}  jobs={jobs:>6}  -n: wall_s={seconds:6.1f} "
                f"cpu_s={cpu:6.1f} jobs/s={rate:5.0f}  |  dag only (--summary): "
                f"wall_s={dag_seconds:6.1f} cpu_s={dag_cpu:6.1f}"
            )
        verdict = "OK" if seconds < args.target else "MISS"
        print(
            f"{verdict}: {args.sizes[-1]} sources planned (-n) in {seconds:.1f} s wall, "
            f"{cpu:.1f} s CPU (target < {args.target:.0f} s wall)"
        )
        # What a cluster user plans with: grouped jobs and the profile's default resources
        # (each evaluated per job) cost extra. Reported beside the target, not against it.
        largest = args.sizes[-1]
        slurm = ("--profile", str(REPO / "profiles" / "slurm"))
        slurm_seconds, slurm_cpu, _ = plan(
            root / f"run{largest}", root / f"sources{largest}.tsv", extra=slurm
        )
        print(
            f"with --profile profiles/slurm: {largest} sources planned (-n) in "
            f"{slurm_seconds:.1f} s wall, {slurm_cpu:.1f} s CPU"
        )
        if args.profile:
            out = Path.cwd() / f"plan{args.sizes[-1]}.prof"
            plan(root / f"run{args.sizes[-1]}", root / f"sources{args.sizes[-1]}.tsv", out)
            print(f"cProfile written to {out} (main thread only); top 15 by cumulative time:")
            pstats.Stats(str(out)).sort_stats("cumulative").print_stats(15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
