"""Training of maskdance (see ``maskdance``): motif's tokenizer, then the masked transformer.

1. tokenizer: motif's loop (``motif_train``: random motion windows, reconstruction +
   commitment loss, EMA codebooks with k-means start and dead-code restarts);
2. every training sequence is turned into codes once per phase (shifted by 0..down-1
   frames), with its music and style (motif's ``_code_sequences``);
3. masked transformer: random windows of ``window`` steps, style-balanced when the shards
   have two styles or more (``styles.style_weights``), masked as MoMask (see
   ``maskdance``); the loss is the cross-entropy of the hidden tokens with label smoothing;
   with residual quantizers it learns the first layer's codes;
4. residual transformer (``quantizers`` > 1, ``residual_steps``): the same windows, each
   predicting one random finer layer from the true codes of the layers below (MoMask).

DDP as motif (``train.devices``): each rank draws its own batches, DDP averages gradients,
vector-quantize-pytorch keeps the codebooks in sync. ``fit`` returns plain tensors, numbers,
strings, lists and dicts only (a ``weights_only`` checkpoint).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kakashi.models.config import TrainConfig
from kakashi.models.data import Sequence, load_training_data
from kakashi.models.distributed import Trained
from kakashi.models.maskdance import (
    RHYTHM_KINDS,
    MaskDance,
    MaskTransformer,
    ResidualTransformer,
    build,
    music_columns,
)
from kakashi.models.motif_train import (
    SAMPLING_KEYS,
    TOKENIZER_KEYS,
    _data_parallel,
    _lr,
    _rank_mean,
    _windows,
    draw_windows,
    fit_tokens,
    transformer_optimizer,
)
from kakashi.models.rnn_train import optimise
from kakashi.models.stats import Stats
from kakashi.models.styles import style_weights, train_labels

log = logging.getLogger("kakashi.models.maskdance")

ARCH_KEYS = [
    *TOKENIZER_KEYS,
    "dim",
    "heads",
    "layers",
    "dropout",
    "window",
    "overlap",
    "music_back",
    "music_ahead",
    "music_input",
    "iterations",
    "guidance",
    "quantizers",
    *SAMPLING_KEYS,
]


def mask_tokens(
    codes: torch.Tensor, codebook: int, span_share: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, hidden) for codes (B, L, parts): ``hidden`` (bool) marks the tokens to
    predict, a share cos(u pi/2) of each window's tokens (u uniform, at least one); a
    ``span_share`` of the windows hide one contiguous span of steps (every part) instead.
    Of the hidden tokens 10 % become a random code, 88 % of the rest the [MASK] code
    (``codebook``), the others stay (MoMask's BERT scheme)."""
    batch, length, parts = codes.shape
    ratio = torch.cos(torch.rand(batch, generator=gen) * math.pi / 2)
    tokens = length * parts
    count = (ratio * tokens).round().clamp(min=1)
    ranks = torch.rand(batch, tokens, generator=gen).argsort(-1).argsort(-1)
    hidden = (ranks < count[:, None]).view(batch, length, parts)
    span = (ratio * length).round().clamp(min=1).long()
    start = (torch.rand(batch, generator=gen) * (length - span + 1)).long()
    steps = torch.arange(length)[None]
    in_span = (steps >= start[:, None]) & (steps < (start + span)[:, None])
    spans = torch.rand(batch, generator=gen) < span_share
    hidden = torch.where(spans[:, None, None], in_span[..., None].expand_as(hidden), hidden)
    hidden = hidden.to(codes.device)
    draw = torch.rand(codes.shape, generator=gen).to(codes.device)
    random = torch.randint(codebook, codes.shape, generator=gen).to(codes.device)
    inputs = torch.where(hidden & (draw < 0.1), random, codes)
    inputs = torch.where(hidden & (draw >= 0.1) & (draw < 0.1 + 0.9 * 0.88), codebook, inputs)
    return inputs, hidden


class MaskedLoss(nn.Module):
    """Cross-entropy of the hidden tokens as one ``forward`` (DDP sees every parameter)."""

    def __init__(self, model: MaskTransformer, smoothing: float) -> None:
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(self, inputs, target, hidden, music, style, keep=None) -> torch.Tensor:
        """``keep`` (B,): 0 for windows whose music is dropped (``music_drop``), else 1."""
        condition = self.model.music_features(music, style)
        if keep is not None:
            condition = condition * keep[:, None, None]
        logits = self.model(inputs, condition)
        return F.cross_entropy(logits[hidden], target[hidden], label_smoothing=self.smoothing)


class ResidualLoss(nn.Module):
    """Cross-entropy of one residual layer's codes (each window its own layer, ``layer``)."""

    def __init__(self, model: ResidualTransformer, smoothing: float) -> None:
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(self, codes, layer, music, style) -> torch.Tensor:
        logits = self.model(codes, self.model.music_features(music, style), layer)
        index = layer[:, None, None, None].expand(*codes.shape[:3], 1)
        target = codes.gather(3, index)[..., 0]
        return F.cross_entropy(
            logits.flatten(0, 2), target.flatten(), label_smoothing=self.smoothing
        )


