"""motif: a tokenized choreographer (motion tokenizer + music-conditioned transformer).

The seed RNN regresses poses and slides into the mean pose. motif generates in a
vocabulary of real motion instead (Bailando, Li et al. CVPR 2022):

1. **Tokenizer**: a 1-D convolutional VQ-VAE over the normalised 54-d motion (root-centred
   pose 51 + root velocity 3, in the world frame or, ``root_frame: body``, in each frame's
   heading frame: :func:`kakashi.kinematics.root_velocity`). The encoder downsamples time
   by ``down`` (4: one code per 4 frames); the codebooks (``vector-quantize-pytorch``: EMA
   updates, k-means init, dead-code restarts) quantise each step. With ``parts == 2`` the
   lower body (hips, legs, root velocity) and the upper body (spine, head, arms) each have
   their own encoder, codebook and decoder, as Bailando's. The decoder can only produce
   motion built from the codebook's units of real dance, so it cannot freeze into a mean
   pose.
2. **Choreographer**: a small causal transformer (nanoGPT blocks) over the code sequence.
   Position ``i`` reads the codes of step ``i - 1`` and the music of step ``i`` (audio
   features of the ``down`` frames of the step, concatenated so beat and onset timing
   within the step survives; ``music_back`` steps before and ``music_ahead`` steps after
   are read too; optionally the whole song's feature mean/std, ``summary``), and predicts
   the codes of step ``i``: the lower body first, the upper body given the lower body's.
3. **Generation**: sampling with temperature and top-k from a seeded generator, one step
   at a time in numpy (``Stepper``) with a key/value cache over a sliding context window
   of ``context`` steps (when full, the newest half is re-encoded and generation goes
   on), so a song of any length costs the same per second and the model always sees the
   same kind of context it was trained on. The start pose is encoded into the first
   context code, and the decoded dance is blended into it over the first step, so frame 0
   is the start pose.
   A Gaussian of ``smooth`` frames (1) removes the decoder's frame-level ripple (jerk
   3-4x the real dances' without it), costing ~2% of the joint speed.

Measured on Dance with Melody: see ``studies/motif.py``. The tokenizer is the ceiling:
test dances passed through it score FID_k 37 (ground truth 37.5) but Div_k 6.4 (13.5)
and 0.83 of the joint speed; the generated dances reach about the same.

Inference only: training is in ``motif_train``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from scipy.special import erf
from torch import nn
from vector_quantize_pytorch import ResidualVQ, VectorQuantize

from kakashi import skeleton
from kakashi.kinematics import (
    ROOT_LEAK_S,
    leaky_integral,
    project_bones,
    root_to_world,
    settle_own_feet,
)
from kakashi.models.stats import MOTION_DIM, POSE_DIM, STD_FLOOR, Stats
from kakashi.models.styles import style_index

# The arch settings generation reads (``kakashi generate --sampling``): never the shape.
GENERATION_KEYS = ("temperature", "top_k", "smooth", "foot_lock")
# Motion columns of each body part: the lower body holds the pelvis, legs and root velocity.
_LOWER_JOINTS = [0, 1, 2, 3, 4, 5, 6]
_UPPER_JOINTS = [j for j in range(skeleton.NUM_JOINTS) if j not in _LOWER_JOINTS]
LOWER_COLUMNS = [3 * j + k for j in _LOWER_JOINTS for k in range(3)] + [
    POSE_DIM,
    POSE_DIM + 1,
    POSE_DIM + 2,
]
UPPER_COLUMNS = [3 * j + k for j in _UPPER_JOINTS for k in range(3)]


def part_columns(parts: int) -> list[list[int]]:
    """Motion columns of each part: [all 54] for one part, [lower, upper] for two."""
    if parts == 1:
        return [list(range(MOTION_DIM))]
    if parts == 2:
        return [LOWER_COLUMNS, UPPER_COLUMNS]
    raise ValueError(f"parts must be 1 or 2, got {parts}")


# ---------------------------------------------------------------- tokenizer


class ResBlock(nn.Module):
    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.conv2 = nn.Conv1d(width, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class PartVQ(nn.Module):
    """Encoder (T frames -> T/down steps), codebook, decoder for one body part."""

    def __init__(self, in_dim: int, arch: dict) -> None:
        super().__init__()
        width, code_dim, levels = arch["vq_width"], arch["code_dim"], int(math.log2(arch["down"]))
        enc: list[nn.Module] = [nn.Conv1d(in_dim, width, 3, padding=1)]
        for _ in range(levels):
            enc += [
                nn.Conv1d(width, width, 4, stride=2, padding=1),
                ResBlock(width, 1),
                ResBlock(width, 3),
            ]
        enc += [nn.ReLU(), nn.Conv1d(width, code_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv1d(code_dim, width, 3, padding=1)]
        for _ in range(levels):
            dec += [
                ResBlock(width, 3),
                ResBlock(width, 1),
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv1d(width, width, 3, padding=1),
            ]
        dec += [nn.ReLU(), nn.Conv1d(width, in_dim, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        codebook = dict(
            dim=code_dim,
            codebook_size=arch["codebook"],
            decay=arch["ema_decay"],
            kmeans_init=True,
            kmeans_iters=10,
            threshold_ema_dead_code=arch["dead_code"],
            commitment_weight=arch["commitment"],
        )
        # quantizers > 1 (maskdance): residual layers, each coding what the ones before left
        # (MoMask); quantizer dropout (on for a share of the training batches: see
        # Tokenizer.drop_layers) trains the first layers to decode alone too.
        quantizers = arch.get("quantizers", 1)
        if quantizers == 1:
            self.vq = VectorQuantize(**codebook)
        else:
            self.vq = ResidualVQ(num_quantizers=quantizers, quantize_dropout=True, **codebook)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T/down, code_dim) continuous latents."""
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N), or (B, N, layers) of a residual codebook (the first layers only: a
        coarser motion) -> motion (B, N*down, D)."""
        return self.decode_latent(self.vq.get_output_from_indices(codes))


class Tokenizer(nn.Module):
    """Motion (B, T, 54) <-> codes (B, T/down, parts), or (B, T/down, parts, quantizers)
    with residual quantizers."""

    def __init__(self, arch: dict) -> None:
        super().__init__()
        self.down = arch["down"]
        self.columns = part_columns(arch["parts"])
        self.parts = nn.ModuleList(PartVQ(len(cols), arch) for cols in self.columns)

    @property
    def residual(self) -> bool:
        """Whether the codebooks are residual (``quantizers`` > 1)."""
        return isinstance(self.parts[0].vq, ResidualVQ)

    def drop_layers(self, on: bool) -> None:
        """Residual codebooks: whether the next training forwards cut every part's stack at a
        random depth (vector-quantize-pytorch draws it, the same on every rank)."""
        for part in self.parts:
            part.vq.quantize_dropout = on

    def forward(self, motion: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction (B, T, 54), codes (B, T/down, parts[, quantizers]; in training, -1
        for the layers a quantizer dropout left out), commitment loss."""
        out = torch.zeros_like(motion)
        codes, loss = [], motion.new_zeros(())
        for cols, part in zip(self.columns, self.parts, strict=True):
            quantized, idx, commit = part.vq(part.encode(motion[..., cols]))
            out[..., cols] = part.decode_latent(quantized)
            codes.append(idx)
            loss = loss + commit.sum()
        return out, torch.stack(codes, 2), loss

    @torch.no_grad()
    def encode(self, motion: torch.Tensor) -> torch.Tensor:
        """(B, T, 54) -> codes (B, T/down, parts[, quantizers]), nearest codebook entries (no
        EMA update)."""
        codes = []
        for cols, part in zip(self.columns, self.parts, strict=True):
            was = part.vq.training
            part.vq.eval()
            _, idx, _ = part.vq(part.encode(motion[..., cols]))
            part.vq.train(was)
            codes.append(idx)
        return torch.stack(codes, 2)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, N, parts[, layers]) -> motion (B, N*down, 54)."""
        chunks = [part.decode(codes[:, :, p]) for p, part in enumerate(self.parts)]
        out = chunks[0].new_zeros(*chunks[0].shape[:2], MOTION_DIM)
        for cols, chunk in zip(self.columns, chunks, strict=True):
            out[..., cols] = chunk
        return out


# ---------------------------------------------------------------- choreographer


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Causal self-attention over x (B, L, dim)."""
        b, length, dim = x.shape
        qkv = self.qkv(x).view(b, length, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(b, length, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class Choreographer(nn.Module):
    """Causal transformer: (codes of step i-1, music around step i) -> codes of step i."""

    def __init__(self, arch: dict) -> None:
        super().__init__()
        dim, parts, codebook = arch["dim"], arch["parts"], arch["codebook"]
        self.parts, self.context = parts, arch["context"]
        self.arch_styles = list(arch.get("styles") or [])
        self.back, self.ahead = arch["music_back"], arch["music_ahead"]
        self.tokens = nn.ModuleList(nn.Embedding(codebook, dim) for _ in range(parts))
        self.music = nn.Conv1d(arch["audio_dim"] * arch["down"], dim, self.back + self.ahead + 1)
        # The song's summary (mean and std of each normalised audio feature over the whole
        # song), added at every step: a style cue no window of a few seconds gives.
        self.summary = nn.Linear(2 * arch["audio_dim"], dim) if arch.get("summary") else None
        # The dance style (train shards with two styles or more), added at every step like
        # the summary; the last row (kept at zero) is "no style": unlabelled or not asked.
        styles = arch.get("styles") or []
        self.style = nn.Embedding(len(styles) + 1, dim, padding_idx=len(styles)) if styles else None
        # Each style's vocabulary: the codes its train dances use (style, part, code). A
        # dance asked for in a style samples only these, as the motion graph takes only that
        # style's segments: the embedding alone moved the dance but not into the style
        # (m2d val, requested rumba classified rumba in 0 % of windows).
        if styles:
            self.register_buffer("style_codes", torch.zeros(len(styles), parts, codebook).bool())
        self.position = nn.Embedding(self.context, dim)
        self.drop = nn.Dropout(arch["dropout"])
        self.blocks = nn.ModuleList(
            Block(dim, arch["heads"], arch["dropout"]) for _ in range(arch["layers"])
        )
        self.ln = nn.LayerNorm(dim)
        # Part p > 0 reads the codes chosen for parts < p at the same step.
        self.given = nn.ModuleList(nn.Embedding(codebook, dim) for _ in range(parts - 1))
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, codebook))
            for _ in range(parts)
        )

    def music_features(
        self, pooled: torch.Tensor, summary: torch.Tensor | None, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled audio (B, N, down*F) -> (B, N, dim); step i sees steps i-back..i+ahead
        (and the song summary (B, 2F), the style index (B,), if the model uses them)."""
        x = F.pad(pooled.transpose(1, 2), (self.back, self.ahead))
        return self.music_window(x, summary, style)

    def music_window(
        self, padded: torch.Tensor, summary: torch.Tensor | None, style: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Music features of already padded pooled audio (B, down*F, N + back + ahead)."""
        out = self.music(padded).transpose(1, 2)
        if self.summary is not None:
            out = out + self.summary(summary)[:, None]
        if self.style is not None and style is not None:
            out = out + self.style(style)[:, None]
        return out

    def learn_style_codes(self, codes: list[tuple[np.ndarray, int]]) -> None:
        """Set each style's vocabulary from (codes (N, parts), style index) of the train
        sequences (an index past the styles: unlabelled, not counted)."""
        if self.style is None:
            return
        used = torch.zeros_like(self.style_codes)
        for sequence, index in codes:
            if index < len(used):
                for part in range(self.parts):
                    used[index, part, torch.from_numpy(np.asarray(sequence[:, part]))] = True
        self.style_codes.copy_(used)

    def vocabulary(self, style: str | None) -> np.ndarray | None:
        """(parts, codebook) bool: the codes a dance in ``style`` may use; None: any."""
        index = self.style_index(style)
        if self.style is None or index >= len(self.arch_styles):
            return None
        allowed = self.style_codes[index].cpu().numpy()
        return allowed if allowed.any(axis=1).all() else None  # a part it never saw: any

    def style_index(self, style: str | None) -> int:
        """The embedding row of ``style``; the "no style" row for None or an unknown one."""
        return style_index(list(self.arch_styles), style)

    def embed(self, previous: torch.Tensor, music: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Inputs (B, L, dim): codes of the previous steps (B, L, parts) + music (B, L, dim)."""
        x = music + self.position.weight[start : start + previous.shape[1]]
        for p, table in enumerate(self.tokens):
            x = x + table(previous[..., p])
        return self.drop(x)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.ln(x)

    def logits(self, h: torch.Tensor, part: int, chosen: torch.Tensor) -> torch.Tensor:
        """Logits of ``part`` given the trunk output and the codes of parts < part."""
        for q in range(part):
            h = h + self.given[q](chosen[..., q])
        return self.heads[part](h)

    def forward(self, previous: torch.Tensor, music: torch.Tensor, target: torch.Tensor) -> list:
        """Teacher-forced logits of every part: previous/target (B, L, parts), music (B, L, dim)."""
        h = self.trunk(self.embed(previous, music))
        return [self.logits(h, p, target) for p in range(self.parts)]


class Motif(nn.Module):
    def __init__(self, arch: dict) -> None:
        super().__init__()
        self.arch = dict(arch)
        self.tokenizer = Tokenizer(arch)
        self.choreographer = Choreographer(arch)


def build(arch: dict) -> Motif:
    """The whole network from its architecture dict (``motif_train.fit``'s ``arch``)."""
    return Motif(arch)


# ---------------------------------------------------------------- generation


def pool_audio(audio_n: np.ndarray, down: int, steps: int) -> np.ndarray:
    """Normalised audio (T, F) -> (steps, down*F), the frames of each step side by side.

    Frames past the end repeat the last frame.
    """
    frames = steps * down
    if len(audio_n) < frames:
        pad = np.repeat(audio_n[-1:], frames - len(audio_n), axis=0)
        audio_n = np.concatenate([audio_n, pad])
    return audio_n[:frames].reshape(steps, -1).astype(np.float32)


def song_summary(audio_n: np.ndarray) -> np.ndarray:
    """(2F,): mean and std over frames of normalised audio features (T, F)."""
    return np.concatenate([audio_n.mean(0), audio_n.std(0)]).astype(np.float32)


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))  # torch's exact GELU


class Stepper:
    """The choreographer's generation in numpy: one code step at a time, with a key/value
    cache over a sliding window of ``context`` steps.

    A step is ~100 small operations; through torch each costs 10-100 us of dispatch (more
    on a busy machine), numpy does the same arithmetic in a fraction of that. When the
    window is full, the newest half is re-encoded (positions from 0, as in training) and
    generation goes on: constant cost per step on a song of any length.
    """

    def __init__(self, model: Choreographer) -> None:
        def a(t: torch.Tensor) -> np.ndarray:
            return t.detach().float().cpu().numpy()

        def linear(m: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
            return a(m.weight).T.copy(), a(m.bias)

        self.parts, self.context = model.parts, model.context
        self.tokens = [a(t.weight) for t in model.tokens]
        self.given = [a(t.weight) for t in model.given]
        self.position = a(model.position.weight)
        self.layers = [
            {
                "ln1": (a(b.ln1.weight), a(b.ln1.bias)),
                "ln2": (a(b.ln2.weight), a(b.ln2.bias)),
                "qkv": linear(b.attn.qkv),
                "proj": linear(b.attn.proj),
                "fc": linear(b.mlp[0]),
                "out": linear(b.mlp[2]),
            }
            for b in model.blocks
        ]
        self.heads_n = model.blocks[0].attn.heads if model.blocks else 1
        self.ln = (a(model.ln.weight), a(model.ln.bias))
        self.head_layers = [(linear(h[0]), linear(h[2])) for h in model.heads]
        dim = self.position.shape[1]
        self.keys = np.zeros((len(self.layers), self.context, dim), np.float32)
        self.values = np.zeros_like(self.keys)
        self.length = 0

    def reset(self) -> None:
        self.length = 0

    def inputs(self, previous: np.ndarray, music: np.ndarray) -> np.ndarray:
        """Inputs (L, dim) of the next L positions: previous codes (L, parts), music (L, dim)."""
        x = music + self.position[self.length : self.length + len(previous)]
        for p, table in enumerate(self.tokens):
            x = x + table[previous[:, p]]
        return x

    def advance(self, x: np.ndarray) -> np.ndarray:
        """Run new positions x (L, dim) through the trunk; returns their outputs (L, dim)."""
        new, start = len(x), self.length
        end = start + new
        heads = self.heads_n
        hd = x.shape[1] // heads
        causal = np.arange(end)[None, :] > (start + np.arange(new))[:, None]  # (L, end)
        for i, layer in enumerate(self.layers):
            h = _layer_norm(x, *layer["ln1"])
            qkv = h @ layer["qkv"][0] + layer["qkv"][1]
            q, k, v = np.split(qkv, 3, axis=-1)
            self.keys[i, start:end], self.values[i, start:end] = k, v
            keys = self.keys[i, :end].reshape(end, heads, hd)
            values = self.values[i, :end].reshape(end, heads, hd)
            scores = np.einsum("lhd,nhd->hln", q.reshape(new, heads, hd), keys) / np.sqrt(hd)
            scores = np.where(causal[None], -np.inf, scores)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            scores /= scores.sum(-1, keepdims=True)
            y = np.einsum("hln,nhd->lhd", scores, values).reshape(new, -1)
            x = x + y @ layer["proj"][0] + layer["proj"][1]
            h = _gelu(_layer_norm(x, *layer["ln2"]) @ layer["fc"][0] + layer["fc"][1])
            x = x + h @ layer["out"][0] + layer["out"][1]
        self.length = end
        return _layer_norm(x, *self.ln)

    def logits(self, h: np.ndarray, part: int, chosen: np.ndarray) -> np.ndarray:
        for q in range(part):
            h = h + self.given[q][chosen[q]]
        (w1, b1), (w2, b2) = self.head_layers[part]
        return _gelu(h @ w1 + b1) @ w2 + b2


def _sample(
    logits: np.ndarray, temperature: float, top_k: int, rng, allowed: np.ndarray | None = None
) -> int:
    logits = logits.astype(np.float64) / max(temperature, 1e-5)
    if allowed is not None:
        logits = np.where(allowed, logits, -np.inf)
    if 0 < top_k < len(logits):
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    p = np.exp(logits - logits.max())
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


def sample_codes(
    net: Motif,
    music: np.ndarray,
    prime: np.ndarray,
    seed: int,
    temperature: float | None = None,
    top_k: int | None = None,
    vocabulary: np.ndarray | None = None,
) -> np.ndarray:
    """Codes (N, parts) for music features (N, dim), starting after the codes ``prime``;
    ``vocabulary`` (parts, codebook) bool: the codes allowed (None: all)."""
    temperature = net.arch["temperature"] if temperature is None else temperature
    top_k = net.arch["top_k"] if top_k is None else top_k
    stepper = Stepper(net.choreographer)
    rng = np.random.default_rng(seed)
    steps, context = len(music), stepper.context
    history = np.zeros((steps + 1, stepper.parts), dtype=np.int64)
    history[0] = prime  # history[i] is the input (previous codes) of step i
    offset = 0
    for i in range(steps):
        if i - offset >= context:  # window full: keep the newest half
            offset = i - context // 2
            stepper.reset()
            stepper.advance(stepper.inputs(history[offset:i], music[offset:i]))
        h = stepper.advance(stepper.inputs(history[i : i + 1], music[i : i + 1]))[0]
        chosen = history[i + 1]
        for p in range(stepper.parts):
            allowed = None if vocabulary is None else vocabulary[p]
            chosen[p] = _sample(stepper.logits(h, p, chosen), temperature, top_k, rng, allowed)
    return history[1:]


def motion_rows(pose: np.ndarray, stats: Stats) -> np.ndarray:
    """A pose (17, 3) as one normalised motion row (zero root velocity)."""
    row = np.concatenate([pose.reshape(-1), np.zeros(3)])
    return ((row - stats.motion_mean) / stats.motion_std).astype(np.float32)


@torch.no_grad()
def generate_motion(
    net: Motif,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int = 0,
    temperature: float | None = None,
    top_k: int | None = None,
    smooth: float | None = None,
    foot_lock: float | None = None,
    style: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) root-centred and root (T, 3), float32, for raw audio features (T, F).

    ``temperature``, ``top_k``, ``smooth`` and ``foot_lock`` override the values stored in
    ``net.arch``; ``style``: one of ``net.arch["styles"]`` (a model trained on styled
    shards), None for no style cue.
    """
    net.eval()
    device = next(net.parameters()).device
    down = net.arch["down"]
    frames = len(audio)
    if frames == 0:
        return np.zeros((0, skeleton.NUM_JOINTS, 3), np.float32), np.zeros((0, 3), np.float32)
    steps = -(-frames // down)
    audio_n = (np.asarray(audio, np.float32) - stats.audio_mean) / stats.audio_std
    pooled = torch.from_numpy(pool_audio(audio_n, down, steps)).to(device)
    summary = torch.from_numpy(song_summary(audio_n)).to(device)
    index = torch.tensor([net.choreographer.style_index(style)], device=device)
    music = net.choreographer.music_features(pooled[None], summary[None], index)[0]
    music = music.float().cpu().numpy()

    start = torch.from_numpy(start_rows(first_pose, stats, down)).to(device)
    prime = net.tokenizer.encode(start[None])[0, 0]

    vocabulary = net.choreographer.vocabulary(style)
    codes = sample_codes(net, music, prime.cpu().numpy(), seed, temperature, top_k, vocabulary)
    codes = torch.cat([prime[None], torch.from_numpy(codes).to(device)])
    motion = net.tokenizer.decode(codes[None])[0, down:]
    motion = motion[:frames].float().cpu().numpy()
    return finish_motion(motion, start[0].cpu().numpy(), stats, net.arch, smooth, foot_lock)


def start_rows(first_pose: np.ndarray, stats: Stats, down: int) -> np.ndarray:
    """The start pose (root-centred, bones at the training lengths) as ``down`` normalised
    motion rows (down, 54) standing still: what the tokenizer encodes as the start (a zero
    velocity is zero in either ``root_frame``; ``stats`` are in the model's)."""
    first = np.asarray(first_pose, dtype=np.float32).reshape(-1, 3)
    first = first - first[0]  # root-centred, whatever it held
    lengths = torch.from_numpy(stats.bone_lengths.astype(np.float32))
    first = project_bones(torch.from_numpy(first), lengths).numpy()
    return np.tile(motion_rows(first, stats), (down, 1))


def finish_motion(
    motion: np.ndarray,
    start: np.ndarray,
    stats: Stats,
    arch: dict,
    smooth: float | None = None,
    foot_lock: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decoded normalised motion (T, 54) -> pose (T, 17, 3) and root (T, 3), float32: smoothed,
    blended into the start row ``start`` (54,) over the first ``arch["down"]`` frames (frame 0
    is the start pose), bones at the training lengths, the root integrated with a leak and
    the feet settled; a ``root_frame`` "body" velocity is first turned into the world frame.
    ``smooth``/``foot_lock`` None: the values in ``arch``."""
    frames, down = len(motion), arch["down"]
    lengths = torch.from_numpy(stats.bone_lengths.astype(np.float32))
    # The decoder's frame-level ripple (jerk 3-4x the real dances') is removed by a Gaussian
    # of ~1 frame; joint speed drops by ~2%.
    smooth = arch.get("smooth", 0.0) if smooth is None else smooth
    if smooth > 0 and frames > 1:
        motion = gaussian_filter1d(motion, smooth, axis=0, mode="nearest")
    # Blend into the start pose over the first step: frame 0 is exactly the start pose.
    offset = start[:POSE_DIM] - motion[0, :POSE_DIM]
    blend = np.clip(1.0 - np.arange(frames) / down, 0.0, None)[:, None]
    motion[:, :POSE_DIM] += blend * offset
    motion = motion * stats.motion_std + stats.motion_mean
    constant = stats.motion_std <= STD_FLOOR * (1 + 1e-6)  # e.g. an unmeasured root
    motion[:, constant] = stats.motion_mean[constant]
    pose = torch.from_numpy(motion[:, :POSE_DIM].reshape(frames, skeleton.NUM_JOINTS, 3))
    pose = project_bones(pose, lengths).numpy()
    velocity = motion[:, POSE_DIM:].astype(np.float64)
    # A body-frame root velocity turns back with the decoded pose's own heading (the pose
    # keeps its world orientation). Checkpoints from before this setting: world.
    if arch.get("root_frame", "world") == "body":
        velocity = root_to_world(velocity, pose)
    velocity[0] = 0.0
    root = leaky_integral(velocity, ROOT_LEAK_S * stats.fps)
    # The decoder knows nothing of the floor: its planted feet glide (skating 3-4x the real
    # dances'). Checkpoints from before this setting have no foot_lock: left as they were.
    foot_lock = arch.get("foot_lock", 0.0) if foot_lock is None else foot_lock
    root = settle_own_feet(pose.astype(np.float64), root, stats.fps, foot_lock)
    return pose.astype(np.float32), root.astype(np.float32)
