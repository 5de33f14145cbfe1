"""kakashi render: MP4s of real dances with their music, read back with OpenCV and ffmpeg."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from conftest import DEMO_SONG, REPO
from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.outputs.render import render_dance
from kakashi.outputs.stage import audio_duration
from kakashi.shards import read_dance
from test_export_bvh import cmu_mocap_dance

# bvhio (used for the mocap dance) imports PyGLM the old way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Importing PyGLM:PendingDeprecationWarning")

SIZE = "640x360"  # small frames keep the tests fast; bench/render.py measures 1280x720


@pytest.fixture(scope="module")
def demo(demo_shards: Path, tmp_path_factory) -> dict[str, Path]:
    """Dancer c (test split) and dancer b as dance files, with dancer c's clip and song."""
    folder = tmp_path_factory.mktemp("render")
    clips = demo_shards.parent / "clips"
    read_dance(demo_shards / "split=test" / "dancer-c.parquet").save(folder / "c.npz")
    read_dance(demo_shards / "split=val" / "dancer-b.parquet").save(folder / "b.npz")
    return {
        "dance": folder / "c.npz",
        "other": folder / "b.npz",
        "audio": clips / "dancer-c.wav",
        "video": clips / "dancer-c.mp4",
    }


def read_frames(path: Path) -> tuple[list[np.ndarray], float]:
    import cv2

    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, fps


def stream_info(path: Path) -> str:
    """ffmpeg's description of the file's streams (there is no ffprobe)."""
    import imageio_ffmpeg

    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
    )
    return result.stderr


def skeleton_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels in the limbs' saturated blue or orange (the grid and background are grey)."""
    frame = frame.astype(int)
    return (frame.max(axis=-1) - frame.min(axis=-1)) > 80


def test_render_mp4_has_song_length_audio_and_moving_skeleton(demo, tmp_path):
    out = tmp_path / "dance.mp4"
    assert main(["render", str(demo["dance"]), "--audio", str(demo["audio"]), "-o",
                 str(out), "--size", SIZE, "--style", "stick"]) == 0  # fmt: skip
    frames, fps = read_frames(out)
    song_s = soundfile.info(str(demo["audio"])).duration
    assert fps == pytest.approx(30, abs=0.01)
    assert frames[0].shape == (360, 640, 3)
    assert abs(len(frames) / fps - song_s) <= 1 / fps
    info = stream_info(out)
    assert re.search(r"Stream #0:\d.*Video: h264.*yuv420p", info), info
    assert re.search(r"Stream #0:\d.*Audio: aac", info), info
    assert abs(audio_duration(out) - song_s) <= 1 / fps  # the muxed audio itself
    # Not blank, and the limbs move: skeleton pixels differ between frames a second apart.
    masks = [skeleton_mask(frame) for frame in frames[::30]]
    assert all(mask.sum() > 300 for mask in masks)
    moved = [(a ^ b).sum() / max(a.sum(), 1) for a, b in itertools.pairwise(masks)]
    print(f"{out}: {len(frames)} frames; skeleton pixels changed per second {np.median(moved):.2f}")
    assert np.median(moved) > 0.3
    assert [path.name for path in tmp_path.iterdir()] == ["dance.mp4"]  # no temporaries


def test_song_a_little_longer_than_dance_holds_last_pose(demo, tmp_path):
    # Up to 1 s (stage.MAX_SHORTFALL_S): the shard stage trims a few frames, songs end in
    # silence. The picture then freezes on the dance's last pose.
    samples, rate = soundfile.read(str(DEMO_SONG))
    dance_frames = len(Dance.load(demo["dance"]))
    song = tmp_path / "song.wav"
    soundfile.write(str(song), samples[: int(rate * (dance_frames / 30 + 0.9))], rate)
    out = tmp_path / "long.mp4"
    stats = render_dance(demo["dance"], song, out, size=(320, 180), style="stick")
    frames, _ = read_frames(out)
    assert stats.frames == len(frames) == dance_frames + 27
    still = [frames[i].astype(int) for i in (dance_frames + 2, dance_frames + 15, -1)]
    assert max(np.abs(still[0] - other).mean() for other in still[1:]) < 1.0
    moving = np.abs(frames[dance_frames - 60].astype(int) - frames[dance_frames - 1]).mean()
    assert moving > 1.0


