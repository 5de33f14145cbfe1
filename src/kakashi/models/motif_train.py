"""Training of motif (see ``motif``): the tokenizer on motion alone, then the choreographer.

One flat loop per stage, nanoGPT style:

1. tokenizer: random windows of normalised motion (mirrored copies included when the
   caller passes them), loss = smooth L1 of the reconstruction + of its frame-to-frame
   differences + the codebooks' commitment loss; the codebooks follow by EMA, start from
   k-means on the first batch and restart dead codes from the batch;
2. every training sequence is turned into codes, once per phase (the sequence shifted by
   0..down-1 frames: ``down`` times the code sequences, each a real dance);
3. choreographer: random windows of ``context`` steps, cross-entropy of the next step's
   codes (lower body, then upper body given the lower body's code).

With ``world > 1`` (``train.devices``) this process is one rank of a DistributedDataParallel
group: each rank draws its own batches (so a step averages ``world`` batches), gradients
are averaged by DDP, and the codebooks' EMA statistics, k-means start and dead-code
restarts are synchronised by vector-quantize-pytorch (``sync_codebook``, on when the
process group exists as the tokenizer is built), so every rank holds the same weights.

``fit`` returns plain tensors, numbers, strings, lists and dicts only, so the result
round-trips through ``torch.save`` / ``torch.load(weights_only=True)``.
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
from kakashi.models.data import Sequence, load_training_data, motion_of
from kakashi.models.distributed import RANK_SEED, Trained
from kakashi.models.motif import GENERATION_KEYS, Motif, build, pool_audio, song_summary
from kakashi.models.rnn_train import optimise
from kakashi.models.stats import Stats
from kakashi.models.styles import style_index, style_weights, train_labels

log = logging.getLogger("kakashi.models.motif")


# Settings kept in the arch of every model over motif's tokens (motif, maskdance): the
# tokenizer's, and what generation reads to sample and finish the motion.
TOKENIZER_KEYS = ["down", "parts", "codebook", "code_dim", "vq_width", "ema_decay", "dead_code",
                  "commitment", "root_frame"]  # fmt: skip
SAMPLING_KEYS = list(GENERATION_KEYS)  # stored in the arch: generation reads them
ARCH_KEYS = [
    *TOKENIZER_KEYS,
    "dim",
    "heads",
    "layers",
    "dropout",
    "context",
    "music_back",
    "music_ahead",
    "summary",
    *SAMPLING_KEYS,
]


def _lr(step: int, steps: int, peak: float) -> float:
    warm = min(100, steps // 10 + 1)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _motion(
    seqs: list[Sequence], stats: Stats, root_frame: str = "world"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalised motion (T, 54) and person mask (T,) of each sequence, the root velocity in
    ``root_frame`` (``stats`` computed in the same frame)."""
    return [
        (
            ((motion_of(s.pose, s.root, root_frame) - stats.motion_mean) / stats.motion_std).astype(
                np.float32
            ),
            (s.conf > 0).astype(np.float32),
        )
        for s in seqs
    ]


def _windows(lengths: list[int], window: int) -> tuple[np.ndarray, np.ndarray]:
    """(sequence index, start) of every window start, to sample from uniformly."""
    index, starts = [], []
    for i, length in enumerate(lengths):
        count = length - window + 1
        if count > 0:
            index.append(np.full(count, i))
            starts.append(np.arange(count))
    if not index:
        raise ValueError(f"every sequence is shorter than one window ({window})")
    return np.concatenate(index), np.concatenate(starts)


def _recon_loss(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, s: TrainConfig):
    """Smooth L1 of the frames + L1 of their first and second differences (normalised units;
    differences are small, hence their larger weights): the decoder must not add jitter."""
    m = mask[..., None]
    width = out.shape[-1]
    loss = (F.smooth_l1_loss(out, target, reduction="none") * m).sum() / (m.sum() * width + 1e-6)
    for order, weight in ((1, s.vel_weight), (2, s.acc_weight)):
        if weight <= 0:
            continue
        dm = m[:, order:]
        for k in range(1, order + 1):
            dm = dm * m[:, order - k : m.shape[1] - k]
        error = (out.diff(order, dim=1) - target.diff(order, dim=1)).abs()
        loss = loss + weight * (error * dm).sum() / (dm.sum() * width + 1e-6)
    return loss


def _data_parallel(module: nn.Module, world: int, device: torch.device) -> nn.Module:
    """``module`` wrapped for DDP when there are several ranks (gradients averaged every
    step), else ``module`` itself."""
    if world == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


def _rank_mean(value: float, world: int, device: torch.device) -> float:
    """The mean of ``value`` over the ranks (every rank must call it at the same step)."""
    if world == 1:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / world


