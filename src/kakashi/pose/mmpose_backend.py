"""MMPose backend: person detection (MMDetection), top-down 2-D pose and 2-D-to-3-D lifting.

Three OpenMMLab models run one after the other on a clip:

1. a person detector (default RTMDet-m person, the config MMPose's demos use), in batches
   of ``batch_size`` frames;
2. a top-down 2-D pose model on every person box (default RTMPose-m, COCO-17), batched
   over all boxes of those frames;
3. a 2-D-to-3-D lifter (default VideoPose3D, 243-frame TCN) on the main dancer's H36M-17
   2-D track, one window per frame, batched.

Between 2 and 3, :mod:`kakashi.pose.tracking` links boxes into tracks and picks the main
dancer; the number of people per frame goes to ``meta['people_per_frame']`` for the
``pose.max_people`` policy.

Lifter input follows ``mmpose.apis.inference_pose_lifter_model(norm_pose_2d=True)``: each
frame's 2-D pose is moved and scaled from its box to the mean H36M box
(``dataset_meta['stats_info']``), so the camera given to the codec is the H36M one
(1000 x 1002 pixels), not the video's. The lifter predicts root-relative H36M-17 joints in
metres in camera axes (x right, y down, z away from the camera); Kakashi's canonical axes
are y up and the dancer facing +z when facing the camera, so ``(x, y, z) -> (x, -y, -z)``
(a 180-degree turn about x: still right-handed), then root-centred.

Configs are file paths or names of configs shipped in the mmpose / mmdet packages (``.mim``
folders); checkpoints are local paths, URLs or model-zoo names (from the packages'
metafiles). Nothing is downloaded unless a URL or name is given and the machine is online.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported inside the functions: `kakashi --help` stays fast
    import torch

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import MediaError, PoseError
from kakashi.pose.keypoints import coco_to_h36m, lifter_to_canonical
from kakashi.pose.root import camera_root
from kakashi.pose.tracking import track_people

log = logging.getLogger("kakashi.pose.mmpose")

DEFAULT_DET_CONFIG = "rtmdet_m_640-8xb32_coco-person.py"
DEFAULT_POSE2D_CONFIG = "body_2d_keypoint/rtmpose/coco/rtmpose-m_8xb256-420e_coco-256x192.py"
DEFAULT_LIFTER_CONFIG = (
    "body_3d_keypoint/video_pose_lift/h36m/"
    "video-pose-lift_tcn-243frm-supv-cpn-ft_8xb128-200e_h36m.py"
)
# Official weights of the default detector: a demo config, so no metafile lists it.
KNOWN_WEIGHTS = {
    DEFAULT_DET_CONFIG: "https://download.openmmlab.com/mmpose/v1/projects/rtmpose/"
    "rtmdet_m_8xb32-100e_coco-obj365-person-235e8209.pth",
}
# The H36M camera the lifters were trained with (see the module docstring).
H36M_CAMERA = {"w": 1000, "h": 1002}
# Boxes kept per frame, best first: enough for a group dance, bounded for random weights.
MAX_CANDIDATES = 10
LIFTER_BATCH = 64


def _package_roots() -> list[Path]:
    """The ``.mim`` folders of the installed mmpose and mmdet packages (configs ship there)."""
    roots = []
    for name in ("mmpose", "mmdet"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        roots.append(Path(module.__file__).parent / ".mim")
    return roots


@cache
def _model_zoo() -> dict[str, tuple[str, str]]:
    """Model-zoo names -> (config path, weights URL), from the packages' metafiles."""
    import yaml

    zoo: dict[str, tuple[str, str]] = {}
    for root in _package_roots():
        for metafile in (root / "configs").rglob("*.yml"):
            try:
                models = (yaml.safe_load(metafile.read_text()) or {}).get("Models") or []
            except (yaml.YAMLError, AttributeError, UnicodeDecodeError):
                continue  # not a metafile
            for model in models:
                if isinstance(model, dict) and model.get("Name") and model.get("Config"):
                    zoo[model["Name"]] = (str(root / model["Config"]), model.get("Weights", ""))
    return zoo


