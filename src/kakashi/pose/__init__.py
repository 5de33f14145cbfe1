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
        from kakashi.atomic import atomic_savez

        atomic_savez(
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
    if name == "mmpose":
        from kakashi.pose.mmpose_backend import MMPoseBackend

        return MMPoseBackend(**options)
    raise PoseError(f"unknown pose backend {name!r}; available: mediapipe, mmpose")


MULTI_PERSON_POLICIES = ("keep", "drop", "fail")


def apply_people_policy(
    sequence: PoseSequence, source: str, max_people: int, policy: str
) -> PoseSequence:
    """Apply the ``pose.max_people`` policy to frames with more than ``max_people`` people.

    ``keep`` keeps the main dancer's pose, ``drop`` sets those frames' conf to 0 (so
    :func:`fill_missing` interpolates and counts them), ``fail`` fails the source. Backends
    that count people store ``meta['people_per_frame']``; one that cannot see other people
    (MediaPipe tracks a single person) leaves it out, and the policy records that it was
    not applied instead of pretending the frames were single-person.
    """
    if policy not in MULTI_PERSON_POLICIES:
        raise PoseError(
            f"pose.multi_person is {policy!r}; use one of {', '.join(MULTI_PERSON_POLICIES)}"
        )
    if max_people < 1:
        raise PoseError(f"pose.max_people is {max_people}; it must be at least 1")
    sequence.meta["max_people"] = {"max_people": max_people, "policy": policy}
    counts = sequence.meta.get("people_per_frame")
    if counts is None:
        sequence.meta["max_people"]["applied"] = False
        return sequence
    counts = np.asarray(counts)
    crowded = np.flatnonzero(counts > max_people)
    sequence.meta["max_people"].update(applied=True, frames_over=len(crowded))
    if len(crowded) and policy == "fail":
        shown = ", ".join(str(int(f)) for f in crowded[:10])
        raise PoseError(
            f"{source}: {len(crowded)} of {len(sequence)} frames show more than {max_people} "
            f"people (first frames: {shown}); trim the source to the solo part, or set "
            "pose.multi_person to keep (follow the main dancer) or drop (discard those frames)"
        )
    if len(crowded) and policy == "drop":
        sequence.conf[crowded] = 0.0
        log.info("%s: dropped %d frames with more than %d people", source, len(crowded), max_people)
    return sequence


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
