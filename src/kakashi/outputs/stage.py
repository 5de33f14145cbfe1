"""What every output shares: the song's length in frames and the dance as shown on stage."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import MediaError, tool_reason
from kakashi.inputs import require

_ANKLE_HEIGHT = 0.05  # metres from the floor to the ankle joint


def audio_duration(path: str | Path) -> float:
    """Duration of a song in seconds (libsndfile first, then ffmpeg for other formats)."""
    path = require(path, "audio file", MediaError, "give a WAV, OGG, FLAC, MP3 or M4A song")
    try:
        import soundfile

        info = soundfile.info(str(path))
        if info.frames > 0:
            return info.frames / info.samplerate
    except Exception:  # not a libsndfile format (e.g. m4a, a video): ask ffmpeg below
        pass
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    command += ["-map", "0:a:0", "-f", "null", "-"]
    result = subprocess.run(command, capture_output=True, text=True)
    times = re.findall(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)", result.stderr)
    if result.returncode != 0 or not times:
        reason = tool_reason(result.stderr, result.returncode) if result.returncode else "no audio"
        raise MediaError(
            f"cannot read audio from {path} (ffmpeg: {reason}); give a WAV, OGG, FLAC, MP3 or "
            "M4A song"
        )
    hours, minutes, seconds = times[-1]
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


# How much shorter than its song a dance may be, its last pose held: the shard stage trims
# a clip's pose or audio by up to align.tolerance_frames (2 by default), two decoders round
# a song's length to frames differently, and a song may end in a moment of silence. A
# 1-frame dance with a 4-s song rendered a frozen MP4; a dance made for another song is no
# dance for this one.
MAX_SHORTFALL_S = 1.0


def song_frames(audio_path: str | Path, dance: Dance, dance_path: str | Path) -> int:
    """Frames to show: the song's length, ``round(song_s * fps)``, never fewer than the dance.

    A song shorter than the dance is an error, except by one frame: two decoders can round a
    song's length to frames differently, and 1/fps of silence does no harm. A dance shorter
    than its song by more than :data:`MAX_SHORTFALL_S` is an error too.
    """
    song_s = audio_duration(audio_path)
    frames = round(song_s * dance.fps)
    if frames < len(dance) - 1 or len(dance) < frames - MAX_SHORTFALL_S * dance.fps:
        raise MediaError(
            f"audio {audio_path} lasts {song_s:.2f} s but the dance {dance_path} lasts "
            f"{dance.duration_s:.2f} s: give the song the dance was made for"
        )
    return max(frames, len(dance))


def smooth(values: np.ndarray, sigma_frames: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 with edge padding (the camera must not shake)."""
    if sigma_frames <= 0 or len(values) < 2:
        return values.copy()
    radius = int(3 * sigma_frames)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma_frames) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(values, [(radius, radius)] + [(0, 0)] * (values.ndim - 1), mode="edge")
    out = np.empty_like(values)
    for column in range(values.shape[1]):
        out[:, column] = np.convolve(padded[:, column], kernel, mode="valid")
    return out


def stage_positions(dance: Dance, frames: int | None = None) -> np.ndarray:
    """World positions (frames, 17, 3) as shown on stage: floor at y = 0, last pose held.

    A dance without a root (all zeros: video with ``pose.root: none``) has its pelvis pinned
    at the origin, which would make the feet float whenever the knees bend: for such dances
    the lowest ankle is stood on the floor, frame by frame (lightly smoothed). A measured root
    is kept as it is, so jumps stay jumps; the floor then sits a little under the usual ankle
    height.
    """
    world = dance.world().astype(np.float64)
    ankles = world[:, list(skeleton.ANKLES), 1]
    if not dance.root.any():
        lowest = smooth(ankles.min(axis=1, keepdims=True), sigma_frames=1.5)
        world[:, :, 1] -= lowest - lowest.min()
        ankles = ankles - (lowest - lowest.min())
    # Ankles sit a few centimetres above the floor; a low percentile ignores jumps.
    world[:, :, 1] -= float(np.percentile(ankles.min(axis=1), 5)) - _ANKLE_HEIGHT
    if frames is None:
        return world
    return world[np.minimum(np.arange(frames), len(dance) - 1)]
