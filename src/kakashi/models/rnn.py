"""The seed RNN: (audio[t], audio[t-1], motion[t-1]) -> motion[t], one LSTM step per frame.

Everything is in normalised units (see ``data.Stats``). An autoregressive model trained only
on true previous poses (teacher forcing) never sees its own errors, and at generation time
drifts into a frozen mean pose. Two counter-measures, both set in ``TrainConfig``:

- scheduled sampling (Bengio et al. 2015): with probability ``1 - teacher_prob`` a step is
  fed the model's own previous output instead of the true pose; ``teacher_prob`` decays
  over the epochs from 1 to ``train.teacher_min``;
- Gaussian noise (``train.input_noise``) on the fed-back motion;
- or auto-conditioning (acLSTM, Li et al. 2018; ``train.rnn.autocond_true`` and
  ``autocond_free``): fixed alternating blocks of true and self-fed frames over the whole
  window, so the model learns to recover from its own drift for ``autocond_free`` frames
  at a time, every epoch, instead of only on random single frames.

A deterministic regression of an uncertain future converges to its conditional mean, and a
free-running loop of conditional means contracts to a still pose (liveliness 0.29 on Dance
with Melody, whatever the feeding schedule). With ``mixtures > 0`` the output is instead a
mixture of ``mixtures`` diagonal Gaussians (a mixture density network, Bishop 1994; Graves
2013; GrooveNet, Alemi et al. 2017), trained by negative log-likelihood and *sampled* at
generation (seeded), with the standard deviations scaled by ``temperature`` and the
sampling noise low-pass filtered over frames by ``sample_smooth`` (an AR(1) coefficient,
so the marginal noise stays N(0, 1) but no longer flips every frame), and the finished
motion smoothed by a Gaussian of ``smooth`` frames (as motif's decoder output; what is fed
back stays the raw samples).

The same module, with ``noise_dim > 0``, is the C-RNN-GAN generator: it then also reads a
noise vector each step, so a GAN generator can start from a trained RNN's weights.

Inference (``build`` + ``generate_motion``, the model-plugin interface) runs the trained
LSTM one frame at a time in numpy, and needs nothing of the training code.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter1d
from torch import nn

from kakashi import skeleton
from kakashi.kinematics import ROOT_LEAK_S, leaky_integral, project_bones_np
from kakashi.models.stats import POSE_DIM, STD_FLOOR, Stats
from kakashi.models.styles import style_columns


class DanceRNN(nn.Module):
    def __init__(
        self,
        audio_dim: int,
        motion_dim: int,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        noise_dim: int = 0,
        mixtures: int = 0,
        temperature: float = 1.0,
        sample_smooth: float = 0.0,
        smooth: float = 0.0,
    ) -> None:
        super().__init__()
        self.audio_dim, self.motion_dim, self.noise_dim = audio_dim, motion_dim, noise_dim
        self.hidden, self.layers = hidden, layers
        self.mixtures = mixtures
        # Generation settings of a mixture output, kept with the network like its architecture.
        self.temperature, self.sample_smooth, self.smooth = temperature, sample_smooth, smooth
        self.inp = nn.Linear(2 * audio_dim + noise_dim + motion_dim, hidden)
        self.lstm = nn.LSTM(
            hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, output_size(motion_dim, mixtures))

    def _inputs(
        self,
        audio: torch.Tensor,
        audio_prev: torch.Tensor,
        motion_prev: torch.Tensor,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        parts = [audio, audio_prev]
        if self.noise_dim:
            if noise is None:
                raise ValueError("this model needs a noise input")
            parts.append(noise)
        parts.append(motion_prev)
        return torch.relu(self.inp(torch.cat(parts, dim=-1)))

    def step(
        self,
        audio: torch.Tensor,
        audio_prev: torch.Tensor,
        motion_prev: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        noise: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One frame: inputs (B, D) -> output (B, P) and the new LSTM state; the output is
        the motion (B, 54), or with ``mixtures`` the mixture's parameters (``split_mixture``)."""
        x = self._inputs(audio, audio_prev, motion_prev, noise)[:, None]
        h, state = self.lstm(x, state)
        return self.out(self.drop(h[:, 0])), state

    def sample(
        self,
        out: torch.Tensor,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """A motion (..., 54) drawn from the output (itself without ``mixtures``): a component
        by its weight, then its Gaussian, reparameterised (differentiable in mean and std)."""
        if not self.mixtures:
            return out
        logits, means, log_std = split_mixture(out, self.mixtures, self.motion_dim)
        pick = torch.multinomial(
            torch.softmax(logits.reshape(-1, self.mixtures).float(), -1), 1, generator=generator
        ).reshape(*logits.shape[:-1], 1, 1)
        mean = means.gather(-2, pick.expand(*means.shape[:-2], 1, self.motion_dim))[..., 0, :]
        std = log_std.gather(-2, pick.expand(*means.shape[:-2], 1, self.motion_dim))[..., 0, :]
        return mean + temperature * std.exp() * _randn(mean.shape, generator, mean.device)

    def forward(
        self,
        audio: torch.Tensor,
        motion: torch.Tensor,
        teacher_prob: float = 1.0,
        input_noise: float = 0.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        feed_truth: torch.Tensor | None = None,
        samples: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predict frames 1..T of a window: audio (B, T+1, F), motion (B, T+1, 54) -> (B, T, P),
        P = 54, or the mixture's parameters with ``mixtures``; with ``samples`` also the motion
        (B, T, 54) each step fed on (sampled with ``mixtures``, else the output itself).

        Frame 0 is context. With ``teacher_prob == 1`` the whole window runs as one LSTM call
        (fast); otherwise frame by frame, each step fed the truth with probability
        ``teacher_prob`` and its own previous output otherwise. ``feed_truth`` (T,) bools, if
        given, fixes which steps get the truth instead (auto-conditioning).
        """
        fed = motion[:, :-1]
        if input_noise > 0:
            fed = fed + input_noise * _randn(fed.shape, generator, fed.device)
        if teacher_prob >= 1.0 and feed_truth is None:
            step_noise = None if noise is None else noise[:, 1:]
            x = self._inputs(audio[:, 1:], audio[:, :-1], fed, step_noise)
            h, _ = self.lstm(x)
            out = self.out(self.drop(h))
            return (out, self.sample(out, generator)) if samples else out
        outputs, drawn, state, previous = [], [], None, fed[:, 0]
        for t in range(audio.shape[1] - 1):
            if t > 0 and feed_truth is not None:
                previous = fed[:, t] if feed_truth[t] else previous
            elif t > 0:
                use_truth = _rand((len(fed), 1), generator, fed.device) < teacher_prob
                previous = torch.where(use_truth, fed[:, t], previous)
            out, state = self.step(
                audio[:, t + 1],
                audio[:, t],
                previous,
                state,
                None if noise is None else noise[:, t + 1],
            )
            outputs.append(out)
            previous = self.sample(out, generator)
            drawn.append(previous)
            if input_noise > 0:
                previous = previous + input_noise * _randn(previous.shape, generator, fed.device)
        out = torch.stack(outputs, dim=1)
        return (out, torch.stack(drawn, dim=1)) if samples else out


# Bounds of a predicted log standard deviation (normalised units): exp(-7) ~ 1e-3 keeps the
# likelihood finite on near-constant columns, exp(2) ~ 7 is wider than any z-scored value.
LOG_STD_MIN, LOG_STD_MAX = -7.0, 2.0


def output_size(motion_dim: int, mixtures: int) -> int:
    """Outputs per frame: the motion, or per component a weight logit, means and log-stds."""
    return motion_dim if not mixtures else mixtures * (1 + 2 * motion_dim)


def split_mixture(
    out: torch.Tensor, mixtures: int, motion_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(..., P) -> logits (..., K), means (..., K, D), log-stds (..., K, D) (clamped)."""
    k, d = mixtures, motion_dim
    logits = out[..., :k]
    means = out[..., k : k + k * d].unflatten(-1, (k, d))
    log_std = out[..., k + k * d :].unflatten(-1, (k, d)).clamp(LOG_STD_MIN, LOG_STD_MAX)
    return logits, means, log_std


def mixture_nll(out: torch.Tensor, target: torch.Tensor, mixtures: int) -> torch.Tensor:
    """Negative log-likelihood of ``target`` (..., D) under the mixture ``out``, per frame
    (...,), divided by D (a per-dimension figure, comparable across settings)."""
    d = target.shape[-1]
    logits, means, log_std = split_mixture(out, mixtures, d)
    z = (target[..., None, :] - means) * torch.exp(-log_std)
    log_normal = -0.5 * z.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    log_prob = torch.log_softmax(logits, -1) + log_normal.sum(-1)
    return -torch.logsumexp(log_prob, -1) / d


def masked_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "mse"
) -> torch.Tensor:
    """``kind`` (mse/huber) per number, averaged over the frames ``mask`` (B, T) keeps: the
    seed RNN's loss, its free-running val MSE and the C-RNN-GAN's reconstruction term."""
    if kind == "huber":
        error = F.smooth_l1_loss(pred, target, reduction="none")
    else:
        error = (pred - target) ** 2
    weights = mask[..., None]
    return (error * weights).sum() / (weights.sum() * pred.shape[-1]).clamp(min=1)


def masked_mixture_nll(
    out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, mixtures: int
) -> torch.Tensor:
    """:func:`mixture_nll` averaged over the frames ``mask`` (..., ) keeps: the seed RNN's
    training loss and the C-RNN-GAN's reconstruction term with a mixture output."""
    nll = mixture_nll(out, target, mixtures)
    return (nll * mask).sum() / mask.sum().clamp(min=1)


def autocond_schedule(
    steps: int, truth: int, free: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """acLSTM's feeding pattern for ``steps`` steps: ``truth`` true frames, then ``free``
    self-fed ones, repeated, from a random phase (so every step position gets both)."""
    period = truth + free
    phase = int(torch.randint(period, (1,), generator=generator)) if generator else 0
    position = (torch.arange(steps) + phase) % period
    return position < truth


def _randn(shape: torch.Size, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


# ---------------------------------------------------------------- inference


def build(arch: dict) -> DanceRNN:
    """The network a checkpoint's ``arch`` describes (weights still to be loaded)."""
    # Checkpoints from before the mixture output have no such keys: a plain MSE network.
    net = DanceRNN(
        arch["audio_dim"],
        arch["motion_dim"],
        arch["hidden"],
        arch["layers"],
        arch["dropout"],
        arch["noise_dim"],
        arch.get("mixtures", 0),
        arch.get("temperature", 1.0),
        arch.get("sample_smooth", 0.0),
        arch.get("smooth", 0.0),
    )
    # The styles whose columns follow the audio features (trained on styled shards).
    net.styles = list(arch.get("styles") or [])
    return net


class _NumpyStepper:
    """The model's per-frame step in numpy, with the same weights.

    A frame is ~25 tiny matrix operations; through torch each costs ~10-50 us of dispatch
    overhead (more on a busy machine), which made generation slower than realtime. numpy
    runs the same arithmetic at a fraction of that. ``tests/test_models.py`` checks that
    both give the same output.
    """

    def __init__(self, model) -> None:
        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float64)

        self.w_in, self.b_in = array(model.inp.weight).T, array(model.inp.bias)
        self.layers = [
            (
                array(getattr(model.lstm, f"weight_ih_l{k}")).T,
                array(getattr(model.lstm, f"weight_hh_l{k}")).T,
                array(getattr(model.lstm, f"bias_ih_l{k}") + getattr(model.lstm, f"bias_hh_l{k}")),
            )
            for k in range(model.layers)
        ]
        self.w_out, self.b_out = array(model.out.weight).T, array(model.out.bias)
        self.mixtures, self.motion_dim = model.mixtures, model.motion_dim
        self.h = np.zeros((model.layers, model.hidden))
        self.c = np.zeros((model.layers, model.hidden))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x = [audio[t], audio[t-1], (noise), motion[t-1]] -> motion[t] (normalised), or the
        mixture's parameters."""
        x = np.maximum(x @ self.w_in + self.b_in, 0.0)
        for k, (w_ih, w_hh, bias) in enumerate(self.layers):
            gates = x @ w_ih + self.h[k] @ w_hh + bias
            i, f, g, o = np.split(gates, 4)  # PyTorch's gate order
            self.c[k] = _sigmoid(f) * self.c[k] + _sigmoid(i) * np.tanh(g)
            self.h[k] = x = _sigmoid(o) * np.tanh(self.c[k])
        return x @ self.w_out + self.b_out

    def sample(
        self, out: np.ndarray, rng: np.random.Generator, eps: np.ndarray, temperature: float
    ) -> np.ndarray:
        """A motion from the mixture ``out``: a component drawn by weight, then its mean plus
        ``temperature`` x its std x ``eps`` (the frame's standard-normal noise)."""
        k, d = self.mixtures, self.motion_dim
        logits = out[:k] - out[:k].max()
        weights = np.exp(logits) / np.exp(logits).sum()
        pick = rng.choice(k, p=weights) if k > 1 else 0
        mean = out[k + pick * d : k + (pick + 1) * d]
        log_std = np.clip(out[k + k * d + pick * d : k + k * d + (pick + 1) * d],
                          LOG_STD_MIN, LOG_STD_MAX)  # fmt: skip
        return mean + temperature * np.exp(log_std) * eps


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free


def generate_motion(
    model: DanceRNN,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int = 0,
    project: bool = True,
    temperature: float | None = None,
    sample_smooth: float | None = None,
    smooth: float | None = None,
    style: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) and root (T, 3) for raw audio features (T, F). A mixture output is
    sampled (seeded by ``seed``); ``temperature``, ``sample_smooth`` and ``smooth`` override
    the values the network carries from training; ``style``: one of the network's styles
    (trained on styled shards), None for no style cue."""
    rng = np.random.default_rng(seed)
    temperature = model.temperature if temperature is None else temperature
    ar = model.sample_smooth if sample_smooth is None else sample_smooth
    smooth = model.smooth if smooth is None else smooth
    eps = np.zeros(model.motion_dim)
    step = _NumpyStepper(model.eval())
    audio_n = (audio - stats.audio_mean) / stats.audio_std
    styles = getattr(model, "styles", [])
    if styles:
        audio_n = np.concatenate([audio_n, style_columns(len(audio_n), styles, style)], axis=1)
    m_mean = stats.motion_mean.astype(np.float64)
    m_std = stats.motion_std.astype(np.float64)
    # Columns constant in training (an unmeasured root: velocity always 0) keep their value;
    # otherwise a tiny output bias times the floored std would integrate into a drift.
    constant = stats.motion_std <= STD_FLOOR * (1 + 1e-6)
    lengths = stats.bone_lengths.astype(np.float64)
    frames = len(audio)
    poses = np.zeros((frames, skeleton.NUM_JOINTS, 3))
    velocity = np.zeros((frames, 3))
    first = np.asarray(first_pose, dtype=np.float64).reshape(-1, 3)
    first = first - first[0]  # root-centred, whatever the file held
    poses[0] = project_bones_np(first, lengths) if project else first
    previous = (np.concatenate([poses[0].ravel(), velocity[0]]) - m_mean) / m_std
    for t in range(1, frames):
        parts = [audio_n[t], audio_n[t - 1]]
        if model.noise_dim:
            parts.append(rng.standard_normal(model.noise_dim))
        parts.append(previous)
        motion = step(np.concatenate(parts))
        if model.mixtures:
            # AR(1) noise: N(0, 1) per frame, correlated over ~1 / (1 - ar) frames.
            fresh = rng.standard_normal(model.motion_dim)
            eps = ar * eps + math.sqrt(1.0 - ar**2) * fresh if t > 1 else fresh
            motion = step.sample(motion, rng, eps, temperature)
        motion = motion * m_std + m_mean
        motion[constant] = m_mean[constant]
        pose = motion[:POSE_DIM].reshape(skeleton.NUM_JOINTS, 3)
        if project:
            pose = project_bones_np(pose, lengths)
        poses[t], velocity[t] = pose, motion[POSE_DIM:]
        previous = (np.concatenate([pose.ravel(), velocity[t]]) - m_mean) / m_std
    if model.mixtures and smooth > 0 and frames > 2:
        # Sampling leaves a frame-level ripple (jerk several times the real dances'); frame 0
        # stays the start pose.
        poses[1:] = gaussian_filter1d(poses[1:], smooth, axis=0, mode="nearest")
        velocity[1:] = gaussian_filter1d(velocity[1:], smooth, axis=0, mode="nearest")
        if project:
            poses[1:] = project_bones_np(poses[1:], lengths)
    root = leaky_integral(velocity, ROOT_LEAK_S * stats.fps)
    return poses.astype(np.float32), root.astype(np.float32)
