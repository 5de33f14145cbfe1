"""Edits of a dance: what generation must keep or pass through (issue #25).

One type, :class:`Constraints`, says for every frame of the dance to generate (T frames
at the checkpoint's fps, the same arrays :func:`generate_motion` returns) what is given:

- ``pose`` (T, 17, 3): root-centred joint positions the dance must have, NaN where free;
  a keyframe gives all 17 joints of one frame, a body-part constraint ("keep the upper
  body of this dance") gives some joints of every frame;
- ``root`` (T, 3): root positions, NaN where free;
- ``exact`` (T,): frames reproduced bit-identically (the dance that is continued, the
  frames outside a regenerated span). Keyframes are targets, not exact frames;
- ``bones`` (16,) or None: the skeleton (bone lengths, ``skeleton.BONES`` order) the
  generated joints take (a body-part edit: one dancer, not two).

A model whose ``generate_motion`` takes ``constraints`` uses them while it generates
(inpainting); for every model, :func:`enforce` then applies them to the result (exact
frames copied, seams blended, keyframes reached), so edits work with any checkpoint.

The edits of ``kakashi generate`` (docs/editing.md) build their constraints here:
:func:`continuation` (``--continue``), :func:`inbetween` (``--regenerate``),
:func:`body_part` (``--keep``) and :func:`add_keyframes` (``--keyframes``, read by
:func:`read_keyframes`). Every error is an :class:`~kakashi.errors.EditError`, one line
naming the file and the fix.

Seams. Where generated frames meet given ones, the generated motion is shifted to meet
them: a joint's offset (position, and velocity where two or more frames are given) falls
to zero over :data:`BLEND_S` with the
minimum-jerk quintic, so the shift has no step in position, velocity or acceleration at
either end; the root's offset does not fall off (a continued dance goes on from where it
stands) but moves the same way across a span from its left to its right seam. The jerk
this adds stays far below the mocap's own: on the 35 real Dance-with-Melody dances the
99.5th percentile of a frame's largest joint jerk (world positions, third difference at
30 fps) is 3,119 m/s^3 (median 144, 99th 2,335); on the m2d test songs the shift adds at
most 831 m/s^3 for any model (``bench/editing.py``, docs/editing.md). What is left of a
seam's jerk is the model's own motion next to it, and where kept and generated frames
accelerate differently, a step at the seam (:func:`seam_stencils`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.errors import EditError

# Seconds over which a seam's offset falls to zero: long enough that the shift of a 0.5-m
# pose offset has a jerk of 151 m/s^3, 337 with a 1.5-m/s velocity mismatch too (5-11 % of
# the mocap's 99.5th percentile, 3,119), short enough that the model's own motion is back
# after half a second.
BLEND_S = 0.5
# The joints of each body part (``--keep``); the pelvis (joint 0, the origin of a
# root-centred pose) belongs to both. Keeping the lower body keeps the root too: the legs
# carry it.
PARTS = {
    "upper": tuple(range(7, skeleton.NUM_JOINTS)),  # spine, thorax, neck, head, arms
    "lower": tuple(range(0, 7)),  # pelvis, hips, knees, ankles
}
# Joints whose left-right line says where a body part faces (left minus right).
_FACING = {
    "upper": (skeleton.INDEX["left_shoulder"], skeleton.INDEX["right_shoulder"]),
    "lower": (skeleton.INDEX["left_hip"], skeleton.INDEX["right_hip"]),
}


@dataclass
class Constraints:
    """What a dance of ``len(self)`` frames must keep (see the module doc)."""

    pose: np.ndarray
    root: np.ndarray
    exact: np.ndarray
    bones: np.ndarray | None = None

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

    def keyframes(self) -> np.ndarray:
        """The frames whose 17 joints are all given but that are not exact."""
        return np.flatnonzero(self.joint_known().all(axis=1) & ~self.exact)


@dataclass
class Keyframe:
    """A pose (17, 3) root-centred, metres, the dance passes through at ``time_s``."""

    time_s: float
    pose: np.ndarray
    origin: str  # the file it came from (error messages)


def _checked_source(dance, fps: float, name: str, flag: str):
    """``dance`` (a :class:`~kakashi.dance.Dance`) if it is at the model's ``fps``."""
    if abs(dance.fps - fps) > 1e-6:
        raise EditError(
            f"{name}: the dance is at {dance.fps:g} fps and the model makes {fps:g}-fps "
            f"dances; give {flag} a dance made at {fps:g} fps (one of this model's)"
        )
    return dance


