"""3-D pose estimation: a pluggable backend interface and the per-sequence result.

A backend turns a video clip into a :class:`Dance` on the canonical H36M-17
skeleton (metres, y up, facing +z, root-centred). Backends register in ``BACKENDS``;
``pose.backend`` in config.yaml picks one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from kakashi.dance import Dance
from kakashi.errors import PoseError

log = logging.getLogger("kakashi.pose")


class PoseBackend(Protocol):
    """What every pose backend provides."""

    name: str

    def estimate(self, video: Path) -> Dance:
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


def apply_people_policy(sequence: Dance, source: str, max_people: int, policy: str) -> Dance:
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


def fill_missing(sequence: Dance, source: str, min_person_fraction: float) -> Dance:
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


def estimate_pose(
    video: Path,
    source: str,
    backend: str,
    options: dict,
    max_people: int,
    multi_person: str,
    min_person_fraction: float,
    smoothing: dict,
    root: str | None = None,
    root_fov_deg: float | None = None,
) -> Dance:
    """The pose stage: the backend's estimate (with the root, ``pose.root``, solved from
    its keypoints by :mod:`kakashi.pose.root`), the multi-person policy, gap filling, then
    the temporal filter (``pose.smoothing``; it leans on the gaps' neighbours, so it runs
    after they are filled). Root-centred pose and, when measured, the root are filtered;
    then the root is put on the floor (y = 0), with a warning if the camera seems to move."""
    from kakashi.pose.root import ROOT_MODES, focal_length_px, place_on_floor
    from kakashi.pose.smoothing import smooth_dance
    from kakashi.settings import default

    # None: the schema's defaults (pose.root, pose.root_fov_deg), their one home.
    root = default("pose.root") if root is None else root
    root_fov_deg = default("pose.root_fov_deg") if root_fov_deg is None else root_fov_deg
    if root not in ROOT_MODES:
        raise PoseError(f"pose.root is {root!r}; use one of {', '.join(ROOT_MODES)}")
    if root == "estimate":
        focal_length_px(1, 1, root_fov_deg)  # a bad field of view fails before the video
        options = {**options, "root_fov_deg": root_fov_deg}
    from kakashi.errors import MediaError
    from kakashi.inputs import require

    video = require(video, "video", MediaError, "give a video file (MP4, AVI, MKV, ...)")
    sequence = get_backend(backend, **options).estimate(video)
    sequence = apply_people_policy(sequence, source, max_people, multi_person)
    sequence = fill_missing(sequence, source, min_person_fraction)
    sequence = smooth_dance(sequence, smoothing)
    if sequence.meta.get("root_measured"):
        sequence = place_on_floor(sequence, source)
    return sequence
