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
from kakashi.settings import node

# Frame rates a dance file may claim: the documented range of the config's ``fps``, at which
# every dance is made (schemas/config.schema.yaml). Outside it a file is damaged or not a
# dance (a render of a 1e6-fps "dance" would never end).
MIN_FPS, MAX_FPS = float(node("fps")["minimum"]), float(node("fps")["maximum"])


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
            bad = int((~np.isfinite(self.pose)).any(axis=(1, 2)).sum())
            raise DanceFileError(f"{name}: {bad} frame(s) contain NaN or infinite positions")
        if not (np.isfinite(self.fps) and MIN_FPS <= self.fps <= MAX_FPS):
            raise DanceFileError(
                f"{name}: fps is {self.fps}, outside {MIN_FPS:g}-{MAX_FPS:g}; the file is "
                "damaged or not a dance"
            )
        return self

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
    def load(cls, path: str | Path) -> Dance:
        """Read and validate a dance file; errors name the file and say what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise DanceFileError(f"dance file {path} does not exist")
        try:
            with np.load(path) as data:
                missing = {"pose", "root", "fps"} - set(data.files)
                if missing:
                    raise DanceFileError(
                        f"{path}: not a dance file, missing {', '.join(sorted(missing))}"
                    )
                dance = cls(
                    data["pose"],
                    data["root"],
                    float(data["fps"].item()),  # one number: an array is no frame rate
                    data["conf"] if "conf" in data.files else None,
                    json.loads(str(data["meta"])) if "meta" in data.files else {},
                    data["joint_conf"] if "joint_conf" in data.files else None,
                )
        except DanceFileError:
            raise
        except Exception as exc:  # zip, pickle and value errors from a damaged file
            raise DanceFileError(f"cannot read dance file {path}: {exc}") from exc
        return dance.validate(str(path))
