"""Training of the C-RNN-GAN (see ``crnngan``): one flat loop, started from a seed RNN.

Each batch: a free-running generator pass, a discriminator step on real vs generated
windows, then a generator step (feature matching + adversarial + reconstruction terms).
Windows, batches, evaluation and checkpoints are the seed RNN's
(:class:`kakashi.models.rnn_train.Loop`), so the two are compared on the same footing.
"""

from __future__ import annotations

import hashlib

import torch

from kakashi.errors import ModelError
from kakashi.models import rnn
from kakashi.models.checkpoint import load_checkpoint
from kakashi.models.config import TrainConfig, init_path
from kakashi.models.crnngan import (
    Discriminator,
    discriminator_loss,
    fake_motion,
    generator_loss,
    init_generator_from_rnn,
)
from kakashi.models.data import Sequence, load_training_data
from kakashi.models.distributed import Trained
from kakashi.models.rnn_train import OUTPUT_KEYS, Loop, optimise, recurrent_arch
from kakashi.models.stats import MOTION_DIM, Stats
from kakashi.shards import check_audio_settings


def seed_rnn(config: TrainConfig, train: list[Sequence]) -> tuple[dict, Stats, list[str]]:
    """The seed RNN's weights, statistics and styles (``init``); its architecture, loss and output
    settings go into ``config``. The generator continues the seed RNN, so it must see the
    data exactly as the RNN did: same normalisation, same architecture, same loss."""
    path = init_path(config.init, config.out)
    saved = load_checkpoint(path)
    if saved["arch"]["kind"] != "rnn":
        raise ModelError(f"--init {path} is a {saved['arch']['kind']} checkpoint; give a seed RNN")
    stats = Stats.from_dict(saved["stats"])
    for key in ("hidden", "layers", "dropout", "loss"):
        setattr(config, key, saved["config"][key])
    # The output head and its sampling (older seed RNNs: plain MSE output).
    for key, old in OUTPUT_KEYS.items():
        setattr(config, key, saved["arch"].get(key, old))
    check_audio_settings(
        {
            "fps": train[0].fps,
            "hop_length": train[0].hop_length,
            "feature_names": train[0].feature_names,
        },
        stats.audio_settings(),
        f"the shards under {config.shards}",
        f"--init {path}",
    )
    return saved["model"], stats, list(saved["arch"].get("styles") or [])


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict's names, shapes and values (which seed RNN a run started from)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = state[name].detach().cpu().contiguous()
        digest.update(f"{name}{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


def run(
    config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device
) -> Trained:
    """The C-RNN-GAN's loop; with ``world > 1`` this process is rank ``rank`` of a DDP group."""
    torch.manual_seed(config.seed)  # same on every rank: identical initial weights
    train_seqs, val_seqs, _ = load_training_data(config.shards, config.mirror)
    init_state, stats, styles = seed_rnn(config, train_seqs)
    arch = recurrent_arch(config, stats, noise_dim=config.noise_dim, styles=styles)
    model = rnn.build(arch)
    disc = Discriminator(arch["audio_dim"], MOTION_DIM, config.d_hidden)
    init_generator_from_rnn(model, init_state)
    start = state_digest(init_state)  # a retrained seed RNN: the GAN starts afresh
    loop = Loop(
        config, stats, (train_seqs, val_seqs), arch, model, disc, rank, world, device, start
    )
    for epoch in loop.epochs():
        for audio, motion, mask in loop.batches(epoch, progress):
            fake, out = fake_motion(loop.forward, audio, motion, loop.rng)
            d_loss = discriminator_loss(loop.d_forward, audio, motion, fake)
            optimise(loop.d_optimizer, d_loss, disc, config.grad_clip)
            # The plain discriminator: its gradients from this loss are never used (the
            # next D step clears them), so all-reducing them would be wasted traffic.
            g_loss, recon = generator_loss(
                disc, audio, motion, mask, fake, config.adv_weight, config.recon_weight,
                out, model.mixtures,
            )  # fmt: skip
            optimise(loop.optimizer, g_loss, model, config.grad_clip)
            loop.record(d_loss=d_loss.item(), g_loss=g_loss.item(), train_loss=recon.item())
        loop.end_epoch(epoch, 0.0)
    return loop.trained()
