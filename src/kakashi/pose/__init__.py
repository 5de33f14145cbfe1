"""3-D pose estimation: a pluggable backend interface and the per-sequence result.

A backend turns a video clip into a :class:`PoseSequence` on the canonical H36M-17
skeleton (metres, y up, facing +z, root-centred). Backends register in ``BACKENDS``;
``pose.backend`` in config.yaml picks one.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from kakashi import skeleton
from kakashi.errors import PoseError

log = logging.getLogger("kakashi.pose")


@dataclass
class PoseSequence:
    """A pose per frame: ``pose`` (T, 17, 3), ``root`` (T, 3), ``conf`` (T,), at ``fps``."""

    pose: np.ndarray
    root: np.ndarray
    conf: np.ndarray
    fps: float
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        frames = len(self.pose)
        if self.pose.shape != (frames, skeleton.NUM_JOINTS, 3):
            raise ValueError(f"pose must be (T, 17, 3), got {self.pose.shape}")
        if self.root.shape != (frames, 3) or self.conf.shape != (frames,):
            raise ValueError(
                f"root {self.root.shape} and conf {self.conf.shape} must have {frames} frames"
            )

    def __len__(self) -> int:
        return len(self.pose)

    def save(self, path: str | Path) -> None:
        from kakashi.features import _atomic_savez

        _atomic_savez(
            path,
            pose=self.pose.astype(np.float32),
            root=self.root.astype(np.float32),
            conf=self.conf.astype(np.float32),
            fps=np.float64(self.fps),
            meta=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path: str | Path) -> PoseSequence:
        with np.load(path) as data:
            return cls(
                pose=data["pose"],
                root=data["root"],
                conf=data["conf"],
                fps=float(data["fps"]),
                meta=json.loads(str(data["meta"])),
            )


class PoseBackend(Protocol):
    """What every pose backend provides."""

    name: str

    def estimate(self, video: Path) -> PoseSequence:
        """Estimate the main dancer's 3-D pose in every frame of ``video``."""
        ...


def get_backend(name: str, **options) -> PoseBackend:
    """Instantiate a backend by its config name (``pose.backend``)."""
    if name == "mediapipe":
        from kakashi.pose.mediapipe_backend import MediaPipeBackend

        return MediaPipeBackend(**options)
    raise PoseError(f"unknown pose backend {name!r}; available: mediapipe")


def fill_missing(sequence: PoseSequence, source: str, min_person_fraction: float) -> PoseSequence:
    """Interpolate the pose through frames with no person (their ``conf`` stays 0).

    The gap frames are counted in ``meta['frames_without_person']`` and marked by conf 0,
    so training code can drop them; a source where the person is missing too often fails.
    """
    found = sequence.conf > 0
    frames = len(sequence)
    missing = int(frames - found.sum())
    fraction = found.mean() if frames else 0.0
    if fraction < min_person_fraction or not found.any():
        raise PoseError(
            f"no person found in {missing} of {frames} frames of {source} "
            f"(person in {fraction:.0%}, need {min_person_fraction:.0%}); check that one "
            "dancer is fully in view, or trim the source with start/end in the sheet"
        )
    if missing:
        index = np.arange(frames)
        for array in (sequence.pose, sequence.root):
            flat = array.reshape(frames, -1)
            for column in range(flat.shape[1]):
                flat[~found, column] = np.interp(index[~found], index[found], flat[found, column])
        log.info("%s: interpolated %d frames without a person (conf 0)", source, missing)
    sequence.meta["frames_without_person"] = missing
    return sequence
