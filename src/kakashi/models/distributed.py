"""Launching training: one process, or N data-parallel ranks (DistributedDataParallel).

``devices > 1``: N processes, NCCL on GPUs (one per rank) and gloo on CPU. Started by
``torchrun --nproc-per-node N -m kakashi train`` or, without torchrun, ``kakashi train
--devices N`` spawns the N workers itself. Every model's trainer (``run`` in the module the
registry names) is called the same way; a trainer builds the same shuffled batch plan on
every rank and takes its share (:func:`rank_share`); rank 0 alone evaluates and writes
files, and broadcasts each epoch's row so every rank takes the same early-stopping decision.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kakashi.errors import ModelError
from kakashi.models import registry
from kakashi.models.checkpoint import (
    load_checkpoint,
    new_payload,
    paths_for,
    pick_device,
    save_checkpoint,
    write_history,
)
from kakashi.models.config import TrainConfig
from kakashi.models.stats import Stats

log = logging.getLogger("kakashi.models.train")

RANK_SEED = 1_000_033  # per-rank offset of the dropout/noise seeds; rank 0 keeps the plain ones
DUMP_ENV = "KAKASHI_DDP_DUMP"  # test hook: each rank saves its final weights in this folder


@dataclass
class Trained:
    """What a trainer's ``run`` returns: the model it trained, as its checkpoint stores it."""

    arch: dict  # what the network module's build() needs; kind = the registry name
    stats: Stats
    model: dict  # the network's final state dict (cpu tensors)
    history: list[dict]  # one row per epoch or logging point
    extra: dict = field(default_factory=dict)  # more checkpoint keys (resume state)
    others: dict = field(default_factory=dict)  # other networks' final weights (DDP hook)
    saved: bool = False  # the loop already wrote the best checkpoint (per epoch)


def finish(config: TrainConfig, trained: Trained, rank: int, world: int) -> dict:
    """The step every trainer ends with: rank 0 writes the checkpoint (unless the loop
    already keeps the best one), the history CSV and plot; with several ranks, the test
    hook's per-rank weights and the barrier. Returns the last history row."""
    files = paths_for(config.out)
    if rank == 0:
        # (a recurrent run resumed after its best file was deleted writes the last state)
        if not trained.saved or not files["best"].is_file():
            payload = new_payload(
                config, trained.arch, trained.stats, trained.model, trained.history, **trained.extra
            )
            save_checkpoint(files["best"], payload)
        write_history(trained.history, files["csv"], files["png"])
    if world > 1:
        import torch.distributed as dist

        if os.environ.get(DUMP_ENV):
            # Test hook: each rank's final weights, to check that DDP kept them identical.
            dump = {"model": trained.model, **trained.others}
            save_checkpoint(Path(os.environ[DUMP_ENV]) / f"rank{rank}.pt", dump)
        dist.barrier()  # every rank returns only once rank 0's files are complete
    return trained.history[-1] if trained.history else {}


