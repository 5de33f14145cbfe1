"""One flat training loop for the seed RNN and the C-RNN-GAN, and their checkpoints.

Files written for ``--out results/models/rnn.pt``:

- ``rnn.pt``: the best epoch by validation loss (the last epoch if there is no val split);
- ``rnn.last.pt``: the state after the latest epoch (weights, optimisers, history), for
  resuming; written every epoch;
- ``rnn.csv`` (one row of losses per epoch) and ``rnn.png`` (their plot).

A checkpoint is a dict of plain tensors, numbers, strings and lists, so
``torch.load(path, weights_only=True)`` reads it: no pickled classes. Writes are atomic.

Determinism: each epoch reseeds torch from ``seed + epoch`` and shuffles with its own
generator, so a run resumed from ``.last.pt`` gives the same weights as one that never
stopped.

Several devices (``devices > 1``): N processes with DistributedDataParallel, NCCL on GPUs
(one per rank) and gloo on CPU. Started by ``torchrun --nproc-per-node N -m kakashi train``
or, without torchrun, ``kakashi train --devices N`` spawns the N workers itself. All ranks
build the same shuffled batch plan and take every N-th batch, so they see disjoint windows;
rank 0 alone evaluates and writes files, and broadcasts each epoch's row so every rank
takes the same early-stopping decision.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import socket
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kakashi import __version__
from kakashi.atomic import atomic_output
from kakashi.models import CheckpointError, ModelError
from kakashi.models.crnngan import (
    Discriminator,
    discriminator_loss,
    fake_motion,
    generator_loss,
    init_generator_from_rnn,
)
from kakashi.models.data import (
    MOTION_DIM,
    POSE_DIM,
    Stats,
    Windows,
    load_training_data,
    make_windows,
)
from kakashi.models.rnn import DanceRNN

log = logging.getLogger("kakashi.models.train")

CHECKPOINT_FORMAT = "kakashi-dance-model"
MODES = ("per_frame", "seq2seq_short", "seq2seq_long")


@dataclass
class TrainConfig:
    """Every training setting; stored in the checkpoint. YAML section ``train`` (see docs)."""

    model: str = "rnn"  # rnn | crnngan
    shards: str = "results/shards"
    out: str = "results/models/rnn.pt"
    init: str = ""  # crnngan: the seed RNN checkpoint its generator starts from
    mode: str = "seq2seq_short"  # per_frame | seq2seq_short | seq2seq_long
    window_s: float = 4.0  # seq2seq_short window length
    stride_s: float = 1.0  # seq2seq_short window hop
    epochs: int = 30
    max_steps: int = 0  # stop after this many optimiser steps in total (0: no limit)
    batch_size: int = 16
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | sgd
    loss: str = "mse"  # mse | huber
    hidden: int = 128
    layers: int = 2
    dropout: float = 0.1
    grad_clip: float = 1.0  # max gradient norm (0: off)
    teacher_min: float = 0.5  # scheduled sampling: teacher-forcing probability at the end
    input_noise: float = 0.05  # std of noise on fed-back motion (normalised units)
    mirror: bool = True  # add left-right mirrored copies of the train split
    patience: int = 10  # early stopping: epochs without a better val loss (0: off)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    devices: int = 1  # data-parallel processes (DistributedDataParallel); 1: no DDP
    hop_length: int = 512  # audio hop the shards' features were computed with
    # C-RNN-GAN only
    noise_dim: int = 8
    d_hidden: int = 64
    d_lr: float = 2e-4
    adv_weight: float = 0.1
    recon_weight: float = 1.0

    def validate(self) -> TrainConfig:
        checks = [
            (self.model in ("rnn", "crnngan"), f"model must be rnn or crnngan, got {self.model!r}"),
            (self.mode in MODES, f"mode must be one of {', '.join(MODES)}, got {self.mode!r}"),
            (self.optimizer in ("adam", "sgd"), f"optimizer must be adam|sgd: {self.optimizer!r}"),
            (self.loss in ("mse", "huber"), f"loss must be mse or huber, got {self.loss!r}"),
            (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be >= 1"),
            (self.hidden >= 1 and self.layers >= 1, "hidden and layers must be >= 1"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (0.0 <= self.teacher_min <= 1.0, f"teacher_min must be in [0, 1]: {self.teacher_min}"),
            (self.window_s > 0 and self.stride_s > 0, "window_s and stride_s must be positive"),
            (self.device in ("auto", "cpu", "cuda"), f"device: auto|cpu|cuda, not {self.device!r}"),
            (self.devices >= 1, f"devices must be >= 1, got {self.devices}"),
            (self.model != "crnngan" or bool(self.init), "crnngan needs --init RNN_CHECKPOINT"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ModelError(f"training config: {message}")
        return self


def config_from(yaml_path: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults < YAML ``train`` section < ``train.<model>`` subsection < explicit overrides.

    The YAML may be a whole workflow config (its ``train:`` mapping is used) or a bare
    mapping of TrainConfig keys. Unknown keys are an error, so a typo never goes unnoticed.
    """
    import yaml

    values: dict[str, Any] = {}
    known = {f.name for f in fields(TrainConfig)}
    if yaml_path:
        try:
            data = yaml.safe_load(Path(yaml_path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ModelError(f"cannot read training config {yaml_path}: {exc}") from exc
        section = data.get("train", data) if isinstance(data, dict) else None
        if not isinstance(section, dict):
            raise ModelError(f"{yaml_path}: expected a mapping (a 'train:' section)")
        model = overrides.get("model") or section.get("model", "rnn")
        nested = {k: v for k, v in section.items() if isinstance(v, dict)}
        values.update({k: v for k, v in section.items() if not isinstance(v, dict)})
        values.update(nested.get(model, {}))
        unknown = set(values) - known
        if unknown or set(nested) - {"rnn", "crnngan"}:
            bad = sorted(unknown | (set(nested) - {"rnn", "crnngan"}))
            raise ModelError(
                f"{yaml_path}: unknown training key(s) {', '.join(bad)}; "
                f"known: {', '.join(sorted(known))}"
            )
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = TrainConfig(**values)
    except TypeError as exc:
        raise ModelError(f"training config: {exc}") from exc
    # YAML may write 1e-3 as a string or 4 as an int; coerce to the declared types.
    for f in fields(TrainConfig):
        kind = type(getattr(TrainConfig(), f.name))
        try:
            value = getattr(config, f.name)
            if kind is bool and isinstance(value, str):
                value = value.lower() in ("1", "true", "yes", "on")
            setattr(config, f.name, kind(value))
        except (TypeError, ValueError) as exc:
            raise ModelError(
                f"training config: {f.name}={getattr(config, f.name)!r}: {exc}"
            ) from exc
    return config.validate()


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ModelError("train.device is cuda but no CUDA GPU is available; use auto or cpu")
    return torch.device(name)


def paths_for(out: str | Path) -> dict[str, Path]:
    """The files a run writes beside ``out`` (rnn.pt -> rnn.last.pt, rnn.csv, rnn.png)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".pt" else out
    return {
        "best": out,
        "last": Path(f"{stem}.last.pt"),
        "csv": Path(f"{stem}.csv"),
        "png": Path(f"{stem}.png"),
    }


# ---------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save to a hidden temporary file, then rename: never a half-written checkpoint."""
    with atomic_output(path) as partial:
        torch.save(payload, partial)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely (``weights_only``); errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; train one with `kakashi train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip, unpickling and truncation errors
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); "
            "the file is damaged or not a Kakashi checkpoint, retrain with `kakashi train`"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a Kakashi dance-model checkpoint; train one with `kakashi train`"
        )
    return payload


def build_models(arch: dict) -> tuple[DanceRNN, Discriminator | None]:
    model = DanceRNN(
        arch["audio_dim"],
        arch["motion_dim"],
        arch["hidden"],
        arch["layers"],
        arch["dropout"],
        arch["noise_dim"],
    )
    disc = None
    if arch["kind"] == "crnngan":
        disc = Discriminator(arch["audio_dim"], arch["motion_dim"], arch["d_hidden"])
    return model, disc


def model_from_checkpoint(path: str | Path) -> tuple[DanceRNN, Stats, dict]:
    """(model in eval mode, normalisation stats, the whole checkpoint dict)."""
    payload = load_checkpoint(path)
    try:
        model, _ = build_models(payload["arch"])
        model.load_state_dict(payload["model"])
        stats = Stats.from_dict(payload["stats"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} is incomplete or mismatched ({exc}); retrain with `kakashi train`"
        ) from exc
    return model.eval(), stats, payload


# ---------------------------------------------------------------- the loop


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str
) -> torch.Tensor:
    if kind == "huber":
        error = F.smooth_l1_loss(pred, target, reduction="none")
    else:
        error = (pred - target) ** 2
    weights = mask[..., None]
    return (error * weights).sum() / (weights.sum() * pred.shape[-1]).clamp(min=1)


def teacher_prob(config: TrainConfig, epoch: int) -> float:
    """Linear decay from 1 (first epoch) to teacher_min (last epoch)."""
    if config.epochs <= 1:
        return 1.0
    return 1.0 - (1.0 - config.teacher_min) * epoch / (config.epochs - 1)


def batches(
    sets: list[Windows], size: int, generator: torch.Generator
) -> list[tuple[int, np.ndarray]]:
    """Shuffled (set index, window indices) batches; one set per distinct window length."""
    out = []
    for k, windows in enumerate(sets):
        order = torch.randperm(len(windows), generator=generator).numpy()
        out += [(k, order[i : i + size]) for i in range(0, len(order), size)]
    shuffle = torch.randperm(len(out), generator=generator).numpy()
    return [out[i] for i in shuffle]


def to_tensors(
    windows: Windows, index: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(windows.audio[index]).to(device),
        torch.from_numpy(windows.motion[index]).to(device),
        torch.from_numpy(windows.mask[index]).to(device),
    )


@torch.no_grad()
def evaluate(
    model: DanceRNN, sets: list[Windows], stats: Stats, config: TrainConfig, device: torch.device
) -> dict[str, float]:
    """Teacher-forced val loss, free-running val MSE, and velocity-std ratio (collapse check).

    ``vel_ratio`` = per-joint std of frame-to-frame joint velocity in free-running
    generation / the same in the real windows, averaged over joints: near 0 means a frozen
    pose, near 1 means as lively as the real dance.
    """
    model.eval()
    rng = torch.Generator(device=device).manual_seed(config.seed)
    losses, free, gen_std, real_std = [], [], [], []
    scale = torch.from_numpy(stats.motion_std[:POSE_DIM]).to(device)
    for windows in sets:
        for start in range(0, len(windows), 64):
            audio, motion, mask = to_tensors(
                windows, np.arange(start, min(start + 64, len(windows))), device
            )
            noise = None
            if model.noise_dim:
                noise = torch.randn(
                    (*audio.shape[:2], model.noise_dim), generator=rng, device=device
                )
            losses.append(
                float(
                    masked_loss(
                        model(audio, motion, noise=noise), motion[:, 1:], mask[:, 1:], config.loss
                    )
                )
            )
            generated = model(audio, motion, teacher_prob=0.0, noise=noise)
            free.append(float(masked_loss(generated, motion[:, 1:], mask[:, 1:], "mse")))
            for seq, bucket in ((generated, gen_std), (motion[:, 1:], real_std)):
                pose = (seq[..., :POSE_DIM] * scale).reshape(*seq.shape[:2], -1, 3)
                if pose.shape[1] > 2:
                    speed = (pose[:, 1:] - pose[:, :-1]).norm(dim=-1)  # (B, T-1, 17)
                    bucket.append(speed.std(dim=1).mean(dim=0))
    model.train()
    if not losses:
        return {}
    result = {"val_loss": float(np.mean(losses)), "val_free_mse": float(np.mean(free))}
    if gen_std:
        real = torch.stack(real_std).mean(0)
        result["vel_ratio"] = float((torch.stack(gen_std).mean(0) / real.clamp(min=1e-6)).mean())
    return result


def _windows_for(config: TrainConfig, fps: float) -> tuple[int | None, int]:
    if config.mode == "per_frame":
        return 1, 1
    if config.mode == "seq2seq_long":
        return None, 1
    return max(1, round(config.window_s * fps)), max(1, round(config.stride_s * fps))


def _same_run(saved: dict, config: TrainConfig) -> bool:
    """A .last.pt belongs to this run if every setting but the run length matches."""
    ignore = {"epochs", "max_steps", "patience", "device"}
    now = asdict(config)
    return all(saved.get(k) == v for k, v in now.items() if k not in ignore)


RANK_SEED = 1_000_033  # per-rank offset of the dropout/noise seeds; rank 0 keeps the plain ones
DUMP_ENV = "KAKASHI_DDP_DUMP"  # test hook: each rank saves its final weights in this folder


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
    config.validate()
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
    saved = load_checkpoint(paths_for(config.out)["last"])
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
        log.setLevel(logging.ERROR)  # rank 0 logs for everyone; errors still show
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


def _rank_share(plan: list, rank: int, world: int) -> list:
    """Every ``world``-th batch from ``rank`` on, the plan cycled so all ranks get as many.

    Equal counts matter: each optimiser step is a collective all-reduce, and a rank with
    one batch more would wait for the others forever.
    """
    total = math.ceil(len(plan) / world) * world
    return [plan[i % len(plan)] for i in range(total)][rank::world]


def _run(config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device) -> dict:
    """The training loop; with ``world > 1`` this process is rank ``rank`` of a DDP group."""
    from tqdm import tqdm

    distributed = world > 1
    if distributed:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
    files = paths_for(config.out)
    torch.manual_seed(config.seed)  # same on every rank: identical initial weights

    train_seqs, val_seqs, stats = load_training_data(config.shards, config.mirror)
    init_state = None
    if config.model == "crnngan":
        # The generator continues the seed RNN, so it must see the data exactly as the
        # RNN did: same normalisation, same architecture.
        rnn = load_checkpoint(config.init)
        if rnn["arch"]["kind"] != "rnn":
            raise ModelError(
                f"--init {config.init} is a {rnn['arch']['kind']} checkpoint; give a seed RNN"
            )
        stats = Stats.from_dict(rnn["stats"])
        for key in ("hidden", "layers", "dropout"):
            setattr(config, key, rnn["arch"][key])
        init_state = rnn["model"]
    if train_seqs[0].feature_names != stats.feature_names:
        raise ModelError(
            f"shards under {config.shards} have other audio features than --init {config.init}"
        )
    window, stride = _windows_for(config, stats.fps)
    train_sets = make_windows(train_seqs, stats, window, stride)
    val_sets = make_windows(val_seqs, stats, window, window or 1) if val_seqs else []
    arch = {
        "kind": config.model,
        "audio_dim": len(stats.feature_names),
        "motion_dim": MOTION_DIM,
        "hidden": config.hidden,
        "layers": config.layers,
        "dropout": config.dropout,
        "noise_dim": config.noise_dim if config.model == "crnngan" else 0,
        "d_hidden": config.d_hidden,
    }
    model, disc = build_models(arch)
    if init_state is not None:
        init_generator_from_rnn(model, init_state)
    model.to(device)
    optim_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
    extra = {"momentum": 0.9} if config.optimizer == "sgd" else {}
    optimizer = optim_class(model.parameters(), lr=config.lr, **extra)
    d_optimizer = None
    if disc is not None:
        disc.to(device)
        d_optimizer = torch.optim.Adam(disc.parameters(), lr=config.d_lr, betas=(0.5, 0.999))

    start_epoch, step, best, bad_epochs, history = 0, 0, math.inf, 0, []
    if files["last"].is_file():
        saved = load_checkpoint(files["last"])
        if _same_run(saved["config"], config):
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            if disc is not None:
                disc.load_state_dict(saved["discriminator"])
                d_optimizer.load_state_dict(saved["d_optimizer"])
            start_epoch, step = saved["epoch"], saved["step"]
            best, bad_epochs, history = saved["best_val"], saved["bad_epochs"], saved["history"]
            log.info("resuming %s at epoch %d, step %d", files["last"], start_epoch, step)
        else:
            log.warning("%s was trained with other settings: starting afresh", files["last"])

    def payload(epoch: int) -> dict:
        out = {
            "format": CHECKPOINT_FORMAT,
            "kakashi_version": __version__,
            "config": asdict(config),
            "arch": arch,
            "stats": stats.to_dict(),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "step": step,
            "best_val": best,
            "bad_epochs": bad_epochs,
            "history": history,
        }
        if disc is not None:
            out["discriminator"] = {k: v.detach().cpu() for k, v in disc.state_dict().items()}
            out["d_optimizer"] = d_optimizer.state_dict()
        return out

    n_frames = sum(len(w) * (w.audio.shape[1] - 1) for w in train_sets)
    log.info(
        "%s: %d train windows (%d frames incl. mirrors), %d val windows, %d parameters, %s",
        config.model,
        sum(len(w) for w in train_sets),
        n_frames,
        sum(len(w) for w in val_sets),
        sum(p.numel() for p in model.parameters()),
        device,
    )
    # The modules the loop calls: DDP wrappers all-reduce gradients in backward. Resume
    # state is loaded into the plain modules first, and checkpoints are saved from them, so
    # no ``module.`` prefixes.
    forward, d_forward = model, disc
    if distributed:
        ids = [device.index] if device.type == "cuda" else None
        forward = DistributedDataParallel(model, device_ids=ids)
        if disc is not None:
            d_forward = DistributedDataParallel(disc, device_ids=ids)
    model.train()
    stop = config.max_steps and step >= config.max_steps
    for epoch in range(start_epoch, config.epochs):
        if stop or (config.patience and val_sets and bad_epochs >= config.patience):
            break
        # Dropout and noise differ per rank (each sees other windows); rank 0's seeds are
        # the single-process ones. Resumable runs stay identical.
        torch.manual_seed(config.seed + epoch + RANK_SEED * rank)
        shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        rng = torch.Generator(device=device).manual_seed(
            config.seed * 7919 + epoch + RANK_SEED * rank
        )
        tf = teacher_prob(config, epoch) if config.model == "rnn" else 0.0
        sums: dict[str, float] = {}
        count, frames, started = 0, 0, time.perf_counter()
        plan = batches(train_sets, config.batch_size, shuffle)
        if distributed:
            # Same shuffle seed on every rank (like DistributedSampler.set_epoch): one plan,
            # and each rank takes its own disjoint share of it.
            plan = _rank_share(plan, rank, world)
        for k, index in tqdm(
            plan,
            desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        ):
            audio, motion, mask = to_tensors(train_sets[k], index, device)
            if disc is None:
                pred = forward(
                    audio, motion, teacher_prob=tf, input_noise=config.input_noise, generator=rng
                )
                loss = masked_loss(pred, motion[:, 1:], mask[:, 1:], config.loss)
                _optimise(optimizer, loss, model, config.grad_clip)
                parts = {"train_loss": loss.item()}
            else:
                fake = fake_motion(forward, audio, motion, rng)
                d_loss = discriminator_loss(d_forward, audio, motion, fake)
                _optimise(d_optimizer, d_loss, disc, config.grad_clip)
                # The plain discriminator: its gradients from this loss are never used (the
                # next D step clears them), so all-reducing them would be wasted traffic.
                g_loss, recon = generator_loss(
                    disc, audio, motion, mask, fake, config.adv_weight, config.recon_weight
                )
                _optimise(optimizer, g_loss, model, config.grad_clip)
                parts = {
                    "d_loss": d_loss.item(),
                    "g_loss": g_loss.item(),
                    "train_loss": recon.item(),
                }
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            frames += audio.shape[0] * (audio.shape[1] - 1)
            step += 1
            if config.max_steps and step >= config.max_steps:
                stop = True
                break
        if distributed:
            # Train losses and frames over all ranks; every rank has the same keys.
            keys = sorted(sums)
            total = torch.tensor([sums[k] for k in keys] + [count, frames], dtype=torch.float64)
            total = total.to(device)
            dist.all_reduce(total)
            sums = dict(zip(keys, total[: len(keys)].tolist(), strict=True))
            count, frames = int(total[-2]), int(total[-1])
        seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "step": step, "teacher_prob": tf}
        row.update({k: v / max(count, 1) for k, v in sums.items()})
        if rank == 0:  # the weights are the same on every rank: one evaluation is enough
            row.update(evaluate(model, val_sets, stats, config, device))
        row.update({"seconds": seconds, "frames_per_s": frames / max(seconds, 1e-9)})
        if distributed:
            # Rank 0's row (val loss included) to all: the best/patience bookkeeping below,
            # hence the early-stopping decision, is then the same on every rank.
            shared = [row]
            dist.broadcast_object_list(shared, src=0)
            row = shared[0]
        history.append(row)
        score = row.get("val_loss", row["train_loss"])
        if score < best:
            best, bad_epochs = score, 0
            if rank == 0:
                save_checkpoint(files["best"], payload(epoch + 1))
        else:
            bad_epochs += 1
        if rank == 0:
            save_checkpoint(files["last"], payload(epoch + 1))
            write_history(history, files["csv"], files["png"])
        log.info(
            "epoch %d: %s",
            epoch + 1,
            ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",)),
        )
    if rank == 0 and not files["best"].is_file():  # e.g. resumed a run whose best was deleted
        save_checkpoint(files["best"], payload(len(history)))
    if distributed:
        if os.environ.get(DUMP_ENV):
            # Test hook: each rank's final weights, to check DDP kept them identical.
            dump = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
            if disc is not None:
                dump["discriminator"] = {k: v.detach().cpu() for k, v in disc.state_dict().items()}
            save_checkpoint(Path(os.environ[DUMP_ENV]) / f"rank{rank}.pt", dump)
        dist.barrier()  # every rank returns only once rank 0's files are complete
    return history[-1] if history else {}


def _optimise(optimizer, loss, module, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()


def write_history(history: list[dict], csv_path: Path, png_path: Path) -> None:
    """The per-epoch CSV and a loss plot (matplotlib Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    with atomic_output(csv_path) as partial, open(partial, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)

    epochs = [row["epoch"] for row in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in ("train_loss", "val_loss", "val_free_mse", "d_loss", "g_loss", "vel_ratio"):
        if any(key in row for row in history):
            ax.plot(epochs, [row.get(key, np.nan) for row in history], marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    ax.set_title(csv_path.stem)
    fig.tight_layout()
    try:
        with atomic_output(png_path) as partial_png:
            fig.savefig(partial_png, dpi=100)
    finally:
        plt.close(fig)
