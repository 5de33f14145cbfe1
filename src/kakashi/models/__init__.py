"""Dance models: the seed RNN and a C-RNN-GAN, their data, training loop and generation.

Modules (each small, nanoGPT style):

- ``data``: Parquet shards -> normalised windows, statistics from the train split only.
- ``rnn``: the seed RNN (audio now, audio before, pose before -> pose now).
- ``crnngan``: C-RNN-GAN (Mogren 2016) conditioned on audio.
- ``train``: ``TrainConfig`` and the one training loop of both models; checkpoints.
- ``generate``: a dance for any song.
- ``cli``: ``kakashi train`` and ``kakashi generate``.

This package imports no torch at import time, so the command line starts fast.
"""

from kakashi.errors import KakashiError


class ModelError(KakashiError):
    """Training or generation cannot go on (bad config, no training data, ...)."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, corrupt or was written for something else."""
