"""Offline pose backend: MediaPipe BlazePose (``mediapipe==0.10.21``).

Works out of the box: the wheel ships the BlazePose models for
``model_complexity=1`` (levels 0 and 2 download their models at run time). It tracks
one person and gives 33 "world" landmarks in metres, origin between the hips, with
image axes (x right, y down, z away from the camera). We map them to H36M-17 with
y up and the dancer facing +z when facing the camera.

BlazePose runs on one core, so a clip is split into ``workers`` contiguous chunks that
run in parallel processes; the tracker restarts at each chunk boundary.
"""

from __future__ import annotations

import itertools
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import MediaError, PoseError
from kakashi.pose.keypoints import CAMERA_TO_CANONICAL
from kakashi.pose.root import camera_root

log = logging.getLogger("kakashi.pose.mediapipe")

# BlazePose landmark indices.
NOSE, LEFT_EAR, RIGHT_EAR = 0, 7, 8
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW = 11, 12, 13, 14
LEFT_WRIST, RIGHT_WRIST, LEFT_HIP, RIGHT_HIP = 15, 16, 23, 24
LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 25, 26, 27, 28

# H36M joints copied directly from one BlazePose landmark.
DIRECT = {
    "right_hip": RIGHT_HIP,
    "right_knee": RIGHT_KNEE,
    "right_ankle": RIGHT_ANKLE,
    "left_hip": LEFT_HIP,
    "left_knee": LEFT_KNEE,
    "left_ankle": LEFT_ANKLE,
    "neck": NOSE,
    "left_shoulder": LEFT_SHOULDER,
    "left_elbow": LEFT_ELBOW,
    "left_wrist": LEFT_WRIST,
    "right_shoulder": RIGHT_SHOULDER,
    "right_elbow": RIGHT_ELBOW,
    "right_wrist": RIGHT_WRIST,
}
# Chunks shorter than this (10 s at 30 fps) are not worth a process: model load and
# tracker warm-up would eat the gain.
MIN_CHUNK_FRAMES = 300
# The head top lies about half the ear-to-thorax distance above the ears.
HEAD_TOP_EXTENSION = 0.5


def blazepose_joints(landmarks: np.ndarray) -> np.ndarray:
    """BlazePose landmarks (..., 33, C) -> H36M-17 joints (..., 17, C), axes unchanged: the
    world landmarks (C = 3) or their image positions (C = 2, pixels), mapped alike."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    out = np.zeros((*landmarks.shape[:-2], skeleton.NUM_JOINTS, landmarks.shape[-1]))
    for name, index in DIRECT.items():
        out[..., skeleton.INDEX[name], :] = landmarks[..., index, :]
    pelvis = 0.5 * (landmarks[..., LEFT_HIP, :] + landmarks[..., RIGHT_HIP, :])
    thorax = 0.5 * (landmarks[..., LEFT_SHOULDER, :] + landmarks[..., RIGHT_SHOULDER, :])
    ears = 0.5 * (landmarks[..., LEFT_EAR, :] + landmarks[..., RIGHT_EAR, :])
    out[..., skeleton.INDEX["pelvis"], :] = pelvis
    out[..., skeleton.INDEX["thorax"], :] = thorax
    out[..., skeleton.INDEX["spine"], :] = 0.5 * (pelvis + thorax)
    out[..., skeleton.INDEX["head"], :] = ears + HEAD_TOP_EXTENSION * (ears - thorax)
    return out


def blazepose_to_h36m(landmarks: np.ndarray) -> np.ndarray:
    """Map BlazePose world landmarks (..., 33, 3) in image axes to H36M-17 (..., 17, 3).

    Output axes: x = subject's left when facing the camera, y up, z towards the camera.
    """
    camera = blazepose_joints(landmarks)
    canonical = camera @ CAMERA_TO_CANONICAL.T  # y down -> up, z away -> towards
    return canonical - canonical[..., :1, :]  # root-centred


def blazepose_visibility_to_h36m(visibility: np.ndarray) -> np.ndarray:
    """Per-landmark visibility (..., 33) -> per-joint confidence (..., 17): a joint built
    from several landmarks is as visible as they are on average (as in the pose mapping)."""
    out = np.zeros((*visibility.shape[:-1], skeleton.NUM_JOINTS))
    for name, index in DIRECT.items():
        out[..., skeleton.INDEX[name]] = visibility[..., index]
    pelvis = 0.5 * (visibility[..., LEFT_HIP] + visibility[..., RIGHT_HIP])
    thorax = 0.5 * (visibility[..., LEFT_SHOULDER] + visibility[..., RIGHT_SHOULDER])
    out[..., skeleton.INDEX["pelvis"]] = pelvis
    out[..., skeleton.INDEX["thorax"]] = thorax
    out[..., skeleton.INDEX["spine"]] = 0.5 * (pelvis + thorax)
    ears = 0.5 * (visibility[..., LEFT_EAR] + visibility[..., RIGHT_EAR])
    out[..., skeleton.INDEX["head"]] = ears
    return out


def _mapped_landmarks() -> list[int]:
    return sorted(set(DIRECT.values()) | {LEFT_EAR, RIGHT_EAR})


def count_frames(video: Path) -> int:
    """Decode-count the frames (container headers can be wrong); cheap: no pixel copy."""
    import cv2

    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise MediaError(f"cannot open video {video}; the file is missing or corrupt")
    frames = 0
    while capture.grab():
        frames += 1
    capture.release()
    return frames


def _estimate_chunk(video: str, first: int, last: int, model_complexity: int) -> tuple:
    """Run BlazePose on frames [first, last) of ``video``; returns the world landmarks
    (N, 33, 3), their image positions (N, 33, 2, pixels), visibility (N, 33) and whether a
    person was found (N,)."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    import cv2
    import mediapipe as mp

    capture = cv2.VideoCapture(video)
    for _ in range(first):
        capture.grab()
    count = last - first
    landmarks = np.zeros((count, 33, 3), dtype=np.float64)
    image = np.zeros((count, 33, 2), dtype=np.float64)
    visibility = np.zeros((count, 33), dtype=np.float64)
    found = np.zeros(count, dtype=bool)
    with mp.solutions.pose.Pose(
        static_image_mode=False,
        model_complexity=model_complexity,
        smooth_landmarks=True,
        enable_segmentation=False,
    ) as tracker:
        for i in range(count):
            ok, frame = capture.read()
            if not ok:
                # A short chunk would shift every later frame in time: refuse it.
                raise MediaError(
                    f"{video}: frame {first + i} could not be decoded although the file "
                    f"counted {last} frames; the clip is damaged, delete it to re-cut it"
                )
            result = tracker.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if result.pose_world_landmarks is None:
                continue
            found[i] = True
            for j, point in enumerate(result.pose_world_landmarks.landmark):
                landmarks[i, j] = (point.x, point.y, point.z)
                visibility[i, j] = point.visibility
            # Image landmarks are normalised by the frame's width and height.
            rows, columns = frame.shape[:2]
            for j, point in enumerate(result.pose_landmarks.landmark):
                image[i, j] = (point.x * columns, point.y * rows)
    capture.release()
    return landmarks, image, visibility, found


