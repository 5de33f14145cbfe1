"""Cut a video to its dancing part: trim, resample to the project fps, bound the size.

Writes the clip (H.264 MP4 with its AAC audio, for rendering beside a generated
dance later) and a mono 16-bit WAV of the same span (for audio features).

A truncated file (an interrupted download or copy) decodes shorter than its header says;
moviepy then repeats the last frame it could read. So the cut compares the span asked
for with what decodes: a loss of more than ``TRUNCATED_ERROR_S`` is an error, a smaller one
a warning, both with the two durations. ``--end`` past the end of a whole file is a warning.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from kakashi.atomic import atomic_output, scratch_file
from kakashi.errors import MediaError, tool_reason
from kakashi.inputs import require

log = logging.getLogger("kakashi.cut")

# Seconds of the asked span a truncated source may lack before the cut fails: beyond it the
# clip would be visibly short or end on a frozen frame.
TRUNCATED_ERROR_S = 1.0
# Header and decoder round a duration differently by up to a frame or two.
_DURATION_SLACK_S = 0.25
# moviepy's warning when a frame cannot be read: "... at time 30.76/30.88 sec. Using the
# last valid frame instead."
_SHORT_READ = re.compile(r"bytes wanted but .* at time ([0-9.]+)/([0-9.]+) sec")


@dataclass(frozen=True)
class CutResult:
    video: Path
    audio: Path
    start_s: float
    end_s: float
    frames: int
    size: tuple[int, int]


def cut_video(
    source: str | Path,
    out_video: str | Path,
    out_audio: str | Path,
    start: float = 0.0,
    end: float | None = None,
    fps: int | None = None,
    max_height: int | None = None,
    audio_sr: int | None = None,
) -> CutResult:
    """Trim ``source`` to [start, end) seconds at ``fps``; write the clip and a mono WAV.

    The span is shortened to a whole number of frames, so the video has
    ``round(duration * fps)`` frames and the WAV lasts exactly as long. Settings left
    None take the workflow's defaults (``kakashi.settings``).
    """
    from kakashi.settings import default

    fps = fps or default("fps")
    max_height = max_height or default("cut.max_height")
    audio_sr = audio_sr or default("cut.audio_sr")
    from moviepy import VideoFileClip

    source = require(source, "video", MediaError, "give a video file (MP4, AVI, MKV, ...)")
    out_video, out_audio = Path(out_video), Path(out_audio)
    try:
        clip = VideoFileClip(str(source))
    except Exception as exc:  # moviepy raises OSError, KeyError, IndexError... on bad files
        raise MediaError(
            f"cannot decode video {source}: {_short(exc)}; the file is corrupt or not a video. "
            "Replace it (or remove its row from the sources sheet)"
        ) from exc
    try:
        if clip.audio is None:
            raise MediaError(
                f"video {source} has no audio track; Kakashi learns dance from music, so it "
                "needs the music in the same file. Use a version of the video with sound"
            )
        duration = float(clip.duration or 0.0)
        if duration <= 0:
            raise MediaError(f"video {source} has no duration; the file is damaged")
        if start >= duration:
            raise MediaError(
                f"start {start} s is past the end of {source} ({duration:.2f} s); fix the "
                "start column of the sources sheet"
            )
        end = None if end is None or math.isnan(end) else end
        header_s = _header_duration(source)
        # Known before any work: a source far shorter than its header fails at once.
        _check_span(source, start, end, duration, header_s, warn=False)
        stop = duration if end is None else min(end, duration)
        frames = math.floor((stop - start) * fps + 1e-6)
        if frames < 1:
            raise MediaError(f"the span {start}-{stop} s of {source} is shorter than one frame")
        stop = start + frames / fps
        # moviepy writes int(duration * fps) frames, and stop - start can come out as
        # 14.3999999 for 432 frames; a nanosecond more makes the count exact.
        sub = clip.subclipped(start, stop).with_duration(frames / fps + 1e-9)
        if sub.h > max_height:
            # libx264 with yuv420p needs even dimensions.
            height = max_height - max_height % 2
            width = round(sub.w * height / sub.h / 2) * 2
            sub = sub.resized(new_size=(width, height))
        elif sub.w % 2 or sub.h % 2:
            sub = sub.cropped(x1=0, y1=0, width=sub.w - sub.w % 2, height=sub.h - sub.h % 2)
        with (
            atomic_output(out_video) as partial_video,
            atomic_output(out_audio) as partial_audio,
            # moviepy writes the audio track to a file of its own first, and leaves it
            # behind when the encode fails: name it here, so it is always removed.
            scratch_file(out_video, "audio.m4a") as moviepy_audio,
        ):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", UserWarning)  # moviepy's short reads
                    sub.write_videofile(
                        str(partial_video),
                        fps=fps,
                        codec="libx264",
                        audio_codec="aac",
                        preset="veryfast",
                        ffmpeg_params=["-crf", "20", "-pix_fmt", "yuv420p"],
                        threads=2,
                        logger=None,
                        temp_audiofile=str(moviepy_audio),
                    )
                    sub.audio.write_audiofile(
                        str(partial_audio),
                        fps=audio_sr,
                        nbytes=2,
                        codec="pcm_s16le",
                        ffmpeg_params=["-ac", "1"],
                        logger=None,
                    )
            except Exception as exc:
                raise MediaError(f"cannot decode or re-encode {source}: {_short(exc)}") from exc
            # Inside the atomic outputs: a clip that fails the check is never renamed into place.
            decoded_s = _decoded_until(caught, duration)
            _check_span(source, start, end, decoded_s, header_s, warn=True)
        log.info(
            "cut %s: %.3f-%.3f s, %d frames at %d fps, %dx%d",
            source,
            start,
            stop,
            frames,
            fps,
            sub.w,
            sub.h,
        )
        return CutResult(out_video, out_audio, start, stop, frames, (sub.w, sub.h))
    finally:
        clip.close()


def _header_duration(source: Path) -> float | None:
    """The video stream's duration its header claims (frame count / fps), or None.

    ffmpeg estimates the duration of an AVI without its index from the file's size, so a
    half-downloaded AVI looks whole to moviepy; OpenCV reads the header's frame count.
    """
    import cv2

    capture = cv2.VideoCapture(str(source))
    try:
        frames = capture.get(cv2.CAP_PROP_FRAME_COUNT)
        fps = capture.get(cv2.CAP_PROP_FPS)
    finally:
        capture.release()
    return frames / fps if frames > 0 and fps > 0 and math.isfinite(frames / fps) else None


def _decoded_until(caught: list[warnings.WarningMessage], duration: float) -> float:
    """Where decoding stopped: the time of moviepy's first unreadable frame, else the end.
    Other warnings are shown as usual (called after the recording has ended)."""
    times = []
    for warning in caught:
        match = _SHORT_READ.search(str(warning.message))
        if match:
            times.append(float(match.group(1)))
        else:  # not ours to swallow
            warnings.showwarning(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return min(times, default=duration)


def _check_span(
    source: Path,
    start: float,
    end: float | None,
    decoded_s: float,
    header_s: float | None,
    *,
    warn: bool,
) -> None:
    """Fail when the span asked for lacks more than TRUNCATED_ERROR_S of what the header
    promises; with ``warn``, say so for a smaller loss or an ``end`` past a whole file."""
    container_s = max(header_s or 0.0, decoded_s)
    asked_end = container_s if end is None else end
    truncated = container_s > decoded_s + _DURATION_SLACK_S
    lost = min(asked_end, container_s) - decoded_s
    if truncated and lost > TRUNCATED_ERROR_S:
        raise MediaError(
            f"video {source} is truncated: its header says {container_s:.2f} s but only "
            f"{decoded_s:.2f} s decode, so the clip {start:g}-{asked_end:g} s would lack "
            f"{lost:.2f} s; download or copy the file again"
        )
    if not warn:
        return
    if truncated:
        log.warning(
            "video %s is truncated: its header says %.2f s but only %.2f s decode; %s",
            source,
            container_s,
            decoded_s,
            f"the clip ends {lost:.2f} s early" if lost > 0 else "the clip asked for is whole",
        )
    elif end is not None and end > decoded_s + _DURATION_SLACK_S:
        log.warning(
            "--end %g s is past the end of %s (%.2f s); the clip ends there", end, source, decoded_s
        )


def _short(exc: Exception) -> str:
    """The reason in a moviepy exception (its ffmpeg's message), or the exception's kind."""
    return tool_reason(str(exc)) if str(exc).strip() else type(exc).__name__
