"""Multi-device training: real DistributedDataParallel runs on CPU (gloo), two processes.

The runs go through ``python -m kakashi train`` in a subprocess, exactly as a Snakemake rule
or a user starts them: the spawned workers and torchrun need a real ``__main__``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from kakashi.errors import ModelError
from kakashi.models.checkpoint import load_checkpoint, paths_for
from kakashi.models.config import resolve
from kakashi.models.distributed import DUMP_ENV, train

# Tiny: one small LSTM layer, 1-s windows; a handful of steps per epoch per rank.
FLAGS = ["--hidden", "16", "--layers", "1", "--window-s", "1.0", "--stride-s", "1.0",
         "--batch-size", "8", "--lr", "0.005", "--teacher-min", "1.0", "--input-noise", "0.0",
         "--dropout", "0.0", "--device", "cpu", "--no-progress"]  # fmt: skip


def run_kakashi(args: list[str], dump: Path, torchrun: bool = False) -> subprocess.CompletedProcess:
    # One thread per rank: the test machine is small and shared.
    env = {**os.environ, DUMP_ENV: str(dump), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m"]
    if torchrun:
        # What `torchrun --standalone --nproc-per-node 2 -m kakashi train ...` runs.
        launcher += ["torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m"]
    result = subprocess.run(
        [*launcher, "kakashi", "train", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_same_weights(dump: Path, checkpoint: Path) -> None:
    ranks = [torch.load(dump / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    saved = load_checkpoint(checkpoint)
    for part in ("model", "discriminator"):
        if part not in ranks[0]:
            continue
        assert ranks[0][part].keys() == ranks[1][part].keys() == saved[part].keys()
        assert not any(key.startswith("module.") for key in saved[part])
        for key, value in ranks[0][part].items():
            torch.testing.assert_close(value, ranks[1][part][key], rtol=0, atol=0)
            torch.testing.assert_close(value, saved[part][key], rtol=0, atol=0)


@pytest.mark.slow
def test_two_process_ddp_keeps_ranks_identical_and_learns(
    demo_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "rnn.pt"
    started = time.perf_counter()
    run_kakashi(
        ["--shards", str(demo_shards), "--out", str(out), "--epochs", "5", "--devices", "2",
         *FLAGS],
        tmp_path / "dump",
    )  # fmt: skip
    seconds = time.perf_counter() - started
    files = paths_for(out)
    last = load_checkpoint(files["last"])
    rows = last["history"]
    print(f"DDP 2 ranks: {seconds:.1f} s; train_loss {[round(r['train_loss'], 4) for r in rows]}")
    assert last["config"]["devices"] == 2 and len(rows) == 5
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    # The final weights of both ranks and rank 0's last checkpoint agree bit for bit.
    assert_same_weights(tmp_path / "dump", files["last"])
    assert files["csv"].is_file() and files["png"].is_file() and out.is_file()

    # Single process, same settings: the windows are split over two ranks there, so the
    # number of steps per epoch halves (each step sees two batches).
    single = train(
        resolve("rnn", {}, dict(shards=str(demo_shards), out=str(tmp_path / "one.pt"),
                epochs=1, hidden=16, layers=1, window_s=1.0, stride_s=1.0, batch_size=8,
                teacher_min=1.0, input_noise=0.0, dropout=0.0, device="cpu")),
        progress=False,
    )  # fmt: skip
    assert rows[0]["step"] == -(-single["step"] // 2)


@pytest.mark.slow
def test_torchrun_resumes_a_spawned_run(demo_shards: Path, tmp_path: Path) -> None:
    """torchrun ranks read the spawned run's .last.pt identically and carry on."""
    out = tmp_path / "rnn.pt"
    common = ["--shards", str(demo_shards), "--out", str(out), *FLAGS]
    run_kakashi([*common, "--epochs", "1", "--devices", "2"], tmp_path / "dump1")
    result = run_kakashi([*common, "--epochs", "2"], tmp_path / "dump2", torchrun=True)
    assert "resuming" in result.stderr
    rows = load_checkpoint(paths_for(out)["last"])["history"]
    assert [row["epoch"] for row in rows] == [1, 2]
    assert_same_weights(tmp_path / "dump2", paths_for(out)["last"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_devices_without_gpus_is_a_clear_error(tmp_path: Path) -> None:
    config = resolve("rnn", {}, {"shards": str(tmp_path), "out": str(tmp_path / "m.pt"),
                                 "devices": 2, "device": "cuda"})  # fmt: skip
    with pytest.raises(ModelError, match="needs 2 CUDA GPU"):
        train(config, progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "kakashi", "train", "--shards", str(tmp_path), "--out",
         str(tmp_path / "m.pt"), "--devices", "2", "--device", "cuda"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "kakashi: error:" in result.stderr and "CUDA GPU" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_two_process_ddp_trains_motif_with_synced_codebooks(
    demo_shards: Path, tmp_path: Path
) -> None:
    """motif under DDP: the EMA codebooks, their k-means start and dead-code restarts are
    synchronised, so both ranks end with the same weights and buffers, bit for bit."""
    out = tmp_path / "motif.pt"
    run_kakashi(
        ["--model", "motif", "--shards", str(demo_shards), "--out", str(out), "--devices", "2",
         "--codebook", "32", "--code-dim", "16", "--vq-width", "32", "--vq-window", "32",
         "--vq-batch", "8", "--vq-steps", "40", "--dim", "32", "--heads", "2", "--context", "12",
         "--gpt-batch", "8", "--gpt-steps", "40", "--log-every", "20", "--device", "cpu",
         "--no-progress"],
        tmp_path / "dump",
    )  # fmt: skip
    saved = load_checkpoint(out)
    assert saved["config"]["devices"] == 2
    rows = saved["history"]
    vq = [row for row in rows if "vq_loss" in row]
    gpt = [row for row in rows if "gpt_loss" in row]
    assert len(vq) == len(gpt) == 2
    assert vq[-1]["vq_loss"] < vq[0]["vq_loss"] and gpt[-1]["gpt_loss"] < gpt[0]["gpt_loss"]
    assert all(row["vq_val_mse"] == row["vq_val_mse"] for row in vq)  # rank 0 scored: no NaN
    assert_same_weights(tmp_path / "dump", out)
    # The codebooks really are shared state that training moved (EMA buffers, not params).
    codebooks = [key for key in saved["model"] if key.endswith("_codebook.embed")]
    assert codebooks


@pytest.mark.slow
@pytest.mark.parametrize("quantizers", [1, 3])
def test_two_process_ddp_trains_maskdance_with_identical_ranks(
    demo_shards: Path, tmp_path: Path, quantizers: int
) -> None:
    """maskdance under DDP: motif's synced tokenizer (one or residual codebooks, the dropout
    of their layers drawn alike on each rank), then the masked (and residual) transformer,
    whose loss modules wrap the music convolutions so DDP averages every gradient: both
    ranks end with the same weights, bit for bit."""
    out = tmp_path / "maskdance.pt"
    run_kakashi(
        ["--model", "maskdance", "--shards", str(demo_shards), "--out", str(out),
         "--devices", "2", "--codebook", "32", "--code-dim", "16", "--vq-width", "32",
         "--vq-window", "32", "--vq-batch", "8", "--vq-steps", "20", "--dim", "32",
         "--heads", "2", "--layers", "1", "--window", "12", "--overlap", "4",
         "--mask-batch", "8", "--mask-steps", "20", "--music-drop", "0.3", "--log-every", "10",
         "--quantizers", str(quantizers), "--residual-steps", "20", "--device", "cpu",
         "--no-progress"],
        tmp_path / "dump",
    )  # fmt: skip
    saved = load_checkpoint(out)
    assert saved["config"]["devices"] == 2 and saved["arch"]["kind"] == "maskdance"
    rows = [row for row in saved["history"] if "val_loss" in row]
    assert len(rows) == 2 and rows[-1]["loss"] < rows[0]["loss"]
    residual_rows = [row for row in saved["history"] if "residual_step" in row]
    assert len(residual_rows) == (2 if quantizers > 1 else 0)
    assert_same_weights(tmp_path / "dump", out)