class MediaPipeBackend:
    """BlazePose full-body (model_complexity 1) on CPU, in ``workers`` processes."""

    name = "mediapipe"

    def __init__(
        self,
        workers: int = 1,
        model_complexity: int = 1,
        min_chunk_frames: int = MIN_CHUNK_FRAMES,
        root_fov_deg: float | None = None,
    ) -> None:
        """``root_fov_deg``: estimate the root with a camera of this field of view
        (:mod:`kakashi.pose.root`); None leaves it at zeros (``root_measured: false``)."""
        if model_complexity != 1:
            # Levels 0 and 2 download their model at run time, which fails offline.
            raise PoseError(
                "mediapipe backend: only model_complexity 1 ships inside the wheel; "
                f"got {model_complexity}"
            )
        self.workers = max(1, workers)
        self.model_complexity = model_complexity
        self.min_chunk_frames = min_chunk_frames
        self.root_fov_deg = root_fov_deg

    def estimate(self, video: Path) -> Dance:
        import cv2

        video = Path(video)
        frames = count_frames(video)
        if frames == 0:
            raise MediaError(f"video {video} has no decodable frames")
        capture = cv2.VideoCapture(str(video))
        fps = capture.get(cv2.CAP_PROP_FPS)
        image_size = (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        capture.release()
        workers = min(self.workers, max(1, frames // self.min_chunk_frames))
        bounds = np.linspace(0, frames, workers + 1).astype(int)
        chunks = list(itertools.pairwise(bounds))
        if workers == 1:
            results = [_estimate_chunk(str(video), 0, frames, self.model_complexity)]
        else:
            with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
                futures = [
                    pool.submit(_estimate_chunk, str(video), int(a), int(b), self.model_complexity)
                    for a, b in chunks
                ]
                results = [future.result() for future in futures]
        landmarks, image, visibility, found = (
            np.concatenate([r[k] for r in results]) for k in range(4)
        )
        pose = blazepose_to_h36m(landmarks).astype(np.float32)
        conf = np.where(found, visibility[:, _mapped_landmarks()].mean(axis=1), 0.0)
        joint_conf = np.clip(blazepose_visibility_to_h36m(visibility), 0, 1)
        root = np.zeros((len(pose), 3), dtype=np.float32)
        root_meta: dict = {}
        if self.root_fov_deg is not None:
            camera = blazepose_joints(landmarks)
            root, root_meta = camera_root(
                camera - camera[:, :1],
                blazepose_joints(image),
                joint_conf,
                found,
                image_size,
                self.root_fov_deg,
            )
        log.info(
            "%s: %d frames, person in %d, %d worker(s)", video, len(pose), found.sum(), workers
        )
        meta = {
            "backend": self.name,
            "model": f"blazepose_full (model_complexity={self.model_complexity})",
            "root_measured": self.root_fov_deg is not None,
            "chunks": [[int(a), int(b)] for a, b in chunks],
        }
        if self.root_fov_deg is not None:
            meta.update(root_source="video", root=root_meta)
        return Dance(
            pose=pose,
            root=root,
            conf=conf.astype(np.float32),
            joint_conf=joint_conf,
            fps=float(fps),
            meta=meta,
        )
