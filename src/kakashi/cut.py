"""Cut a video to its dancing part: trim, resample to the project fps, bound the size.

Writes the clip (H.264 MP4 with its AAC audio, for rendering beside a generated
dance later) and a mono 16-bit WAV of the same span (for audio features).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

from kakashi.atomic import atomic_output
from kakashi.errors import MediaError, tool_reason

log = logging.getLogger("kakashi.cut")


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

    source = Path(source)
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
        stop = duration if end is None or math.isnan(end) else min(end, duration)
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
        ):
            try:
                sub.write_videofile(
                    str(partial_video),
                    fps=fps,
                    codec="libx264",
                    audio_codec="aac",
                    preset="veryfast",
                    ffmpeg_params=["-crf", "20", "-pix_fmt", "yuv420p"],
                    threads=2,
                    logger=None,
                    temp_audiofile_path=str(out_video.parent),
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


def _short(exc: Exception) -> str:
    """The reason in a moviepy exception (its ffmpeg's message), or the exception's kind."""
    return tool_reason(str(exc)) if str(exc).strip() else type(exc).__name__