def load_source(path: str | Path, fps: float, flag: str):
    """The dance file an edit starts from (``--continue``, ``--dance``), at ``fps``."""
    from kakashi.dance import Dance

    return _checked_source(Dance.load(path), fps, str(path), flag)


def continuation(source, frames: int, name: str) -> Constraints:
    """``source``'s frames kept exactly as the first frames of a ``frames``-frame dance."""
    kept = len(source)
    if kept >= frames:
        raise EditError(
            f"{name}: the dance lasts {source.duration_s:.2f} s and the song "
            f"{frames / source.fps:.2f} s: nothing to continue; give a longer song"
        )
    out = Constraints.free(frames)
    out.pose[:kept], out.root[:kept], out.exact[:kept] = source.pose, source.root, True
    return out


def parse_span(text: str) -> tuple[float, float]:
    """``START-END`` in seconds (``--regenerate 4-8.5``)."""
    try:
        start, end = (float(part) for part in text.split("-"))
    except ValueError:
        raise EditError(
            f"--regenerate {text!r}: give the span as START-END in seconds, e.g. 4-8.5"
        ) from None
    if not (math.isfinite(start) and math.isfinite(end)) or start >= end:
        raise EditError(f"--regenerate {text!r}: START must be before END (seconds, e.g. 4-8.5)")
    return start, end


def inbetween(source, start_s: float, end_s: float, name: str) -> Constraints:
    """``source`` kept exactly outside ``[start_s, end_s)``, which is generated anew."""
    duration = source.duration_s
    if start_s < 0 or end_s > duration + 0.5 / source.fps:
        raise EditError(
            f"{name}: the span {start_s:g}-{end_s:g} s lies outside the dance "
            f"(0-{duration:.2f} s); give --regenerate START-END within it"
        )
    first, last = round(start_s * source.fps), min(round(end_s * source.fps), len(source))
    if last - first < 2:
        raise EditError(
            f"{name}: the span {start_s:g}-{end_s:g} s holds fewer than two frames; "
            "give a longer span"
        )
    out = Constraints.free(len(source))
    out.pose[:], out.root[:], out.exact[:] = source.pose, source.root, True
    out.pose[first:last], out.root[first:last], out.exact[first:last] = np.nan, np.nan, False
    return out


def body_part(source, part: str, frames: int, name: str) -> Constraints:
    """The joints of ``part`` (``upper`` or ``lower``, and the root with the lower body)
    of ``source`` on each of ``frames`` frames, the rest to generate, in its skeleton."""
    if part not in PARTS:
        raise EditError(f"--keep {part!r}: give upper or lower")
    if len(source) < frames:
        raise EditError(
            f"{name}: the dance lasts {source.duration_s:.2f} s, shorter than the song "
            f"({frames / source.fps:.2f} s); give a dance made for this song (or a longer one)"
        )
    out = Constraints.free(frames)
    joints = list(PARTS[part])
    out.pose[:, joints] = source.pose[:frames, joints]
    if part == "lower":
        out.root[:] = source.root[:frames]
    out.bones = np.median(skeleton.bone_lengths(source.pose), axis=0).astype(np.float32)
    return out


def read_keyframes(spec: str, fps: float) -> list[Keyframe]:
    """The keyframes of one ``--keyframes`` value: ``FILE.json`` (time in seconds -> 17
    root-centred [x, y, z] positions in metres, H36M-17 order) or ``DANCE.npz@T1,T2``
    (that dance's poses at those times, placed at the same times)."""
    if "@" in spec and not spec.endswith(".json"):
        path, _, times = spec.rpartition("@")
        return _dance_keyframes(path, times, fps)
    return _json_keyframes(spec)


