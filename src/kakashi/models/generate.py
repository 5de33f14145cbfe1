"""A dance for any song: audio features -> autoregressive model -> Dance file.

- The features are computed with the settings of the training shards (fps, hop, feature
  set and n_mfcc, read back from the feature names stored in the checkpoint), so the
  model sees the same kind of input it was trained on.
- The dance has exactly ``round(duration_s * fps)`` frames. Frame 0 is the start pose
  (the training mean pose by default); the model predicts the rest, one frame at a time.
- Against drift on long songs, every generated pose is re-projected onto the training
  skeleton's bone lengths along the kinematic tree before it is fed back: each bone keeps
  its direction and gets its training length, so bone lengths never drift.
- The root is the running sum of the predicted root velocity, made leaky: each frame it
  loses 1/(ROOT_LEAK_S * fps) of its distance from the start spot. A small bias in the
  predicted velocity otherwise walks the dancer away in a straight line (3.9 m per minute
  measured on Dance with Melody); the leak keeps travel within a few seconds' worth of
  steps while leaving the motion of each step as predicted.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import MediaError
from kakashi.models import ModelError
from kakashi.models.data import POSE_DIM, STD_FLOOR, Stats

log = logging.getLogger("kakashi.models.generate")

# Time constant (seconds) of the leaky root integration (see the module docstring).
ROOT_LEAK_S = 4.0

# Bones in an order where every parent is placed before its children.
_TREE = [(skeleton.PARENTS[c], c) for c in range(1, skeleton.NUM_JOINTS)]
_BONE_INDEX = {child: i for i, (_, child) in enumerate(skeleton.BONES)}


def feature_settings(names: list[str]) -> tuple[list[str], int]:
    """(feature set, n_mfcc) that produce these column names (see kakashi.features)."""
    n_mfcc = sum(name.startswith("mfcc_") for name in names)
    kinds: list[str] = []
    for name in names:
        kind = {"onset_strength": "onset", "beat": "beat", "onset_peak": "peak"}.get(name)
        if kind is None:
            kind = (
                "mfcc"
                if name.startswith("mfcc_")
                else "chroma"
                if name.startswith("chroma_")
                else None
            )
        if kind is None:
            raise ModelError(f"unknown audio feature column {name!r} in the checkpoint")
        if kind not in kinds:
            kinds.append(kind)
    return kinds, n_mfcc


def project_bones(pose: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Re-place joints along the kinematic tree so every bone has its training length.

    ``pose`` (..., 17, 3) root-centred; ``lengths`` (16,) in ``skeleton.BONES`` order.
    Each bone keeps the direction the model gave it.
    """
    out = [pose[..., 0, :] * 0] + [None] * (skeleton.NUM_JOINTS - 1)
    for parent, child in _TREE:
        direction = pose[..., child, :] - pose[..., parent, :]
        norm = direction.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        out[child] = out[parent] + direction / norm * lengths[_BONE_INDEX[child]]
    return torch.stack(out, dim=-2)


def start_pose(spec: str, stats: Stats) -> np.ndarray:
    """``mean`` -> training mean pose; a path -> the first pose of that dance file."""
    if spec == "mean":
        return stats.mean_pose()
    return Dance.load(spec).pose[0]


