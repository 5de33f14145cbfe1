"""The one type for a pose sequence over time, and its file: pose stage, motion stage,
generate, render, viewer, export-bvh and evaluate all read and write :class:`Dance`.

An ``.npz`` with ``pose`` (T, 17, 3) float32 (root-centred H36M-17, metres, y up),
``root`` (T, 3) float32 (pelvis trajectory) and ``fps``; pose-stage files also hold
``conf`` (T,) (0 = no person found, pose interpolated), ``meta`` (JSON: backend,
whether the root was measured, the temporal filter, ...) and, from a backend that scores
each joint, ``joint_conf`` (T, 17). World positions are ``pose + root[:, None]``.
Ground truth exports to the same layout (``kakashi export-dance``), so every consumer
works on real data too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.errors import DanceFileError
from kakashi.inputs import require
from kakashi.settings import node

# Frame rates a dance file may claim: the documented range of the config's ``fps``, at which
# every dance is made (schemas/config.schema.yaml). Outside it a file is damaged or not a
# dance (a render of a 1e6-fps "dance" would never end).
MIN_FPS, MAX_FPS = float(node("fps")["minimum"]), float(node("fps")["maximum"])

# Bounds no dance comes near, that catch a damaged file or one in other units before it
# renders blank frames or a 1000x skeleton: a dance lasts at most an hour (108,000 frames at
# 30 fps; a 10-million-frame file would need 4 GB, so the reader refuses it from the sizes
# its arrays declare, before decoding any); the root stays within 10 km of the origin (an
# hour's drift at 2.8 m/s) and moves at most 10 m from one frame to the next; a joint lies
# at most 5 m from the root (the real dances of Dance with Melody: 1.05 m, 6.9 m from the
# origin, 0.19 m a frame; a pose in millimetres read as metres is ~1000 m tall).
MAX_DURATION_S = 3600.0
MAX_ROOT_M, MAX_ROOT_STEP_M, MAX_POSE_M = 10_000.0, 10.0, 5.0
# What a dance file's arrays hold per frame, and the largest JSON ``meta`` it may carry.
_PER_FRAME = {
    "pose": (skeleton.NUM_JOINTS, 3),
    "root": (3,),
    "conf": (),
    "joint_conf": (skeleton.NUM_JOINTS,),
}
_MAX_META_BYTES = 1 << 20


@dataclass
class Dance:
    """``pose`` (T, 17, 3) root-centred and ``root`` (T, 3), float32, at ``fps``; ``conf``
    (T,) per-frame person confidence (ones when unknown), free-form ``meta`` and, from a
    pose backend that scores each joint, ``joint_conf`` (T, 17) in [0, 1]."""

    pose: np.ndarray
    root: np.ndarray
    fps: float
    conf: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    joint_conf: np.ndarray | None = None

    def __post_init__(self) -> None:
        with np.errstate(over="ignore"):  # too large for float32 becomes inf: validate says so
            self.pose = np.asarray(self.pose, dtype=np.float32)
            self.root = np.asarray(self.root, dtype=np.float32)
        self.fps = float(self.fps)
        if self.conf is None:
            self.conf = np.ones(len(self.pose), dtype=np.float32)
        self.conf = np.asarray(self.conf, dtype=np.float32)
        if self.joint_conf is not None:
            self.joint_conf = np.asarray(self.joint_conf, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.pose)

    @property
    def duration_s(self) -> float:
        return len(self) / self.fps

    def world(self) -> np.ndarray:
        """Joint positions in the world, (T, 17, 3): the root-centred pose plus the root."""
        return self.pose + self.root[:, None, :]

    def validate(self, name: str = "dance") -> Dance:
        """Raise DanceFileError, naming ``name``, unless shapes and values are sane."""
        if self.pose.ndim != 3 or self.pose.shape[1:] != (skeleton.NUM_JOINTS, 3):
            raise DanceFileError(f"{name}: pose must be (T, 17, 3), got {self.pose.shape}")
        frames = len(self.pose)
        if self.root.shape != (frames, 3):
            raise DanceFileError(f"{name}: root must be ({frames}, 3), got {self.root.shape}")
        if self.conf.shape != (frames,):
            raise DanceFileError(f"{name}: conf must be ({frames},), got {self.conf.shape}")
        joints = (frames, skeleton.NUM_JOINTS)
        if self.joint_conf is not None and self.joint_conf.shape != joints:
            raise DanceFileError(
                f"{name}: joint_conf must be {joints}, got {self.joint_conf.shape}"
            )
        if frames == 0:
            raise DanceFileError(f"{name}: the dance has no frames")
        if not (np.isfinite(self.pose).all() and np.isfinite(self.root).all()):
            bad = (~np.isfinite(self.pose)).any(axis=(1, 2)) | (~np.isfinite(self.root)).any(1)
            raise DanceFileError(
                f"{name}: {int(bad.sum())} frame(s) contain NaN or infinite positions (the "
                f"first: frame {int(np.argmax(bad))}); the file is damaged"
            )
        if not (np.isfinite(self.fps) and MIN_FPS <= self.fps <= MAX_FPS):
            raise DanceFileError(
                f"{name}: fps is {self.fps}, outside {MIN_FPS:g}-{MAX_FPS:g}; the file is "
                "damaged or not a dance"
            )
        if frames > MAX_DURATION_S * self.fps:
            raise DanceFileError(
                f"{name}: {frames} frames at {self.fps:g} fps last "
                f"{frames / self.fps / 3600:.1f} h, more than the hour a dance may last; "
                "the file is damaged or not a dance"
            )
        self._check_magnitudes(name)
        return self

    def _check_magnitudes(self, name: str) -> None:
        """Refuse positions no dance has (the bounds above), naming the bound and a frame."""
        checks = (
            (np.abs(self.root).max(axis=1), MAX_ROOT_M, "the root lies {:.3g} m from the origin"),
            (
                np.abs(self.pose).max(axis=(1, 2)),
                MAX_POSE_M,
                "a joint lies {:.3g} m from the root",
            ),
            (
                np.r_[0.0, np.abs(np.diff(self.root, axis=0)).max(axis=1)],
                MAX_ROOT_STEP_M,
                "the root moves {:.3g} m in one frame",
            ),
        )
        for values, bound, what in checks:
            over = np.flatnonzero(values > bound)
            if len(over):
                first = int(over[0])
                raise DanceFileError(
                    f"{name}: at frame {first} {what.format(float(values[first]))}, beyond "
                    f"the {bound:g} m bound of a dance file; positions are metres: convert "
                    "a file in other units, or export the dance again"
                )

    def save(self, path: str | Path) -> None:
        """Write atomically (a crash never leaves a half-written file under the name)."""
        from kakashi.atomic import atomic_savez

        self.validate(str(path))
        optional = {} if self.joint_conf is None else {"joint_conf": self.joint_conf}
        atomic_savez(
            path,
            pose=self.pose,
            root=self.root,
            fps=np.float64(self.fps),
            conf=self.conf,
            meta=np.array(json.dumps(self.meta)),
            **optional,
        )

    @classmethod
    def load(cls, path: str | Path, frames: int | None = None) -> Dance:
        """Read and validate a dance file; errors name the file and say what is wrong.

        The arrays' declared sizes are checked before any is decoded (at most an hour of
        frames: a 10-million-frame file is refused, not inflated to 4 GB). ``frames``: read
        only the first so many (``--start-pose`` needs one pose, not the whole file)."""
        path = require(path, "dance file", DanceFileError, "give a dance .npz file")
        try:
            with np.load(path) as data:
                missing = {"pose", "root", "fps"} - set(data.files)
                if missing:
                    raise DanceFileError(
                        f"{path}: not a dance file, missing {', '.join(sorted(missing))}"
                    )
                fps_shape, _ = _declared(data, "fps")
                if fps_shape not in ((), (1,)):
                    raise DanceFileError(f"{path}: fps must be one number, got {fps_shape}")
                fps = float(data["fps"].item())
                arrays = _read_bounded(data, path, fps, frames)
                dance = cls(
                    arrays["pose"],
                    arrays["root"],
                    fps,
                    arrays.get("conf"),
                    json.loads(str(data["meta"])) if "meta" in data.files else {},
                    arrays.get("joint_conf"),
                )
        except DanceFileError:
            raise
        except Exception as exc:  # zip, pickle and value errors from a damaged file
            raise DanceFileError(f"cannot read dance file {path}: {exc}") from exc
        return dance.validate(str(path))


def _header(member) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) from an open ``.npy`` stream; leaves it at the data."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    return tuple(shape), fortran, dtype


def _declared(data, key: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) that member ``key`` of an open ``.npz`` declares, read from its
    ``.npy`` header alone (nothing decoded)."""
    with data.zip.open(f"{key}.npy") as member:
        shape, _, dtype = _header(member)
    return shape, dtype


