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
    """profiles/slurm with its partition site setting filled in, as docs/cluster.md says."""
    text = SLURM_PROFILE.read_text()
    line = "  slurm_partition: '\"\"'\n"
    assert text.count(line) == 1, "the partition site setting moved; update this test"
    profile = folder / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(
        text.replace(line, f"  slurm_partition: {TEST_PARTITION}\n")
    )
    return profile


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
    """A `gpu: 1` job (what train_rnn asks for) is accepted and runs on the fake GPU."""
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


def test_data_stage_runs_through_sbatch(slurm_cluster, tmp_path) -> None:
    """The demo's data stage, three short sources, through `--profile profiles/slurm`."""
    rows = [
        {"id": "sa", "source": str(DEMO_VIDEO), "start": 0, "end": 6, "split": "train"},
        {"id": "sb", "source": str(DEMO_VIDEO), "start": 40, "end": 46, "split": "val"},
        {"id": "sc", "source": str(DEMO_VIDEO), "start": 52, "end": 58, "split": "test"},
    ]
    sheet = write_sheet(tmp_path / "sources.tsv", rows)
    log_offset = SLURMCTLD_LOG.stat().st_size
    result = run_snakemake(
        tmp_path,
        "--profile",
        str(site_profile(tmp_path)),
        # Test speed only: poll Slurm 2 s after submitting instead of 40 s.
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        "--",
        DEMO_DATA_TARGET,
        config={"sources": sheet},
    )
    output = result.stdout + result.stderr

    shards = sorted((tmp_path / "results" / "shards").glob("split=*/*.parquet"))
    assert [p.relative_to(tmp_path / "results" / "shards").as_posix() for p in shards] == [
        "split=test/sc.parquet",
        "split=train/sa.parquet",
        "split=val/sb.parquet",
    ]
    for path in shards:
        assert abs(pq.read_metadata(path).num_rows - 6 * 30) <= 2
    assert "total" in (tmp_path / "results" / "dataset_info.txt").read_text()

    # Two Slurm jobs, not thirteen: the three sources' cut, features, pose and shard
    # steps form one group job (group-components source=10), then dataset_info.
    submitted = SUBMITTED.findall(output)
    assert len(submitted) == 2, output[-3000:]
    logs = [Path(log) for _, log in submitted]
    assert logs[0].parent.name == "group_source_cut_features_pose_shard"
    assert logs[1].parent.name == "rule_dataset_info"
    # slurmctld itself accepted, ran and finished each one with exit status 0.
    with SLURMCTLD_LOG.open() as handle:
        handle.seek(log_offset)
        ctld = handle.read()
    for job_id, log in submitted:
        assert f"_slurm_rpc_submit_batch_job: JobId={job_id} " in ctld
        assert f"_job_complete: JobId={job_id} WEXITSTATUS 0" in ctld
        assert _wait_for_job(job_id) == "COMPLETED"
        assert Path(log).is_file()  # kept by --slurm-keep-successful-logs
    # The partition came from the site setting and the group job asked for the
    # CPUs of its largest parallel layer, capped by `cores`.
    job = subprocess.run(
        ["scontrol", "show", "job", submitted[0][0]], capture_output=True, text=True, check=True
    ).stdout
    assert f"Partition={TEST_PARTITION} " in job
    assert "NumCPUs=2 " in job

    # Everything is there: a second run submits nothing.
    again = run_snakemake(
        tmp_path,
        "--profile",
        str(tmp_path / "profile"),
        "-n",
        "--",
        DEMO_DATA_TARGET,
        config={"sources": sheet},
    )
    assert "Nothing to be done" in again.stdout + again.stderr
