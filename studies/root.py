"""Root motion from video, measured: known answers on real motion capture seen through a
virtual camera, and the cost of the estimate beside pose estimation's.

Run from the repository root (``../shared/data`` holds the mocap)::

    .venv/bin/python studies/root.py [--json out.json] [--skip-video]

1. **Known answers.** Real mocap (Dance with Melody, CMU subject 131) at 30 fps is filmed
   by a virtual pinhole camera (1280 x 720, 60 degrees across, 1.0 m above the floor,
   level, ``CAMERA_DISTANCE_M`` in front of the nearest point the dancer reaches, looking
   at the middle of the dancer's sideways range). The 2-D keypoints and the pelvis-centred
   3-D pose in camera axes go to :func:`kakashi.pose.root.camera_root`; its root is
   compared with the real one (both relative to the camera): mean absolute error in cm,
   sideways (x), vertical (y) and depth (z). Rows: exact keypoints; keypoints with
   Gaussian noise of ``PIXEL_NOISE`` px; that plus the 3-D pose noise of real video
   (``tests/video_noise.json``, measured by studies/smoothing.py); the same after the pose
   stage's filter (``pose.smoothing`` defaults); a camera whose true field of view is 70
   degrees while 60 is assumed; and a 3-D pose 5 % smaller than the dancer.
2. **Cost.** The pose backend on the demo clip (8 s at 30 fps, one process), then the root
   step on its real output (solve; the root's part of the pose filter; floor and drift):
   milliseconds per frame of each, and the root step's share of pose estimation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]  # kakashi, the known answers

from kakashi import settings  # noqa: E402
from kakashi.dance import Dance  # noqa: E402
from kakashi.pose import root as root_module  # noqa: E402
from kakashi.pose import smoothing  # noqa: E402
from known_answers import smoothing as noise  # noqa: E402
from known_answers.root import (  # noqa: E402
    FOV_DEG,
    FPS,
    PIXEL_NOISE,
    errors_cm,
    estimate,
    filmed,
    known_answers,
    load_mocap,
)

# Filters for the root compared on the noisy case: (window_s, degree); the first is the
# pose stage's default (pose.smoothing), the one the root uses.
FILTER_CHOICES = ((0.9, 6), (0.9, 3), (1.5, 3), (1.5, 4), (2.0, 3))


def filter_choices(mocap: list[tuple[str, Dance]], seed: int = 0) -> dict[str, dict]:
    """Root error (cm, frame-weighted) of the noisy case (3 px + video 3-D noise) after a
    local polynomial fit of each ``FILTER_CHOICES`` window and degree, and the error of the
    vertical speed (cm/s: bounce and jumps)."""
    from kakashi.pose.smoothing import local_polynomial, window_frames

    noise_model = noise.load_noise()
    rng = np.random.default_rng(seed)
    sums: dict[str, list] = {f"{w:g} s, degree {d}": [] for w, d in FILTER_CHOICES}
    for index, (_, dance) in enumerate(mocap):
        world, _, truth, _, _, points, pixels = filmed(dance, rng, noise_model, seed + index)
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
    from smoothing import machine  # studies/smoothing.py, beside this script

    figures = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
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
