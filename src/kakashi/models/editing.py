"""Edits of a dance: what generation must keep or pass through (issue #25).

One type, :class:`Constraints`, says for every frame of the dance to generate (T frames
at the checkpoint's fps, the same arrays :func:`generate_motion` returns) what is given:

- ``pose`` (T, 17, 3): root-centred joint positions the dance must have, NaN where free;
  a keyframe gives all 17 joints of one frame, a body-part constraint ("keep the upper
  body of this dance") gives some joints of every frame;
- ``root`` (T, 3): root positions, NaN where free;
- ``exact`` (T,): frames reproduced bit-identically (the dance that is continued, the
  frames outside a regenerated span). Keyframes are targets, not exact frames.

A model whose ``generate_motion`` takes ``constraints`` uses them while it generates
(inpainting); for every model, generation then enforces them on the result (exact frames
copied, seams blended, keyframes reached), so edits work with any checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kakashi import skeleton


@dataclass
class Constraints:
    """What a dance of ``len(self)`` frames must keep (see the module doc)."""

    pose: np.ndarray
    root: np.ndarray
    exact: np.ndarray

    @classmethod
    def free(cls, frames: int) -> Constraints:
        """No constraint on ``frames`` frames."""
        return cls(
            np.full((frames, skeleton.NUM_JOINTS, 3), np.nan, dtype=np.float32),
            np.full((frames, 3), np.nan, dtype=np.float32),
            np.zeros(frames, dtype=bool),
        )

    def __len__(self) -> int:
        return len(self.pose)

    def joint_known(self) -> np.ndarray:
        """(T, 17) bool: the joints whose position is given."""
        return ~np.isnan(self.pose).any(axis=2)

    def root_known(self) -> np.ndarray:
        """(T,) bool: the frames whose root position is given."""
        return ~np.isnan(self.root).any(axis=1)

    def any(self) -> bool:
        """Whether anything is constrained at all."""
        return bool(self.exact.any() or self.joint_known().any() or self.root_known().any())
