"""The studio's edits of a finished dance: "another take of these bars" and "keep the upper
body, new legs" (issue #25, docs/editing.md).

``POST /api/dances`` with ``edit_of`` (the id of a finished dance of this studio) and no
song makes a new take of that dance for the same song, with the same model:

- ``from_s`` and ``to_s`` (seconds): the span made anew, the rest kept bit-identically
  (``kakashi generate --dance D --regenerate FROM-TO``);
- or ``keep``: ``upper`` or ``lower``, the body part kept (``--keep``);
- ``seed`` (default 0) and ``style`` (default: the edited dance's) as for a song.

A bad field is a 422 whose one line says what to send. The job is a dance job like any
other (its id hashes the edited dance's id and the fields), listed as a take.
"""

from __future__ import annotations

import math
import re

from kakashi.errors import EditError
from kakashi.studio.jobs import Job, JobBoard, job_id

_NUMBER = re.compile(r"[0-9]{1,6}(\.[0-9]{1,3})?")  # seconds: digits, up to ms
_SEED = re.compile(r"[0-9]{1,10}")
SEED_MAX = 2**31 - 1
# The form fields an edit may carry (anything else is a mistake worth naming).
FIELDS = ("edit_of", "from_s", "to_s", "keep", "seed", "style", "model")


def _text(form, name: str) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 100:
        raise EditError(f"field {name!r} must be text of at most 100 characters")
    return value.strip()


def _seconds(form, name: str) -> float:
    text = _text(form, name)
    if not _NUMBER.fullmatch(text):
        raise EditError(f"{name} must be a time in seconds such as 4 or 12.5, not {text[:20]!r}")
    return float(text)


def edit_job(form, board: JobBoard, catalog, check_style) -> tuple[Job, tuple]:
    """The dance job an edit form asks for, and the arguments of
    :func:`kakashi.studio.jobs.make_dance` after the job's id. ``check_style(model,
    text)``: the style asked for, checked against the model's (None for auto)."""
    from kakashi.models.editing import EditRequest

    unknown = sorted(set(form.keys()) - set(FIELDS))
    if unknown:
        raise EditError(
            f"an edit takes {', '.join(FIELDS)}; not {', '.join(unknown)} (no song: it "
            "is the edited dance's)"
        )
    source_id = _text(form, "edit_of")
    source = board.get(source_id)
    if source is None or source.kind != "dance" or source.status != "done":
        raise EditError(
            f"edit_of {source_id[:40]!r}: give the id of a finished dance of this studio"
        )
    spanned = bool(_text(form, "from_s") or _text(form, "to_s"))
    keep = _text(form, "keep").lower()
    if spanned == bool(keep):
        raise EditError(
            "give from_s and to_s (another take of these bars) or keep (upper or lower), "
            "one of the two"
        )
    seed_text = _text(form, "seed") or "0"
    if not _SEED.fullmatch(seed_text) or int(seed_text) > SEED_MAX:
        raise EditError(f"seed must be a whole number from 0 to {SEED_MAX}, not {seed_text!r}")
    seed = int(seed_text)
    asked = _text(form, "model")
    if asked and asked != source.request["model"]:
        raise EditError(
            f"an edit dances with the edited dance's model ({source.request['model']}); "
            "leave model out"
        )
    model = catalog.get(source.request["model"])  # served still, and usable
    style = check_style(model, _text(form, "style") or source.request.get("style", "auto"))
    dance_file = str(source.folder / "dance.npz")
    fields: dict = {"edit_of": source.id}
    if keep:
        if keep not in ("upper", "lower"):
            raise EditError(f"keep must be upper or lower, not {keep[:20]!r}")
        edit = EditRequest(dance=dance_file, keep=keep)
        fields["keep"] = keep
    else:
        start, end = _seconds(form, "from_s"), _seconds(form, "to_s")
        duration = float(source.result.get("duration_s") or source.request["duration_s"])
        frames = (end - start) * float(source.result.get("fps", 30))
        if not (math.isfinite(end) and start < end <= duration + 1e-3) or frames < 2:
            raise EditError(
                f"from_s {start:g} and to_s {end:g}: give a span of at least two frames "
                f"within the dance (0-{duration:.2f} s), from_s before to_s"
            )
        edit = EditRequest(dance=dance_file, regenerate=f"{start:g}-{end:g}")
        fields |= {"from_s": start, "to_s": end}
    dance_id = job_id("edit", *fields.values(), seed, style or "auto")
    request = {**source.request, **fields, "seed": seed, "style": style or "auto", "start": "mean"}
    job = Job(dance_id, "dance", board.dances_dir / dance_id, request=request)
    song = str(board.songs_dir / source.request["song"])
    return job, (song, str(model.path), seed, "mean", str(job.folder), style, edit)
