"""maskdance: a masked, bidirectional transformer over motion tokens (MoMask-style).

motif writes its dance token by token, left to right; maskdance fills a whole window of
tokens at once and can be told which tokens to keep, so the same network dances, continues
a dance, regenerates a span of it and keeps the upper or lower body of another (issue #25).

1. **Tokenizer**: motif's (``kakashi.models.motif.Tokenizer``): a 1-D convolutional VQ-VAE
   over the normalised 54-d motion, one code per ``down`` frames, with ``parts == 2`` a
   lower-body and an upper-body codebook. With ``quantizers`` above 1 each part's codebook
   is residual (MoMask's RVQ, ``vector-quantize-pytorch``'s ``ResidualVQ``): layer q codes
   what layers 0..q-1 left of the latent, and quantizer dropout trains the first layer to
   decode alone too.
2. **Masked transformer**: a bidirectional (non-causal) transformer encoder
   (``torch.nn.TransformerEncoder``, pre-norm) over a window of ``window`` code steps. Each
   step's input is the sum of its parts' code embeddings (a code or the extra [MASK] row),
   its position, the music around it (the audio features of steps ``i - music_back`` ..
   ``i + music_ahead``, one convolution, as motif) and the dance style (an embedding; the
   last row is "no style"). One head per part predicts that part's code of every step.
   Training (MoMask, Guo et al. CVPR 2024): a share ``cos(u * pi / 2)`` (u uniform) of the
   window's tokens is hidden, of those 10 % replaced by a random code and 88 % of the rest
   by [MASK], the loss is the cross-entropy of the hidden tokens; ``span_masks`` of the
   windows hide one contiguous span of steps instead (what continuation and in-betweening
   ask for).
3. **Generation**: iterative parallel decoding (MaskGIT/MoMask): all free tokens of a window
   start masked; each of ``iterations`` passes samples every masked token (temperature,
   top-k, Gumbel noise from a seeded numpy generator) and re-masks the least confident
   ``cos(t * pi / 2)`` share of the free tokens for the next pass. A song is covered by
   windows that overlap by ``overlap`` steps; each window keeps the codes the previous one
   chose in the overlap, so a song of any length costs the same per second and its windows
   join as one dance. With ``guidance`` above 1 (a model trained with ``style_drop``) and a
   style asked for, each pass's logits are classifier-free guided away from the "no style"
   row: ``free + guidance * (styled - free)``, one batch of two per pass.
   **Residual transformer** (``quantizers`` > 1; MoMask): the masked transformer chooses
   the first layer's codes; a second bidirectional transformer of the same shape then
   chooses each finer layer from the summed embeddings of the layers below, the music and
   the style, every step at once (its likeliest code), window by window as the first.
4. **Edits** (:class:`kakashi.models.editing.Constraints`): the given frames are encoded by
   the tokenizer (free frames filled by interpolation in time from the given ones, so the
   encoder sees smooth context) and the code of every step whose frames are all given is
   kept (every layer of it): for each part separately, so "keep the upper body" keeps the
   upper codes and the transformer fills in the lower ones. A step holding a keyframe (a
   full pose at one frame) keeps the code of that pose. Generation then enforces the
   constraints exactly on the frames (:mod:`kakashi.models.generate`); this only makes
   the dance close already.

The decoded motion goes through motif's finish (smoothing, start-pose blend, bone lengths,
leaky root, feet settled). Inference only: training is in ``maskdance_train``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kakashi import skeleton
from kakashi.errors import ModelError
from kakashi.features import column_kind
from kakashi.kinematics import root_velocity
from kakashi.models.editing import Constraints
from kakashi.models.motif import GENERATION_KEYS as motif_generation_keys
from kakashi.models.motif import Tokenizer, finish_motion, part_columns, pool_audio, start_rows
from kakashi.models.stats import POSE_DIM, Stats
from kakashi.models.styles import style_index

# The arch settings generation reads (``kakashi generate --sampling``): never the shape.
GENERATION_KEYS = ("iterations", "guidance", *motif_generation_keys)
# ``music_input: rhythm``: the feature kinds the transformers read.
RHYTHM_KINDS = ("onset", "beat", "peak")


def music_columns(names: list[str], kinds) -> list[int]:
    """Indices of the audio feature columns ``names`` of the given kinds."""
    columns = [c for c, name in enumerate(names) if column_kind(name) in kinds]
    if not columns:
        raise ModelError(
            f"the shards' audio features ({', '.join(names)}) hold none of {', '.join(kinds)}; "
            "recompute them with those kinds in features.set, or set music_input: all"
        )
    return columns


class MaskTransformer(nn.Module):
    """Bidirectional transformer: codes (with [MASK]) + music + style -> codes of every part."""

    def __init__(self, arch: dict) -> None:
        super().__init__()
        dim, parts, codebook = arch["dim"], arch["parts"], arch["codebook"]
        self.parts, self.codebook, self.window = parts, codebook, arch["window"]
        self.mask_id = codebook  # the extra embedding row
        self.back, self.ahead = arch["music_back"], arch["music_ahead"]
        self.styles = list(arch.get("styles") or [])
        self.tokens = nn.ModuleList(nn.Embedding(codebook + 1, dim) for _ in range(parts))
        self.music = nn.Conv1d(arch["audio_dim"] * arch["down"], dim, self.back + self.ahead + 1)
        # music_columns (music_input: rhythm): the other columns reach the convolution as 0.
        # Checkpoints before it, and music_input all, read every column.
        read = torch.ones(arch["audio_dim"])
        if arch.get("music_columns") is not None:
            read = torch.zeros(arch["audio_dim"])
            read[arch["music_columns"]] = 1
        self.register_buffer("music_read", read.repeat(arch["down"]), persistent=False)
        # The last row (kept at zero) is "no style": unlabelled shards, or none asked for.
        styles = len(self.styles)
        self.style = nn.Embedding(styles + 1, dim, padding_idx=styles) if styles else None
        self.position = nn.Embedding(self.window, dim)
        layer = nn.TransformerEncoderLayer(
            dim,
            arch["heads"],
            4 * dim,
            arch["dropout"],
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, arch["layers"], enable_nested_tensor=False)
        self.ln = nn.LayerNorm(dim)
        self.heads = nn.ModuleList(nn.Linear(dim, codebook) for _ in range(parts))

    def style_index(self, style: str | None) -> int:
        """The embedding row of ``style``; the "no style" row for None or an unknown one."""
        return style_index(self.styles, style)

    def music_features(self, padded: torch.Tensor, style: torch.Tensor | None) -> torch.Tensor:
        """Pooled audio padded by back/ahead steps (B, N + back + ahead, down*F) and style
        indices (B,) -> per-step conditioning (B, N, dim)."""
        out = self.music((padded * self.music_read).transpose(1, 2)).transpose(1, 2)
        if self.style is not None and style is not None:
            out = out + self.style(style)[:, None]
        return out

    def forward(self, ids: torch.Tensor, music: torch.Tensor) -> torch.Tensor:
        """Logits (B, L, parts, codebook) of codes ``ids`` (B, L, parts; mask_id = hidden)
        with per-step conditioning ``music`` (B, L, dim), L <= window."""
        x = music + self.position.weight[: ids.shape[1]]
        for p, table in enumerate(self.tokens):
            x = x + table(ids[..., p])
        h = self.ln(self.encoder(x))
        return torch.stack([head(h) for head in self.heads], dim=2)


class ResidualTransformer(MaskTransformer):
    """Bidirectional transformer over residual codes (MoMask's residual transformer): the
    codes of the layers below ``layer`` (their embeddings summed) + music + style + which
    layer -> the codes of that layer, every step and part at once. The music, style,
    position and encoder are built as the masked transformer's (weights of its own)."""

    def __init__(self, arch: dict) -> None:
        super().__init__(arch)
        dim, parts, codebook = arch["dim"], arch["parts"], arch["codebook"]
        self.quantizers = arch["quantizers"]
        layers = self.quantizers - 1  # the predicted layers 1..quantizers-1
        self.tokens = nn.ModuleList(nn.Embedding(codebook, dim) for _ in range(parts * layers))
        self.layer = nn.Embedding(layers, dim)
        self.heads = nn.ModuleList(nn.Linear(dim, codebook) for _ in range(parts * layers))

    def forward(self, codes: torch.Tensor, music: torch.Tensor, layer: torch.Tensor):
        """Logits (B, L, parts, codebook) of layer ``layer`` (B,; 1..quantizers-1) from
        ``codes`` (B, L, parts, quantizers; only the layers below each ``layer`` are read,
        the others may be -1) and per-step conditioning ``music`` (B, L, dim). Every table
        and head takes part in the graph (the unread ones times 0), as DDP needs."""
        length = codes.shape[1]
        x = music + self.position.weight[:length] + self.layer(layer - 1)[:, None]
        for below in range(self.quantizers - 1):
            read = (below < layer).to(x.dtype)[:, None, None]
            for p in range(self.parts):
                table = self.tokens[below * self.parts + p]
                x = x + read * table(codes[:, :, p, below].clamp(min=0))
        h = self.ln(self.encoder(x))
        logits = torch.stack(
            [
                torch.stack([self.heads[q * self.parts + p](h) for p in range(self.parts)], 2)
                for q in range(self.quantizers - 1)
            ]
        )  # (quantizers - 1, B, L, parts, codebook)
        return logits[layer - 1, torch.arange(len(layer), device=layer.device)]


class MaskDance(nn.Module):
    def __init__(self, arch: dict) -> None:
        super().__init__()
        self.arch = dict(arch)
        self.tokenizer = Tokenizer(arch)
        self.transformer = MaskTransformer(arch)
        # quantizers > 1: the masked transformer chooses the first layer, this one the rest.
        quantizers = arch.get("quantizers", 1)  # checkpoints before it: one codebook
        self.residual = ResidualTransformer(arch) if quantizers > 1 else None


def build(arch: dict) -> MaskDance:
    """The whole network from its architecture dict (``maskdance_train.fit``'s ``arch``)."""
    return MaskDance(arch)


# ---------------------------------------------------------------- decoding


def windows(steps: int, window: int, overlap: int) -> list[int]:
    """Start steps of the windows covering ``steps`` code steps: every ``window - overlap``
    steps, the last one ending at the song's end (a song shorter than a window: one)."""
    hop = max(1, window - overlap)
    starts = list(range(0, max(steps - window, 0) + 1, hop))
    if starts[-1] + window < steps:
        starts.append(steps - window)
    return starts


def _sample(logits: np.ndarray, temperature: float, top_k: int, rng) -> np.ndarray:
    """One code per row of ``logits`` (n, K): Gumbel-max over the top-k at a temperature."""
    logits = logits.astype(np.float64)
    if 0 < top_k < logits.shape[-1]:
        kth = np.partition(logits, -top_k, axis=-1)[:, -top_k][:, None]
        logits = np.where(logits < kth, -np.inf, logits)
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, logits.shape)))
    return np.argmax(logits / max(temperature, 1e-5) + gumbel, axis=-1)


