"""Dance models: data, settings, checkpoints, a registry of models, training and generation.

A model is two modules, ``NAME`` (network and generation, no training code) and
``NAME_train`` (its trainer), one line in ``registry.MODELS`` and a settings section
``train.NAME`` in the config schema. What they share (each module small, nanoGPT style):

- ``registry``: the one list of models; name -> its network and trainer modules.
- ``config``: training settings, torch-free, resolved and checked against the schema.
- ``data``: Parquet shards -> normalised windows; statistics from the train split only.
- ``stats``: the statistics a checkpoint carries (what inference needs of the data).
- ``checkpoint``: one checkpoint format; ``load_model`` builds any model by name.
- ``distributed``: one process or N DistributedDataParallel ranks, for every trainer, and
  ``finish``, the step every run ends with (checkpoint, history, plot, barrier).
- ``rnn``/``rnn_train``, ``crnngan``/``crnngan_train``, ``motif``/``motif_train``,
  ``motiongraph``/``motiongraph_train``: the models.
- ``generate``: a dance for any song (``song_features``), or for every shard of a split.

Bone lengths, the leaky root and planted feet are :mod:`kakashi.kinematics`. The command
line is ``kakashi.cli.models``. This package imports no torch at import time.
"""
