"""Model name -> its modules: the one list of models. Adding a model is

- ``kakashi/models/NAME.py``: the network and its generation (imports no training code);
- ``kakashi/models/NAME_train.py``: its trainer;
- one line in :data:`MODELS`;
- its settings section ``train.NAME`` (with defaults) in the config schema, and NAME in
  the enum of ``train.models`` (tests/test_models.py checks that the three agree).

The workflow then trains, generates with and evaluates it like the others.

The *network* module ``kakashi.models.NAME`` provides the inference side:

- ``build(arch: dict) -> torch.nn.Module``: the network a checkpoint's ``arch`` describes;
- ``generate_motion(net, stats, audio, first_pose, seed) -> (pose (T, 17, 3), root (T, 3))``
  for raw audio features ``audio`` (T, F) at ``stats.fps``: exactly T frames.

The *trainer* module ``kakashi.models.NAME_train`` provides ``run(config, progress, rank,
world, device) -> Trained`` (:class:`kakashi.models.distributed.Trained`: the arch, the
weights and the history it trained, for one process or one rank of a
DistributedDataParallel group); :func:`kakashi.models.distributed.finish` writes the
checkpoint, the history CSV and plot for every model alike.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kakashi.errors import ModelError

# name -> what it is (``kakashi train --help`` and the README list these).
MODELS: dict[str, str] = {
    "rnn": "seed RNN: LSTM, audio -> next pose",
    "crnngan": "C-RNN-GAN started from the seed RNN",
    "motif": "VQ-VAE motion tokens + music-conditioned transformer",
    "motiongraph": "beat-synchronous motion graph: real segments chosen for the music",
    "maskdance": "VQ-VAE motion tokens + masked bidirectional transformer (edits by inpainting)",
}


def _known(name: str) -> str:
    if name not in MODELS:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return name


def network(name: str) -> ModuleType:
    """The inference module of a model: ``kakashi.models.NAME``."""
    return importlib.import_module(f"kakashi.models.{_known(name)}")


def trainer(name: str) -> ModuleType:
    """The training module of a model: ``kakashi.models.NAME_train``."""
    return importlib.import_module(f"kakashi.models.{_known(name)}_train")