class _NumpyStepper:
    """The model's per-frame step in numpy, with the same weights.

    A frame is ~25 tiny matrix operations; through torch each costs ~10-50 us of dispatch
    overhead (more on a busy machine), which made generation slower than realtime. numpy
    runs the same arithmetic at a fraction of that. ``tests/test_models.py`` checks that
    both give the same output.
    """

    def __init__(self, model) -> None:
        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy().astype(np.float64)

        self.w_in, self.b_in = array(model.inp.weight).T, array(model.inp.bias)
        self.layers = [
            (
                array(getattr(model.lstm, f"weight_ih_l{k}")).T,
                array(getattr(model.lstm, f"weight_hh_l{k}")).T,
                array(getattr(model.lstm, f"bias_ih_l{k}") + getattr(model.lstm, f"bias_hh_l{k}")),
            )
            for k in range(model.layers)
        ]
        self.w_out, self.b_out = array(model.out.weight).T, array(model.out.bias)
        self.h = np.zeros((model.layers, model.hidden))
        self.c = np.zeros((model.layers, model.hidden))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x = [audio[t], audio[t-1], (noise), motion[t-1]] -> motion[t] (normalised)."""
        x = np.maximum(x @ self.w_in + self.b_in, 0.0)
        for k, (w_ih, w_hh, bias) in enumerate(self.layers):
            gates = x @ w_ih + self.h[k] @ w_hh + bias
            i, f, g, o = np.split(gates, 4)  # PyTorch's gate order
            self.c[k] = _sigmoid(f) * self.c[k] + _sigmoid(i) * np.tanh(g)
            self.h[k] = x = _sigmoid(o) * np.tanh(self.c[k])
        return x @ self.w_out + self.b_out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # overflow-free


# Joints grouped by depth in the kinematic tree: a group's parents are all placed earlier.
_DEPTH: dict[int, int] = {0: 0}
for _child in range(1, skeleton.NUM_JOINTS):
    _DEPTH[_child] = _DEPTH[skeleton.PARENTS[_child]] + 1
_LEVELS = [
    np.array([j for j in range(1, skeleton.NUM_JOINTS) if _DEPTH[j] == d])
    for d in range(1, max(_DEPTH.values()) + 1)
]


def project_bones_np(pose: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """numpy ``project_bones`` for one pose (17, 3), one tree level at a time."""
    parents = np.asarray(skeleton.PARENTS)
    bone = np.array([_BONE_INDEX.get(j, 0) for j in range(skeleton.NUM_JOINTS)])
    out = np.zeros_like(pose)
    for level in _LEVELS:
        direction = pose[level] - pose[parents[level]]
        norm = np.maximum(np.linalg.norm(direction, axis=-1, keepdims=True), 1e-6)
        out[level] = out[parents[level]] + direction / norm * lengths[bone[level], None]
    return out


def generate_motion(
    model: torch.nn.Module,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int = 0,
    project: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) and root (T, 3) for raw audio features (T, F)."""
    rng = np.random.default_rng(seed)
    step = _NumpyStepper(model.eval())
    audio_n = (audio - stats.audio_mean) / stats.audio_std
    m_mean = stats.motion_mean.astype(np.float64)
    m_std = stats.motion_std.astype(np.float64)
    # Columns constant in training (an unmeasured root: velocity always 0) keep their value;
    # otherwise a tiny output bias times the floored std would integrate into a drift.
    constant = stats.motion_std <= STD_FLOOR * (1 + 1e-6)
    lengths = stats.bone_lengths.astype(np.float64)
    frames = len(audio)
    poses = np.zeros((frames, skeleton.NUM_JOINTS, 3))
    velocity = np.zeros((frames, 3))
    first = np.asarray(first_pose, dtype=np.float64).reshape(-1, 3)
    first = first - first[0]  # root-centred, whatever the file held
    poses[0] = project_bones_np(first, lengths) if project else first
    previous = (np.concatenate([poses[0].ravel(), velocity[0]]) - m_mean) / m_std
    for t in range(1, frames):
        parts = [audio_n[t], audio_n[t - 1]]
        if model.noise_dim:
            parts.append(rng.standard_normal(model.noise_dim))
        parts.append(previous)
        motion = step(np.concatenate(parts)) * m_std + m_mean
        motion[constant] = m_mean[constant]
        pose = motion[:POSE_DIM].reshape(skeleton.NUM_JOINTS, 3)
        if project:
            pose = project_bones_np(pose, lengths)
        poses[t], velocity[t] = pose, motion[POSE_DIM:]
        previous = (np.concatenate([pose.ravel(), velocity[t]]) - m_mean) / m_std
    root = leaky_integral(velocity, ROOT_LEAK_S * stats.fps)
    return poses.astype(np.float32), root.astype(np.float32)


