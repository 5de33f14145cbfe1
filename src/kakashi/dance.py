"""Dance files: the one format that generate, render, export-bvh, viewer and evaluate share.

An ``.npz`` with ``pose`` (T, 17, 3) float32 (root-centred H36M-17, metres, y up),
``root`` (T, 3) float32 (pelvis trajectory) and ``fps``. World positions are
``pose + root[:, None]``. Ground-truth sequences export to the same layout
(``kakashi export-dance``), so every consumer works on real data too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.errors import KakashiError


class DanceFileError(KakashiError):
    """A dance file is missing, unreadable or malformed."""


@dataclass
class Dance:
    """A dance: ``pose`` (T, 17, 3), ``root`` (T, 3), both float32, at ``fps``."""

    pose: np.ndarray
    root: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        self.pose = np.asarray(self.pose, dtype=np.float32)
        self.root = np.asarray(self.root, dtype=np.float32)
        self.fps = float(self.fps)

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
        frames = len(self.pose)
        if self.pose.ndim != 3 or self.pose.shape[1:] != (skeleton.NUM_JOINTS, 3):
            raise DanceFileError(f"{name}: pose must be (T, 17, 3), got {self.pose.shape}")
        if self.root.shape != (frames, 3):
            raise DanceFileError(f"{name}: root must be ({frames}, 3), got {self.root.shape}")
        if frames == 0:
            raise DanceFileError(f"{name}: the dance has no frames")
        if not (np.isfinite(self.pose).all() and np.isfinite(self.root).all()):
            bad = int((~np.isfinite(self.pose)).any(axis=(1, 2)).sum())
            raise DanceFileError(f"{name}: {bad} frame(s) contain NaN or infinite positions")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise DanceFileError(f"{name}: fps must be positive, got {self.fps}")
        return self

    def save(self, path: str | Path) -> None:
        """Write atomically (a crash never leaves a half-written file under the name)."""
        from kakashi.atomic import atomic_savez

        self.validate(str(path))
        atomic_savez(path, pose=self.pose, root=self.root, fps=np.float64(self.fps))

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
                dance = cls(data["pose"], data["root"], float(data["fps"]))
        except DanceFileError:
            raise
        except Exception as exc:  # zip, pickle and value errors from a damaged file
            raise DanceFileError(f"cannot read dance file {path}: {exc}") from exc
        return dance.validate(str(path))


def dance_from_shard(path: str | Path) -> Dance:
    """The ground-truth dance stored in one Parquet shard."""
    import pyarrow.parquet as pq

    from kakashi.shards import read_metadata

    if not Path(path).is_file():
        raise DanceFileError(
            f"shard {path} does not exist; list shards with `kakashi dataset info`"
        )
    table = pq.read_table(path, columns=["pose", "root"])
    pose = np.stack(table.column("pose").to_numpy(zero_copy_only=False)).reshape(-1, 17, 3)
    root = np.stack(table.column("root").to_numpy(zero_copy_only=False)).reshape(-1, 3)
    fps = float(read_metadata(path).get("fps", 30))
    return Dance(pose, root, fps).validate(str(path))
