"""Real mocap filmed by a virtual camera, and the video root's errors (see the package doc)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kakashi import settings
from kakashi.dance import Dance
from kakashi.pose import root as root_module
from kakashi.pose.keypoints import CAMERA_TO_CANONICAL
from kakashi.pose.smoothing import smooth_dance

from . import smoothing as noise

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
FPS = noise.FPS

IMAGE_SIZE = (1280, 720)


FOV_DEG = 60.0


CAMERA_HEIGHT_M = 1.0


# In front of the nearest point of the dancer's path: the whole body stays in view
# vertically (36 degrees at 16:9) at this distance.
CAMERA_DISTANCE_M = 4.0


# Per-keypoint, per-frame image noise (pixels, each axis): the size of real 2-D detectors'
# jitter on a ~400 px tall dancer (RTMPose / BlazePose move a still joint by 2-5 px).
PIXEL_NOISE = 3.0


# A 3-D pose estimator's body size is a guess too: 5 % small puts the dancer 5 % closer.
SMALL_POSE = 0.95


# The test's sequences: two Dance-with-Melody dances (a travelling cha-cha and a waltz) and
# the three CMU subject-131 takes (walks and hops).
SEQUENCES = (
    ("m2d/DANCE_C_2", "m2d_tang2018/joints/DANCE_C_2.npy", "tang23", 25),
    ("m2d/DANCE_W_1", "m2d_tang2018/joints/DANCE_W_1.npy", "tang23", 25),
    ("cmu/131_01", "mocap_cmu_131_bvh11/131_01.bvh", None, None),
    ("cmu/131_02", "mocap_cmu_131_bvh11/131_02.bvh", None, None),
    ("cmu/131_03", "mocap_cmu_131_bvh11/131_03.bvh", None, None),
)


def load_mocap(shared: Path = SHARED) -> list[tuple[str, Dance]]:
    """The real mocap of ``SEQUENCES`` at 30 fps, with its root."""
    from kakashi.motion import read_motion

    return [
        (name, read_motion(shared / path, FPS, layout, source_fps))
        for name, path, layout, source_fps in SEQUENCES
    ]


def camera_position(world: np.ndarray) -> np.ndarray:
    """A level camera (canonical axes) looking along -z at the dancer (see the docstring)."""
    root = world[:, 0]
    centre_x = 0.5 * (root[:, 0].min() + root[:, 0].max())
    return np.array([centre_x, CAMERA_HEIGHT_M, world[..., 2].max() + CAMERA_DISTANCE_M])


def film(
    world: np.ndarray, camera: np.ndarray, fov_deg: float = FOV_DEG
) -> tuple[np.ndarray, np.ndarray]:
    """World positions (T, 17, 3) seen by a level camera at ``camera``: the joints in camera
    axes (x right, y down, z forward) and their pixels (T, 17, 2)."""
    points = (world - camera) @ CAMERA_TO_CANONICAL.T
    focal = root_module.focal_length_px(*IMAGE_SIZE, fov_deg)
    centre = np.array(IMAGE_SIZE) / 2
    return points, focal * points[..., :2] / points[..., 2:] + centre


def estimate(points: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """The root (T, 3, canonical axes, relative to the camera) from filmed joints."""
    frames = len(points)
    found = np.ones(frames, dtype=bool)
    root, _ = root_module.camera_root(
        points - points[:, :1], pixels, np.ones((frames, 17)), found, IMAGE_SIZE, FOV_DEG
    )
    return root.astype(np.float64)


def smoothed(root: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """The root after the pose stage's default filter (pose.smoothing)."""
    dance = Dance(pose, root, FPS, meta={"root_measured": True})
    return smooth_dance(dance, settings.defaults("pose.smoothing")).root.astype(np.float64)


def errors_cm(truth: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """Mean absolute error per axis in cm: sideways (x), vertical (y), depth (z), and of
    the depth travel (both depths less their mean: the path towards and away from the
    camera, without the distance to it, which the assumed field of view scales)."""
    error = np.abs(estimate - truth).mean(axis=0) * 100
    travel = estimate[:, 2] - estimate[:, 2].mean() - (truth[:, 2] - truth[:, 2].mean())
    return {
        "sideways_cm": float(error[0]),
        "vertical_cm": float(error[1]),
        "depth_cm": float(error[2]),
        "depth_travel_cm": float(np.abs(travel).mean() * 100),
    }


def filmed(dance: Dance, rng: np.random.Generator, noise_model: dict, seed: int) -> tuple:
    """A mocap dance filmed by the virtual camera: world positions, camera position, the
    true root in camera axes, the exact 3-D points and pixels, and the same with
    detector-sized pixel noise and video-level 3-D pose noise (``seed``)."""
    world = dance.world().astype(np.float64)
    camera = camera_position(world)
    truth = dance.root.astype(np.float64) - camera
    points, pixels = film(world, camera)
    noisy_pixels = pixels + rng.normal(0, PIXEL_NOISE, pixels.shape)
    pose_noise = noise.draw_noise(noise_model, len(world), seed)
    noisy_points = points + (pose_noise - pose_noise[:, :1]) @ CAMERA_TO_CANONICAL.T
    return world, camera, truth, points, pixels, noisy_points, noisy_pixels


def known_answers(mocap: list[tuple[str, Dance]], seed: int = 0) -> dict[str, dict]:
    """Per case, the frame-weighted mean of each sequence's errors (and per sequence)."""
    noise_model = noise.load_noise()
    rng = np.random.default_rng(seed)
    cases: dict[str, list] = {
        "exact keypoints": [],
        f"{PIXEL_NOISE:g} px keypoint noise": [],
        f"{PIXEL_NOISE:g} px + video 3-D pose noise": [],
        f"{PIXEL_NOISE:g} px + 3-D noise, filtered": [],
        "true FOV 70 deg, 60 assumed": [],
        "3-D pose 5 % too small": [],
    }
    names = list(cases)
    per_sequence = {}
    for index, (name, dance) in enumerate(mocap):
        world, camera, truth, points, pixels, noisy_points, noisy_pixels = filmed(
            dance, rng, noise_model, seed + index
        )
        noisy_root = estimate(noisy_points, noisy_pixels)
        noisy_pose = (noisy_points - noisy_points[:, :1]) @ CAMERA_TO_CANONICAL.T
        wide = film(world, camera, fov_deg=70.0)[1]
        rows = [
            estimate(points, pixels),
            estimate(points, noisy_pixels),
            noisy_root,
            smoothed(noisy_root, noisy_pose),
            estimate(points, wide),
            estimate(points[:, :1] + SMALL_POSE * (points - points[:, :1]), pixels),
        ]
        for case, row in zip(names, rows, strict=True):
            cases[case].append((len(world), errors_cm(truth, row)))
        per_sequence[name] = {
            case: errors_cm(truth, row) for case, row in zip(names, rows, strict=True)
        }
    summary = {}
    for case, figures in cases.items():
        frames = np.array([count for count, _ in figures], dtype=float)
        summary[case] = {
            key: float(np.dot([f[key] for _, f in figures], frames) / frames.sum())
            for key in figures[0][1]
        }
    return {"mean": summary, "per_sequence": per_sequence}
