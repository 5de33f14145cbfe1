"""Temporal filtering of video poses: a confidence-weighted local polynomial fit (or an
adaptive one-euro filter), then the bone-length projection the models use.

Video pose estimators answer frame by frame, so their joints tremble: on the demo video the
ratio of mean jerk to mean joint speed is ten times that of motion capture. Two filters,
measured against real motion capture plus noise with the videos' own spectrum
(studies/smoothing.py, docs/benchmarks.md):

- ``local_polynomial`` (the default): at every frame, each joint's track is fitted by a
  polynomial of ``degree`` over the ``window`` frames centred there, by weighted least
  squares; the fit's value at the centre is the filtered position. With equal weights this
  is the Savitzky-Golay filter. A high degree follows the curvature of a fast accent (its
  peak speed survives) while the window averages the frame-to-frame shake away; the fit is
  centred, so nothing lags. Each frame weighs its joint's confidence: a joint the
  estimator is unsure of, or a frame interpolated through a gap (conf 0), counts little and
  the fit leans on its neighbours in time.
- ``one_euro``: the one-euro filter of Casiez, Roussel and Vogel (CHI 2012), a first-order
  low-pass whose cutoff rises with the joint's speed (``min_cutoff + beta * speed``, one
  cutoff per joint from its 3-D speed), run forward and backward and averaged so that it
  does not lag offline, its cutoff multiplied by the joint's confidence. It is the
  adaptive filter the issue named; on the measured video noise it keeps less of the
  accents than the local polynomial at the same residual shake, because the noise is as
  fast as the accents (so the speed-driven cutoff opens for both) and a first-order
  roll-off flattens peaks.

Filtering moves joints independently, which can stretch a bone; the sequence is then put
back on constant bone lengths, the median of its frames with a person, with
:func:`kakashi.kinematics.project_bones_np` (each bone keeps its filtered direction).

Motion capture is never filtered: only the video pose stage calls :func:`smooth_dance`.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import PoseError
from kakashi.kinematics import project_bones_np

log = logging.getLogger("kakashi.pose.smoothing")

METHODS = ("local_polynomial", "one_euro", "none")


def local_polynomial(
    points: np.ndarray, window: int, degree: int, weight: np.ndarray | None = None
) -> np.ndarray:
    """Weighted local polynomial fit of every joint track of ``points`` (T, J, 3).

    ``window`` frames (odd) centred on each frame, polynomial of ``degree``, each frame of
    the window weighted by ``weight`` (T, J) (1 everywhere: Savitzky-Golay). Near the ends
    the window holds only the frames that exist. Legendre polynomials of the offset keep
    the normal equations well conditioned at high degree.
    """
    points = np.asarray(points, dtype=np.float64)
    frames, joints = points.shape[:2]
    weight = np.ones((frames, joints)) if weight is None else np.asarray(weight, np.float64)
    half = window // 2
    degree = min(degree, frames - 1, 2 * half)
    if half == 0 or degree < 0 or frames < 2:
        return points.copy()
    basis = np.polynomial.legendre.legvander(np.arange(-half, half + 1) / half, degree)
    padding = ((half, half), (0, 0))
    # (T, J, window): the weights around each frame, 0 beyond the sequence's ends.
    weights = np.lib.stride_tricks.sliding_window_view(np.pad(weight, padding), window, axis=0)
    weighted = np.pad(points * weight[..., None], (*padding, (0, 0)))
    values = np.lib.stride_tricks.sliding_window_view(weighted, window, axis=0)  # (T,J,3,w)
    size = degree + 1
    outer = (basis[:, :, None] * basis[:, None, :]).reshape(window, size * size)
    normal = (weights @ outer).reshape(frames, joints, size, size)
    right = values @ basis  # (T, J, 3, degree + 1)
    # The fit at the centre is p(0) . normal^-1 right: one solve per joint and frame
    # serves its three coordinates (normal is symmetric).
    at_centre = np.polynomial.legendre.legvander(np.zeros(1), degree)[0]
    rhs = np.broadcast_to(at_centre[:, None], (frames, joints, size, 1))
    gain = np.linalg.solve(normal, rhs)  # (T, J, degree + 1, 1)
    return (right @ gain)[..., 0]


def _alpha(cutoff_hz: np.ndarray | float, fps: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with this cutoff at this frame rate."""
    tau = 1.0 / (2.0 * math.pi * np.maximum(cutoff_hz, 1e-9))
    return 1.0 / (1.0 + tau * fps)