def _train_tokenizer(
    net: Motif, s: TrainConfig, train, val, device, gen, history, rank: int = 0, world: int = 1
) -> None:
    tok = net.tokenizer
    forward = _data_parallel(tok, world, device)
    down, window = s.down, s.vq_window
    window -= window % down
    idx, starts = _windows([len(m) for m, _ in train], window)
    opt = torch.optim.AdamW(tok.parameters(), lr=s.vq_lr, weight_decay=0.0)
    tok.train()
    # Residual codebooks: a quantizer_dropout share of the steps cut the stacks at a random
    # depth, drawn from a generator seeded alike on every rank (a cut on one rank alone
    # would hang its collective). Step 0 keeps every layer, so each layer's k-means start
    # sees the same synced first batch. m2d val, 3 layers: every step (1.0) generates FID_k
    # 61, MoMask's 0.2 94, at the same round trip (17.6). (No draw with one codebook.)
    drops = torch.Generator().manual_seed(s.seed) if tok.residual else None
    started, running = time.perf_counter(), []
    for step in range(s.vq_steps):
        if drops is not None:
            cut = torch.rand((), generator=drops).item() < s.quantizer_dropout
            tok.drop_layers(cut and step > 0)
        pick = torch.randint(len(idx), (s.vq_batch,), generator=gen).numpy()
        motion = np.stack([train[idx[p]][0][starts[p] : starts[p] + window] for p in pick])
        mask = np.stack([train[idx[p]][1][starts[p] : starts[p] + window] for p in pick])
        motion, mask = torch.from_numpy(motion).to(device), torch.from_numpy(mask).to(device)
        for group in opt.param_groups:
            group["lr"] = _lr(step, s.vq_steps, s.vq_lr)
        out, _, commit = forward(motion)
        loss = _recon_loss(out, motion, mask, s) + commit
        optimise(opt, loss, tok, 1.0)
        running.append(loss.item())
        if (step + 1) % s.log_every == 0 or step + 1 == s.vq_steps:
            # Rank 0 alone scores (evaluation mode runs no collective): it writes the files.
            entry = {
                "vq_step": float(step + 1),
                "vq_loss": _rank_mean(float(np.mean(running)), world, device),
                "vq_val_mse": _tokenizer_val(tok, val, down, device) if rank == 0 else math.nan,
                "codes_used": _codes_used(tok, train, down, device) if rank == 0 else math.nan,
                "seconds": time.perf_counter() - started,
            }
            tok.train()
            history.append(entry)
            running = []
            log.info("tokenizer %s", {k: round(v, 4) for k, v in entry.items()})


@torch.no_grad()
def _tokenizer_val(tok, seqs, down: int, device) -> float:
    """Mean squared reconstruction error (normalised units) over whole sequences."""
    tok.eval()
    errors = []
    for motion, mask in seqs:
        usable = len(motion) - len(motion) % down
        if usable == 0:
            continue
        x = torch.from_numpy(motion[:usable]).to(device)[None]
        out = tok.decode(tok.encode(x))
        err = ((out - x) ** 2).mean(-1)[0].cpu().numpy()
        errors.append((err * mask[:usable]).sum() / max(mask[:usable].sum(), 1))
    return float(np.mean(errors)) if errors else float("nan")


@torch.no_grad()
def _codes_used(tok, seqs, down: int, device) -> float:
    """Mean over parts of the share of codebook entries the training motion uses (the first
    layer of residual codebooks)."""
    codes = _encode_all(tok, seqs, down, device, phases=1)
    flat = np.concatenate([c for c, _ in codes])
    size = tok.parts[0].vq.codebook_size
    flat = flat.reshape(len(flat), flat.shape[1], -1)  # (n, parts, quantizers)
    return float(np.mean([len(np.unique(flat[:, p, 0])) / size for p in range(flat.shape[1])]))


@torch.no_grad()
def _encode_all(tok, seqs, down: int, device, phases: int) -> list[tuple[np.ndarray, int]]:
    """Codes (N, parts[, quantizers]) of every sequence at every phase, with the phase (frame
    offset)."""
    tok.eval()
    out = []
    for motion, _ in seqs:
        for phase in range(phases):
            usable = (len(motion) - phase) // down * down
            if usable <= 0:
                continue
            x = torch.from_numpy(motion[phase : phase + usable]).to(device)[None]
            out.append((tok.encode(x)[0].cpu().numpy(), phase))
    return out