def test_song_much_longer_than_dance_is_refused(demo, tmp_path):
    # A 12-s dance with a 61-s song used to render 49 s of a frozen dancer.
    from kakashi.errors import MediaError

    out = tmp_path / "long.mp4"
    with pytest.raises(MediaError, match="give the song the dance was made for"):
        render_dance(demo["dance"], DEMO_SONG, out, size=(320, 180))
    assert list(tmp_path.iterdir()) == []


def test_camera_follows_a_travelling_dancer(tmp_path):
    # Real mocap whose pelvis travels 2.6 m: the dancer must stay in the picture, near the
    # middle, while the floor grid slides underneath.
    dance_path = cmu_mocap_dance(tmp_path)
    dance = Dance.load(dance_path)
    song, rate = soundfile.read(str(DEMO_SONG))
    soundfile.write(str(tmp_path / "song.wav"), song[: int(rate * (dance.duration_s + 0.5))], rate)
    out = tmp_path / "mocap.mp4"
    render_dance(dance_path, tmp_path / "song.wav", out, size=(320, 240), style="stick")
    frames, _ = read_frames(out)
    centres = []
    for frame in frames[: len(dance) : 10]:
        mask = skeleton_mask(frame)
        assert mask.sum() > 100
        centres.append(np.argwhere(mask).mean(axis=0))
    centres = np.array(centres)
    assert np.abs(centres[:, 1] - 160).max() < 80  # never drifts out of the middle half
    grid_change = np.abs(frames[0].astype(int) - frames[len(dance) - 1]).mean(axis=-1)
    assert (grid_change[~skeleton_mask(frames[0]) & ~skeleton_mask(frames[-1])] > 20).mean() > 0.01


def test_side_by_side_with_source_video_and_compare(demo, tmp_path):
    import cv2

    out = tmp_path / "truth.mp4"
    assert main(["render", str(demo["dance"]), "--audio", str(demo["audio"]), "--video",
                 str(demo["video"]), "-o", str(out), "--size", SIZE,
                 "--style", "stick"]) == 0  # fmt: skip
    frames, _ = read_frames(out)
    source = cv2.VideoCapture(str(demo["video"]))
    source.set(cv2.CAP_PROP_POS_FRAMES, 100)
    _, original = source.read()
    source.release()
    frame = frames[100]
    assert skeleton_mask(frame[:, :320]).sum() > 300  # the skeleton on the left
    # The right half is the source video: it correlates with the real frame, resized.
    right = frame[:, 320:]
    box = np.argwhere(right.max(axis=-1) > 40)
    (top, left), (bottom, right_edge) = box.min(axis=0), box.max(axis=0) + 1
    shown = cv2.resize(right[top:bottom, left:right_edge], original.shape[1::-1]).astype(float)
    correlation = np.corrcoef(shown.ravel(), original.astype(float).ravel())[0, 1]
    assert correlation > 0.9

    out = tmp_path / "compare.mp4"
    assert main(["render", str(demo["dance"]), "--audio", str(demo["audio"]), "--compare",
                 str(demo["other"]), "-o", str(out), "--size", SIZE,
                 "--style", "stick"]) == 0  # fmt: skip
    frames, _ = read_frames(out)
    for frame in frames[::60]:
        assert skeleton_mask(frame[:, :320]).sum() > 200
        assert skeleton_mask(frame[:, 320:]).sum() > 200

    # Both: generated | compared | source video, a third of the width each.
    out = tmp_path / "three.mp4"
    render_dance(demo["dance"], demo["audio"], out, size=(960, 360), compare=demo["other"],
                 video=demo["video"], style="stick")  # fmt: skip
    frames, _ = read_frames(out)
    frame = frames[100]
    assert skeleton_mask(frame[:, :320]).sum() > 200
    assert skeleton_mask(frame[:, 320:640]).sum() > 200
    assert frame[:, 640:].std() > 50  # the video (skeleton panels: ~20, mostly flat)


