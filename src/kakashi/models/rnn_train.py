"""Training of the seed RNN, and what the C-RNN-GAN's trainer shares with it.

:func:`run` is the seed RNN's flat loop; ``crnngan_train.run`` is the GAN's. Both go
through a :class:`Loop`: windows of normalised audio and motion, the shuffled batches (each
rank its share), the optimiser step, the per-epoch row with the val figures
(:func:`evaluate`), early stopping on the val loss, and the checkpoint files of
:mod:`kakashi.models.checkpoint` every epoch (``.last.pt`` to resume). Started by
:func:`kakashi.models.distributed.train`, as one process or as one rank of a
DistributedDataParallel group.

Determinism: each epoch reseeds torch from ``seed + epoch`` and shuffles with its own
generator, so a run resumed from ``.last.pt`` gives the same weights as one that never
stopped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator

import numpy as np
import torch

from kakashi.models import rnn
from kakashi.models.checkpoint import (
    load_checkpoint,
    new_payload,
    paths_for,
    save_checkpoint,
    write_history,
)
from kakashi.models.config import TrainConfig
from kakashi.models.data import Sequence, Windows, load_training_data, make_windows
from kakashi.models.distributed import RANK_SEED, Trained, rank_share
from kakashi.models.rnn import DanceRNN, masked_loss
from kakashi.models.stats import MOTION_DIM, POSE_DIM, Stats
from kakashi.models.styles import style_weights, train_labels

log = logging.getLogger("kakashi.models.train")

# The seed RNN's output settings (``train.rnn``), kept in ``arch``; the values here are
# what a checkpoint from before these settings means (a plain MSE output), not defaults.
OUTPUT_KEYS = {"mixtures": 0, "temperature": 1.0, "sample_smooth": 0.0, "smooth": 0.0}


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
    """Shuffled (set index, window indices) batches; one set per distinct window length.
    Windows cut with styles are drawn style-balanced (as many draws as windows, with
    replacement, each style as often as any other); without, each window once."""
    out = []
    for k, windows in enumerate(sets):
        weights = None if windows.style is None else style_weights(windows.style)
        if weights is not None:
            order = torch.multinomial(weights, len(windows), True, generator=generator).numpy()
        else:
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


def recurrent_arch(
    config: TrainConfig, stats: Stats, noise_dim: int, styles: list[str] | tuple = ()
) -> dict:
    """The ``arch`` of a DanceRNN trained as ``config`` says (``noise_dim`` > 0: a GAN's).
    With ``styles`` the network reads one more input column per style beside the audio
    features (:func:`kakashi.models.data.style_columns`)."""
    return {
        "kind": config.model,
        "audio_dim": len(stats.feature_names) + len(styles),
        "styles": list(styles),
        "motion_dim": MOTION_DIM,
        "hidden": config.hidden,
        "layers": config.layers,
        "dropout": config.dropout,
        "noise_dim": noise_dim,
        **{key: getattr(config, key) for key in OUTPUT_KEYS},
    }


def _same_run(saved: dict, config: TrainConfig) -> bool:
    """A .last.pt belongs to this run if every setting but the run length matches."""
    # The output's generation settings do not change training either.
    ignore = {"epochs", "max_steps", "patience", "device", *OUTPUT_KEYS} - {"mixtures"}
    now = config.asdict()
    return all(saved.get(k) == v for k, v in now.items() if k not in ignore)


def optimise(optimizer, loss, module, clip: float) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    optimizer.step()


def _state(module: torch.nn.Module) -> dict:
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


class Loop:
    """What the recurrent models' loops share: the windows, the networks on ``device``
    (``forward`` / ``d_forward``: wrapped for DDP with several ranks), their optimisers,
    resuming from ``.last.pt``, the batches of an epoch, and the epoch's bookkeeping.

    ``disc``: the C-RNN-GAN's discriminator, or None (the seed RNN).
    """

    def __init__(
        self,
        config: TrainConfig,
        stats: Stats,
        data: tuple[list[Sequence], list[Sequence]],
        arch: dict,
        model: DanceRNN,
        disc: torch.nn.Module | None,
        rank: int,
        world: int,
        device: torch.device,
        start: str | None = None,
    ) -> None:
        self.config, self.stats, self.arch = config, stats, arch
        # What the weights start from (the C-RNN-GAN: its seed RNN's digest), kept in the
        # resume state: a .last.pt that started from other weights is not resumed.
        self.start = start
        self.rank, self.world, self.device = rank, world, device
        self.files = paths_for(config.out)
        window, stride = _windows_for(config, stats.fps)
        train_seqs, val_seqs = data
        styles = arch.get("styles") or ()
        self.train_sets = make_windows(train_seqs, stats, window, stride, styles)
        self.val_sets = (
            make_windows(val_seqs, stats, window, window or 1, styles) if val_seqs else []
        )
        self.model, self.disc = model.to(device), disc
        optim_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
        extra = {"momentum": 0.9} if config.optimizer == "sgd" else {}
        self.optimizer = optim_class(model.parameters(), lr=config.lr, **extra)
        self.d_optimizer = None
        if disc is not None:
            disc.to(device)
            self.d_optimizer = torch.optim.Adam(
                disc.parameters(), lr=config.d_lr, betas=(0.5, 0.999)
            )
        self.step, self.best, self.bad_epochs, self.history = 0, math.inf, 0, []
        self.start_epoch = self._resume()
        self._log_sizes()
        # The modules the loop calls: DDP wrappers all-reduce gradients in backward. Resume
        # state is loaded into the plain modules first, and checkpoints are saved from them,
        # so no ``module.`` prefixes.
        self.forward, self.d_forward = model, disc
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.forward = DistributedDataParallel(model, device_ids=ids)
            if disc is not None:
                self.d_forward = DistributedDataParallel(disc, device_ids=ids)
        model.train()
        self.stop = bool(config.max_steps and self.step >= config.max_steps)

    def _resume(self) -> int:
        if not self.files["last"].is_file():
            return 0
        saved = load_checkpoint(self.files["last"])
        generation = set(OUTPUT_KEYS) - {"mixtures"}  # sampling settings: not the network
        same_net = all(
            saved["arch"].get(key) == value
            for key, value in self.arch.items()
            if key not in generation
        )
        if not (_same_run(saved["config"], self.config) and same_net):
            # (another network: e.g. a C-RNN-GAN whose seed RNN now reads style columns)
            log.warning("%s was trained with other settings: starting afresh", self.files["last"])
            return 0
        # The statistics are a function of the train split: other ones mean other data (a
        # re-split sheet resumed a finished run on the old split and trained nothing).
        if not Stats.from_dict(saved["stats"]).same_data(self.stats):
            log.warning("%s was trained on other data: starting afresh", self.files["last"])
            return 0
        # (the m2d run resumed a C-RNN-GAN of the old seed RNN after the RNN was retrained
        # with the same settings: same arch, same data, other starting weights)
        if saved.get("start") != self.start:
            log.warning("%s started from other weights: starting afresh", self.files["last"])
            return 0
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.disc is not None:
            self.disc.load_state_dict(saved["discriminator"])
            self.d_optimizer.load_state_dict(saved["d_optimizer"])
        self.step, self.best = saved["step"], saved["best_val"]
        self.bad_epochs, self.history = saved["bad_epochs"], saved["history"]
        log.info("resuming %s at epoch %d, step %d", self.files["last"], saved["epoch"], self.step)
        return saved["epoch"]

    def _log_sizes(self) -> None:
        n_frames = sum(len(w) * (w.audio.shape[1] - 1) for w in self.train_sets)
        log.info(
            "%s: %d train windows (%d frames incl. mirrors), %d val windows, %d parameters, %s",
            self.config.model,
            sum(len(w) for w in self.train_sets),
            n_frames,
            sum(len(w) for w in self.val_sets),
            sum(p.numel() for p in self.model.parameters()),
            self.device,
        )

    def epochs(self) -> Iterator[int]:
        """The epochs still to run, until max_steps or early stopping (patience)."""
        config = self.config
        for epoch in range(self.start_epoch, config.epochs):
            if self.stop or (
                config.patience and self.val_sets and self.bad_epochs >= config.patience
            ):
                return
            yield epoch

    def batches(self, epoch: int, progress: bool) -> Iterator[tuple[torch.Tensor, ...]]:
        """(audio, motion, mask) of this rank's batches of ``epoch``; seeds ``self.shuffle``
        (the batch plan's generator) and ``self.rng`` (noise, sampling) first. The caller
        adds each batch's losses with :meth:`record`."""
        from tqdm import tqdm

        config, rank = self.config, self.rank
        # Dropout and noise differ per rank (each sees other windows); rank 0's seeds are
        # the single-process ones. Resumable runs stay identical.
        torch.manual_seed(config.seed + epoch + RANK_SEED * rank)
        self.shuffle = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        self.rng = torch.Generator(device=self.device).manual_seed(
            config.seed * 7919 + epoch + RANK_SEED * rank
        )
        self.sums: dict[str, float] = {}
        self.count, self.frames, self.started = 0, 0, time.perf_counter()
        plan = batches(self.train_sets, config.batch_size, self.shuffle)
        if self.world > 1:
            # Same shuffle seed on every rank (like DistributedSampler.set_epoch): one plan,
            # and each rank takes its own disjoint share of it.
            plan = rank_share(plan, rank, self.world)
        for k, index in tqdm(
            plan,
            desc=f"{config.model} epoch {epoch + 1}/{config.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        ):
            audio, motion, mask = to_tensors(self.train_sets[k], index, self.device)
            yield audio, motion, mask
            self.count += 1
            self.frames += audio.shape[0] * (audio.shape[1] - 1)
            self.step += 1
            if config.max_steps and self.step >= config.max_steps:
                self.stop = True
                return

    def record(self, **losses: float) -> None:
        """A batch's losses, averaged into the epoch's row."""
        for key, value in losses.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def end_epoch(self, epoch: int, teacher: float) -> None:
        """The epoch's row (train losses over all ranks, rank 0's val figures), best and
        patience bookkeeping, and the checkpoint files (rank 0)."""
        sums, count, frames = self.sums, self.count, self.frames
        if self.world > 1:
            import torch.distributed as dist

            # Train losses and frames over all ranks; every rank has the same keys.
            keys = sorted(sums)
            total = torch.tensor([sums[k] for k in keys] + [count, frames], dtype=torch.float64)
            total = total.to(self.device)
            dist.all_reduce(total)
            sums = dict(zip(keys, total[: len(keys)].tolist(), strict=True))
            count, frames = int(total[-2]), int(total[-1])
        seconds = time.perf_counter() - self.started
        row = {"epoch": epoch + 1, "step": self.step, "teacher_prob": teacher}
        row.update({k: v / max(count, 1) for k, v in sums.items()})
        if self.rank == 0:  # the weights are the same on every rank: one evaluation is enough
            row.update(evaluate(self.model, self.val_sets, self.stats, self.config, self.device))
        row.update({"seconds": seconds, "frames_per_s": frames / max(seconds, 1e-9)})
        if self.world > 1:
            import torch.distributed as dist

            # Rank 0's row (val loss included) to all: the best/patience bookkeeping below,
            # hence the early-stopping decision, is then the same on every rank.
            shared = [row]
            dist.broadcast_object_list(shared, src=0)
            row = shared[0]
        self.history.append(row)
        score = row.get("val_loss", row["train_loss"])
        if score < self.best:
            self.best, self.bad_epochs = score, 0
            if self.rank == 0:
                save_checkpoint(self.files["best"], self._payload(epoch + 1))
        else:
            self.bad_epochs += 1
        if self.rank == 0:
            save_checkpoint(self.files["last"], self._payload(epoch + 1))
            write_history(self.history, self.files["csv"], self.files["png"])
        log.info(
            "epoch %d: %s",
            epoch + 1,
            ", ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch",)),
        )

    def _resume_state(self, epoch: int) -> dict:
        extra = {
            "optimizer": self.optimizer.state_dict(),
            "epoch": epoch,
            "step": self.step,
            "best_val": self.best,
            "bad_epochs": self.bad_epochs,
        }
        if self.start is not None:
            extra["start"] = self.start
        if self.disc is not None:
            extra["discriminator"] = _state(self.disc)
            extra["d_optimizer"] = self.d_optimizer.state_dict()
        return extra

    def _payload(self, epoch: int) -> dict:
        return new_payload(
            self.config,
            self.arch,
            self.stats,
            _state(self.model),
            self.history,
            **self._resume_state(epoch),
        )

    def trained(self) -> Trained:
        """What the loop trained; the best checkpoint is already written (every epoch)."""
        others = {} if self.disc is None else {"discriminator": _state(self.disc)}
        return Trained(
            self.arch,
            self.stats,
            _state(self.model),
            self.history,
            extra=self._resume_state(len(self.history)),
            others=others,
            saved=True,
        )


def run(
    config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device
) -> Trained:
    """The seed RNN's loop; with ``world > 1`` this process is rank ``rank`` of a DDP group."""
    torch.manual_seed(config.seed)  # same on every rank: identical initial weights
    train_seqs, val_seqs, stats = load_training_data(config.shards, config.mirror)
    styles = train_labels(train_seqs) if config.styles else []
    arch = recurrent_arch(config, stats, noise_dim=0, styles=styles)
    loop = Loop(
        config, stats, (train_seqs, val_seqs), arch, rnn.build(arch), None, rank, world, device
    )
    model = loop.model
    for epoch in loop.epochs():
        # Auto-conditioning replaces scheduled sampling's random choice (tf is then unused).
        tf = teacher_prob(config, epoch) if not config.autocond_free else 0.0
        for audio, motion, mask in loop.batches(epoch, progress):
            feed_truth = None
            if config.autocond_free:
                feed_truth = rnn.autocond_schedule(
                    audio.shape[1] - 1, config.autocond_true, config.autocond_free, loop.shuffle
                )
            pred = loop.forward(
                audio,
                motion,
                teacher_prob=tf,
                input_noise=config.input_noise,
                generator=loop.rng,
                feed_truth=feed_truth,
            )
            loss = frame_loss(model, pred, motion[:, 1:], mask[:, 1:], config.loss)
            optimise(loop.optimizer, loss, model, config.grad_clip)
            loop.record(train_loss=loss.item())
        loop.end_epoch(epoch, tf)
    return loop.trained()
