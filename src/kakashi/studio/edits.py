"""The studio's edits of a finished dance (issue #25, docs/editing.md): "another take of
these bars", "keep the upper body, new legs", "new take through these poses" (pinned
poses) and "continue this dance" (to another song).

``POST /api/dances`` with ``edit_of`` (the id of a finished dance of this studio) makes a
new take of that dance with the same model, by one of (the flags of ``kakashi generate``
they stand for, built into the same :class:`~kakashi.models.editing.EditRequest`):

- ``from_s`` and ``to_s`` (seconds): the span made anew, the rest kept bit-identically
  (``--dance D --regenerate FROM-TO``), for the same song;
- ``keep``: ``upper`` or ``lower``, the body part kept (``--dance D --keep``), same song;
- ``keyframes_s``: times in seconds, comma-separated (``1.5,6``): the new take of the same
  song passes through the edited dance's poses at those times (``--keyframes D@1.5,6``);
- ``song``: another song, an upload or the stored name of one of this studio's songs (a
  take's ``request.song``), longer than the dance: the new dance for it starts with all of
  the edited dance, bit-identically, and goes on (``--continue D``);

and ``seed`` (default 0) and ``style`` (default: the edited dance's) as for a song.

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
# A stored song's name: SONGS/<sha256>.<format> (uploads.store_song); never a path.
_STORED_SONG = re.compile(r"[0-9a-f]{64}\.[a-z0-9]{2,5}")
SEED_MAX = 2**31 - 1
# Pinned poses one take may pass through: one every second or two of a short song. Each
# bends the model's motion within 0.5 s around it (editing.BLEND_S), so many more would
# leave little of the new take's own dancing between them.
MAX_KEYFRAMES = 16
# The form fields an edit may carry (anything else is a mistake worth naming).
FIELDS = ("edit_of", "from_s", "to_s", "keep", "keyframes_s", "song", "seed", "style", "model")
# What a take's request says about the edit that made it: none of it is inherited by an
# edit of that take (a new take of a span edit's bars is no longer that span edit).
_EDIT_KEYS = ("edit_of", "from_s", "to_s", "keep", "keyframes_s", "continues")
_ONE_EDIT = (
    "give one of from_s and to_s (another take of these bars), keep (upper or lower), "
    "keyframes_s (the times of the poses to pass through) or song (the song to continue "
    "the dance to)"
)


def _text(form, name: str, longest: int = 100) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > longest:
        raise EditError(f"field {name!r} must be text of at most {longest} characters")
    return value.strip()


def _seconds(form, name: str) -> float:
    text = _text(form, name)
    if not _NUMBER.fullmatch(text):
        raise EditError(f"{name} must be a time in seconds such as 4 or 12.5, not {text[:20]!r}")
    return float(text)


def _keyframe_times(text: str, frames: int, fps: float) -> list[float]:
    """The pinned times of ``keyframes_s`` (``1.5,6``), each on its own frame of the dance."""
    parts = [part.strip() for part in text.split(",")]
    if len(parts) > MAX_KEYFRAMES:
        raise EditError(
            f"keyframes_s: at most {MAX_KEYFRAMES} pinned poses, not {len(parts)}: pin fewer"
        )
    duration = frames / fps
    times, taken = [], set()
    for part in parts:
        if not _NUMBER.fullmatch(part):
            raise EditError(
                "keyframes_s must be times in seconds separated by commas, such as 1.5,6, "
                f"not {part[:20]!r}"
            )
        t = float(part)
        frame = round(t * fps)
        if frame >= frames:
            raise EditError(
                f"keyframes_s {part}: give times within the dance (0-{duration:.2f} s), "
                "such as 1.5,6"
            )
        if frame in taken:
            raise EditError(f"keyframes_s {part}: two pinned poses on one frame; pin each once")
        taken.add(frame)
        times.append(t)
    return sorted(times)


def _studio_song(name: str, board: JobBoard) -> dict:
    """The request fields of the stored song ``name``: a song of a finished take."""
    if _STORED_SONG.fullmatch(name):
        for job in board.dances():
            if job.status == "done" and job.request.get("song") == name:
                return {k: job.request[k] for k in ("song", "song_name", "song_sha256",
                                                    "duration_s")}  # fmt: skip
    raise EditError(
        f"song {name[:40]!r}: upload the song to continue to, or give the stored name of one "
        "of this studio's songs (a take's request.song)"
    )


def edit_job(form, board: JobBoard, catalog, check_style, store) -> tuple[Job, tuple]:
    """The dance job an edit form asks for, and the arguments of
    :func:`kakashi.studio.jobs.make_dance` after the job's id. ``check_style(model,
    text)``: the style asked for, checked against the model's (None for auto);
    ``store(upload)``: the song uploaded to continue to, checked and stored
    (:class:`kakashi.studio.uploads.Song`), called once everything else is checked."""
    from kakashi.models.editing import EditRequest

    unknown = sorted(set(form.keys()) - set(FIELDS))
    if unknown:
        raise EditError(f"an edit takes {', '.join(FIELDS)}; not {', '.join(unknown)}")
    source_id = _text(form, "edit_of")
    source = board.get(source_id)
    if source is None or source.kind != "dance" or source.status != "done":
        raise EditError(
            f"edit_of {source_id[:40]!r}: give the id of a finished dance of this studio"
        )
    spanned = bool(_text(form, "from_s") or _text(form, "to_s"))
    keep = _text(form, "keep").lower()
    pins = _text(form, "keyframes_s", longest=10 * MAX_KEYFRAMES + 100)
    song = form.get("song")
    song_text = "" if song is None or not isinstance(song, str) else _text(form, "song", 200)
    continued = song is not None and (not isinstance(song, str) or bool(song_text))
    if [spanned, bool(keep), bool(pins), continued].count(True) != 1:
        raise EditError(_ONE_EDIT)
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
    board.touch(source)  # the last one the size limit evicts: the new take reads it
    dance_file = str(source.folder / "dance.npz")
    fps = float(source.result.get("fps", 30))
    duration = float(source.result.get("duration_s") or source.request["duration_s"])
    frames = int(source.result.get("frames") or round(duration * fps))
    fields: dict = {"edit_of": source.id}
    song_fields: dict = {}  # another song than the edited dance's (a continuation)
    if keep:
        if keep not in ("upper", "lower"):
            raise EditError(f"keep must be upper or lower, not {keep[:20]!r}")
        edit = EditRequest(dance=dance_file, keep=keep)
        fields["keep"] = keep
    elif pins:
        times = _keyframe_times(pins, frames, fps)
        edit = EditRequest(keyframes=[f"{dance_file}@{','.join(map(repr, times))}"])
        fields["keyframes_s"] = times
    elif continued:
        if isinstance(song, str):
            song_fields = _studio_song(song_text, board)
        else:
            song_fields = store(song).request_fields(song.filename)
        kept_s = frames / fps
        if song_fields["duration_s"] <= kept_s + 1 / fps:
            raise EditError(
                f"song {song_fields['song_name'][:40]!r} lasts {song_fields['duration_s']:.2f} "
                f"s, the dance {kept_s:.2f} s: nothing to continue; give a longer song"
            )
        edit = EditRequest(continue_from=dance_file)
        fields["continues"] = True
    else:
        start, end = _seconds(form, "from_s"), _seconds(form, "to_s")
        span_frames = (end - start) * fps
        if not (math.isfinite(end) and start < end <= duration + 1e-3) or span_frames < 2:
            raise EditError(
                f"from_s {start:g} and to_s {end:g}: give a span of at least two frames "
                f"within the dance (0-{duration:.2f} s), from_s before to_s"
            )
        edit = EditRequest(dance=dance_file, regenerate=f"{start:g}-{end:g}")
        fields |= {"from_s": start, "to_s": end}
    song_id = [song_fields["song_sha256"]] if song_fields else []
    dance_id = job_id("edit", *fields.values(), seed, style or "auto", *song_id)
    inherited = {k: v for k, v in source.request.items() if k not in _EDIT_KEYS}
    request = {**inherited, **song_fields, **fields, "seed": seed,
               "style": style or "auto", "start": "mean"}  # fmt: skip
    job = Job(dance_id, "dance", board.dances_dir / dance_id, request=request)
    song_path = str(board.songs_dir / request["song"])
    return job, (song_path, str(model.path), seed, "mean", str(job.folder), style, edit)
