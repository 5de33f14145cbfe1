"""Frames per second of the pose backends on CPU: MMPose beside MediaPipe, on the demo video.

Run from the repository root, with a venv that has the MMPose stack
(scripts/setup-mmpose.sh)::

    .venv/bin/python bench/pose.py [--video data/demo/dancer.avi] [--seconds 10]
                                   [--workers 2] [--batch-size 8] [--json out.json]

No pretrained MMPose weights exist offline, so the MMPose backend runs with RANDOM weights
saved as checkpoints of the default configs: the network cost per frame is the real one.
A random detector scores boxes at random, so the bench keeps one box per frame
(``max_candidates=1``), as a trained detector does on the demo's single dancer; otherwise
the 2-D model would run on up to 10 random boxes per frame. Model loading is timed apart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's kakashi, installed or not


def head_of_video(source: Path, target: Path, seconds: float) -> int:
    """Write the first ``seconds`` of ``source`` to ``target`` (mp4); returns its frames."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    writer = None
    frames = 0
    while frames < round(seconds * fps):
        ok, frame = capture.read()
        if not ok:
            break
        if writer is None:
            size = (frame.shape[1], frame.shape[0])
            writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        writer.write(frame)
        frames += 1
    writer.release()
    capture.release()
    return frames


def random_checkpoints(folder: Path) -> dict[str, str]:
    """Randomly initialised models of the default configs, saved as MMEngine checkpoints."""
    import torch
    from mmdet.apis import init_detector

    from kakashi.pose import mmpose_backend as mb

    torch.manual_seed(0)
    det_config = str(mb.resolve_config(mb.DEFAULT_DET_CONFIG, "det"))
    models = {
        "det": init_detector(det_config, None, device="cpu"),
        "pose2d": mb.init_pose_model(mb.resolve_config(mb.DEFAULT_POSE2D_CONFIG, "p")),
        "lifter": mb.init_pose_model(mb.resolve_config(mb.DEFAULT_LIFTER_CONFIG, "l")),
    }
    paths = {}
    for key, model in models.items():
        path = folder / f"{key}.pth"
        meta = {"dataset_meta": {"classes": ("person",)}} if key == "det" else {}
        torch.save({"state_dict": model.state_dict(), "meta": meta}, path)
        paths[f"{key}_checkpoint"] = str(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=REPO / "data" / "demo" / "dancer.avi")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--skip-mediapipe", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    from kakashi.pose.mediapipe_backend import MediaPipeBackend
    from kakashi.pose.mmpose_backend import MMPoseBackend

    results: dict = {
        "video": str(args.video),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": args.workers,
        "load_avg_1min": os.getloadavg()[0],
    }
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip.mp4"
        frames = head_of_video(args.video, clip, args.seconds)
        results["frames"] = frames

        started = time.perf_counter()
        backend = MMPoseBackend(
            **random_checkpoints(Path(tmp)),
            device="cpu",
            batch_size=args.batch_size,
            bbox_threshold=0.0,
            workers=args.workers,
            max_candidates=1,
        )
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        sequence = backend.estimate(clip)
        run_s = time.perf_counter() - started
        timing = sequence.meta["timing_s"]
        results["mmpose"] = {
            "weights": "random (same network cost)",
            "load_s": round(load_s, 2),
            "fps": round(frames / run_s, 2),
            "detect_and_2d_fps": round(frames / timing["detect_and_2d"], 2),
            "lift_fps": round(frames / max(timing["lift"], 1e-9), 1),
            "batch_size": args.batch_size,
            "device": backend.device,
        }
        print(f"mmpose   : {frames} frames, {results['mmpose']}", flush=True)

        if not args.skip_mediapipe:
            mediapipe = MediaPipeBackend(workers=args.workers, min_chunk_frames=1)
            started = time.perf_counter()
            mediapipe.estimate(clip)
            run_s = time.perf_counter() - started
            results["mediapipe"] = {
                "fps": round(frames / run_s, 2),
                "workers": args.workers,
                "note": "includes process start and model load per worker",
            }
            print(f"mediapipe: {frames} frames, {results['mediapipe']}", flush=True)
    results["torch"] = torch.__version__
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
