"""Model name -> its modules. Adding a model is one module (network, loss, generate step),
one entry here, and its settings section (with defaults) under ``train`` in the config
schema; the workflow then trains, generates with and evaluates it like the others.

A model's *network* module provides the inference side, and imports no training code:

- ``build(arch: dict) -> torch.nn.Module``: the network a checkpoint's ``arch`` describes;
- ``generate_motion(net, stats, audio, first_pose, seed) -> (pose (T, 17, 3), root (T, 3))``
  for raw audio features ``audio`` (T, F) at ``stats.fps``: exactly T frames.

Its *trainer* module provides ``run(config, progress, rank, world, device) -> dict``: the
training loop (one process, or one rank of a DistributedDataParallel group), which writes
the checkpoint files (``kakashi.models.checkpoint``) and returns the last epoch's row.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

from kakashi.errors import ModelError


@dataclass(frozen=True)
class ModelEntry:
    network: str  # module: build(arch), generate_motion(...)
    trainer: str  # module: run(config, progress, rank, world, device)
    summary: str


MODELS: dict[str, ModelEntry] = {
    "rnn": ModelEntry(
        "kakashi.models.rnn", "kakashi.models.train", "seed RNN: LSTM, audio -> next pose"
    ),
    "crnngan": ModelEntry(
        "kakashi.models.crnngan", "kakashi.models.train", "C-RNN-GAN started from the seed RNN"
    ),
    "motif": ModelEntry(
        "kakashi.models.motif",
        "kakashi.models.motif_train",
        "VQ-VAE motion tokens + music-conditioned transformer",
    ),
    "motiongraph": ModelEntry(
        "kakashi.models.motiongraph",
        "kakashi.models.motiongraph_build",
        "beat-synchronous motion graph: real segments chosen for the music",
    ),
}


def _entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name]


def network(name: str) -> ModuleType:
    """The inference module of a model."""
    return importlib.import_module(_entry(name).network)


def trainer(name: str) -> ModuleType:
    """The training module of a model."""
    return importlib.import_module(_entry(name).trainer)