def _code_sequences(
    tok, seqs, motions, stats: Stats, s: TrainConfig, device, phases: int, styles=()
) -> list:
    """(codes (N, parts[, quantizers]), music (N + back + ahead, down*F) zero-padded, song
    summary (2F,), style index) per sequence and phase."""
    down, back, ahead = s.down, s.music_back, s.music_ahead
    styles = list(styles)
    out = []
    encoded = _encode_all(tok, motions, down, device, phases)
    # _encode_all keeps sequence order; walk it alongside the sequences' audio.
    k = 0
    for seq, (motion, _) in zip(seqs, motions, strict=True):
        audio_n = ((seq.audio - stats.audio_mean) / stats.audio_std).astype(np.float32)
        for phase in range(phases):
            if (len(motion) - phase) // down <= 0:
                continue
            codes, _ = encoded[k]
            k += 1
            pooled = pool_audio(audio_n[phase:], down, len(codes))
            width = pooled.shape[1]
            music = np.concatenate(
                [np.zeros((back, width), np.float32), pooled, np.zeros((ahead, width), np.float32)]
            )
            style = style_index(styles, seq.style)
            out.append((codes, music, song_summary(audio_n), style))
    return out


def _gpt_batch(data, idx, starts, pick, s: TrainConfig, device, gen):
    """previous, target (B, L, parts), music (B, L + back + ahead, down*F), summary (B, 2F),
    style index (B,)."""
    length, extra = s.context, s.music_back + s.music_ahead
    prev, target, music, summary, style = [], [], [], [], []
    for p in pick:
        codes, pooled, song, song_style = data[idx[p]]
        summary.append(song)
        style.append(song_style)
        st = starts[p]
        prev.append(codes[st : st + length])
        target.append(codes[st + 1 : st + length + 1])
        # target step j (= st + 1 + i) reads pooled steps j-back..j+ahead: padded rows j..j+extra
        music.append(pooled[st + 1 : st + 1 + length + extra])
    prev_t = torch.from_numpy(np.stack(prev)).long().to(device)
    if s.token_noise > 0 and gen is not None:
        replace = torch.rand(prev_t.shape, generator=gen) < s.token_noise
        random = torch.randint(s.codebook, prev_t.shape, generator=gen)
        prev_t = torch.where(replace.to(device), random.to(device), prev_t)
    return (
        prev_t,
        torch.from_numpy(np.stack(target)).long().to(device),
        torch.from_numpy(np.stack(music)).to(device),
        torch.from_numpy(np.stack(summary)).to(device),
        torch.tensor(style, dtype=torch.long, device=device),
    )


def _gpt_loss(model, prev, target, music, summary, style) -> torch.Tensor:
    feats = model.music_window(music.transpose(1, 2), summary, style)
    logits = model(prev, feats, target)
    return sum(
        F.cross_entropy(lg.reshape(-1, lg.shape[-1]), target[..., p].reshape(-1))
        for p, lg in enumerate(logits)
    ) / len(logits)


class NextCodeLoss(nn.Module):
    """The choreographer's training loss as one ``forward``: DDP only sees parameters used
    inside the forward it wraps, and the music window is a separate method."""

    def __init__(self, choreographer: nn.Module) -> None:
        super().__init__()
        self.choreographer = choreographer

    def forward(self, prev, target, music, summary, style) -> torch.Tensor:
        return _gpt_loss(self.choreographer, prev, target, music, summary, style)


def transformer_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas
) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices, none on biases, norms and positions."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (decay if param.dim() >= 2 and "position" not in name else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def draw_windows(weights: torch.Tensor | None, count: int, batch: int, gen) -> np.ndarray:
    """``batch`` window indices out of ``count``: by ``weights`` (:func:`style_weights`), or
    uniformly when there are none (unlabelled runs draw as before styles existed)."""
    if weights is not None:
        return torch.multinomial(weights, batch, True, generator=gen).numpy()
    return torch.randint(count, (batch,), generator=gen).numpy()


def _train_choreographer(
    net: Motif, s, data, val_data, device, gen, history, rank: int = 0, world: int = 1
) -> None:
    model = net.choreographer
    loss_of = _data_parallel(NextCodeLoss(model), world, device)
    length = s.context
    idx, starts = _windows([len(c) for c, *_ in data], length + 1)
    weights = style_weights(np.array([data[i][3] for i in idx]))
    opt = transformer_optimizer(model, s.gpt_lr, s.weight_decay, (0.9, 0.95))
    model.train()
    started, running = time.perf_counter(), []
    for step in range(s.gpt_steps):
        pick = draw_windows(weights, len(idx), s.gpt_batch, gen)
        batch = _gpt_batch(data, idx, starts, pick, s, device, gen)
        for param_group in opt.param_groups:
            param_group["lr"] = _lr(step, s.gpt_steps, s.gpt_lr)
        loss = loss_of(*batch)
        optimise(opt, loss, model, 1.0)
        running.append(loss.item())
        if (step + 1) % s.log_every == 0 or step + 1 == s.gpt_steps:
            entry = {
                "gpt_step": float(step + 1),
                "gpt_loss": _rank_mean(float(np.mean(running)), world, device),
                "gpt_val_loss": _gpt_val(model, val_data, s, device) if rank == 0 else math.nan,
                "seconds": time.perf_counter() - started,
            }
            model.train()
            history.append(entry)
            running = []
            log.info("choreographer %s", {k: round(v, 4) for k, v in entry.items()})