def _launched_world() -> int | None:
    """WORLD_SIZE if this process was started as one rank of a group (torchrun, our spawn)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    return None


def _check_gpus(config: TrainConfig, needed: int) -> None:
    """Fail before any process starts if ``device: cuda`` cannot give one GPU per rank."""
    if config.device != "cuda":
        return
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < needed:
        raise ModelError(
            f"train.devices={config.devices} with device cuda needs {needed} CUDA GPU(s) on "
            f"this machine, found {found}; use --device cpu (gloo) or fewer --devices"
        )


def _rank_device(name: str, local_rank: int, world: int) -> torch.device:
    """One GPU per rank (LOCAL_RANK) if there are enough, else the CPU."""
    if name == "auto":
        enough = torch.cuda.is_available() and torch.cuda.device_count() > local_rank
        name = "cuda" if enough else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available() or torch.cuda.device_count() <= local_rank:
            raise ModelError(
                f"rank with LOCAL_RANK={local_rank} of {world} needs a CUDA GPU of its own, "
                f"found {torch.cuda.device_count()}; use --device cpu or fewer processes"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def train(config: TrainConfig, progress: bool = True) -> dict:
    """Train as ``config`` says; returns the last epoch's row of the history.

    ``devices > 1`` outside torchrun spawns that many worker processes; inside torchrun (or
    one of our workers) this process is one rank of the group.
    """
    world = _launched_world()
    if world is None or world == 1:
        if config.devices > 1 and world is None:
            return _spawn(config, progress)
        if config.devices > 1:
            raise ModelError(
                f"train.devices={config.devices} but torchrun started 1 process; "
                f"use torchrun --nproc-per-node {config.devices} or drop --devices"
            )
        return _run(config, progress, rank=0, world=1, device=pick_device(config.device))
    return _distributed(config, progress, world)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawn(config: TrainConfig, progress: bool) -> dict:
    """Start ``config.devices`` local ranks and wait; rank 0's files carry the result."""
    import torch.multiprocessing as mp

    _check_gpus(config, config.devices)
    level = logging.getLogger().getEffectiveLevel()
    # The CPU threads this process may use (OMP_NUM_THREADS, e.g. from Snakemake's
    # `threads`), shared out: N ranks each using all of them would oversubscribe the CPU.
    threads = max(1, torch.get_num_threads() // config.devices)
    try:
        mp.spawn(
            _worker,
            args=(config, progress, _free_port(), level, threads),
            nprocs=config.devices,
            join=True,
        )
    except mp.ProcessRaisedException as exc:
        # The worker's traceback ends with its exception; that last line is the message.
        lines = [line for line in str(exc).strip().splitlines() if line.strip()]
        last = lines[-1] if lines else str(exc)
        if last.startswith("kakashi."):  # our own errors: their message is enough
            last = last.split(": ", 1)[-1]
        raise ModelError(f"distributed training failed: {last}") from exc
    except mp.ProcessExitedException as exc:
        raise ModelError(f"distributed training failed: {exc}") from exc
    files = paths_for(config.out)
    # The recurrent loop keeps a resumable .last.pt; a trainer without epochs writes only
    # the model file.
    saved = load_checkpoint(files["last"] if files["last"].is_file() else files["best"])
    return saved["history"][-1] if saved["history"] else {}


def _worker(
    index: int, config: TrainConfig, progress: bool, port: int, level: int, threads: int
) -> None:
    """One spawned rank: the environment torchrun would give it, then the shared path."""
    os.environ.update(
        RANK=str(index),
        LOCAL_RANK=str(index),
        WORLD_SIZE=str(config.devices),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    # A spawned child starts with fresh logging; keep the parent's level and format.
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(threads)
    _distributed(config, progress, config.devices)


def _distributed(config: TrainConfig, progress: bool, world: int) -> dict:
    """This process is one rank: join the group (env://), train, leave the group."""
    import torch.distributed as dist

    if config.devices not in (1, world):
        raise ModelError(
            f"train.devices={config.devices} but the process group has {world} ranks; "
            "make --devices match torchrun's --nproc-per-node (or leave it at 1)"
        )
    config.devices = world  # recorded in the checkpoint: resuming needs the same split
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = _rank_device(config.device, local_rank, world)
    if rank != 0:
        # Rank 0 logs for everyone (every trainer's logger is under "kakashi.models");
        # errors still show.
        logging.getLogger("kakashi.models").setLevel(logging.ERROR)
    owns_group = not dist.is_initialized()
    if owns_group:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _run(config, progress, rank=rank, world=world, device=device)
    finally:
        if owns_group:
            dist.destroy_process_group()


def rank_share(plan: list, rank: int, world: int) -> list:
    """Every ``world``-th batch from ``rank`` on, the plan cycled so all ranks get as many.

    Equal counts matter: each optimiser step is a collective all-reduce, and a rank with
    one batch more would wait for the others forever.
    """
    total = math.ceil(len(plan) / world) * world
    return [plan[i % len(plan)] for i in range(total)][rank::world]


def _run(config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device) -> dict:
    """The model's own training loop (its registry trainer's ``run``), then :func:`finish`."""
    trainer = registry.trainer(config.model)
    trained = trainer.run(config, progress, rank=rank, world=world, device=device)
    return finish(config, trained, rank, world)
