"""C-RNN-GAN (Mogren 2016), conditioned on audio.

- Generator: ``DanceRNN`` with ``noise_dim > 0``; each step reads audio[t], audio[t-1], a
  noise vector and its own previous output, and runs free (no teacher forcing), as it will
  when generating. It starts from a trained seed RNN (``init_generator_from_rnn``).
- Discriminator: a bidirectional LSTM over the (audio, motion) sequence, one real/fake
  logit per frame (averaged), as in the paper.
- Generator loss: feature matching (Salimans et al. 2016; Mogren uses it too) on the
  discriminator's time-averaged hidden features, plus a small adversarial term and a small
  reconstruction term that keeps the dance tied to the music it was paired with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kakashi.models.rnn import DanceRNN, build, generate_motion, masked_loss, masked_mixture_nll

# Inference is the seed RNN's: the generator is a DanceRNN that also reads noise.
__all__ = ["Discriminator", "build", "generate_motion"]


class Discriminator(nn.Module):
    def __init__(self, audio_dim: int, motion_dim: int, hidden: int = 64, layers: int = 1) -> None:
        super().__init__()
        self.inp = nn.Linear(audio_dim + motion_dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(
        self, audio: torch.Tensor, motion: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, F), (B, T, 54) -> logits (B,) and features (B, 2*hidden) for matching."""
        h, _ = self.lstm(torch.relu(self.inp(torch.cat([audio, motion], dim=-1))))
        return self.out(h).mean(dim=(1, 2)), h.mean(dim=1)


def init_generator_from_rnn(generator: DanceRNN, rnn_state: dict[str, torch.Tensor]) -> None:
    """Copy a seed RNN's weights into a generator; the noise columns start near zero.

    The generator's input layer has ``noise_dim`` extra columns between the audio and the
    motion inputs; they get small weights so the generator begins as the trained RNN.
    """
    own = generator.state_dict()
    for key, value in rnn_state.items():
        if key not in own:
            raise KeyError(key)
        if key == "inp.weight" and own[key].shape != value.shape:
            audio = 2 * generator.audio_dim
            weight = own[key].clone() * 0.01
            weight[:, :audio] = value[:, :audio]
            weight[:, audio + generator.noise_dim :] = value[:, audio:]
            own[key] = weight
        else:
            own[key] = value.clone()
    generator.load_state_dict(own)


def fake_motion(
    generator: torch.nn.Module,
    audio: torch.Tensor,
    motion: torch.Tensor,
    rng: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Free-running generator motion for frames 1..T of the windows, (B, T, 54), and the
    generator's raw output (the motion itself, or with a mixture output its parameters).

    ``generator`` is a DanceRNN or a DistributedDataParallel wrapping one: the call goes
    through the wrapper (so gradients are all-reduced), ``noise_dim`` comes from the module.
    """
    module = getattr(generator, "module", generator)
    noise_dim = module.noise_dim
    noise = torch.randn(
        (audio.shape[0], audio.shape[1], noise_dim), generator=rng, device=audio.device
    )
    # With a mixture output the generator feeds on (and is judged by) its sampled motion.
    rng = rng if module.mixtures else None  # (a plain output draws nothing from it)
    out, fake = generator(audio, motion, teacher_prob=0.0, noise=noise, generator=rng, samples=True)
    return fake, out


def discriminator_loss(
    discriminator: Discriminator, audio: torch.Tensor, motion: torch.Tensor, fake: torch.Tensor
) -> torch.Tensor:
    """Binary cross-entropy: real windows -> 1, generated ones (detached) -> 0."""
    cond = audio[:, 1:]
    real_logit, _ = discriminator(cond, motion[:, 1:])
    fake_logit, _ = discriminator(cond, fake.detach())
    return F.binary_cross_entropy_with_logits(
        real_logit, torch.ones_like(real_logit)
    ) + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit))


def generator_loss(
    discriminator: Discriminator,
    audio: torch.Tensor,
    motion: torch.Tensor,
    mask: torch.Tensor,
    fake: torch.Tensor,
    adv_weight: float,
    recon_weight: float,
    out: torch.Tensor | None = None,
    mixtures: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator loss, reconstruction term); call after the discriminator's step.

    The reconstruction term is the MSE of the generated motion; for a mixture output it is
    the negative log-likelihood of the real motion under the output ``out`` instead (the
    seed RNN's own loss): an MSE on samples would shrink the spread the sampling needs.
    """
    cond, real = audio[:, 1:], motion[:, 1:]
    with torch.no_grad():
        _, real_feat = discriminator(cond, real)
    fake_logit, fake_feat = discriminator(cond, fake)
    feature_matching = F.mse_loss(fake_feat.mean(0), real_feat.mean(0))
    adversarial = F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
    if mixtures:
        recon = masked_mixture_nll(out, real, mask[:, 1:], mixtures)
    else:
        recon = masked_loss(fake, real, mask[:, 1:])
    return feature_matching + adv_weight * adversarial + recon_weight * recon, recon.detach()