def _dance_keyframes(path: str, times: str, fps: float) -> list[Keyframe]:
    from kakashi.dance import Dance

    try:
        seconds = [float(t) for t in times.split(",")]
    except ValueError:
        raise EditError(
            f"--keyframes {path}@{times}: give the times in seconds after @, e.g. {path}@1.5,3.0"
        ) from None
    dance = Dance.load(path)
    out = []
    for t in seconds:
        frame = round(t * dance.fps)
        if not (math.isfinite(t) and 0 <= frame < len(dance)):
            raise EditError(
                f"{path}: no frame at {t:g} s, the dance lasts {dance.duration_s:.2f} s; "
                "give --keyframes times within it"
            )
        out.append(Keyframe(t, dance.pose[frame].copy(), path))
    return out


def _json_keyframes(path: str) -> list[Keyframe]:
    from kakashi.dance import MAX_POSE_M
    from kakashi.inputs import require

    file = require(path, "keyframes file", EditError, "give a JSON file or DANCE.npz@T1,T2")
    fix = 'give {"TIME_S": [[x, y, z], ... 17 joints], ...} (docs/editing.md)'
    try:
        data = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EditError(f"{path}: not JSON ({exc}); {fix}") from None
    if not isinstance(data, dict) or not data:
        raise EditError(f"{path}: no keyframes; {fix}")
    out = []
    for key, value in data.items():
        try:
            t = float(key)
            pose = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise EditError(f"{path}: keyframe {key!r} is not a time and a pose; {fix}") from None
        if pose.shape != (skeleton.NUM_JOINTS, 3):
            raise EditError(
                f"{path}: the keyframe at {key} s has shape {list(pose.shape)}, not the 17 "
                f"[x, y, z] joints of H36M-17; {fix}"
            )
        if not (np.isfinite(pose).all() and math.isfinite(t)):
            raise EditError(f"{path}: the keyframe at {key} s holds NaN or infinity; {fix}")
        if np.abs(pose).max() > MAX_POSE_M:
            raise EditError(
                f"{path}: the keyframe at {key} s has a joint {np.abs(pose).max():.3g} m from "
                "the root: positions are root-centred metres (pelvis at 0)"
            )
        out.append(Keyframe(t, (pose - pose[0]).astype(np.float32), path))
    return out


def add_keyframes(constraints: Constraints, keyframes: list[Keyframe], fps: float) -> None:
    """Put ``keyframes`` into ``constraints`` (in place); each must fall on a free frame."""
    frames = len(constraints)
    for key in keyframes:
        frame = round(key.time_s * fps)
        if not 0 <= frame < frames:
            raise EditError(
                f"{key.origin}: the keyframe at {key.time_s:g} s is outside the song "
                f"(0-{frames / fps:.2f} s); give keyframe times within the song"
            )
        if constraints.exact[frame]:
            raise EditError(
                f"{key.origin}: the keyframe at {key.time_s:g} s falls on a kept frame of "
                "the dance; give keyframes in the part that is generated"
            )
        constraints.pose[frame] = key.pose


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in ``mask``."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _fall(distance: np.ndarray, width: int) -> np.ndarray:
    """The minimum-jerk (quintic) fall: 1 at distance 0, 0 from ``width`` on, its first
    and second derivatives 0 at both ends, so a shift shaped by it adds no step in
    acceleration (a raised cosine's second derivative is not 0 at its ends: each end of a
    0.5-s blend of a 0.5-m offset steps the acceleration by 9.9 m/s^2)."""
    x = np.clip(distance / max(width, 1), 0.0, 1.0)
    return 1.0 - x**3 * (10.0 - 15.0 * x + 6.0 * x**2)


