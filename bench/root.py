"""Root motion from video, measured: known answers on real motion capture seen through a
virtual camera, and the cost of the estimate beside pose estimation's.

Run from the repository root (``../shared/data`` holds the mocap)::

    .venv/bin/python bench/root.py [--json out.json] [--skip-video]

1. **Known answers.** Real mocap (Dance with Melody, CMU subject 131) at 30 fps is filmed
   by a virtual pinhole camera (1280 x 720, 60 degrees across, 1.0 m above the floor,
   level, ``CAMERA_DISTANCE_M`` in front of the nearest point the dancer reaches, looking
   at the middle of the dancer's sideways range). The 2-D keypoints and the pelvis-centred
   3-D pose in camera axes go to :func:`kakashi.pose.root.camera_root`; its root is
   compared with the real one (both relative to the camera): mean absolute error in cm,
   sideways (x), vertical (y) and depth (z). Rows: exact keypoints; keypoints with
   Gaussian noise of ``PIXEL_NOISE`` px; that plus the 3-D pose noise of real video
   (``bench/video_noise.json``, measured by bench/smoothing.py); the same after the pose
   stage's filter (``pose.smoothing`` defaults); a camera whose true field of view is 70
   degrees while 60 is assumed; and a 3-D pose 5 % smaller than the dancer.
2. **Cost.** The pose backend on the demo clip (8 s at 30 fps, one process), then the root
   step on its real output (solve; the root's part of the pose filter; floor and drift):
   milliseconds per frame of each, and the root step's share of pose estimation.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's kakashi, installed or not

from kakashi import settings  # noqa: E402
from kakashi.dance import Dance  # noqa: E402
from kakashi.pose import root as root_module  # noqa: E402
from kakashi.pose import smoothing  # noqa: E402
from kakashi.pose.keypoints import CAMERA_TO_CANONICAL  # noqa: E402
from kakashi.pose.smoothing import smooth_dance  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
FPS = 30
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


def _smoothing_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_smoothing", REPO / "bench" / "smoothing.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def filmed(dance: Dance, rng: np.random.Generator, noise_bench, noise_model, seed: int) -> tuple:
    """A mocap dance filmed by the virtual camera: world positions, camera position, the
    true root in camera axes, the exact 3-D points and pixels, and the same with
    detector-sized pixel noise and video-level 3-D pose noise (``seed``)."""
    world = dance.world().astype(np.float64)
    camera = camera_position(world)
    truth = dance.root.astype(np.float64) - camera
    points, pixels = film(world, camera)
    noisy_pixels = pixels + rng.normal(0, PIXEL_NOISE, pixels.shape)
    pose_noise = noise_bench.draw_noise(noise_model, len(world), seed)
    noisy_points = points + (pose_noise - pose_noise[:, :1]) @ CAMERA_TO_CANONICAL.T
    return world, camera, truth, points, pixels, noisy_points, noisy_pixels


def known_answers(mocap: list[tuple[str, Dance]], seed: int = 0) -> dict[str, dict]:
    """Per case, the frame-weighted mean of each sequence's errors (and per sequence)."""
    noise_bench = _smoothing_bench()
    noise_model = noise_bench.load_noise()
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
            dance, rng, noise_bench, noise_model, seed + index
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


# Filters for the root compared on the noisy case: (window_s, degree); the first is the
# pose stage's default (pose.smoothing), the one the root uses.
FILTER_CHOICES = ((0.9, 6), (0.9, 3), (1.5, 3), (1.5, 4), (2.0, 3))


def filter_choices(mocap: list[tuple[str, Dance]], seed: int = 0) -> dict[str, dict]:
    """Root error (cm, frame-weighted) of the noisy case (3 px + video 3-D noise) after a
    local polynomial fit of each ``FILTER_CHOICES`` window and degree, and the error of the
    vertical speed (cm/s: bounce and jumps)."""
    from kakashi.pose.smoothing import local_polynomial, window_frames

    noise_bench = _smoothing_bench()
    noise_model = noise_bench.load_noise()
    rng = np.random.default_rng(seed)
    sums: dict[str, list] = {f"{w:g} s, degree {d}": [] for w, d in FILTER_CHOICES}
    for index, (_, dance) in enumerate(mocap):
        world, _, truth, _, _, points, pixels = filmed(
            dance, rng, noise_bench, noise_model, seed + index
        )
        raw = estimate(points, pixels)
        for (window_s, degree), key in zip(FILTER_CHOICES, sums, strict=True):
            fitted = local_polynomial(raw[:, None], window_frames(window_s, FPS), degree)[:, 0]
            row = errors_cm(truth, fitted)
            speed = np.abs(np.gradient(fitted[:, 1]) - np.gradient(truth[:, 1])).mean()
            row["vertical_speed_cm_s"] = float(speed * FPS * 100)
            sums[key].append((len(world), row))
    return {
        key: {
            name: float(np.average([r[name] for _, r in rows], weights=[n for n, _ in rows]))
            for name in rows[0][1]
        }
        for key, rows in sums.items()
    }