def leaky_integral(velocity: np.ndarray, time_constant_frames: float) -> np.ndarray:
    """Running sum of ``velocity`` (T, 3) that decays towards 0 with the given time constant.

    A constant velocity v settles at ``v * time_constant_frames`` instead of growing without
    bound; motion much faster than the time constant passes almost unchanged.
    """
    keep = 1.0 - 1.0 / max(time_constant_frames, 1.0)
    root = np.zeros_like(velocity, dtype=np.float64)
    for t in range(1, len(velocity)):
        root[t] = root[t - 1] * keep + velocity[t]
    return root


def generate(
    song: str | Path,
    checkpoint: str | Path,
    output: str | Path,
    seed: int = 0,
    start: str = "mean",
) -> Dance:
    """Generate a dance for ``song`` with a trained checkpoint and save it to ``output``."""
    from kakashi.features import audio_features
    from kakashi.models.train import model_from_checkpoint

    song = Path(song)
    if not song.is_file():
        raise MediaError(f"song {song} does not exist; give an audio file librosa can read")
    model, stats, payload = model_from_checkpoint(checkpoint)
    kinds, n_mfcc = feature_settings(stats.feature_names)
    hop = int(payload["config"].get("hop_length", 512))
    features = audio_features(song, fps=stats.fps, hop_length=hop, feature_set=kinds, n_mfcc=n_mfcc)
    if features.names != stats.feature_names:
        raise ModelError(f"{checkpoint}: features of {song} do not match the training features")
    dance = dance_for_audio(model, stats, features.values, start_pose(start, stats), seed)
    dance.save(output)
    log.info(
        "%s: %d frames (%.1f s at %g fps) -> %s",
        song,
        len(dance),
        features.duration_s,
        stats.fps,
        output,
    )
    return dance


def dance_for_audio(
    model: torch.nn.Module, stats: Stats, audio: np.ndarray, first_pose: np.ndarray, seed: int
) -> Dance:
    """The dance for raw audio features (T, F), seeded so it never depends on what ran before."""
    torch.manual_seed(seed)
    pose, root = generate_motion(model, stats, audio, first_pose, seed)
    return Dance(pose, root, stats.fps)


def generate_split(
    shards: str | Path,
    split: str,
    checkpoint: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    start: str = "mean",
) -> list[Path]:
    """A dance for every shard of ``split``, driven by the audio features stored in the shard.

    This is what evaluation scores: one process loads the model once for the whole split
    (instead of one job, one torch import and one feature extraction per song), and each
    dance has exactly its ground truth's frame count, since both come from the same shard.
    Every dance is ``OUT_DIR/SEQ.npz``, the name `kakashi evaluate` pairs with the shard.
    """
    from kakashi.models.data import read_shard
    from kakashi.models.train import model_from_checkpoint

    folder = Path(shards) / f"split={split}"
    paths = sorted(folder.glob("*.parquet"))
    if not paths:
        raise ModelError(
            f"no shards in {folder}; build the data first (snakemake results/dataset_info.txt) "
            f"or check that the sheet puts sources in the {split!r} split"
        )
    model, stats, _ = model_from_checkpoint(checkpoint)
    first_pose = start_pose(start, stats)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        arrays, meta = read_shard(path, ["audio"])
        names = list(meta.get("feature_names", []))
        if names != stats.feature_names or abs(float(meta.get("fps", 0)) - stats.fps) > 1e-3:
            raise ModelError(
                f"{path}: its audio features ({len(names)} at {meta.get('fps')} fps) are not "
                f"the ones {checkpoint} was trained on ({len(stats.feature_names)} at "
                f"{stats.fps} fps); rebuild the shards and the model with one config"
            )
        target = out_dir / f"{path.stem}.npz"
        dance_for_audio(model, stats, arrays["audio"], first_pose, seed).save(target)
        written.append(target)
    log.info("%s: %d dances for split %s -> %s", checkpoint, len(written), split, out_dir)
    return written