def _blend(
    made: np.ndarray, given: np.ndarray, known: np.ndarray, width: int, keep_offset: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One channel (T, 3): the given values where ``known``, the made ones shifted to meet
    them elsewhere (see the module doc), and the weight (T,) of the shift. ``made`` must
    hold the model's own values on the given frame at each side of a gap too (the
    offsets), and its velocity is taken from inside the gap."""
    out = made.copy()
    weight = known.astype(np.float64)
    frames = len(made)
    runs = _runs(known)
    for start, end in runs:
        out[start:end] = given[start:end]
    gaps = _runs(~known)
    for a, b in gaps:
        n = b - a
        k = np.arange(n, dtype=np.float64)
        left, right = a > 0, b < frames
        shift = np.zeros((n, 3))
        w = np.zeros(n)
        if left:
            offset = given[a - 1] - made[a - 1]
            slope = np.zeros(3)
            if a >= 2 and known[a - 2]:  # a run of two or more frames: its velocity too
                # The given velocity into the seam, the model's out of it: the seam's
                # acceleration is then 0, and a kept and a generated acceleration that
                # differ make two steps of jerk, each one's own, not one of their
                # difference (measured: docs/editing.md, "Candidates tried").
                slope = (given[a - 1] - given[a - 2]) - (made[a] - made[a - 1])
            fall = _fall(k + 1, min(width, n + 1))
            if keep_offset:
                ramp = _fall(k + 1, n + 1) if right else np.ones(n)
                shift += offset * ramp[:, None] + slope * ((k + 1) * fall)[:, None]
                w = np.maximum(w, ramp)
            else:
                shift += (offset + slope * (k + 1)[:, None]) * fall[:, None]
                w = np.maximum(w, fall)
        if right:
            offset = given[b] - made[b]
            slope = np.zeros(3)
            if b + 1 < frames and known[b + 1]:
                slope = (given[b] - given[b + 1]) - (made[b - 1] - made[b])
            d = n - k  # distance to frame b
            fall = _fall(d, min(width, n + 1))
            if keep_offset:
                ramp = 1 - _fall(k + 1, n + 1) if left else np.ones(n)
                shift += offset * ramp[:, None] + slope * (d * fall)[:, None]
                w = np.maximum(w, ramp)
            else:
                shift += (offset + slope * d[:, None]) * fall[:, None]
                w = np.maximum(w, fall)
        out[a:b] += shift
        weight[a:b] = w
    return out, weight


def _yaw(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """The heading (radians about y) of the line right -> left, per frame."""
    line = left - right
    return np.arctan2(line[..., 0], line[..., 2])


def _face_like(
    pose: np.ndarray, constraints: Constraints, free: np.ndarray, fps: float
) -> np.ndarray:
    """The generated joints ``free`` (T, 17) turned about y, frame by frame, so that where a
    body part is given, the generated body faces where that part faces."""
    from scipy.ndimage import gaussian_filter1d

    known = constraints.joint_known()
    out = pose.copy()
    for part, (lj, rj) in _FACING.items():
        joints = list(PARTS[part])
        frames = known[:, joints].all(axis=1) & ~known.all(axis=1)
        if not frames.any():
            continue
        given = constraints.pose[frames].astype(np.float64)
        turn = _yaw(given[:, lj], given[:, rj]) - _yaw(pose[frames, lj], pose[frames, rj])
        # Smoothed (0.1 s): the two lines' own jitter must not shake the generated part.
        turn = gaussian_filter1d(np.unwrap(turn), 0.1 * fps, mode="nearest")
        c, s = np.cos(turn)[:, None], np.sin(turn)[:, None]
        x, z = pose[frames, :, 0], pose[frames, :, 2]
        turned = out[frames]
        turned[:, :, 0], turned[:, :, 2] = c * x + s * z, -s * x + c * z
        mask = free[frames]
        out[frames] = np.where(mask[:, :, None], turned, pose[frames])
    return out


def _project(pose, root, constraints: Constraints, known, root_known) -> None:
    """The generated joints of frames with a partial pose given re-placed on the given
    skeleton (in place), the root lowered or raised so the lower ankle keeps its height."""
    from kakashi.kinematics import project_bones_np

    frames = known.any(axis=1) & ~known.all(axis=1)
    if not frames.any():
        return
    before = pose[frames][:, list(skeleton.ANKLES), 1].min(axis=1)
    placed = project_bones_np(pose[frames], constraints.bones.astype(np.float64))
    kept = known[frames]
    pose[frames] = np.where(kept[:, :, None], pose[frames], placed)
    after = pose[frames][:, list(skeleton.ANKLES), 1].min(axis=1)
    lift = np.where(root_known[frames], 0.0, before - after)
    root[frames, 1] += lift


def enforce(
    pose: np.ndarray, root: np.ndarray, constraints: Constraints, fps: float
) -> tuple[np.ndarray, np.ndarray]:
    """``pose`` (T, 17, 3) and ``root`` (T, 3) as generated, made to keep ``constraints``:
    given joints and roots reached, seams blended over :data:`BLEND_S`, a body part's
    other joints facing with it on its skeleton, exact frames copied bit-identically."""
    if len(pose) != len(constraints):
        raise EditError(f"the model made {len(pose)} frames for {len(constraints)} constrained")
    width = max(2, round(BLEND_S * fps))
    known = constraints.joint_known() | constraints.exact[:, None]
    root_known = constraints.root_known() | constraints.exact
    made = _face_like(np.asarray(pose, np.float64), constraints, ~known, fps)
    out_pose = np.empty_like(made)
    given = constraints.pose.astype(np.float64)
    for joint in range(skeleton.NUM_JOINTS):
        out_pose[:, joint], _ = _blend(
            made[:, joint], given[:, joint], known[:, joint], width, keep_offset=False
        )
    out_root, _ = _blend(
        np.asarray(root, np.float64),
        constraints.root.astype(np.float64),
        root_known,
        width,
        keep_offset=True,
    )
    if constraints.bones is not None:
        _project(out_pose, out_root, constraints, known, root_known)
    out_pose, out_root = out_pose.astype(np.float32), out_root.astype(np.float32)
    exact = constraints.exact
    out_pose[exact], out_root[exact] = constraints.pose[exact], constraints.root[exact]
    return out_pose, out_root


def keyframe_error(pose: np.ndarray, constraints: Constraints) -> float:
    """Mean joint distance (m) of ``pose`` to the keyframes of ``constraints`` (0: none)."""
    frames = constraints.keyframes()
    if not len(frames):
        return 0.0
    return float(np.linalg.norm(pose[frames] - constraints.pose[frames], axis=2).mean())


def seam_stencils(constraints: Constraints, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Two (T - 3,) masks of the third differences (stencil i: frames i .. i + 3) of a
    ``len(constraints)``-frame dance: ``near``, those that involve a generated frame within
    :data:`BLEND_S` of a given one (what a seam can change), and ``crossing``, those that
    involve a given and a generated frame (the seam itself)."""
    known = constraints.exact | constraints.joint_known().any(axis=1)
    frames = len(known)
    if frames < 4 or not known.any() or known.all():
        return np.zeros(max(frames - 3, 0), bool), np.zeros(max(frames - 3, 0), bool)
    width = round(BLEND_S * fps)
    given = np.flatnonzero(known)
    index = np.arange(frames)
    slot = np.clip(np.searchsorted(given, index), 1, len(given)) - 1
    distance = np.minimum(  # frames to the nearest given frame
        np.abs(index - given[slot]), np.abs(index - given[np.minimum(slot + 1, len(given) - 1)])
    )
    blended = ~known & (distance <= width)

    def any_of(mask):  # a stencil that holds a frame of ``mask``
        return np.convolve(mask.astype(int), np.ones(4, int))[3:frames] > 0

    return any_of(blended), any_of(known) & any_of(~known)