def _batch(data, idx, starts, pick, window: int, extra: int, device):
    """codes (B, L, parts[, quantizers]), padded music (B, L + back + ahead, down*F), style
    (B,)."""
    codes, music, style = [], [], []
    for p in pick:
        seq_codes, pooled, _, seq_style = data[idx[p]]
        st = starts[p]
        codes.append(seq_codes[st : st + window])
        music.append(pooled[st : st + window + extra])  # step j reads rows j..j+extra
        style.append(seq_style)
    return (
        torch.from_numpy(np.stack(codes)).long().to(device),
        torch.from_numpy(np.stack(music)).to(device),
        torch.tensor(style, dtype=torch.long, device=device),
    )


def _first_layer(codes: torch.Tensor) -> torch.Tensor:
    """The codes the masked transformer learns: (B, L, parts), a residual tokenizer's first
    layer."""
    return codes[..., 0] if codes.dim() == 4 else codes


def _drop_styles(style: torch.Tensor, model, share: float, gen) -> torch.Tensor:
    """A ``share`` of the windows read the "no style" row (the style-free model that
    guidance steers away from); no draw when off or unlabelled, so the generator's stream
    (the weights) stays as measured."""
    if share <= 0 or model.style is None:
        return style
    drop = (torch.rand(len(style), generator=gen) < share).to(style.device)
    return torch.where(drop, len(model.styles), style)


def _record(history, prefix: str, step: int, running, val, started, world, device) -> None:
    """One logging point of a transformer phase (``prefix`` "" masked, "residual_")."""
    entry = {
        f"{prefix}step": float(step + 1),
        f"{prefix}loss": _rank_mean(float(np.mean(running)), world, device),
        f"{prefix}val_loss": val[0],
        f"{prefix}val_accuracy": val[1],
        "seconds": time.perf_counter() - started,
    }
    history.append(entry)
    log.info(
        "%s %s", prefix.rstrip("_") or "transformer", {k: round(v, 4) for k, v in entry.items()}
    )


def _val_windows(data, window: int):
    """(sequence index, start) of the non-overlapping validation windows, or None where
    there is no validation data or no sequence holds a window."""
    if not data:
        return None
    try:
        idx, starts = _windows([len(c) for c, *_ in data], window)
    except ValueError:
        return None
    keep = starts % window == 0
    return idx[keep], starts[keep]


def _train_codes(net: MaskDance, s, data, val_data, device, gen, history, rank, world):
    """The masked transformer, then (residual quantizers) the residual transformer."""
    _train_transformer(net, s, data, val_data, device, gen, history, rank, world)
    if net.residual is not None:
        _train_residual(net, s, data, val_data, device, gen, history, rank, world)


def _train_residual(net: MaskDance, s, data, val_data, device, gen, history, rank, world):
    """Random windows (as the masked transformer's), each predicting one random residual
    layer from the true codes of the layers below (MoMask); style_drop as the masked one's,
    so the "no style" row is known too."""
    model = net.residual
    loss_of = _data_parallel(ResidualLoss(model, s.label_smoothing), world, device)
    window, extra = s.window, s.music_back + s.music_ahead
    idx, starts = _windows([len(c) for c, *_ in data], window)
    weights = style_weights(np.array([data[i][3] for i in idx]))
    opt = transformer_optimizer(model, s.mask_lr, s.weight_decay, (0.9, 0.99))
    model.train()
    started, running = time.perf_counter(), []
    for step in range(s.residual_steps):
        pick = draw_windows(weights, len(idx), s.mask_batch, gen)
        codes, music, style = _batch(data, idx, starts, pick, window, extra, device)
        layer = torch.randint(1, s.quantizers, (len(pick),), generator=gen).to(device)
        style = _drop_styles(style, model, s.style_drop, gen)
        for group in opt.param_groups:
            group["lr"] = _lr(step, s.residual_steps, s.mask_lr)
        loss = loss_of(codes, layer, music, style)
        optimise(opt, loss, model, 1.0)
        running.append(loss.item())
        if (step + 1) % s.log_every == 0 or step + 1 == s.residual_steps:
            val = _residual_val(model, val_data, s, device) if rank == 0 else (math.nan,) * 2
            _record(history, "residual_", step, running, val, started, world, device)
            model.train()
            running = []


@torch.no_grad()
def _residual_val(model: ResidualTransformer, data, s, device) -> tuple[float, float]:
    """Cross-entropy and accuracy of every residual layer's codes, given the true layers
    below, over non-overlapping validation windows."""
    windows = _val_windows(data, s.window)
    if windows is None:
        return math.nan, math.nan
    model.eval()
    (idx, starts), window, extra = windows, s.window, s.music_back + s.music_ahead
    total = correct = count = 0.0
    for chunk in range(0, len(idx), 64):
        pick = np.arange(chunk, min(chunk + 64, len(idx)))
        codes, music, style = _batch(data, idx, starts, pick, window, extra, device)
        condition = model.music_features(music, style)
        for q in range(1, model.quantizers):
            layer = torch.full((len(pick),), q, device=device)
            logits = model(codes, condition, layer).flatten(0, 2)
            target = codes[..., q].flatten()
            total += F.cross_entropy(logits, target, reduction="sum").item()
            correct += (logits.argmax(-1) == target).sum().item()
            count += len(target)
    return total / max(count, 1), correct / max(count, 1)


