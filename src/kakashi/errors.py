"""User-facing errors.

Every error a user can cause (a bad sheet row, a corrupt video, an unreachable URL)
is a :class:`KakashiError`. The command line prints its message without a traceback
and exits with status 1, so Snakemake's log for that job says what went wrong and
what to do, and ``--keep-going`` lets the other sources finish.
"""


class KakashiError(Exception):
    """An error caused by the user's input, with a message that says what to do."""


class SheetError(KakashiError):
    """The sources sheet or the config is invalid."""


class FetchError(KakashiError):
    """A URL could not be downloaded or expanded."""


class MediaError(KakashiError):
    """A video or audio file cannot be decoded or lacks a needed stream."""


class PoseError(KakashiError):
    """Pose estimation failed for a source (e.g. no person in view)."""


class AlignError(KakashiError):
    """Pose and audio-feature frame counts disagree by more than the tolerance."""