def frame_jerk(world: np.ndarray, fps: float) -> np.ndarray:
    """(T - 3,) the largest joint jerk (m/s^3, third difference) of each stencil of
    ``world`` (T, J, 3)."""
    return np.linalg.norm(np.diff(world, 3, axis=0), axis=2).max(axis=1) * fps**3


def seam_jerk(dance, constraints: Constraints) -> float:
    """The largest joint jerk (m/s^3, world positions, third difference) of ``dance`` that
    involves a generated frame within :data:`BLEND_S` of a given one: what a seam can
    add (the given frames' own jerk is not the seam's). 0 when there is no seam."""
    near, _ = seam_stencils(constraints, dance.fps)
    if not near.any():
        return 0.0
    return float(frame_jerk(dance.world(), dance.fps)[near].max())


def describe(kind: str, **details) -> dict:
    """The dance file's ``edit`` metadata: the kind of edit and what it kept."""
    return {"kind": kind, "blend_s": BLEND_S, **details}


@dataclass
class EditRequest:
    """The edit flags of ``kakashi generate`` (and the studio's edits), as given."""

    continue_from: str | None = None  # --continue DANCE
    dance: str | None = None  # --dance DANCE, with one of:
    regenerate: str | None = None  # --regenerate START-END
    keep: str | None = None  # --keep upper|lower
    keyframes: list[str] = field(default_factory=list)  # --keyframes SPEC ...

    def any(self) -> bool:
        return bool(self.continue_from or self.dance or self.regenerate or self.keep) or bool(
            self.keyframes
        )

    def check(self) -> None:
        """One-line errors for flags that do not go together (before any work)."""
        modes = [
            flag
            for flag, value in (
                ("--continue", self.continue_from),
                ("--regenerate", self.regenerate),
                ("--keep", self.keep),
            )
            if value
        ]
        if len(modes) > 1:
            raise EditError(
                f"{modes[0]} and {modes[1]} are two edits: make one, then edit its output"
            )
        if self.continue_from and self.dance:
            raise EditError(
                "--continue names the dance it extends: drop --dance (it goes with "
                "--regenerate or --keep)"
            )
        if (self.regenerate or self.keep) and not self.dance:
            raise EditError(f"{modes[0]} needs --dance DANCE.npz, the dance it edits")
        if self.dance and not (self.regenerate or self.keep):
            raise EditError(
                "--dance needs --regenerate START-END or --keep upper|lower (what to do with it)"
            )
        if self.keep and self.keyframes:
            raise EditError(
                "--keyframes and --keep both give poses to the same frames: use one, then "
                "edit its output"
            )

    def plan(self, frames: int, fps: float) -> tuple[Constraints, dict]:
        """The constraints of a ``frames``-frame dance at ``fps``, and its ``edit`` meta."""
        self.check()
        if self.continue_from:
            source = load_source(self.continue_from, fps, "--continue")
            out = continuation(source, frames, self.continue_from)
            meta = describe("continuation", kept_s=round(source.duration_s, 3))
        elif self.regenerate:
            start, end = parse_span(self.regenerate)
            source = load_source(self.dance, fps, "--dance")
            if len(source) != frames:
                raise EditError(
                    f"{self.dance}: the dance lasts {source.duration_s:.2f} s and the song "
                    f"{frames / fps:.2f} s; give the song the dance was made for"
                )
            out = inbetween(source, start, end, self.dance)
            meta = describe("inbetween", from_s=start, to_s=end)
        elif self.keep:
            source = load_source(self.dance, fps, "--dance")
            out = body_part(source, self.keep, frames, self.dance)
            meta = describe("body_part", keep=self.keep)
        else:
            source, out, meta = None, Constraints.free(frames), describe("keyframes")
        if source is not None:
            meta["of"] = Path(self.continue_from or self.dance).name
            meta["of_meta"] = {k: source.meta[k] for k in ("model", "seed") if k in source.meta}
        keys = [key for spec in self.keyframes for key in read_keyframes(spec, fps)]
        add_keyframes(out, keys, fps)
        if keys:
            meta["keyframes_s"] = sorted(round(key.time_s, 3) for key in keys)
        return out, meta
