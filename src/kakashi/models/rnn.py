"""The seed RNN: (audio[t], audio[t-1], motion[t-1]) -> motion[t], one LSTM step per frame.

Everything is in normalised units (see ``data.Stats``). An autoregressive model trained only
on true previous poses (teacher forcing) never sees its own errors, and at generation time
drifts into a frozen mean pose. Two counter-measures, both set in ``TrainConfig``:

- scheduled sampling (Bengio et al. 2015): with probability ``1 - teacher_prob`` a step is
  fed the model's own previous output instead of the true pose; ``teacher_prob`` decays
  over the epochs from 1 to ``train.teacher_min``;
- Gaussian noise (``train.input_noise``) on the fed-back motion.

The same module, with ``noise_dim > 0``, is the C-RNN-GAN generator: it then also reads a
noise vector each step, so a GAN generator can start from a trained RNN's weights.
"""

from __future__ import annotations

import torch
from torch import nn


class DanceRNN(nn.Module):
    def __init__(
        self,
        audio_dim: int,
        motion_dim: int,
        hidden: int = 128,
        layers: int = 2,
        dropout: float = 0.1,
        noise_dim: int = 0,
    ) -> None:
        super().__init__()
        self.audio_dim, self.motion_dim, self.noise_dim = audio_dim, motion_dim, noise_dim
        self.hidden, self.layers = hidden, layers
        self.inp = nn.Linear(2 * audio_dim + noise_dim + motion_dim, hidden)
        self.lstm = nn.LSTM(
            hidden, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, motion_dim)

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
        """One frame: inputs (B, D) -> motion (B, 54) and the new LSTM state."""
        x = self._inputs(audio, audio_prev, motion_prev, noise)[:, None]
        h, state = self.lstm(x, state)
        return self.out(self.drop(h[:, 0])), state

    def forward(
        self,
        audio: torch.Tensor,
        motion: torch.Tensor,
        teacher_prob: float = 1.0,
        input_noise: float = 0.0,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Predict frames 1..T of a window: audio (B, T+1, F), motion (B, T+1, 54) -> (B, T, 54).

        Frame 0 is context. With ``teacher_prob == 1`` the whole window runs as one LSTM call
        (fast); otherwise frame by frame, each step fed the truth with probability
        ``teacher_prob`` and its own previous output otherwise.
        """
        fed = motion[:, :-1]
        if input_noise > 0:
            fed = fed + input_noise * _randn(fed.shape, generator, fed.device)
        if teacher_prob >= 1.0:
            step_noise = None if noise is None else noise[:, 1:]
            x = self._inputs(audio[:, 1:], audio[:, :-1], fed, step_noise)
            h, _ = self.lstm(x)
            return self.out(self.drop(h))
        outputs, state, previous = [], None, fed[:, 0]
        for t in range(audio.shape[1] - 1):
            if t > 0:
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
            previous = out
            if input_noise > 0:
                previous = previous + input_noise * _randn(previous.shape, generator, fed.device)
        return torch.stack(outputs, dim=1)


def _randn(shape: torch.Size, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device)


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)