def body_mask(frame: np.ndarray) -> np.ndarray:
    """Pixels of the character's pale, nearly grey skin (floor and background are dark)."""
    frame = frame.astype(int)
    return (frame.min(axis=-1) > 110) & ((frame.max(axis=-1) - frame.min(axis=-1)) < 45)


def test_character_mp4_fills_the_frame_with_the_song_name(demo, tmp_path):
    import cv2

    out = tmp_path / "character.mp4"  # the default style
    assert main(["render", str(demo["dance"]), "--audio", str(demo["audio"]), "-o",
                 str(out), "--size", SIZE]) == 0  # fmt: skip
    frames, fps = read_frames(out)
    assert abs(len(frames) / fps - soundfile.info(str(demo["audio"])).duration) <= 1 / fps
    heights, masks = [], []
    for frame in frames[::30]:
        mask = body_mask(frame)
        mask[-40:, :200] = False  # the caption
        rows = np.flatnonzero(mask.any(axis=1))
        assert mask.sum() > 3000, mask.sum()
        heights.append((rows.max() - rows.min()) / frame.shape[0])
        masks.append(mask)
    # Framed so the dancer fills the picture: head to feet most of its height, all frames.
    print(f"character height / frame height: median {np.median(heights):.2f}")
    assert np.median(heights) > 0.6 and min(heights) > 0.4
    moved = [(a ^ b).sum() / max(a.sum(), 1) for a, b in itertools.pairwise(masks)]
    assert np.median(moved) > 0.1  # the body moves
    # The song's name, bottom left: light text where the floor is dark.
    corner = frames[len(frames) // 2][-40:, :200].astype(int)
    assert (corner.min(axis=-1) > 150).sum() > 50
    artifacts = REPO / "results" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    for index in (0, len(frames) // 2):
        cv2.imwrite(str(artifacts / f"render-character-{index}.png"), frames[index])


def test_song_one_frame_short_is_tolerated(demo, tmp_path):
    # Decoders may round a song's length to frames differently: one frame is not an error.
    dance = Dance.load(demo["dance"])
    song, rate = soundfile.read(str(demo["audio"]))
    soundfile.write(str(tmp_path / "song.wav"), song[: rate * (len(dance) - 1) // 30], rate)
    stats = render_dance(demo["dance"], tmp_path / "song.wav", tmp_path / "x.mp4", size=(160, 90))
    frames, _ = read_frames(tmp_path / "x.mp4")
    assert stats.frames == len(frames) == len(dance)


def test_bad_inputs_are_clear_errors_and_leave_nothing(demo, tmp_path, capsys):
    song, rate = soundfile.read(str(demo["audio"]))
    soundfile.write(str(tmp_path / "short.wav"), song[: rate * 5], rate)  # the first 5 s
    nan = Dance.load(demo["dance"])
    nan.pose[10, 5] = np.nan
    np.savez(tmp_path / "nan.npz", pose=nan.pose, root=nan.root, fps=nan.fps)
    (tmp_path / "blocker").write_text("a file, not a folder")
    out = tmp_path / "out" / "x.mp4"
    cases = [
        ([str(demo["dance"]), "--audio", str(tmp_path / "short.wav"), "-o", str(out)],
         "short.wav lasts 5.00 s"),
        ([str(tmp_path / "nan.npz"), "--audio", str(demo["audio"]), "-o", str(out)],
         "nan.npz: 1 frame(s) contain NaN"),
        ([str(demo["dance"]), "--audio", str(tmp_path / "missing.ogg"), "-o", str(out)],
         "missing.ogg does not exist"),
        ([str(demo["dance"]), "--audio", str(demo["audio"]), "-o", str(out), "--size", "641x360"],
         "must be even"),
        ([str(demo["dance"]), "--audio", str(demo["audio"]), "-o",
          str(tmp_path / "blocker" / "x.mp4")], "cannot create the folder"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(["render", *argv]) == 1
        error = capsys.readouterr().err
        assert "kakashi: error:" in error and message in error, error
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