def _train_transformer(net: MaskDance, s, data, val_data, device, gen, history, rank, world):
    model = net.transformer
    loss_of = _data_parallel(MaskedLoss(model, s.label_smoothing), world, device)
    window, extra = s.window, s.music_back + s.music_ahead
    idx, starts = _windows([len(c) for c, *_ in data], window)
    weights = style_weights(np.array([data[i][3] for i in idx]))
    opt = transformer_optimizer(model, s.mask_lr, s.weight_decay, (0.9, 0.99))
    model.train()
    started, running = time.perf_counter(), []
    for step in range(s.mask_steps):
        pick = draw_windows(weights, len(idx), s.mask_batch, gen)
        codes, music, style = _batch(data, idx, starts, pick, window, extra, device)
        codes = _first_layer(codes)
        inputs, hidden = mask_tokens(codes, s.codebook, s.span_masks, gen)
        # A music_drop share of the windows sees no music: the model must also read the
        # codes around a hidden one, not only recall the dance a song's music came with.
        # (no draw when off: the generator's stream, so the weights, stay as measured)
        keep = None
        if s.music_drop > 0:
            keep = (torch.rand(len(pick), generator=gen) >= s.music_drop).float().to(device)
        # A style_drop share reads the "no style" row: the style-free model that guidance
        # (``guidance``) steers away from. (no draw when off, as music_drop)
        style = _drop_styles(style, model, s.style_drop, gen)
        for group in opt.param_groups:
            group["lr"] = _lr(step, s.mask_steps, s.mask_lr)
        loss = loss_of(inputs, codes, hidden, music, style, keep)
        optimise(opt, loss, model, 1.0)
        running.append(loss.item())
        if (step + 1) % s.log_every == 0 or step + 1 == s.mask_steps:
            val = _val(model, val_data, s, device) if rank == 0 else (math.nan,) * 2
            _record(history, "", step, running, val, started, world, device)
            model.train()
            running = []


@torch.no_grad()
def _val(model: MaskTransformer, data, s, device) -> tuple[float, float]:
    """Cross-entropy and accuracy of the hidden tokens over non-overlapping validation
    windows, masked by a fixed seed (the same masks at every logging point)."""
    windows = _val_windows(data, s.window)
    if windows is None:
        return math.nan, math.nan
    model.eval()
    (idx, starts), window, extra = windows, s.window, s.music_back + s.music_ahead
    gen = torch.Generator().manual_seed(0)
    total = correct = count = 0.0
    for chunk in range(0, len(idx), 64):
        pick = np.arange(chunk, min(chunk + 64, len(idx)))
        codes, music, style = _batch(data, idx, starts, pick, window, extra, device)
        codes = _first_layer(codes)
        inputs, hidden = mask_tokens(codes, s.codebook, s.span_masks, gen)
        logits = model(inputs, model.music_features(music, style))[hidden]
        target = codes[hidden]
        total += F.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(-1) == target).sum().item()
        count += len(target)
    return total / max(count, 1), correct / max(count, 1)


def fit(
    config: TrainConfig,
    train: list[Sequence],
    val: list[Sequence],
    stats: Stats,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> dict:
    """Train maskdance with the settings ``config`` (``config.resolve("maskdance", ...)``)
    and ``stats`` computed with its ``root_frame`` (``load_training_data``); returns
    ``{"arch", "model" (cpu state_dict), "history"}``."""
    if not 0 <= config.overlap < config.window:
        raise ValueError(f"overlap must be below window ({config.window}), got {config.overlap}")
    # Without two styles in the train shards there is nothing to guide: no check.
    if config.guidance != 1 and config.style_drop == 0 and train_labels(train):
        raise ValueError(
            f"guidance {config.guidance} needs a style-free model: set style_drop above 0 "
            "(0.1 is usual), or guidance 1"
        )
    extra = {}
    if config.music_input == "rhythm":
        extra["music_columns"] = music_columns(stats.feature_names, RHYTHM_KINDS)
    return fit_tokens(config, train, val, stats, device, rank, world, ARCH_KEYS, build,
                      _train_codes, extra)  # fmt: skip


def run(
    config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device
) -> Trained:
    """Train maskdance as ``kakashi train --model maskdance`` asks (kakashi.models.distributed
    calls this): read the shards and fit; :func:`kakashi.models.distributed.finish` writes."""
    train, val, stats = load_training_data(
        config.shards, config.mirror, config.root_frame, config.tempo_stretch
    )
    result = fit(config, train, val, stats, device, rank, world)
    arch = {**result["arch"], "kind": "maskdance"}
    return Trained(arch, stats, result["model"], result["history"])
