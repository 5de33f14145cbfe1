"""The training loop of the recurrent models: the seed RNN and the C-RNN-GAN.

One flat loop (:func:`run`) for both: windows of normalised audio and motion, Adam, the
checkpoint files of :mod:`kakashi.models.checkpoint` every epoch, early stopping on the
val loss. Started by :func:`kakashi.models.distributed.train`, as one process or as one
rank of a DistributedDataParallel group.

Determinism: each epoch reseeds torch from ``seed + epoch`` and shuffles with its own
generator, so a run resumed from ``.last.pt`` gives the same weights as one that never
stopped.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from kakashi.errors import ModelError
from kakashi.models import rnn
from kakashi.models.checkpoint import (
    load_checkpoint,
    new_payload,
    paths_for,
    save_checkpoint,
    write_history,
)
from kakashi.models.config import TrainConfig
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
from kakashi.models.distributed import DUMP_ENV, RANK_SEED, rank_share
from kakashi.models.rnn import DanceRNN
from kakashi.shards import check_audio_settings

log = logging.getLogger("kakashi.models.train")

# The seed RNN's output settings (``train.rnn``), kept in ``arch``; the values here are
# what a checkpoint from before these settings means (a plain MSE output), not defaults.
OUTPUT_KEYS = {"mixtures": 0, "temperature": 1.0, "sample_smooth": 0.0, "smooth": 0.0}


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str
) -> torch.Tensor:
    if kind == "huber":
        error = F.smooth_l1_loss(pred, target, reduction="none")
    else:
        error = (pred - target) ** 2
    weights = mask[..., None]
    return (error * weights).sum() / (weights.sum() * pred.shape[-1]).clamp(min=1)


def frame_loss(
    model: DanceRNN, out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str
) -> torch.Tensor:
    """The training loss of a window batch: ``kind`` (mse/huber) on the motion, or with a
    mixture output its negative log-likelihood per dimension, over the masked frames."""
    if not model.mixtures:
        return masked_loss(out, target, mask, kind)
    return rnn.masked_mixture_nll(out, target, mask, model.mixtures)


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
                    frame_loss(
                        model, model(audio, motion, noise=noise), motion[:, 1:], mask[:, 1:],
                        config.loss,
                    )
                )
            )  # fmt: skip
            _, generated = model(
                audio,
                motion,
                teacher_prob=0.0,
                noise=noise,
                generator=rng if model.mixtures else None,
                samples=True,
            )
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


def init_checkpoint(config: TrainConfig) -> Path:
    """The checkpoint a model starts from: ``init`` as a path, or a model name, which means
    that model's checkpoint beside ``out`` (``init: rnn`` -> ``models/rnn.pt``)."""
    path = Path(config.init)
    if not path.is_file() and "/" not in config.init and not path.suffix:
        path = Path(config.out).parent / f"{config.init}.pt"
    return path


def _same_run(saved: dict, config: TrainConfig) -> bool:
    """A .last.pt belongs to this run if every setting but the run length matches."""
    # The output's generation settings do not change training either.
    ignore = {"epochs", "max_steps", "patience", "device", *OUTPUT_KEYS} - {"mixtures"}
    now = config.asdict()
    return all(saved.get(k) == v for k, v in now.items() if k not in ignore)


def run(config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device) -> dict:
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
        # RNN did: same normalisation, same architecture, same loss.
        init_path = init_checkpoint(config)
        seed_rnn = load_checkpoint(init_path)
        if seed_rnn["arch"]["kind"] != "rnn":
            raise ModelError(
                f"--init {init_path} is a {seed_rnn['arch']['kind']} checkpoint; give a seed RNN"
            )
        stats = Stats.from_dict(seed_rnn["stats"])
        for key in ("hidden", "layers", "dropout", "loss"):
            setattr(config, key, seed_rnn["config"][key])
        # The output head and its sampling (older seed RNNs: plain MSE output).
        for key, old in OUTPUT_KEYS.items():
            setattr(config, key, seed_rnn["arch"].get(key, old))
        init_state = seed_rnn["model"]
        check_audio_settings(
            {
                "fps": train_seqs[0].fps,
                "hop_length": train_seqs[0].hop_length,
                "feature_names": train_seqs[0].feature_names,
            },
            stats.audio_settings(),
            f"the shards under {config.shards}",
            f"--init {init_path}",
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
        **{key: getattr(config, key) for key in OUTPUT_KEYS},
    }
    model = rnn.build(arch)
    disc = (
        Discriminator(arch["audio_dim"], MOTION_DIM, config.d_hidden)
        if arch["kind"] == "crnngan"
        else None
    )
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
        out = new_payload(
            config,
            arch,
            stats,
            {k: v.detach().cpu() for k, v in model.state_dict().items()},
            history,
            optimizer=optimizer.state_dict(),
            epoch=epoch,
            step=step,
            best_val=best,
            bad_epochs=bad_epochs,
        )
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
        # Auto-conditioning replaces scheduled sampling's random choice (tf is then unused).
        tf = (
            teacher_prob(config, epoch)
            if config.model == "rnn" and not config.autocond_free
            else 0.0
        )
        sums: dict[str, float] = {}
        count, frames, started = 0, 0, time.perf_counter()
        plan = batches(train_sets, config.batch_size, shuffle)
        if distributed:
            # Same shuffle seed on every rank (like DistributedSampler.set_epoch): one plan,
            # and each rank takes its own disjoint share of it.
            plan = rank_share(plan, rank, world)
        for k, index in tqdm(
            plan,
            desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        ):
            audio, motion, mask = to_tensors(train_sets[k], index, device)
            if disc is None:
                feed_truth = None
                if config.autocond_free:
                    feed_truth = rnn.autocond_schedule(
                        audio.shape[1] - 1, config.autocond_true, config.autocond_free, shuffle
                    )
                pred = forward(
                    audio,
                    motion,
                    teacher_prob=tf,
                    input_noise=config.input_noise,
                    generator=rng,
                    feed_truth=feed_truth,
                )
                loss = frame_loss(model, pred, motion[:, 1:], mask[:, 1:], config.loss)
                _optimise(optimizer, loss, model, config.grad_clip)
                parts = {"train_loss": loss.item()}
            else:
                fake, out = fake_motion(forward, audio, motion, rng)
                d_loss = discriminator_loss(d_forward, audio, motion, fake)
                _optimise(d_optimizer, d_loss, disc, config.grad_clip)
                # The plain discriminator: its gradients from this loss are never used (the
                # next D step clears them), so all-reducing them would be wasted traffic.
                g_loss, recon = generator_loss(
                    disc, audio, motion, mask, fake, config.adv_weight, config.recon_weight,
                    out, model.mixtures,
                )  # fmt: skip
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
