"""Song uploads: limits, content checks and storage under the content hash.

- The size limit holds while the body streams in (:class:`LimitedReceive`), so an oversize
  upload is refused after ``limit`` bytes, not after it has filled the disk.
- Whether a file is audio is decided by decoding it (libsndfile: WAV, OGG Vorbis/Opus,
  FLAC, MP3, ...), never by its name; the decoder also gives its length, checked against
  the limits, and whether anything is audible.
- The stored file is ``SONGS/<sha256>.<format>``: the client's file name is never part of a
  path. The copy is written to a hidden temporary file first and removed on any failure.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kakashi.errors import MediaError

# libsndfile's container names -> the suffix the viewer and ffmpeg recognise.
_SUFFIXES = {"WAV": ".wav", "WAVEX": ".wav", "OGG": ".ogg", "FLAC": ".flac", "MP3": ".mp3"}
# Peak amplitude below which a song is taken for silence (-60 dBFS).
_SILENCE_PEAK = 1e-3


class UploadTooLarge(MediaError):
    """The request body grew past the upload limit."""


class LimitedReceive:
    """An ASGI ``receive`` that raises :class:`UploadTooLarge` once the body passes
    ``limit`` bytes, so the multipart parser never spools more than that."""

    def __init__(self, receive, limit: int) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.more_body = True

    async def __call__(self):
        message = await self.receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.more_body = message.get("more_body", False)
            if self.received > self.limit:
                raise UploadTooLarge(
                    f"the upload is larger than the limit of {self.limit / 1e6:g} MB; "
                    "send a shorter or more compressed song (or start the studio with a "
                    "larger --max-upload-mb)"
                )
        return message

    async def discard_rest(self, cap: int) -> None:
        """Read and drop what the client still sends (up to ``cap`` bytes), so it can read
        the error answer instead of seeing its connection reset mid-upload."""
        dropped = 0
        while self.more_body and dropped < cap:
            message = await self.receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            self.more_body = message.get("more_body", False)


@dataclass
class Song:
    """A stored, checked upload."""

    path: Path
    sha256: str
    duration_s: float


def _check_audio(path: Path, min_s: float, max_s: float) -> tuple[str, float]:
    """(suffix, duration) of an audio file, or a MediaError saying what is wrong with it."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception:  # libsndfile says "format not recognised" in several ways
        raise MediaError(
            "the file cannot be decoded as audio (not a song, or damaged); send a WAV, OGG, "
            "FLAC or MP3 song"
        ) from None
    suffix = _SUFFIXES.get(info.format)
    if suffix is None or info.frames <= 0 or info.samplerate <= 0:
        raise MediaError(
            f"the file is {info.format_info or info.format} audio, which the studio does not "
            "take; send a WAV, OGG, FLAC or MP3 song"
        )
    duration = info.frames / info.samplerate
    if duration < min_s:
        raise MediaError(
            f"the song lasts {duration:.2f} s; a dance needs at least {min_s:g} s of music"
        )
    if duration > max_s:
        raise MediaError(
            f"the song lasts {duration / 60:.1f} min, longer than the limit of "
            f"{max_s / 60:g} min; cut it shorter (or start the studio with a larger "
            "--max-minutes)"
        )
    # Decode it all (blocks of ~1 s): a damaged stream fails here, not in a worker later.
    peak = 0.0
    try:
        for block in soundfile.blocks(str(path), blocksize=info.samplerate, dtype="float32"):
            if block.size:
                peak = max(peak, float(np.abs(block).max()))
    except Exception as exc:
        raise MediaError(f"the song is damaged: decoding stopped with {exc}") from None
    if peak < _SILENCE_PEAK:
        raise MediaError("the song is silent (nothing above -60 dBFS): nothing to dance to")
    return suffix, duration


def store_song(
    source: BinaryIO, folder: Path, *, max_bytes: int, min_s: float, max_s: float
) -> Song:
    """Copy an upload into ``folder`` under its content hash after checking it is a song."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".upload-{uuid.uuid4().hex}.part"
    digest = hashlib.sha256()
    size = 0
    try:
        with open(temporary, "wb") as out:
            while chunk := source.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    raise UploadTooLarge(
                        f"the song is larger than the limit of {max_bytes / 1e6:g} MB"
                    )
                digest.update(chunk)
                out.write(chunk)
        if size == 0:
            raise MediaError("the uploaded file is empty; choose a song")
        suffix, duration = _check_audio(temporary, min_s, max_s)
        sha = digest.hexdigest()
        target = folder / f"{sha}{suffix}"
        if target.exists():  # the same song again: keep the first copy
            temporary.unlink()
        else:
            temporary.replace(target)
        return Song(target, sha, duration)
    finally:
        temporary.unlink(missing_ok=True)


def remove_partials(folder: Path) -> None:
    """Delete the hidden temporary files of uploads and results cut short (shutdown)."""
    if folder.is_dir():
        for path in folder.rglob(".*.part*"):
            path.unlink(missing_ok=True)
