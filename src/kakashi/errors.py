"""Every user-facing error class, in one place.

Every error a user can cause (a bad sheet row, a corrupt video, an unreachable URL, a
checkpoint from another feature set) is a :class:`KakashiError`. The command line prints
its message without a traceback and exits with status 1, so Snakemake's log for that job
says what went wrong and what to do, and ``--keep-going`` lets the other sources finish.
"""


def tool_reason(text: str, returncode: int | None = None) -> str:
    """The reason an external tool (ffmpeg, libsndfile, moviepy) gave, short and never blank.

    ffmpeg's messages can be pages long and the first lines say what matters; some failures
    print nothing at all (killed, out of memory), and then the exit status is the reason.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines:
        return " ".join(lines[:3])[:500]
    if returncode is not None and returncode < 0:
        import signal

        return f"stopped by {signal.Signals(-returncode).name}, with no message"
    if returncode is not None:
        return f"exit status {returncode}, with no message"
    return "no reason given"


class KakashiError(Exception):
    """An error caused by the user's input, with a message that says what to do."""


class InputError(KakashiError):
    """An input path is no readable file: a link loop, a named pipe, a device, a kernel file."""


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


class EditError(KakashiError):
    """An edit of a dance (keyframes, continuation, a span, a body part) that does not fit
    the song, the model or the dance it edits."""


class EvaluationError(KakashiError):
    """The inputs of an evaluation are missing, empty or inconsistent."""