def m2d_root_scale(mocap: list[tuple[str, Dance]]) -> dict[str, dict]:
    """Dance with Melody's root against its body: the pelvis height range and the lowest
    ankle (should sit ~ANKLE_HEIGHT_M above a floor at 0 when a foot is planted)."""
    out = {}
    for name, dance in mocap:
        lowest = root_module.lowest_ankle(dance.world())
        out[name] = {
            "root_height_p5_p95_m": [
                round(float(v), 3) for v in np.percentile(dance.root[:, 1], [5, 95])
            ],
            "lowest_ankle_p5_p50_p95_m": [
                round(float(v), 3) for v in np.percentile(lowest, [5, 50, 95])
            ],
            "floor_drift_m": round(root_module.floor_drift(dance.world(), dance.conf, FPS), 3),
        }
    return out


def cost_per_frame() -> dict[str, float]:
    """Pose estimation and the root step on the demo clip, ms per frame."""
    from kakashi.cut import cut_video
    from kakashi.pose import mediapipe_backend as mp_backend

    with tempfile.TemporaryDirectory() as folder:
        clip = Path(folder) / "clip.mp4"
        demo = REPO / "data" / "demo" / "dancer.avi"
        cut_video(demo, clip, Path(folder) / "clip.wav", 0, 8, fps=FPS)
        frames = mp_backend.count_frames(clip)
        started = time.perf_counter()
        landmarks, image, visibility, found = mp_backend._estimate_chunk(str(clip), 0, frames, 1)
        pose_s = time.perf_counter() - started
    camera = mp_backend.blazepose_joints(landmarks)
    keypoints = mp_backend.blazepose_joints(image)
    joint_conf = np.clip(mp_backend.blazepose_visibility_to_h36m(visibility), 0, 1)
    pose = mp_backend.blazepose_to_h36m(landmarks)
    repeats = 20
    started = time.perf_counter()
    for _ in range(repeats):
        root, _ = root_module.camera_root(
            camera - camera[:, :1], keypoints, joint_conf, found, (518, 496), FOV_DEG
        )
    solve_s = (time.perf_counter() - started) / repeats
    # The root's share of the pose stage's filter: one more point, weighted by conf.
    conf = found.astype(np.float64)
    defaults = settings.defaults("pose.smoothing")
    started = time.perf_counter()
    for _ in range(repeats):
        weight = smoothing.confidence_weight(conf, None, defaults["min_weight"])[:, :1]
        filtered = smoothing.filter_points(root[:, None], FPS, weight, defaults)[:, 0]
    filter_s = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        dance = Dance(pose, filtered, FPS, conf, {"root_measured": True})
        root_module.place_on_floor(dance, "demo")
    floor_s = (time.perf_counter() - started) / repeats
    return {
        "frames": frames,
        "pose_ms_per_frame": 1000 * pose_s / frames,
        "root_solve_ms_per_frame": 1000 * solve_s / frames,
        "root_filter_ms_per_frame": 1000 * filter_s / frames,
        "root_floor_ms_per_frame": 1000 * floor_s / frames,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--skip-video", action="store_true", help="no pose estimation (cost)")
    args = parser.parse_args()
    smoothing_bench = _smoothing_bench()
    figures = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": smoothing_bench.machine(),
    }
    mocap = load_mocap()
    figures["known_answers"] = known_answers(mocap)
    figures["filter_choices"] = filter_choices(mocap)
    figures["mocap_floor"] = m2d_root_scale(mocap)
    print(f"{figures['date']}, {figures['machine']}")
    print("\nroot error, mean absolute (cm):     sideways vertical    depth  depth travel")
    for case, row in figures["known_answers"]["mean"].items():
        print(f"  {case:34s}" + "".join(f"{value:9.2f}" for value in row.values()))
    print("\nper sequence (3 px + 3-D noise, filtered):")
    for name, rows in figures["known_answers"]["per_sequence"].items():
        row = rows[f"{PIXEL_NOISE:g} px + 3-D noise, filtered"]
        print(f"  {name:34s}" + "".join(f"{value:9.2f}" for value in row.values()))
    print("\nroot filters on the noisy case (cm; last: vertical speed error, cm/s):")
    for case, row in figures["filter_choices"].items():
        print(f"  {case:34s}" + "".join(f"{value:9.2f}" for value in row.values()))
    print("\nmocap floors (root height p5/p95, lowest ankle p5/p50/p95, floor drift; m):")
    for name, row in figures["mocap_floor"].items():
        print(f"  {name:16s} {row}")
    if not args.skip_video:
        figures["cost"] = cost_per_frame()
        cost = figures["cost"]
        root_ms = sum(v for k, v in cost.items() if k.startswith("root_"))
        print(
            f"\ncost on the demo clip ({cost['frames']} frames), ms/frame: pose (mediapipe, "
            f"1 process) {cost['pose_ms_per_frame']:.2f}; root solve "
            f"{cost['root_solve_ms_per_frame']:.4f}, filter {cost['root_filter_ms_per_frame']:.4f},"
            f" floor {cost['root_floor_ms_per_frame']:.4f}: the root step is "
            f"{100 * root_ms / cost['pose_ms_per_frame']:.2f} % of pose estimation"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
