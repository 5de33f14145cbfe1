"""Song uploads: limits, content checks and storage under the content hash.

- The size limit holds while the body streams in (:class:`LimitedReceive`), so an oversize
  upload is refused after ``limit`` bytes, not after it has filled the disk.
- Slow clients are cut: the body must arrive within ``body_timeout_s`` and never stall
  for a tenth of it (:class:`SlowUpload`, a 408), so a trickle cannot hold a connection.
- Whether a file is audio is decided by decoding it (libsndfile: WAV, OGG Vorbis/Opus,
  FLAC, MP3, ...), never by its name; what libsndfile does not read (M4A/AAC, WebM/Opus,
  WMA, the audio of a video) is converted to OGG Vorbis by the ffmpeg of imageio-ffmpeg.
  The decoder also gives its length, checked against the limits, and whether anything is
  audible.
- The stored file is ``SONGS/<sha256>.<format>``: the client's file name is never part of a
  path. The copy is written to a hidden temporary file first and removed on any failure.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from kakashi.errors import MediaError

# libsndfile's container names -> the suffix the viewer and ffmpeg recognise.
_SUFFIXES = {"WAV": ".wav", "WAVEX": ".wav", "OGG": ".ogg", "FLAC": ".flac", "MP3": ".mp3"}
_ACCEPTED = "WAV, OGG, FLAC, MP3, M4A/AAC or Opus"
# Seconds ffmpeg may take to convert a song libsndfile cannot read (a 15-min M4A: ~10 s).
_CONVERT_TIMEOUT_S = 180
# Peak amplitude below which a song is taken for silence (-60 dBFS).
_SILENCE_PEAK = 1e-3


class UploadTooLarge(MediaError):
    """The request body grew past the upload limit."""


class SlowUpload(MediaError):
    """The request body came too slowly (a stalled or trickling client)."""


class LimitedReceive:
    """An ASGI ``receive`` that raises :class:`UploadTooLarge` once the body passes
    ``limit`` bytes, so the multipart parser never spools more than that, and
    :class:`SlowUpload` when the body takes longer than ``timeout_s`` in all or stalls for
    a tenth of it."""

    def __init__(self, receive, limit: int, timeout_s: float = 300.0) -> None:
        self.receive = receive
        self.limit = limit
        self.received = 0
        self.more_body = True
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s

    async def __call__(self):
        left = self.deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self.receive(), min(left, self.timeout_s / 10))
        except TimeoutError:
            raise SlowUpload(
                f"the upload came too slowly ({self.received} bytes; the studio waits "
                f"{self.timeout_s:g} s for a whole song and {self.timeout_s / 10:g} s for "
                "each part of it); try again on a faster connection"
            ) from None
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

    async def discard_rest(self, cap: int, seconds: float = 5.0) -> None:
        """Read and drop what the client still sends (up to ``cap`` bytes, for at most
        ``seconds``), so it can read the error answer instead of seeing its connection
        reset mid-upload; a client that stalls gets the answer after ``seconds``."""
        dropped = 0
        deadline = time.monotonic() + seconds
        while self.more_body and dropped < cap:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                message = await asyncio.wait_for(self.receive(), left)
            except TimeoutError:
                return
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

    def request_fields(self, filename: str | None) -> dict:
        """What a dance job's request says of its song (the client's file name, as shown:
        its last path part, at most 200 characters)."""
        shown = (filename or "song")[:200].replace("\\", "/")
        return {
            "song_sha256": self.sha256,
            "duration_s": round(self.duration_s, 3),
            "song": self.path.name,
            "song_name": Path(shown).name,
        }


def _undecodable() -> MediaError:
    return MediaError(
        f"the file cannot be decoded as audio (not a song, or damaged); send a {_ACCEPTED} song"
    )


def _convert(path: Path, max_s: float) -> Path:
    """``path`` converted to OGG Vorbis beside it by the bundled ffmpeg (M4A/AAC, WebM,
    ...): at most ``max_s`` + 1 s of it, so an over-long song costs little to refuse."""
    import imageio_ffmpeg

    output = path.with_name(path.name + ".ogg")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error",
        "-xerror", "-y", "-i", str(path), "-vn", "-map", "0:a:0", "-t", f"{max_s + 1:.3f}",
        "-c:a", "libvorbis", "-q:a", "5", "-f", "ogg", str(output),
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=_CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        output.unlink(missing_ok=True)
        raise MediaError(
            f"converting the song took over {_CONVERT_TIMEOUT_S} s; send a {_ACCEPTED} song"
        ) from None
    if done.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        output.unlink(missing_ok=True)
        raise _undecodable()
    return output


def _check_audio(path: Path, min_s: float, max_s: float) -> tuple[Path, str, float]:
    """(the file to keep, its suffix, duration) of an audio file (``path`` itself, or its
    OGG conversion), or a MediaError saying what is wrong with it."""
    import soundfile

    try:
        info = soundfile.info(str(path))
        if _SUFFIXES.get(info.format) is None:
            raise ValueError(info.format)
    except Exception:  # libsndfile says "format not recognised" in several ways
        path = _convert(path, max_s)
        try:
            info = soundfile.info(str(path))
        except Exception:
            raise _undecodable() from None
    suffix = _SUFFIXES.get(info.format)
    if suffix is None or info.frames <= 0 or info.samplerate <= 0:
        raise _undecodable()
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
    return path, suffix, duration


def store_song(
    source: BinaryIO, folder: Path, *, max_bytes: int, min_s: float, max_s: float
) -> Song:
    """Copy an upload into ``folder`` under its content hash after checking it is a song."""
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".upload-{uuid.uuid4().hex}.part"
    converted = temporary.with_name(temporary.name + ".ogg")  # where _convert writes
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
        kept, suffix, duration = _check_audio(temporary, min_s, max_s)
        sha = digest.hexdigest()  # of the upload: the same M4A twice is one song
        target = folder / f"{sha}{suffix}"
        if target.exists():  # the same song again: keep the first copy, now in use
            os.utime(target)
        else:
            kept.replace(target)
        return Song(target, sha, duration)
    finally:
        temporary.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)


def remove_partials(folder: Path) -> None:
    """Delete the hidden temporary files of uploads and results cut short (shutdown)."""
    if folder.is_dir():
        for path in folder.rglob(".*.part*"):
            path.unlink(missing_ok=True)
