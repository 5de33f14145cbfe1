"""profiles/slurm against a real one-node Slurm cluster (scripts/slurm-up.sh).

The cluster is real: munged, slurmctld and slurmd run on this machine, jobs go through
sbatch, and the executor plugin polls them with squeue (there is no slurmdbd, so no
sacct). Evidence that a job really went through Slurm comes from slurmctld's own log
and from squeue, never from Snakemake's word alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import DEMO_DATA_TARGET, DEMO_VIDEO, REPO, run_snakemake, write_sheet

pytestmark = pytest.mark.slow

SLURM_UP = REPO / "scripts" / "slurm-up.sh"
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
# Where scripts/slurm-up.sh tells slurmctld to log.
SLURMCTLD_LOG = Path("/var/log/kakashi-slurm/slurmctld.log")
# The partition scripts/slurm-up.sh creates: what a user writes in the site setting.
TEST_PARTITION = "main"
SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: ([^)]+)\)")


@pytest.fixture(scope="module")
def slurm_cluster() -> str:
    """A running one-node Slurm cluster; returns its node name."""
    if os.geteuid() != 0:
        pytest.skip("a real Slurm cluster needs root (scripts/slurm-up.sh starts daemons)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("Slurm is not installed and there is no apt-get to install it")
    result = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"slurm-up failed:\n{result.stdout}\n{result.stderr}"
    node = subprocess.run(
        ["sinfo", "--noheader", "--format", "%N %T"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert node[1] in ("idle", "mixed", "allocated"), node
    return node[0]


def site_profile(folder: Path) -> Path:
    """profiles/slurm with its site settings filled in for this cluster, as a user does.

    The partition (docs/cluster.md) and `cores`: the test node has os.cpu_count() CPUs, so
    a group job asking for the shipped 8 could never be scheduled here.
    """
    text = SLURM_PROFILE.read_text()
    edits = {
        "  slurm_partition: '\"\"'\n": f"  slurm_partition: {TEST_PARTITION}\n",
        "\ncores: 8\n": f"\ncores: {os.cpu_count()}\n",
    }
    for old, new in edits.items():
        assert text.count(old) == 1, f"site setting {old.strip()!r} moved; update this test"
        text = text.replace(old, new)
    profile = folder / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(text)
    return profile


def scontrol_job(job_id: str) -> str:
    """`scontrol show job` for a job (kept MinJobAge seconds after it ends)."""
    return subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout


def _wait_for_job(job_id: str, timeout: float = 120) -> str:
    """A job's final state from squeue (finished jobs stay listed for MinJobAge)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = subprocess.run(
            ["squeue", "--states=all", "--noheader", "--jobs", job_id, "--format", "%T"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY"):
            return state
        time.sleep(1)
    return state


def test_fake_gpu_is_schedulable(slurm_cluster, tmp_path) -> None:
    """A `gpu: 1` job (what a training job asks for) is accepted and runs on the fake GPU."""
    out = tmp_path / "gpu.out"
    submitted = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--gpus=1",
            "--mem=100",
            "--time=2",
            "-o",
            str(out),
            "--wrap",
            "echo gpus=$SLURM_JOB_GPUS",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = submitted.stdout.strip().split(";")[0]
    assert _wait_for_job(job_id) == "COMPLETED"
    assert out.read_text().strip() == "gpus=0"
    assert "TresPerJob=gres:gpu:1" in scontrol_job(job_id)


@dataclass
class SlurmRun:
    """One `snakemake --profile` run and Slurm's record of it."""

    output: str  # Snakemake's stdout and stderr
    ctld_log: str  # what slurmctld logged during the run
    submitted: list[tuple[str, Path]]  # (Slurm job id, the plugin's log file) per sbatch


def run_through_slurm(workdir: Path, target: str, config: dict) -> SlurmRun:
    """Build `target` in `workdir` through the site's copy of profiles/slurm."""
    profile = workdir / "profile"
    if not profile.exists():
        site_profile(workdir)
    log_offset = SLURMCTLD_LOG.stat().st_size
    result = run_snakemake(
        workdir,
        "--profile",
        str(profile),
        # Test speed only: poll Slurm 2 s after submitting instead of 40 s.
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        "--",
        target,
        config=config,
    )
    with SLURMCTLD_LOG.open() as handle:
        handle.seek(log_offset)
        ctld = handle.read()
    output = result.stdout + result.stderr
    submitted = [(job_id, Path(log)) for job_id, log in SUBMITTED.findall(output)]
    return SlurmRun(output, ctld, submitted)


def assert_ran_in_slurm(run: SlurmRun) -> None:
    """slurmctld itself accepted, ran and finished each job with exit status 0."""
    assert run.submitted, run.output[-3000:]
    for job_id, log in run.submitted:
        assert f"_slurm_rpc_submit_batch_job: JobId={job_id} " in run.ctld_log
        assert f"_job_complete: JobId={job_id} WEXITSTATUS 0" in run.ctld_log
        assert _wait_for_job(job_id) == "COMPLETED"
        assert log.is_file()  # kept by --slurm-keep-successful-logs


@pytest.fixture(scope="module")
def slurm_data_run(slurm_cluster, tmp_path_factory) -> tuple[Path, dict, SlurmRun]:
    """The data stage of three short demo sources, run once through profiles/slurm."""
    workdir = tmp_path_factory.mktemp("slurm_workflow")
    rows = [
        {"id": "sa", "source": str(DEMO_VIDEO), "start": 0, "end": 6, "split": "train"},
        {"id": "sb", "source": str(DEMO_VIDEO), "start": 40, "end": 46, "split": "val"},
        {"id": "sc", "source": str(DEMO_VIDEO), "start": 52, "end": 58, "split": "test"},
    ]
    config = {"sources": write_sheet(workdir / "sources.tsv", rows)}
    return workdir, config, run_through_slurm(workdir, DEMO_DATA_TARGET, config)


def test_data_stage_runs_through_sbatch(slurm_data_run) -> None:
    """The demo's data stage, three short sources, through `--profile profiles/slurm`."""
    workdir, config, run = slurm_data_run
    shards = sorted((workdir / "results" / "shards").glob("split=*/*.parquet"))
    assert [p.relative_to(workdir / "results" / "shards").as_posix() for p in shards] == [
        "split=test/sc.parquet",
        "split=train/sa.parquet",
        "split=val/sb.parquet",
    ]
    for path in shards:
        assert abs(pq.read_metadata(path).num_rows - 6 * 30) <= 2
    assert "total" in (workdir / "results" / "dataset_info.txt").read_text()

    # Two Slurm jobs, not thirteen: the three sources' cut, features, pose and shard
    # steps form one group job (group-components source=10), then dataset_info.
    assert [log.parent.name for _, log in run.submitted] == [
        "group_source_cut_features_pose_shard",
        "rule_dataset_info",
    ], run.output[-3000:]
    assert_ran_in_slurm(run)
    # The partition came from the site setting, and the group job asked for the CPUs of
    # its largest parallel layer, capped by `cores`.
    job = scontrol_job(run.submitted[0][0])
    assert f"Partition={TEST_PARTITION} " in job
    assert f"NumCPUs={os.cpu_count()} " in job

    # Everything is there: a second run submits nothing.
    again = run_snakemake(
        workdir,
        "--profile",
        str(workdir / "profile"),
        "-n",
        "--",
        DEMO_DATA_TARGET,
        config=config,
    )
    assert "Nothing to be done" in again.stdout + again.stderr


def test_training_job_gets_the_fake_gpu(slurm_data_run) -> None:
    """Training the rnn, one short epoch on the data-stage shards: one sbatch job with a GPU."""
    workdir, config, _ = slurm_data_run
    train = {"gpu": True, "epochs": 1, "window_s": 2, "rnn": {"hidden": 16, "layers": 1}}
    short = {**config, "train": train}
    run = run_through_slurm(workdir, "results/models/rnn.pt", short)
    assert (workdir / "results" / "models" / "rnn.pt").stat().st_size > 0
    # One job, of the wildcard rule `train` (its log sits in rule_train/WILDCARDS/).
    assert [("rule_train" in log.parts) for _, log in run.submitted] == [True], run.output
    assert_ran_in_slurm(run)
    # train.gpu: true makes the rule ask for a GPU; Slurm granted the fake one.
    assert "TresPerJob=gres:gpu:1" in scontrol_job(run.submitted[0][0])