def one_euro_pass(
    points: np.ndarray,
    fps: float,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """One causal one-euro pass over ``points`` (T, J, 3); ``weight`` (T, J) scales each
    joint's cutoff (1 = as configured). Vectorised over joints: one step per frame."""
    points = np.asarray(points, dtype=np.float64)
    frames = len(points)
    out = np.empty_like(points)
    if frames == 0:
        return out
    weight = np.ones(points.shape[:2]) if weight is None else np.asarray(weight, np.float64)
    alpha_d = _alpha(d_cutoff, fps)
    estimate = points[0].copy()
    velocity = np.zeros_like(estimate)  # low-passed derivative, per coordinate (m/s)
    out[0] = estimate
    for t in range(1, frames):
        raw_velocity = (points[t] - estimate) * fps
        velocity += alpha_d * (raw_velocity - velocity)
        speed = np.linalg.norm(velocity, axis=-1)  # (J,)
        cutoff = (min_cutoff + beta * speed) * weight[t]
        estimate += _alpha(cutoff, fps)[:, None] * (points[t] - estimate)
        out[t] = estimate
    return out


def one_euro(
    points: np.ndarray,
    fps: float,
    min_cutoff: float,
    beta: float,
    d_cutoff: float,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """The zero-lag one-euro filter: the mean of a forward and a backward pass (T, J, 3)."""
    forward = one_euro_pass(points, fps, min_cutoff, beta, d_cutoff, weight)
    reverse_weight = None if weight is None else weight[::-1]
    backward = one_euro_pass(points[::-1], fps, min_cutoff, beta, d_cutoff, reverse_weight)
    return 0.5 * (forward + backward[::-1])


def confidence_weight(
    conf: np.ndarray, joint_conf: np.ndarray | None, min_weight: float
) -> np.ndarray:
    """(T, 17) weight of each joint in each frame (local_polynomial: in the fit; one_euro: on
    the cutoff): the joint's confidence (the frame's when the backend gives none per joint),
    0 in frames without a person, floored at ``min_weight``."""
    conf = np.asarray(conf, dtype=np.float64)
    per_joint = (
        np.repeat(conf[:, None], skeleton.NUM_JOINTS, axis=1)
        if joint_conf is None
        else np.asarray(joint_conf, dtype=np.float64)
    )
    per_joint = np.where(conf[:, None] > 0, per_joint, 0.0)
    return np.clip(per_joint, min_weight, 1.0)


def sequence_bone_lengths(pose: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """(16,) bone lengths of a sequence: the median over its frames with a person."""
    found = np.asarray(conf) > 0
    return np.median(skeleton.bone_lengths(pose[found] if found.any() else pose), axis=0)


def window_frames(window_s: float, fps: float) -> int:
    """The odd number of frames nearest ``window_s`` seconds at ``fps`` (at least 1)."""
    return 2 * max(0, round((window_s * fps - 1) / 2)) + 1


def filter_points(points: np.ndarray, fps: float, weight: np.ndarray, settings: dict) -> np.ndarray:
    """``points`` (T, J, 3) filtered by the method of ``settings`` (a pose.smoothing dict),
    each joint weighted by ``weight`` (T, J)."""
    method = settings["method"]
    if method == "local_polynomial":
        window = window_frames(settings["window_s"], fps)
        return local_polynomial(points, window, settings["degree"], weight)
    if method == "one_euro":
        constants = (settings["min_cutoff"], settings["beta"], settings["d_cutoff"])
        return one_euro(points, fps, *constants, weight)
    if method == "none":
        return np.asarray(points, dtype=np.float64).copy()
    raise PoseError(f"pose.smoothing.method is {method!r}; use one of {', '.join(METHODS)}")


def smooth_pose(
    pose: np.ndarray,
    fps: float,
    conf: np.ndarray,
    joint_conf: np.ndarray | None,
    settings: dict,
) -> np.ndarray:
    """Filter a root-centred pose sequence (T, 17, 3) and, if ``settings`` say so, put it
    back on the sequence's bone lengths."""
    weight = confidence_weight(conf, joint_conf, settings["min_weight"])
    smoothed = filter_points(pose, fps, weight, settings)
    if settings["project_bones"]:
        smoothed = project_bones_np(smoothed, sequence_bone_lengths(smoothed, conf))
    return smoothed


# The settings each method reads, recorded in the pose file and the shard metadata.
METHOD_SETTINGS = {
    "local_polynomial": ("window_s", "degree", "min_weight", "project_bones"),
    "one_euro": ("min_cutoff", "beta", "d_cutoff", "min_weight", "project_bones"),
    "none": (),
}


def smooth_dance(sequence: Dance, settings: dict) -> Dance:
    """The pose stage's filter (config ``pose.smoothing``): filter the pose (and the root,
    when the backend measured one) and record the method and its settings in ``meta``."""
    method = settings["method"]
    if method not in METHODS:
        raise PoseError(f"pose.smoothing.method is {method!r}; use one of {', '.join(METHODS)}")
    record = {"method": method, **{key: settings[key] for key in METHOD_SETTINGS[method]}}
    if method != "none":
        record["joint_confidence"] = sequence.joint_conf is not None
        if method == "local_polynomial":
            record["window_frames"] = window_frames(settings["window_s"], sequence.fps)
        sequence.pose = smooth_pose(
            sequence.pose, sequence.fps, sequence.conf, sequence.joint_conf, settings
        ).astype(np.float32)
        if sequence.meta.get("root_measured"):
            # The root is one more point: the same filter, the frame's confidence, no bones.
            weight = confidence_weight(sequence.conf, None, settings["min_weight"])[:, :1]
            root = filter_points(sequence.root[:, None], sequence.fps, weight, settings)
            sequence.root = root[:, 0].astype(np.float32)
        log.info("pose filtered: %s", record)
    sequence.meta["smoothing"] = record
    return sequence
