"""The motion stage: a motion-capture file and its music, ready for align and shard.

Reads the motion (BVH, AIST++ pickle, Dance-with-Melody JSON, joint arrays; see
``kakashi.motion``) on the canonical skeleton at the project fps, trims it to the
sheet's start/end, and writes the music of exactly that span as a mono WAV, so the
audio features have one vector per motion frame by construction.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from kakashi.atomic import atomic_output
from kakashi.dance import Dance
from kakashi.errors import MediaError

log = logging.getLogger("kakashi.motion.stage")


def prepare_motion(
    source: str | Path,
    audio: str | Path,
    out_pose: str | Path,
    out_audio: str | Path,
    fps: int | None = None,
    start: float = 0.0,
    end: float | None = None,
    audio_offset_s: float | None = None,
    source_fps: float | None = None,
    skeleton: str | None = None,
    audio_sr: int | None = None,
) -> Dance:
    """Write the canonical pose of ``source`` and the matching span of ``audio``.

    ``audio_offset_s`` is the audio time at which motion frame 0 plays; None takes what the
    file says (Dance-with-Melody's config.json), else 0.
    """
    import soundfile

    from kakashi.settings import default

    fps = fps or default("fps")
    audio_sr = audio_sr or default("cut.audio_sr")
    from kakashi.features import load_audio
    from kakashi.motion import read_motion

    motion = read_motion(Path(source), fps, skeleton_layout=skeleton, source_fps=source_fps)
    if audio_offset_s is None or (isinstance(audio_offset_s, float) and math.isnan(audio_offset_s)):
        audio_offset_s = float(motion.meta.get("audio_offset_s", 0.0))
    total = len(motion.pose)
    first = max(0, round(start * fps))
    last = total if end is None or math.isnan(end) else min(total, round(end * fps))
    if last <= first:
        raise MediaError(
            f"{source}: the span {start}-{end} s holds no motion frames (the motion lasts "
            f"{total / fps:.2f} s); fix start/end in the sources sheet"
        )
    frames = last - first
    span_start = audio_offset_s + first / fps
    span_seconds = frames / fps
    samples = load_audio(audio, audio_sr)
    available = len(samples) / audio_sr - span_start
    if available < span_seconds - 0.5 / fps:
        raise MediaError(
            f"audio {audio} is too short for motion {source}: the motion needs "
            f"{span_seconds:.2f} s from {span_start:.2f} s, the audio has "
            f"{max(available, 0):.2f} s there; check the audio file and audio_offset_s"
        )
    begin = round(span_start * audio_sr)
    clip = samples[begin : begin + round(span_seconds * audio_sr)]
    if len(clip) < round(span_seconds * audio_sr):  # within half a frame: pad with silence
        clip = np.pad(clip, (0, round(span_seconds * audio_sr) - len(clip)))
    with atomic_output(out_audio) as partial:
        soundfile.write(partial, clip, audio_sr, subtype="PCM_16")

    sequence = Dance(
        pose=motion.pose[first:last].astype(np.float32),
        root=motion.root[first:last].astype(np.float32),
        conf=np.ones(frames, dtype=np.float32),
        fps=float(fps),
        meta={
            **{key: value for key, value in motion.meta.items() if _jsonable(value)},
            "backend": "motion",
            "root_measured": True,
            "audio_offset_s": audio_offset_s,
            "frames_without_person": 0,
        },
    )
    sequence.save(out_pose)
    log.info(
        "%s: %d frames at %d fps, audio %s from %.3f s", source, frames, fps, audio, span_start
    )
    return sequence


def _jsonable(value: object) -> bool:
    return isinstance(value, (str, int, float, bool, list, dict, type(None)))
