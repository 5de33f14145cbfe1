"""Every user-facing error class, in one place.

Every error a user can cause (a bad sheet row, a corrupt video, an unreachable URL, a
checkpoint from another feature set) is a :class:`KakashiError`. The command line prints
its message without a traceback and exits with status 1, so Snakemake's log for that job
says what went wrong and what to do, and ``--keep-going`` lets the other sources finish.
"""


class KakashiError(Exception):
    """An error caused by the user's input, with a message that says what to do."""


class SheetError(KakashiError):
    """The sources sheet or the config is invalid."""


class FetchError(KakashiError):
    """A URL could not be downloaded or expanded."""


class MediaError(KakashiError):
    """A video or audio file cannot be decoded or lacks a needed stream."""


class MotionError(MediaError):
    """A motion-capture file cannot be read or makes no sense as a human body."""


class PoseError(KakashiError):
    """Pose estimation failed for a source (e.g. no person in view)."""


class AlignError(KakashiError):
    """Pose and audio-feature frame counts disagree by more than the tolerance."""


class ShardError(KakashiError):
    """A shard is missing, damaged, or its metadata disagrees with what reads it."""


class DanceFileError(KakashiError):
    """A dance file is missing, unreadable or malformed."""


class OutputError(KakashiError):
    """An output file cannot be written (missing or read-only folder, bad size, ...)."""


class ModelError(KakashiError):
    """Training or generation cannot go on (bad config, no training data, ...)."""


class CheckpointError(ModelError):
    """A checkpoint file is missing, corrupt or was written for something else."""


class UnknownModelError(ModelError):
    """A model name that the studio does not serve."""


class EvaluationError(KakashiError):
    """The inputs of an evaluation are missing, empty or inconsistent."""
