"""BVH motion capture: hierarchy, forward kinematics, joint-name mapping.

Each joint's local transform is its translation (the OFFSET, or its position channels
when it has them, as Bandai Namco files do on every joint) followed by the rotations in
the exact order its CHANNELS list them (``Zrotation Yrotation Xrotation`` means
R = Rz @ Ry @ Rx, applied to child vectors). Units and the up axis are not declared by
BVH; the canonical step detects them from the body (CMU cgspeed files use the ASF unit
of 1/0.45 inch, Bandai Namco uses cm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kakashi import skeleton
from kakashi.errors import MotionError
from kakashi.motion import RawMotion
from kakashi.motion.layouts import BVH_NAMES, BVH_TOES, bvh_key
from kakashi.skeleton import BVH_NAMES as KAKASHI_NAMES

# A rig has tens of joints (CMU 31, Mixamo 65 with fingers); thousands mean a damaged or
# generated file, whose forward kinematics would take minutes and whose joint list made a
# 69-KB error line.
MAX_JOINTS = 1000
# Frame rates a motion file may claim (mocap records at 24-480 fps): "Frame Time 1e-300"
# collapsed 1,844 frames into one.
MIN_SOURCE_FPS, MAX_SOURCE_FPS = 1.0, 1000.0
# Joint names listed in an error, at most.
_LISTED = 30


@dataclass
class _Joint:
    name: str
    parent: int
    offset: np.ndarray
    channels: list[str] = field(default_factory=list)
    first_channel: int = 0


def _parse(path: Path) -> tuple[list[_Joint], float, np.ndarray]:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise MotionError(f"{path} cannot be read ({exc})") from exc
    head, sep, motion = text.partition("MOTION")
    if not sep:
        raise MotionError(f"{path}: no MOTION section; the BVH file is truncated or not BVH")
    tokens = head.split()
    if not tokens or tokens[0] != "HIERARCHY":
        raise MotionError(f"{path}: does not start with HIERARCHY; not a BVH file")
    joints: list[_Joint] = []
    stack: list[int] = []
    pending: _Joint | None = None
    channel_count = 0
    i = 1
    try:
        while i < len(tokens):
            token = tokens[i]
            if token in ("ROOT", "JOINT"):
                parent = stack[-1] if stack else -1
                pending = _Joint(tokens[i + 1], parent, np.zeros(3))
                i += 2
            elif token == "End":  # End Site: a leaf named after its parent
                pending = _Joint(joints[stack[-1]].name + "_end", stack[-1], np.zeros(3))
                i += 2
            elif token == "{":
                if pending is None:
                    raise MotionError(f"{path}: unexpected '{{' in the hierarchy")
                joints.append(pending)
                if len(joints) > MAX_JOINTS:
                    raise MotionError(
                        f"{path}: more than {MAX_JOINTS} joints in the BVH hierarchy; a dancer's "
                        "rig has tens: the file is damaged or not a body, export it again"
                    )
                stack.append(len(joints) - 1)
                pending = None
                i += 1
            elif token == "}":
                stack.pop()
                i += 1
            elif token == "OFFSET":
                joints[stack[-1]].offset = np.array([float(t) for t in tokens[i + 1 : i + 4]])
                i += 4
            elif token == "CHANNELS":
                count = int(tokens[i + 1])
                joint = joints[stack[-1]]
                joint.channels = tokens[i + 2 : i + 2 + count]
                joint.first_channel = channel_count
                channel_count += count
                i += 2 + count
            else:
                raise MotionError(f"{path}: unexpected {token!r} in the BVH hierarchy")
    except (IndexError, ValueError) as exc:
        raise MotionError(f"{path}: malformed BVH hierarchy ({exc})") from exc
    if stack or not joints:
        raise MotionError(f"{path}: unbalanced braces in the BVH hierarchy; the file is damaged")

    lines = [line for line in motion.strip().splitlines() if line.strip()]
    try:
        frames = int(lines[0].split(":")[1])
        frame_time = float(lines[1].split(":")[1])
        values = np.array([[float(v) for v in line.split()] for line in lines[2:]], dtype=object)
    except (IndexError, ValueError) as exc:
        raise MotionError(f"{path}: malformed MOTION header or values ({exc})") from exc
    if len(values) != frames:
        raise MotionError(
            f"{path}: the header says {frames} frames but the file holds {len(values)}; "
            "the BVH file is truncated, re-export it"
        )
    widths = {len(row) for row in values}
    if widths != {channel_count}:
        raise MotionError(
            f"{path}: frames must hold {channel_count} channel values, found rows of "
            f"{sorted(widths)}; the BVH file is truncated or damaged"
        )
    return joints, frame_time, np.array(values.tolist(), dtype=np.float64)


def _frame_rate(path: Path, frame_time: float) -> float:
    """1 / Frame Time, refused outside the rates motion files have."""
    if not (np.isfinite(frame_time) and frame_time > 0) or not (
        MIN_SOURCE_FPS <= 1.0 / frame_time <= MAX_SOURCE_FPS
    ):
        raise MotionError(
            f"{path}: Frame Time is {frame_time} s, and a motion file's must be "
            f"{1 / MAX_SOURCE_FPS:g}-{1 / MIN_SOURCE_FPS:g} s ({MIN_SOURCE_FPS:g}-"
            f"{MAX_SOURCE_FPS:g} fps); fix the header, or give the rate in the sheet's fps "
            "column"
        )
    fps = 1.0 / frame_time
    if abs(fps - round(fps)) < 1e-3 * fps:  # "0.0333333" and ".0083333" mean 30 and 120
        fps = float(round(fps))
    return fps


def _axis_rotation(axis: str, degrees: np.ndarray) -> np.ndarray:
    angle = np.radians(degrees)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros((len(angle), 3, 3))
    i, j = {"X": (1, 2), "Y": (2, 0), "Z": (0, 1)}[axis]
    k = 3 - i - j
    out[:, k, k] = 1.0
    out[:, i, i] = c
    out[:, j, j] = c
    out[:, i, j] = -s
    out[:, j, i] = s
    return out


def forward_kinematics(joints: list[_Joint], values: np.ndarray) -> np.ndarray:
    """World positions (T, J, 3) of every joint and end site, in file units."""
    count = len(values)
    positions = np.zeros((count, len(joints), 3))
    rotations = np.zeros((count, len(joints), 3, 3))
    for index, joint in enumerate(joints):
        translation = np.broadcast_to(joint.offset, (count, 3)).copy()
        local = np.broadcast_to(np.eye(3), (count, 3, 3)).copy()
        for n, channel in enumerate(joint.channels):
            column = values[:, joint.first_channel + n]
            kind = channel.lower()
            if kind.endswith("position"):
                translation[:, "xyz".index(kind[0])] = column
            elif kind.endswith("rotation"):
                local = local @ _axis_rotation(kind[0].upper(), column)
        if joint.parent < 0:
            positions[:, index] = translation
            rotations[:, index] = local
        else:
            parent_rotation = rotations[:, joint.parent]
            positions[:, index] = positions[:, joint.parent] + np.einsum(
                "tij,tj->ti", parent_rotation, translation
            )
            rotations[:, index] = parent_rotation @ local
    return positions


def read_bvh(path: Path, source_fps: float | None = None) -> RawMotion:
    """Canonical joints of a BVH file (see the module doc)."""
    joints, frame_time, values = _parse(path)
    try:
        file_fps = _frame_rate(path, frame_time)
    except MotionError:
        if not source_fps:  # the sheet's fps column overrides a damaged header
            raise
        file_fps = None
    if len(values) < 2:
        raise MotionError(f"{path}: the BVH file holds fewer than 2 frames")
    world = forward_kinematics(joints, values)
    index = {bvh_key(joint.name): i for i, joint in enumerate(joints)}

    def find(candidates: tuple[str, ...]) -> int | None:
        return next((index[name] for name in candidates if name in index), None)

    canonical = np.zeros((len(world), skeleton.NUM_JOINTS, 3))
    mapping: dict[str, str] = {}
    missing = []
    names = BVH_NAMES
    if all(bvh_key(name) in index for name in KAKASHI_NAMES):
        # Kakashi's own export (kakashi export-bvh) names the H36M-17 joints one to one;
        # its Neck is the canonical neck (nose) and its Head the head top.
        names = {joint: (bvh_key(KAKASHI_NAMES[i]),) for i, joint in enumerate(skeleton.JOINTS)}
    for joint, candidates in names.items():
        found = find(candidates)
        if found is None and joint != "head":
            missing.append(joint)
            continue
        if found is not None:
            canonical[:, skeleton.INDEX[joint]] = world[:, found]
            mapping[joint] = joints[found].name
    if missing:
        named = [joint.name for joint in joints if not joint.name.endswith("_end")]
        names = ", ".join(named[:_LISTED])
        if len(named) > _LISTED:
            names += f", ... ({len(named) - _LISTED} more)"
        raise MotionError(
            f"{path}: no BVH joint for {', '.join(missing)} among [{names}]; Kakashi knows "
            "the CMU, Bandai Namco and Mixamo joint names (docs/motion_formats.md)"
        )
    neck, thorax = skeleton.INDEX["neck"], skeleton.INDEX["thorax"]
    head = skeleton.INDEX["head"]
    gap = np.linalg.norm(canonical[:, head] - canonical[:, neck], axis=1)
    if "head" not in mapping or np.median(gap) < 0.2 * np.median(
        np.linalg.norm(canonical[:, neck] - canonical[:, thorax], axis=1)
    ):
        # No head end site (or a zero one, as in Bandai Namco): extend the neck line by
        # 45% of the pelvis-thorax length, about the skull base to head top of an adult.
        up = canonical[:, neck] - canonical[:, thorax]
        up /= np.maximum(np.linalg.norm(up, axis=1, keepdims=True), 1e-9)
        torso = np.median(np.linalg.norm(canonical[:, thorax] - canonical[:, 0], axis=1))
        canonical[:, head] = canonical[:, neck] + 0.45 * torso * up
        mapping["head"] = "extrapolated from " + mapping["thorax"] + " and " + mapping["neck"]
    toes = None
    left, right = find(BVH_TOES["left"]), find(BVH_TOES["right"])
    if left is not None and right is not None:
        toes = world[:, [left, right]]
    return RawMotion(
        joints=canonical,
        source_fps=float(source_fps) if source_fps else file_fps,
        meta={
            "format": "bvh",
            "layout": "bvh:" + ",".join(f"{k}={v}" for k, v in mapping.items()),
            "frames_in_file": len(values),
            "file_fps": None if file_fps is None else round(file_fps, 4),
        },
        toes=toes,
    )
