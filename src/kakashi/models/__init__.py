"""Dance models: data, settings, checkpoints, a registry of models, training and generation.

In the order a model is made and used (each module small, nanoGPT style):

- ``data``: Parquet shards -> normalised windows; statistics from the train split only.
- ``config``: training settings, torch-free, resolved against the config schema.
- ``registry``: model name -> its network module and its trainer module.
- ``rnn``, ``crnngan``: the networks (and their ``build`` / ``generate_motion``).
- ``kinematics``: bone-length projection and root integration every model shares.
- ``checkpoint``: one checkpoint format; ``load_model`` builds any model by name.
- ``distributed``: one process or N DistributedDataParallel ranks, for every trainer.
- ``train``: the training loop of the recurrent models.
- ``generate``: a dance for any song, or for every shard of a split.

The command line is ``kakashi.cli.models``. This package imports no torch at import time.
"""