@torch.no_grad()
def _gpt_val(model, data, s: TrainConfig, device) -> float:
    """Mean cross-entropy over non-overlapping windows of the validation code sequences."""
    if not data:
        return float("nan")
    model.eval()
    length = s.context
    idx, starts = _windows([len(c) for c, *_ in data], length + 1)
    keep = starts % length == 0
    idx, starts = idx[keep], starts[keep]
    if len(idx) == 0:
        return float("nan")
    losses = []
    for chunk in range(0, len(idx), 64):
        pick = np.arange(chunk, min(chunk + 64, len(idx)))
        batch = _gpt_batch(data, idx, starts, pick, s, device, None)
        losses.append(_gpt_loss(model, *batch).item() * len(pick))
    return float(np.sum(losses) / len(idx))


def fit(
    config: TrainConfig,
    train: list[Sequence],
    val: list[Sequence],
    stats: Stats,
    device: torch.device,
    rank: int = 0,
    world: int = 1,
) -> dict:
    """Train motif with the settings ``config`` (``config.resolve("motif", ...)``) and
    ``stats`` computed with its ``root_frame`` (``load_training_data``); returns
    ``{"arch", "model" (cpu state_dict), "history"}``. With ``world > 1`` this is rank
    ``rank`` of a process group that is already initialised."""
    return fit_tokens(config, train, val, stats, device, rank, world, ARCH_KEYS, build,
                      _train_motif_codes)  # fmt: skip


def _train_motif_codes(net: Motif, s, data, *rest) -> None:
    """motif over the codes: each style's vocabulary (the codes its train dances use), then
    the choreographer."""
    net.choreographer.learn_style_codes([(codes, style) for codes, _, _, style in data])
    _train_choreographer(net, s, data, *rest)


def fit_tokens(
    s: TrainConfig,
    train: list[Sequence],
    val: list[Sequence],
    stats: Stats,
    device: torch.device,
    rank: int,
    world: int,
    arch_keys: list[str],
    build_net,
    train_codes,
    arch_extra: dict | None = None,
) -> dict:
    """The training of a model over motion tokens (motif, maskdance): seeds, the arch
    (``arch_keys`` of the settings, the audio width, the styles, ``arch_extra``), the network
    (``build_net(arch)``), the tokenizer, every sequence's codes, then ``train_codes(net, s,
    data, val_data, device, gen, history, rank, world)``, the model over the codes."""
    if s.down < 2 or s.down & (s.down - 1):
        raise ValueError(f"down must be a power of 2, got {s.down}")
    torch.manual_seed(s.seed)  # same on every rank: identical initial weights
    np.random.seed(s.seed)
    # Each rank draws its own batches, token noise and dropout; rank 0 keeps the plain seeds.
    gen = torch.Generator().manual_seed(s.seed + RANK_SEED * rank)
    arch = {key: getattr(s, key) for key in arch_keys}
    arch["audio_dim"] = len(stats.audio_mean)
    arch["styles"] = train_labels(train)
    arch.update(arch_extra or {})
    net = build_net(arch).to(device)
    if rank:
        torch.manual_seed(s.seed + RANK_SEED * rank)
    history: list[dict] = []

    train_m, val_m = _motion(train, stats, s.root_frame), _motion(val, stats, s.root_frame)
    _train_tokenizer(net, s, train_m, val_m, device, gen, history, rank, world)

    styles = arch["styles"]
    data = _code_sequences(net.tokenizer, train, train_m, stats, s, device, s.down, styles)
    val_data = _code_sequences(net.tokenizer, val, val_m, stats, s, device, 1, styles)
    train_codes(net, s, data, val_data, device, gen, history, rank, world)

    net.eval()
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    return {"arch": arch, "model": state, "history": history}


# ---------------------------------------------------------------- the workflow's entry


def run(
    config: TrainConfig, progress: bool, rank: int, world: int, device: torch.device
) -> Trained:
    """Train motif as ``kakashi train --model motif`` asks (kakashi.models.distributed calls
    this): read the shards and fit; :func:`kakashi.models.distributed.finish` writes."""
    train, val, stats = load_training_data(config.shards, config.mirror, config.root_frame)
    result = fit(config, train, val, stats, device, rank, world)
    arch = {**result["arch"], "kind": "motif"}
    return Trained(arch, stats, result["model"], result["history"])
