"""Facing-normalised motion and fixed-length windows: what the style, novelty and variety
metrics compare.

A dance's heading (where it faces) and its place on the floor say nothing about which
steps it dances, so every frame is turned about the vertical axis until the hip line
faces +z and is centred on the pelvis. ``frame_features`` is, per frame, that pose
(17 x 3) and the world velocity of every joint in the same body frame (17 x 3, as the
displacement over ``VELOCITY_SCALE_S``, so that it is in metres like the pose and weighs
about as much: a joint at 1 m/s moves 0.1 m). :func:`window_features` computes the same
at any instants of a dance, played at any speed, from positions interpolated between
frames: the velocity is the central difference over ``VELOCITY_SPAN_S`` of the played
time, so a copy resampled to another tempo has the features of its source at that tempo.
"""

from __future__ import annotations

import numpy as np

from kakashi import skeleton

VELOCITY_SCALE_S = 0.1
VELOCITY_SPAN_S = 0.1
_LEFT_HIP, _RIGHT_HIP = skeleton.INDEX["left_hip"], skeleton.INDEX["right_hip"]


def heading_rotations(world: np.ndarray) -> np.ndarray:
    """Per frame, the rotation (T, 3, 3) about y that turns the hip line's forward to +z."""
    across = world[:, _LEFT_HIP] - world[:, _RIGHT_HIP]
    # Left = +x when facing +z (y up, right-handed): forward = across x up.
    forward = np.stack([-across[:, 2], np.zeros(len(world)), across[:, 0]], axis=1)
    angle = np.arctan2(forward[:, 0], forward[:, 2])
    c, s = np.cos(-angle), np.sin(-angle)
    rotation = np.zeros((len(world), 3, 3))
    rotation[:, 0, 0], rotation[:, 0, 2] = c, s
    rotation[:, 1, 1] = 1.0
    rotation[:, 2, 0], rotation[:, 2, 2] = -s, c
    return rotation


def facing_normalised(world: np.ndarray) -> np.ndarray:
    """Pelvis-centred pose turned to face +z in every frame, (T, 17, 3)."""
    world = np.asarray(world, dtype=np.float64)
    centred = world - world[:, :1]
    return np.einsum("tij,tkj->tki", heading_rotations(world), centred)


def frame_features(world: np.ndarray, fps: float) -> np.ndarray:
    """Per frame: facing-normalised pose and body-frame joint velocity, (T, 102)."""
    world = np.asarray(world, dtype=np.float64)
    rotation = heading_rotations(world)
    centred = world - world[:, :1]
    pose = np.einsum("tij,tkj->tki", rotation, centred)
    velocity = np.gradient(world, axis=0) * fps if len(world) > 1 else np.zeros_like(world)
    velocity = np.einsum("tij,tkj->tki", rotation, velocity) * VELOCITY_SCALE_S
    return np.concatenate([pose.reshape(len(world), -1), velocity.reshape(len(world), -1)], 1)


def sample(features: np.ndarray, fps: float, times: np.ndarray) -> np.ndarray:
    """Per-frame ``features`` (T, D) linearly interpolated at ``times`` (s), (len, D)."""
    position = np.clip(np.asarray(times) * fps, 0, len(features) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(features) - 1)
    weight = (position - low)[:, None]
    return features[low] * (1 - weight) + features[high] * weight


def window_starts(duration_s: float, window_s: float, hop_s: float) -> np.ndarray:
    """Start times of the windows of ``window_s`` every ``hop_s`` that fit in the dance; a
    dance shorter than one window has one, at 0."""
    if duration_s <= window_s:
        return np.zeros(1)
    count = int(np.floor((duration_s - window_s) / hop_s + 1e-9)) + 1
    return np.arange(count) * hop_s


def interpolate(world: np.ndarray, position: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Positions ``world`` (T, ...) at fractional frames ``position``, each clamped to its
    own ``[low, high]`` frame range (several dances may share one array)."""
    position = np.clip(position, low, high)
    first = position.astype(np.int64)  # position >= 0: floor
    second = np.minimum(first + 1, high.astype(np.int64))
    weight = (position - first).astype(world.dtype)
    weight = weight.reshape(weight.shape + (1,) * (world.ndim - 1))
    a = world[first]
    return a + (world[second] - a) * weight


def window_features(
    world: np.ndarray,
    fps: float,
    starts_s: np.ndarray,
    speed: np.ndarray | float,
    samples: int,
    window_s: float,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Descriptors (N, samples * 102) of windows of ``window_s`` played at ``speed``.

    Window ``i`` covers ``window_s * speed[i]`` seconds of the dance from ``starts_s[i]``
    (times in the frame numbering of ``world``), squeezed into ``window_s``: ``samples``
    instants, each the facing-normalised pose and the body-frame velocity of the played
    motion (the source's times ``speed`` faster). ``bounds`` (first, last frame per
    window) keeps each window inside its own dance when ``world`` holds several. Float32.
    """
    world = np.asarray(world, dtype=np.float32)
    starts_s = np.asarray(starts_s, dtype=np.float64)
    speed = np.broadcast_to(np.asarray(speed, dtype=np.float64), starts_s.shape)
    if bounds is None:
        low, high = np.zeros_like(starts_s), np.full(starts_s.shape, len(world) - 1.0)
    else:
        low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
    offsets = np.linspace(0.0, window_s, samples, endpoint=False)
    played = starts_s[:, None] + speed[:, None] * offsets[None]  # source time, (N, S)
    half = 0.5 * VELOCITY_SPAN_S * speed[:, None]
    low, high = low[:, None], high[:, None]
    now = interpolate(world, played * fps, low, high)  # (N, S, J, 3)
    velocity = interpolate(world, (played + half) * fps, low, high)
    velocity -= interpolate(world, (played - half) * fps, low, high)
    velocity *= VELOCITY_SCALE_S / VELOCITY_SPAN_S
    across = now[..., _LEFT_HIP, :] - now[..., _RIGHT_HIP, :]
    # The turn by minus the heading (as heading_rotations), the heading measured from +z:
    # forward = (-across_z, 0, across_x), so cos(-heading) = across_x / |across| and
    # sin(-heading) = across_z / |across|.
    norm = np.maximum(np.hypot(across[..., 0], across[..., 2]), 1e-9)
    c = (across[..., 0] / norm)[..., None]
    s = (across[..., 2] / norm)[..., None]
    out = np.empty((*now.shape[:2], 34, 3), np.float32)
    now -= now[..., :1, :]
    for block, v in ((slice(0, 17), now), (slice(17, 34), velocity)):
        x, z = v[..., 0], v[..., 2]
        out[..., block, 0] = c * x + s * z
        out[..., block, 1] = v[..., 1]
        out[..., block, 2] = c * z - s * x
    return out.reshape(len(starts_s), -1)
