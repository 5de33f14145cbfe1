"""A dance for any song: audio features -> autoregressive model -> Dance file.

- The features are computed with the settings of the training shards (fps, hop, feature
  set and n_mfcc, read back from the feature names stored in the checkpoint), so the
  model sees the same kind of input it was trained on.
- The dance has exactly ``round(duration_s * fps)`` frames. Frame 0 is the start pose
  (the training mean pose by default); the model predicts the rest, one frame at a time.
- Against drift on long songs, every generated pose is re-projected onto the training
  skeleton's bone lengths along the kinematic tree before it is fed back: each bone keeps
  its direction and gets its training length, so bone lengths never drift.
- The root is the running sum of the predicted root velocity.
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
from kakashi.models.data import POSE_DIM, Stats

log = logging.getLogger("kakashi.models.generate")

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


@torch.no_grad()
def generate_motion(
    model,
    stats: Stats,
    audio: np.ndarray,
    first_pose: np.ndarray,
    seed: int = 0,
    project: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Pose (T, 17, 3) and root (T, 3) for raw audio features (T, F)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    audio_n = torch.from_numpy((audio - stats.audio_mean) / stats.audio_std).float()
    m_mean = torch.from_numpy(stats.motion_mean)
    m_std = torch.from_numpy(stats.motion_std)
    lengths = torch.from_numpy(stats.bone_lengths)
    frames = len(audio)
    poses = torch.zeros(frames, skeleton.NUM_JOINTS, 3)
    velocity = torch.zeros(frames, 3)
    first = torch.from_numpy(np.asarray(first_pose, dtype=np.float32)).reshape(-1, 3)
    first = first - first[0]  # root-centred, whatever the file held
    poses[0] = project_bones(first, lengths) if project else first
    previous = (torch.cat([poses[0].reshape(-1), velocity[0]]) - m_mean) / m_std
    state = None
    for t in range(1, frames):
        noise = None
        if model.noise_dim:
            noise = torch.randn((1, model.noise_dim), generator=generator)
        out, state = model.step(
            audio_n[t : t + 1], audio_n[t - 1 : t], previous[None], state, noise
        )
        motion = out[0] * m_std + m_mean
        pose = motion[:POSE_DIM].reshape(skeleton.NUM_JOINTS, 3)
        if project:
            pose = project_bones(pose, lengths)
        poses[t], velocity[t] = pose, motion[POSE_DIM:]
        previous = (torch.cat([pose.reshape(-1), velocity[t]]) - m_mean) / m_std
    root = torch.cumsum(velocity, dim=0)
    return poses.numpy(), root.numpy()


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
    torch.manual_seed(seed)
    pose, root = generate_motion(model, stats, features.values, start_pose(start, stats), seed)
    dance = Dance(pose, root, stats.fps)
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
