"""What a model knows of its training data at generation: normalisation statistics, the
skeleton's bone lengths and the audio-feature settings, stored in every checkpoint.

Kept apart from :mod:`kakashi.models.data` (shards -> training windows) so inference
imports neither the shard reader nor the training data code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kakashi import skeleton

POSE_DIM = skeleton.NUM_JOINTS * 3  # a root-centred pose, flattened (as in the shards)
MOTION_DIM = POSE_DIM + 3  # pose + root velocity
STD_FLOOR = 1e-3  # a constant column (e.g. an unmeasured root) must not divide by zero


@dataclass
class Stats:
    """Normalisation statistics and the skeleton the model was trained on."""

    audio_mean: np.ndarray
    audio_std: np.ndarray
    motion_mean: np.ndarray
    motion_std: np.ndarray
    bone_lengths: np.ndarray  # (16,) median over training frames, metres
    fps: float
    feature_names: list[str]
    hop_length: int  # audio hop the features were computed with (fps * hop = sample rate)

    # The statistics measured on the train split (the rest are settings).
    ARRAYS = ("audio_mean", "audio_std", "motion_mean", "motion_std", "bone_lengths")

    def audio_settings(self) -> dict:
        """What a shard's metadata must match (see ``kakashi.shards.check_audio_settings``)."""
        return {
            "fps": self.fps,
            "hop_length": self.hop_length,
            "feature_names": list(self.feature_names),
        }

    def to_dict(self) -> dict:
        """Plain tensors/lists, loadable with ``torch.load(weights_only=True)``."""
        import torch

        out: dict = {name: torch.from_numpy(getattr(self, name).copy()) for name in self.ARRAYS}
        out["fps"] = float(self.fps)
        out["feature_names"] = list(self.feature_names)
        out["hop_length"] = int(self.hop_length)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Stats:
        values = {name: np.asarray(data[name], dtype=np.float32) for name in cls.ARRAYS}
        return cls(
            **values,
            fps=float(data["fps"]),
            feature_names=list(data["feature_names"]),
            hop_length=int(data["hop_length"]),
        )

    def same_data(self, other: Stats) -> bool:
        """Whether ``other`` was measured on the same train split (bit-identical arrays)."""
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in self.ARRAYS)

    def mean_pose(self) -> np.ndarray:
        """The training mean pose, (17, 3)."""
        return self.motion_mean[:POSE_DIM].reshape(skeleton.NUM_JOINTS, 3)
