"""Cutting real videos: trim, resample to fps, WAV; clear errors for bad videos."""

from __future__ import annotations

import imageio_ffmpeg
import pytest
import soundfile

from conftest import DEMO_VIDEO, shared_file
from kakashi.cut import cut_video
from kakashi.errors import MediaError


def test_cut_trims_and_resamples(tmp_path) -> None:
    result = cut_video(DEMO_VIDEO, tmp_path / "c.mp4", tmp_path / "c.wav", 10, 13.5, fps=30)
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(result.video))
    assert frames == result.frames == 105
    info = soundfile.info(str(result.audio))
    assert info.channels == 1 and info.samplerate == 44100
    assert abs(info.duration - 3.5) < 0.01
    assert result.size == (518, 496)


@pytest.mark.parametrize(("start", "end"), [(0.2333, 0.9733), (2.9999, 5.2), (60.01, None)])
def test_off_grid_spans_keep_every_frame(tmp_path, start, end) -> None:
    """Start/end off the frame grid: the MP4 has exactly the frames the WAV covers.

    Floating-point spans (0.7399999... s) used to lose the last frame in moviepy.
    """
    result = cut_video(DEMO_VIDEO, tmp_path / "c.mp4", tmp_path / "c.wav", start, end, fps=30)
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(result.video))
    assert frames == result.frames
    assert round(soundfile.info(str(result.audio)).duration * 30) == result.frames


def test_cut_bounds_the_resolution(tmp_path) -> None:
    result = cut_video(DEMO_VIDEO, tmp_path / "c.mp4", tmp_path / "c.wav", 0, 1, max_height=240)
    assert result.size[1] == 240 and result.size[0] % 2 == 0


def test_video_without_audio_fails_clearly(tmp_path) -> None:
    silent = shared_file("video_footskate_dance/dance.mp4")
    with pytest.raises(MediaError, match="dance.mp4 has no audio track"):
        cut_video(silent, tmp_path / "c.mp4", tmp_path / "c.wav")
    assert not list(tmp_path.iterdir())


def test_corrupt_video_fails_clearly(tmp_path) -> None:
    corrupt = tmp_path / "corrupt.avi"
    data = DEMO_VIDEO.read_bytes()
    corrupt.write_bytes(data[:2000] + bytes(len(data) // 50))
    with pytest.raises(MediaError, match="corrupt.avi"):
        cut_video(corrupt, tmp_path / "c.mp4", tmp_path / "c.wav")
    assert not (tmp_path / "c.mp4").exists() and not (tmp_path / "c.wav").exists()


def test_start_past_the_end(tmp_path) -> None:
    with pytest.raises(MediaError, match="past the end"):
        cut_video(DEMO_VIDEO, tmp_path / "c.mp4", tmp_path / "c.wav", start=500)