def resolve_config(value: str, setting: str) -> Path:
    """A config path from a file path, a model-zoo name or a config name in the packages."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    if value in _model_zoo():
        return Path(_model_zoo()[value][0])
    for root in _package_roots():
        for folder in (root / "configs", root / "demo" / "mmdetection_cfg", root):
            if (folder / value).is_file():
                return folder / value
    matches = [p for root in _package_roots() for p in root.rglob(Path(value).name)]
    if len(matches) == 1:
        return matches[0]
    raise PoseError(
        f"{setting}: {value!r} is neither a config file nor a config shipped in the mmpose or "
        f"mmdet package ({len(matches)} matches by name); give a path, a path relative to "
        "the package's configs folder (e.g. "
        f"{DEFAULT_POSE2D_CONFIG}) or a model-zoo name"
    )


def _weights_for(config: Path) -> str:
    """The official weights URL of a shipped config, or '' when none is known."""
    if config.name in KNOWN_WEIGHTS:
        return KNOWN_WEIGHTS[config.name]
    for zoo_config, url in _model_zoo().values():
        if Path(zoo_config).name == config.name:
            return url
    return ""


def resolve_checkpoint(value: str, config: Path, setting: str) -> str:
    """A loadable checkpoint: an existing local file, or a URL (from a name or given).

    Fails here, before any video is read, when a local file is missing, with the URL of
    the official weights when the config is a known one.
    """
    official = _weights_for(config)
    if not value:
        if not official:
            raise PoseError(
                f"{setting} is not set and no official weights are known for {config.name}; "
                "set it to the path of the checkpoint (.pth) trained with that config"
            )
        value = official
    if value in _model_zoo():
        value = _model_zoo()[value][1]
    if value.startswith(("http://", "https://")):
        from torch.hub import get_dir

        cached = Path(get_dir()) / "checkpoints" / Path(value).name
        return str(cached) if cached.is_file() else value
    path = Path(value).expanduser()
    if not path.is_file():
        hint = f"download {official} on a connected machine and " if official else ""
        raise PoseError(
            f"{setting}: checkpoint {path} does not exist; {hint}put the file there, or "
            f"point {setting} at its path (see docs/mmpose.md)"
        )
    return str(path)


def _load_weights(model, checkpoint: str, setting: str) -> dict:
    """Load a checkpoint into ``model``; refuse one that leaves parameters unset.

    MMEngine's loader only warns about missing keys, which would silently leave a model
    with random weights when the checkpoint belongs to another config.
    """
    from mmengine.runner import CheckpointLoader

    try:
        loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location="cpu")
    except Exception as error:  # network, unpickling and file errors alike
        where = (
            "download it on a connected machine and set it to the local path"
            if checkpoint.startswith("http")
            else "the file is not a PyTorch checkpoint; download it again"
        )
        raise PoseError(f"{setting}: cannot load {checkpoint} ({error}); {where}") from error
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict):
        raise PoseError(f"{setting}: {checkpoint} holds no state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    # torch reports missing keys after the models' load hooks have run (MMPose renames
    # MMPose 0.x keys there, e.g. keypoint_head -> head), so old official weights pass.
    try:
        missing = model.load_state_dict(state, strict=False).missing_keys
    except RuntimeError as error:  # same names, other shapes
        raise PoseError(f"{setting}: {checkpoint} does not fit its config: {error}") from error
    if missing:
        raise PoseError(
            f"{setting}: {checkpoint} does not fit its config: {len(missing)} parameters are "
            f"missing (e.g. {missing[0]}); use the checkpoint trained with that config"
        )
    return loaded


def init_pose_model(config: Path) -> torch.nn.Module:
    """Build an MMPose model (top-down or lifter) from its config, with random weights.

    What ``mmpose.apis.init_model`` does, without importing ``mmpose.apis``: that package
    imports MMPose's visualisers, which need torchvision, and torchvision has no CPU wheel
    for the CPU torch Kakashi installs. The weights are loaded by :func:`_load_weights`.
    """
    import mmpose.datasets  # noqa: F401  (registers the datasets whose metainfo we read)
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    from mmpose.models import build_pose_estimator
    from mmpose.registry import DATASETS

    cfg = Config.fromfile(str(config))
    if "init_cfg" in cfg.model.get("backbone", {}):
        cfg.model.backbone.init_cfg = None  # would download ImageNet weights
    cfg.model.train_cfg = None
    init_default_scope(cfg.get("default_scope", "mmpose"))
    model = revert_sync_batchnorm(build_pose_estimator(cfg.model))
    dataset = cfg.train_dataloader.dataset
    metainfo = dataset.get("metainfo") or DATASETS.get(dataset.type).METAINFO
    model.dataset_meta = parse_pose_metainfo(metainfo)
    model.cfg = cfg
    return model.eval()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PoseError(f"pose.mmpose.device is {device!r} but no CUDA GPU is visible; use auto")
    return device


@dataclass
class FrameDetections:
    """One frame: person boxes (N, 4) xyxy, their scores (N,), COCO keypoints (N, 17, 3)."""

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray


class MMPoseBackend:
    """RTMDet + RTMPose + VideoPose3D (or the configs named) through MMPose 1.x."""

    name = "mmpose"

    def __init__(
        self,
        det_config: str = DEFAULT_DET_CONFIG,
        det_checkpoint: str = "",
        pose2d_config: str = DEFAULT_POSE2D_CONFIG,
        pose2d_checkpoint: str = "",
        lifter_config: str = DEFAULT_LIFTER_CONFIG,
        lifter_checkpoint: str = "",
        device: str = "auto",
        batch_size: int = 8,
        bbox_threshold: float = 0.3,
        workers: int = 1,
        max_candidates: int = MAX_CANDIDATES,
        root_fov_deg: float | None = None,
    ) -> None:
        """``root_fov_deg``: estimate the root from the 2-D keypoints and the lifted pose
        with a camera of this field of view (:mod:`kakashi.pose.root`); None leaves it at
        zeros (``root_measured: false``)."""
        try:
            import mmdet  # noqa: F401
            import mmpose  # noqa: F401
            import pkg_resources  # noqa: F401  (mmengine needs it; setuptools >= 81 dropped it)
        except ImportError as error:
            raise PoseError(
                f"pose.backend is mmpose but {error.name} is not installed; run "
                "scripts/setup-mmpose.sh (see docs/mmpose.md)"
            ) from error
        if batch_size < 1:
            raise PoseError(f"pose.mmpose.batch_size is {batch_size}; it must be at least 1")
        self.batch_size = batch_size
        self.bbox_threshold = bbox_threshold
        self.max_candidates = max_candidates
        self.root_fov_deg = root_fov_deg
        self.device = resolve_device(device)
        import torch

        # The Snakemake job's threads: torch would otherwise take every core.
        torch.set_num_threads(max(1, workers))
        configs = {
            "det": resolve_config(det_config, "pose.mmpose.det_config"),
            "pose2d": resolve_config(pose2d_config, "pose.mmpose.pose2d_config"),
            "lifter": resolve_config(lifter_config, "pose.mmpose.lifter_config"),
        }
        given = {"det": det_checkpoint, "pose2d": pose2d_checkpoint, "lifter": lifter_checkpoint}
        # Resolve all three before loading any, so one missing file is reported at once.
        checkpoints = {
            k: resolve_checkpoint(given[k], configs[k], f"pose.mmpose.{k}_checkpoint")
            for k in configs
        }
        self.configs, self.checkpoints = configs, checkpoints
        self._load_models()

    def _load_models(self) -> None:
        from mmdet.apis import init_detector
        from mmpose.utils import adapt_mmdet_pipeline

        self.detector = init_detector(str(self.configs["det"]), None, device="cpu")
        meta = _load_weights(self.detector, self.checkpoints["det"], "pose.mmpose.det_checkpoint")
        classes = meta.get("meta", {}).get("dataset_meta", {}).get("classes")
        classes = classes or self.detector.dataset_meta.get("classes") or ("person",)
        # COCO detectors and person-only ones both put "person" first; look it up anyway.
        self.person_label = list(classes).index("person") if "person" in classes else 0
        self.detector.cfg = adapt_mmdet_pipeline(self.detector.cfg)
        self.detector.to(self.device).eval()

        self.pose2d = init_pose_model(self.configs["pose2d"])
        _load_weights(self.pose2d, self.checkpoints["pose2d"], "pose.mmpose.pose2d_checkpoint")
        self.pose2d.to(self.device).eval()
        if self.pose2d.dataset_meta.get("num_keypoints") != 17:
            raise PoseError(
                f"pose.mmpose.pose2d_config {self.configs['pose2d'].name} predicts "
                f"{self.pose2d.dataset_meta.get('num_keypoints')} keypoints; use a COCO-17 model"
            )
        self.lifter = init_pose_model(self.configs["lifter"])
        _load_weights(self.lifter, self.checkpoints["lifter"], "pose.mmpose.lifter_checkpoint")
        self.lifter.to(self.device).eval()
        if self.lifter.dataset_meta.get("num_keypoints") != skeleton.NUM_JOINTS:
            raise PoseError(
                f"pose.mmpose.lifter_config {self.configs['lifter'].name} is not an H36M-17 lifter"
            )

    # -- stage 1 and 2: detection and 2-D pose, batched over frames -----------------------

    def _detect_and_pose(self, frames: list[np.ndarray]) -> list[FrameDetections]:
        import torch
        from mmdet.utils import get_test_pipeline_cfg
        from mmengine.dataset import Compose, pseudo_collate
        from mmengine.registry import init_default_scope

        init_default_scope("mmdet")
        pipeline_cfg = get_test_pipeline_cfg(self.detector.cfg.copy())
        pipeline_cfg[0].type = "mmdet.LoadImageFromNDArray"
        pipeline = Compose(pipeline_cfg)
        batch = pseudo_collate([pipeline({"img": f, "img_id": i}) for i, f in enumerate(frames)])
        with torch.no_grad():
            detections = self.detector.test_step(batch)
        boxes_per_frame = []
        for result in detections:
            pred = result.pred_instances.cpu().numpy()
            keep = (pred.labels == self.person_label) & (pred.scores > self.bbox_threshold)
            order = np.argsort(-pred.scores[keep])[: self.max_candidates]
            boxes_per_frame.append((pred.bboxes[keep][order], pred.scores[keep][order]))

        init_default_scope(self.pose2d.cfg.get("default_scope", "mmpose"))
        pipeline = Compose(self.pose2d.cfg.test_dataloader.dataset.pipeline)
        items, owners = [], []
        for t, (boxes, _) in enumerate(boxes_per_frame):
            for box in boxes:
                info = {"img": frames[t], "bbox": box[None], "bbox_score": np.ones(1, np.float32)}
                info.update(self.pose2d.dataset_meta)
                items.append(pipeline(info))
                owners.append(t)
        keypoints = [np.zeros((0, 17, 3), np.float32) for _ in frames]
        if items:
            with torch.no_grad():
                results = self.pose2d.test_step(pseudo_collate(items))
            per_frame: list[list[np.ndarray]] = [[] for _ in frames]
            for t, result in zip(owners, results, strict=True):
                pred = result.pred_instances
                per_frame[t].append(
                    np.concatenate([pred.keypoints[0], pred.keypoint_scores[0][:, None]], axis=1)
                )
            keypoints = [np.array(k, np.float32).reshape(-1, 17, 3) for k in per_frame]
        return [
            FrameDetections(boxes=b, scores=s, keypoints=k)
            for (b, s), k in zip(boxes_per_frame, keypoints, strict=True)
        ]

    # -- stage 3: lifting ------------------------------------------------------------------

    def _lift(self, pose2d: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """H36M 2-D poses (T, 17, 2) in pixels with their boxes (T, 4) -> (T, 17, 3) camera."""
        import torch
        from mmengine.dataset import Compose, pseudo_collate
        from mmengine.registry import init_default_scope

        cfg = self.lifter.cfg
        init_default_scope(cfg.get("default_scope", "mmpose"))
        pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
        dataset = cfg.test_dataloader.dataset
        seq_len = int(dataset.get("seq_len", 1))
        causal = bool(dataset.get("causal", False))
        stats = self.lifter.dataset_meta.get("stats_info") or {}
        if stats:
            centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
            scale = np.maximum(boxes[:, 2:] - boxes[:, :2], 1e-6).max(axis=1)
            pose2d = (pose2d - centre[:, None]) / scale[:, None, None] * stats[
                "bbox_scale"
            ] + np.asarray(stats["bbox_center"], np.float32)
        frames = len(pose2d)
        left = seq_len - 1 if causal else (seq_len - 1) // 2
        target = left  # index of the frame being lifted inside its window
        out = np.zeros((frames, skeleton.NUM_JOINTS, 3), np.float32)
        for start in range(0, frames, LIFTER_BATCH):
            items = []
            for t in range(start, min(frames, start + LIFTER_BATCH)):
                # Edge frames repeat the first/last pose, as extract_pose_sequence pads.
                index = np.clip(np.arange(t - left, t - left + seq_len), 0, frames - 1)
                window = pose2d[index].astype(np.float32)
                info = {
                    "keypoints": window,
                    "keypoints_visible": np.ones(window.shape[:2], np.float32),
                    "lifting_target": np.zeros((1, skeleton.NUM_JOINTS, 3), np.float32),
                    "lifting_target_visible": np.ones((1, skeleton.NUM_JOINTS, 1), np.float32),
                    "factor": np.ones(seq_len, np.float32),
                    "camera_param": dict(H36M_CAMERA),
                }
                info.update(self.lifter.dataset_meta)
                items.append(pipeline(info))
            with torch.no_grad():
                results = self.lifter.test_step(pseudo_collate(items))
            for offset, result in enumerate(results):
                predicted = np.asarray(result.pred_instances.keypoints).reshape(-1, 17, 3)
                # Sequence-to-sequence lifters (MotionBERT) predict the whole window.
                out[start + offset] = predicted[target if len(predicted) == seq_len else 0]
        return out

    def estimate(self, video: Path) -> Dance:
        import cv2

        video = Path(video)
        capture = cv2.VideoCapture(str(video))
        if not capture.isOpened():
            raise MediaError(f"cannot open video {video}; the file is missing or corrupt")
        fps = capture.get(cv2.CAP_PROP_FPS)
        width = capture.get(cv2.CAP_PROP_FRAME_WIDTH)
        height = capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
        detections: list[FrameDetections] = []
        started = time.perf_counter()
        while True:
            frames = []
            while len(frames) < self.batch_size:
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(frame)  # BGR, as the OpenMMLab pipelines expect
            if not frames:
                break
            detections.extend(self._detect_and_pose(frames))
        capture.release()
        if not detections:
            raise MediaError(f"video {video} has no decodable frames")

        detect_s = time.perf_counter() - started
        tracks = track_people([d.boxes for d in detections], frame_area=width * height)
        frames_total = len(detections)
        found = tracks.main_box >= 0
        coco = np.zeros((frames_total, 17, 3), np.float32)
        boxes = np.zeros((frames_total, 4), np.float32)
        for t in np.flatnonzero(found):
            coco[t] = detections[t].keypoints[tracks.main_box[t]]
            boxes[t] = detections[t].boxes[tracks.main_box[t]]
        pose = np.zeros((frames_total, skeleton.NUM_JOINTS, 3), np.float32)
        root = np.zeros((frames_total, 3), np.float32)
        root_meta: dict = {}
        # Per joint for the temporal filter: a derived joint averages its keypoints' scores.
        joint_conf = np.where(found[:, None], np.clip(coco_to_h36m(coco)[..., 2], 0, 1), 0)
        started = time.perf_counter()
        if found.any():
            # Frames without the dancer get the nearest pose as lifter context; their conf
            # stays 0 and fill_missing interpolates the output there.
            index = np.arange(frames_total)
            nearest = np.flatnonzero(found)[
                np.abs(index[:, None] - np.flatnonzero(found)[None]).argmin(axis=1)
            ]
            h36m_2d = coco_to_h36m(coco[nearest])[..., :2]
            camera = self._lift(h36m_2d, boxes[nearest])
            pose = lifter_to_canonical(camera)
            if self.root_fov_deg is not None:
                # The lifter's pose is in camera axes (metres) and h36m_2d in the video's
                # pixels: the two sides of the root solve.
                root, root_meta = camera_root(
                    camera - camera[:, :1],
                    h36m_2d,
                    joint_conf,
                    found,
                    (width, height),
                    self.root_fov_deg,
                )
        lift_s = time.perf_counter() - started
        # RTMPose scores are not probabilities and can exceed 1: clip. A found frame keeps
        # a positive conf, since 0 means "no person" in the contract.
        conf = np.where(found, np.clip(coco[..., 2].mean(axis=1), 1e-3, 1.0), 0.0)
        log.info(
            "%s: %d frames, dancer in %d, %d tracks, up to %d people, device %s",
            video,
            frames_total,
            found.sum(),
            len(tracks.tracks),
            tracks.people.max(initial=0),
            self.device,
        )
        meta = {
            "backend": self.name,
            "model": {k: str(v.name) for k, v in self.configs.items()},
            "checkpoints": {k: os.path.basename(v) for k, v in self.checkpoints.items()},
            "device": self.device,
            "root_measured": self.root_fov_deg is not None,
            "people_per_frame": tracks.people.tolist(),
            "tracks": len(tracks.tracks),
            "main_track_frames": int(found.sum()),
            "timing_s": {"detect_and_2d": round(detect_s, 3), "lift": round(lift_s, 3)},
        }
        if self.root_fov_deg is not None:
            meta.update(root_source="video", root=root_meta)
        return Dance(
            pose=pose.astype(np.float32),
            root=root,
            conf=conf.astype(np.float32),
            joint_conf=joint_conf.astype(np.float32),
            fps=float(fps),
            meta=meta,
        )