@torch.no_grad()
def fill_window(
    model: MaskTransformer,
    codes: np.ndarray,
    music: torch.Tensor,
    rng: np.random.Generator,
    iterations: int,
    temperature: float,
    top_k: int,
    free_music: torch.Tensor | None = None,
    guidance: float = 1.0,
) -> np.ndarray:
    """Codes (L, parts) with -1 where free -> every code chosen, the given ones unchanged.
    ``music``: the window's conditioning (L, dim). MoMask's decoding: all free tokens start
    masked; after pass t of T (t = 0..T-1), the ``cos(pi/2 * (t+1)/T)`` least confident
    share of the free tokens is masked again and resampled. With ``free_music`` (the same
    music without the style) each pass's logits are classifier-free guided (Ho & Salimans
    2022; MoMask's cond_scale): ``free + guidance * (styled - free)``."""
    free = codes < 0
    count = int(free.sum())
    if count == 0:
        return codes.copy()
    ids = np.where(free, model.mask_id, codes)
    scores = np.where(free, 0.0, np.inf)
    device = music.device
    is_mask = free.copy()
    for t in range(iterations):
        x = torch.from_numpy(ids[None]).to(device)
        if free_music is None:
            logits = model(x, music[None])[0]  # (L, parts, K)
        else:  # one batch of two: styled and style-free
            styled, free_ = model(x.expand(2, -1, -1), torch.stack([music, free_music]))
            logits = free_ + guidance * (styled - free_)
        logits = logits.float().cpu().numpy()
        where = np.nonzero(is_mask)
        chosen = _sample(logits[where], temperature, top_k, rng)
        ids[where] = chosen
        probs = np.exp(logits[where] - logits[where].max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        scores[where] = probs[np.arange(len(chosen)), chosen]
        scores[~is_mask] = np.inf  # kept in an earlier pass: never hidden again
        remask = math.floor(count * math.cos(math.pi / 2 * (t + 1) / iterations))
        if remask <= 0:
            break
        # The least confident free tokens are hidden again (given tokens score inf).
        flat = np.argsort(scores, axis=None, kind="stable")[:remask]
        is_mask = np.zeros_like(free)
        is_mask.flat[flat] = True
        ids[is_mask] = model.mask_id
    return ids


@torch.no_grad()
def fill_residual(model: ResidualTransformer, codes: np.ndarray, music: torch.Tensor, overlap: int):
    """Codes (N, parts, quantizers) whose first layer is chosen, -1 where a finer layer is
    free -> every layer chosen, the given codes unchanged. Window by window (as the first
    layer), layer by layer, each free code the residual transformer's likeliest (argmax;
    MoMask samples them): the fine detail of the motion the first layer's codes already
    fix, so the seed acts through the first layer alone."""
    codes = codes.copy()
    device, window = music.device, model.window
    for start in windows(len(codes), window, overlap):
        part = codes[start : start + window]  # a view: filled in place
        for layer in range(1, model.quantizers):
            free = part[:, :, layer] < 0
            if not free.any():
                continue
            x = torch.from_numpy(part[None]).to(device)
            index = torch.tensor([layer], device=device)
            chosen = model(x, music[None, start : start + window], index)[0]
            chosen = chosen.argmax(-1).cpu().numpy()
            part[:, :, layer] = np.where(free, chosen, part[:, :, layer])
    return codes


def sample_codes(
    net: MaskDance,
    music: torch.Tensor,
    given: np.ndarray,
    seed: int,
    iterations: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    free_music: torch.Tensor | None = None,
) -> np.ndarray:
    """Codes (N, parts) for per-step conditioning ``music`` (N, dim), keeping ``given``
    (N, parts; -1 = free), window by window; each window keeps the previous one's codes.
    ``free_music``: the conditioning without the style, for the arch's ``guidance``. A
    residual tokenizer's ``given`` is (N, parts, quantizers): this fills the first layer;
    :func:`fill_residual` the rest."""
    if given.ndim == 3:
        first = sample_codes(net, music, given[..., 0], seed, iterations, temperature, top_k,
                             free_music)  # fmt: skip
        return np.concatenate([first[..., None], given[..., 1:]], axis=-1)
    arch = net.arch
    iterations = arch["iterations"] if iterations is None else iterations
    temperature = arch["temperature"] if temperature is None else temperature
    top_k = arch["top_k"] if top_k is None else top_k
    guidance = arch.get("guidance", 1.0)  # checkpoints before it: unguided
    if guidance == 1:
        free_music = None
    rng = np.random.default_rng(seed)
    codes = given.astype(np.int64).copy()
    window = net.transformer.window
    for start in windows(len(codes), window, arch["overlap"]):
        part = slice(start, start + window)
        free = None if free_music is None else free_music[part]
        codes[part] = fill_window(
            net.transformer, codes[part], music[part], rng, iterations, temperature, top_k,
            free, guidance,
        )  # fmt: skip
    return codes


# ---------------------------------------------------------------- edits


def _filled(values: np.ndarray, known: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """``values`` (T, C) with each column's unknown frames interpolated in time from its
    known ones (held at the ends); a column known nowhere takes ``fallback`` (C,)."""
    out = np.empty_like(values, dtype=np.float64)
    frames = np.arange(len(values))
    for c in range(values.shape[1]):
        ok = known[:, c]
        out[:, c] = np.interp(frames, frames[ok], values[ok, c]) if ok.any() else fallback[c]
    return out


def code_shape(arch: dict, steps: int) -> tuple[int, ...]:
    """(steps, parts), or (steps, parts, quantizers) for a residual tokenizer."""
    quantizers = arch.get("quantizers", 1)
    return (steps, arch["parts"]) + ((quantizers,) if quantizers > 1 else ())


def given_codes(net: MaskDance, stats: Stats, constraints: Constraints, steps: int) -> np.ndarray:
    """Codes (``code_shape``) the constraints fix, -1 where free: for each part, the steps
    whose frames all give that part's joints, and (every part) the steps holding a full
    keyframe pose. The frames are encoded whole, free ones interpolated from given ones."""
    down, parts = net.arch["down"], net.arch["parts"]
    given = np.full(code_shape(net.arch, steps), -1, dtype=np.int64)
    frames = min(len(constraints), steps * down)
    joints = constraints.joint_known()[:frames]
    if not joints.any():
        return given
    pose = constraints.pose[:frames].reshape(frames, -1)
    known = np.repeat(joints, 3, axis=1)
    mean = stats.mean_pose().reshape(-1)
    pose = _filled(pose, known, mean - np.repeat(mean[:3][None], 17, 0).reshape(-1))
    pose = pose.reshape(frames, skeleton.NUM_JOINTS, 3)
    pose = pose - pose[:, :1]  # root-centred
    root_ok = constraints.root_known()[:frames]
    root = np.zeros((frames, 3))
    if root_ok.any():
        root = _filled(constraints.root[:frames], np.repeat(root_ok[:, None], 3, 1), np.zeros(3))
    velocity = root_velocity(root, pose, net.arch.get("root_frame", "world"))
    motion = np.concatenate([pose.reshape(frames, -1), velocity], axis=1)
    motion = ((motion - stats.motion_mean) / stats.motion_std).astype(np.float32)
    if frames < steps * down:  # the last step's missing frames repeat the last one
        motion = np.concatenate([motion, np.repeat(motion[-1:], steps * down - frames, 0)])
    device = next(net.parameters()).device
    codes = net.tokenizer.encode(torch.from_numpy(motion)[None].to(device))[0].cpu().numpy()

    # (steps, down, 17): whether each frame of each step gives each joint (past the end: no)
    per_step = np.zeros((steps * down, skeleton.NUM_JOINTS), dtype=bool)
    per_step[:frames] = joints
    per_step = per_step.reshape(steps, down, skeleton.NUM_JOINTS)
    for p, columns in enumerate(part_columns(parts)):
        part_joints = sorted({c // 3 for c in columns if c < POSE_DIM})
        whole = per_step[:, :, part_joints].all(axis=(1, 2))
        given[whole, p] = codes[whole, p]
    keyframe = per_step.all(axis=2).any(axis=1)  # a frame with all 17 joints given
    given[keyframe] = codes[keyframe]
    return given


# ---------------------------------------------------------------- generation


@torch.no_grad()
def generate_motion(
    net: MaskDance,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int = 0,
    style: str | None = None,
    constraints: Constraints | None = None,
    iterations: int | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) root-centred and root (T, 3), float32, for raw audio features (T, F).

    ``style``: one of ``net.arch["styles"]`` (None: no style cue); ``constraints``: what the
    dance must keep (see the module doc), T frames; ``iterations``, ``temperature`` and
    ``top_k`` override the decoding settings stored in ``net.arch``.
    """
    net.eval()
    device = next(net.parameters()).device
    down = net.arch["down"]
    frames = len(audio)
    if frames == 0:
        return np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32), np.zeros((0, 3), np.float32)
    steps = -(-frames // down)
    model = net.transformer
    audio_n = (np.asarray(audio, np.float32) - stats.audio_mean) / stats.audio_std
    pooled = pool_audio(audio_n, down, steps)
    padded = np.pad(pooled, ((model.back, model.ahead), (0, 0)))
    index = torch.tensor([model.style_index(style)], device=device)
    padded = torch.from_numpy(padded)[None].to(device)
    music = model.music_features(padded, index)[0]
    free_music = None  # guidance steers from the "no style" row (a style asked for only)
    if model.style is not None and index.item() < len(model.styles):
        free_music = model.music_features(padded, None)[0]

    if constraints is not None and len(constraints) != frames:
        raise ModelError(
            f"the edits cover {len(constraints)} frames but the song has {frames}; "
            "give constraints for every frame of the dance"
        )
    given = np.full(code_shape(net.arch, steps), -1, dtype=np.int64)
    if constraints is not None and constraints.any():
        given = given_codes(net, stats, constraints, steps)
    codes = sample_codes(net, music, given, seed, iterations, temperature, top_k, free_music)
    if net.residual is not None:
        residual_music = net.residual.music_features(padded, index)[0]
        codes = fill_residual(net.residual, codes, residual_music, net.arch["overlap"])
    motion = net.tokenizer.decode(torch.from_numpy(codes)[None].to(device))[0, :frames]
    start = start_rows(first_pose, stats, down)[0]
    return finish_motion(motion.float().cpu().numpy(), start, stats, net.arch)
