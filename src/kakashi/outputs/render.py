"""Render a dance to an MP4 with its music: the character (``style="character"``, the
default: :mod:`kakashi.outputs.character_view`, OpenGL offscreen) or a 3-D skeleton in
perspective over a floor grid (``style="stick"``, below), with the song's name.

The skeleton:
Speed comes from doing the geometry once: every joint, shadow and grid line of every frame
is projected in a few vectorised numpy operations before the first frame is drawn, so the
per-frame loop only copies a background and draws anti-aliased lines and circles with
OpenCV. Frames go to the imageio-ffmpeg binary through a pipe (libx264, yuv420p), which
encodes on the other core and muxes the song (AAC) in the same pass.

The MP4 lasts as long as the song: when the song is longer than the dance the last pose is
held; a song shorter than the dance is an error (the dance would be cut).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.atomic import atomic_output
from kakashi.dance import Dance
from kakashi.errors import MediaError, OutputError, tool_reason
from kakashi.inputs import require
from kakashi.outputs.stage import smooth, song_frames, stage_positions

# Joints on the dancer's left are drawn blue, right orange, the trunk light grey (BGR).
_LEFT = {4, 5, 6, 11, 12, 13}
_RIGHT = {1, 2, 3, 14, 15, 16}
_BACKGROUND = (34, 30, 28)
_GRID = (78, 72, 68)
_SHADOW = (52, 48, 46)
_TEXT = (200, 200, 200)
_NEAR = 0.05  # metres: grid lines are clipped at this depth in front of the camera
_SHIFT = 4  # OpenCV fixed-point bits: sub-pixel positions keep slow motion smooth
_VERTICAL_FOV_DEG = 40.0
_CAMERA_AZIMUTH_DEG = 25.0  # a little to the dancer's left, so depth reads in the picture
_CAMERA_ELEVATION_DEG = 12.0
_GRID_STEP = 0.5
_GRID_HALF = 3.0


def _colour(joint: int) -> tuple[int, int, int]:
    if joint in _LEFT:
        return (235, 150, 50)
    if joint in _RIGHT:
        return (40, 120, 240)
    return (225, 225, 225)


_BONE_COLOURS = [_colour(child) for _, child in skeleton.BONES]
_JOINT_COLOURS = [_colour(joint) for joint in range(skeleton.NUM_JOINTS)]
_BONE_PARENTS = np.array([parent for parent, _ in skeleton.BONES])
_BONE_CHILDREN = np.array([child for _, child in skeleton.BONES])


@dataclass
class RenderStats:
    """What a render produced and how fast."""

    frames: int
    fps: float
    duration_s: float
    seconds: float

    @property
    def realtime_factor(self) -> float:
        return self.duration_s / self.seconds if self.seconds > 0 else float("inf")


class SkeletonView:
    """All projected geometry of one dance in one panel, computed up front."""

    def __init__(self, dance: Dance, frames: int, width: int, height: int) -> None:
        self.width, self.height = width, height
        world = stage_positions(dance, frames)
        floor = 0.0
        top = float(np.percentile(world[:, :, 1].max(axis=1), 95))
        span = max(top - floor, 0.5)

        target = smooth(world[:, 0, :], sigma_frames=0.6 * dance.fps)
        target[:, 1] = floor + 0.5 * span
        azimuth = np.radians(_CAMERA_AZIMUTH_DEG)
        elevation = np.radians(_CAMERA_ELEVATION_DEG)
        towards_camera = np.array(
            [
                np.sin(azimuth) * np.cos(elevation),
                np.sin(elevation),
                np.cos(azimuth) * np.cos(elevation),
            ]
        )
        tan_half = np.tan(np.radians(_VERTICAL_FOV_DEG) / 2)
        # Fit the body height plus arm room into ~85 % of the picture height.
        distance = (span * 1.1) / (2 * tan_half * 0.85) + 0.3
        self.camera = target + distance * towards_camera
        forward = -towards_camera
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        self.rotation = np.stack([right, up, forward])  # rows: camera axes in world
        self.focal = (height / 2) / tan_half
        self.scale = 1 << _SHIFT

        cam = self._to_camera(world)
        self.joints = self._project(cam)  # (N, 17, 2) fixed-point ints
        self.bone_order = np.argsort(
            -(cam[:, _BONE_PARENTS, 2] + cam[:, _BONE_CHILDREN, 2]), axis=1
        )  # far bones first, so near limbs are drawn over them
        self.joint_order = np.argsort(-cam[:, :, 2], axis=1)
        shadow = world.copy()
        shadow[:, :, 1] = floor
        self.shadow = self._project(self._to_camera(shadow))
        self.grid = self._grid(target, floor)  # (N, S, 2, 2) ints, and visibility (N, S)
        self.radius = max(2, round(height / 140))
        self.thickness = max(2, round(height / 200))

    def _to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, K, 3) -> camera coordinates (x right, y up, z depth)."""
        return np.einsum("nkd,ed->nke", points - self.camera[:, None, :], self.rotation)

    def _project(self, cam: np.ndarray) -> np.ndarray:
        depth = np.maximum(cam[..., 2], _NEAR)
        x = self.width / 2 + self.focal * cam[..., 0] / depth
        y = self.height / 2 - self.focal * cam[..., 1] / depth
        # Clamp so far-off points stay inside OpenCV's fixed-point range.
        pixels = np.stack([x, y], axis=-1).clip(-4 * self.width, 4 * self.width)
        return np.round(pixels * self.scale).astype(np.int32)

    def _grid(self, target: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
        # The grid is fixed in the world (it slides when the dancer travels), so take the
        # lines nearest the camera target, snapped to the grid step.
        anchor = np.round(target[:, [0, 2]] / _GRID_STEP) * _GRID_STEP  # (N, 2)
        offsets = np.arange(-_GRID_HALF, _GRID_HALF + 1e-9, _GRID_STEP)
        segments = []
        for offset in offsets:  # lines along x at z = anchor_z + offset, and along z
            segments.append(((-_GRID_HALF, offset), (_GRID_HALF, offset)))
            segments.append(((offset, -_GRID_HALF), (offset, _GRID_HALF)))
        local = np.array(segments)  # (S, 2 ends, 2 xz)
        xz = anchor[:, None, None, :] + local[None]  # (N, S, 2, 2)
        world = np.concatenate(
            [xz[..., :1], np.full((*xz.shape[:-1], 1), floor), xz[..., 1:]], axis=-1
        )
        frames, count = world.shape[:2]
        cam = self._to_camera(world.reshape(frames, count * 2, 3)).reshape(frames, count, 2, 3)
        a, b = cam[:, :, 0], cam[:, :, 1]
        visible = (a[..., 2] > _NEAR) | (b[..., 2] > _NEAR)
        # Move the end behind the near plane onto it, so lines never wrap around.
        step = np.where(b[..., 2] == a[..., 2], 1e-9, b[..., 2] - a[..., 2])
        t = np.clip((_NEAR - a[..., 2]) / step, 0, 1)[..., None]
        on_plane = a + t * (b - a)
        a, b = (np.where((end[..., 2] < _NEAR)[..., None], on_plane, end) for end in (a, b))
        ends = self._project(np.stack([a, b], axis=2))
        return ends, visible

    def draw(self, canvas: np.ndarray, frame: int) -> None:
        """Draw frame ``frame`` onto ``canvas`` (height, width, 3), already cleared."""
        import cv2

        aa, shift = cv2.LINE_AA, _SHIFT
        ends, visible = self.grid
        for (a, b), show in zip(ends[frame], visible[frame], strict=True):
            if show:
                cv2.line(canvas, tuple(a), tuple(b), _GRID, 1, aa, shift)
        shadow = self.shadow[frame]
        for parent, child in skeleton.BONES:
            cv2.line(canvas, tuple(shadow[parent]), tuple(shadow[child]), _SHADOW, 3, aa, shift)
        joints = self.joints[frame]
        for bone in self.bone_order[frame]:
            start, end = joints[_BONE_PARENTS[bone]], joints[_BONE_CHILDREN[bone]]
            cv2.line(
                canvas, tuple(start), tuple(end), _BONE_COLOURS[bone], self.thickness, aa, shift
            )
        radius = self.radius << shift
        for joint in self.joint_order[frame]:
            cv2.circle(canvas, tuple(joints[joint]), radius, _JOINT_COLOURS[joint], -1, aa, shift)


class VideoPanel:
    """Frames of a source video, resampled to the render's fps and letterboxed."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        import cv2

        self.path = require(path, "video", MediaError, "give the source video (MP4, AVI)")
        self.width = width
        self.capture = cv2.VideoCapture(str(self.path))
        source_fps = self.capture.get(cv2.CAP_PROP_FPS)
        ok, first = self.capture.read()
        if not ok or not source_fps or source_fps <= 0:
            raise MediaError(f"cannot decode video {self.path}: give a readable MP4/AVI")
        self.ratio = source_fps / fps
        self.position = 0  # index of the frame in self.frame
        self.frame = first
        scale = min(width / first.shape[1], height / first.shape[0])
        self.size = (max(1, round(first.shape[1] * scale)), max(1, round(first.shape[0] * scale)))
        self.offset = ((width - self.size[0]) // 2, (height - self.size[1]) // 2)

    def draw(self, canvas: np.ndarray, frame: int) -> None:
        import cv2

        wanted = int(frame * self.ratio + 1e-6)
        while self.position < wanted:
            ok, image = self.capture.read()
            if not ok:  # the video ended: hold its last frame
                break
            self.frame, self.position = image, self.position + 1
        x, y = self.offset
        w, h = self.size
        canvas[y : y + h, x : x + w] = cv2.resize(
            self.frame, self.size, interpolation=cv2.INTER_LINEAR
        )

    def close(self) -> None:
        self.capture.release()


def _label(canvas: np.ndarray, text: str, height: int) -> None:
    import cv2

    scale = height / 1200
    cv2.putText(
        canvas,
        text,
        (12, round(30 * height / 720)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        _TEXT,
        1,
        cv2.LINE_AA,
    )


def _caption(canvas: np.ndarray, text: str, height: int) -> None:
    """The song's name, bottom left (a panel's label is top left)."""
    import cv2

    scale = height / 1000
    origin = (round(16 * height / 720), height - round(18 * height / 720))
    cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, _TEXT, 1, cv2.LINE_AA)


def render_dance(
    dance_path: str | Path,
    audio_path: str | Path,
    output: str | Path,
    *,
    size: tuple[int, int] = (1280, 720),
    video: str | Path | None = None,
    compare: str | Path | None = None,
    crf: int = 20,
    preset: str = "superfast",
    style: str = "character",
) -> RenderStats:
    """Render ``dance_path`` with the song ``audio_path`` to the MP4 ``output``.

    ``compare`` draws a second dance beside the first and ``video`` shows a source video
    (ground truth) on the right; the panels share the frame's width equally. ``style`` is
    ``"character"`` or ``"stick"`` (render.style in the schema).
    """
    import cv2
    import imageio_ffmpeg

    started = time.perf_counter()
    width, height = size
    if width % 2 or height % 2:
        raise OutputError(f"size {width}x{height}: width and height must be even")
    if style not in ("character", "stick"):
        raise OutputError(f"render style {style!r}: give 'character' or 'stick'")
    dance = Dance.load(dance_path)
    frames = song_frames(audio_path, dance, dance_path)

    other = None
    if compare:
        other = Dance.load(compare)
        if abs(other.fps - dance.fps) > 1e-3:
            raise MediaError(
                f"{compare} is at {other.fps} fps but {dance_path} at {dance.fps}: "
                "compare dances with the same frame rate"
            )
    # Panels side by side, left to right: the dance, the compared dance, the source video.
    count = 1 + (other is not None) + (video is not None)
    widths = [width // count] * (count - 1) + [width - (count - 1) * (width // count)]
    if style == "character":
        from kakashi.outputs.character_view import CharacterView as View
    else:
        View = SkeletonView
    panels: list[tuple] = [(View(dance, frames, widths[0], height), Path(dance_path).stem)]
    if other is not None:
        panels.append((View(other, frames, widths[1], height), Path(compare).stem))
    if video:
        panels.append((VideoPanel(video, dance.fps, widths[-1], height), Path(video).name))

    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
        "-framerate", f"{dance.fps:g}", "-i", "-",
        "-i", str(audio_path),
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart",
    ]  # fmt: skip
    song_name = Path(audio_path).stem
    canvas = np.empty((height, width, 3), np.uint8)
    buffers = [np.empty((height, view.width, 3), np.uint8) for view, _ in panels]
    background = [np.full_like(buffer, _BACKGROUND) for buffer in buffers]
    with atomic_output(output) as temporary:
        process = subprocess.Popen(
            [*command, str(temporary)], stdin=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            for frame in range(frames):
                x = 0
                for (view, name), buffer, clear in zip(panels, buffers, background, strict=True):
                    np.copyto(buffer, clear)
                    view.draw(buffer, frame)
                    if len(panels) > 1:
                        _label(buffer, name, height)
                    canvas[:, x : x + buffer.shape[1]] = buffer
                    x += buffer.shape[1]
                _caption(canvas, song_name, height)
                # Converting here (OpenCV, SIMD) halves the bytes piped and spares ffmpeg
                # its slower single-threaded colour conversion.
                process.stdin.write(cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).data)
        except BrokenPipeError:
            pass  # ffmpeg stopped early; its message is read below
        except BaseException:
            process.kill()  # interrupted or a drawing error: ffmpeg must not wait for input
            raise
        finally:
            for view, _ in panels:
                if hasattr(view, "close"):
                    view.close()
            with contextlib.suppress(OSError):
                process.stdin.close()  # end of input: ffmpeg finishes the file
            error = process.stderr.read().decode(errors="replace")
            process.wait()
        if process.returncode != 0:
            # With -loglevel error the last lines are the cause; tool_reason never leaves it blank.
            reason = tool_reason("\n".join(error.splitlines()[-3:]), process.returncode)
            raise MediaError(f"ffmpeg could not write {output}: {reason}")
    seconds = time.perf_counter() - started
    return RenderStats(frames=frames, fps=dance.fps, duration_s=frames / dance.fps, seconds=seconds)