def _read_bounded(data, path: Path, fps: float, frames: int | None) -> dict[str, np.ndarray]:
    """The per-frame arrays of a dance file, refused by declared size before decoding."""
    if not (np.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise DanceFileError(
            f"{path}: fps is {fps}, outside {MIN_FPS:g}-{MAX_FPS:g}; the file is damaged or "
            "not a dance"
        )
    limit = int(MAX_DURATION_S * fps)
    if "meta" in data.files:
        shape, dtype = _declared(data, "meta")
        if int(np.prod(shape)) * dtype.itemsize > _MAX_META_BYTES:
            raise DanceFileError(f"{path}: its meta is over 1 MB; the file is damaged")
    arrays = {}
    for key, per_frame in _PER_FRAME.items():
        if key not in data.files:
            continue
        shape, dtype = _declared(data, key)
        if not shape or shape[1:] != per_frame:
            wanted = ", ".join(["T", *map(str, per_frame)])
            raise DanceFileError(f"{path}: {key} must be ({wanted}), got {shape}")
        if shape[0] > limit:
            raise DanceFileError(
                f"{path}: {key} declares {shape[0]} frames, {shape[0] / fps / 3600:.1f} h at "
                f"{fps:g} fps, more than the hour a dance may last; the file is damaged or "
                "not a dance"
            )
        if dtype.kind != "f":
            raise DanceFileError(
                f"{path}: {key} holds {dtype} values, and a dance holds floating-point "
                "metres (integers are often millimetres); convert it to metres as float32"
            )
        arrays[key] = _first_rows(data, key, shape, dtype, frames)
    return arrays


def _first_rows(data, key: str, shape, dtype, frames: int | None) -> np.ndarray:
    """Member ``key``, or only its first ``frames`` rows, decoded from the zip stream."""
    if frames is None or frames >= shape[0]:
        return data[key]
    with data.zip.open(f"{key}.npy") as member:
        _, fortran, _ = _header(member)
        if fortran:  # rows are not contiguous: decode it all (a file no writer here makes)
            return data[key][:frames]
        row = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        buffer = member.read(row * frames)
    return np.frombuffer(buffer, dtype=dtype).reshape((frames, *shape[1:])).copy()
