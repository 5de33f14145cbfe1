"""The character: a rigged MakeHuman body, and a dance retargeted onto its bones.

The body (``kakashi/assets/character.npz``, built by ``scripts/build-character.py``, CC0) is a
skinned mesh on 52 Mixamo-named bones, in an A-pose, metres, y up, facing +z, soles at y = 0.
Every bone's rest orientation is the identity (its frame is the world's), so a bone's pose is
one global rotation about its rest head, and a vertex skinned by bones ``b`` moves to
``sum_b w_b (R_b (v - head_b) + P_b)`` with ``P_b`` the bone's posed head.

Retargeting (:func:`retarget`) reuses the BVH exporter's solver
(:func:`kakashi.outputs.bvh.solve_rotations`) on the H36M-17 tree, with the rig's rest
directions and bone lengths (the rig's joint centres standing in for the 17 joints), on the
dance scaled by the ratio of the rig's leg length to the dancer's ("hip-height ratio"). The
17 solved rotations drive the rig's bones (:data:`DRIVERS`: the spine's three bones share
two of them, the fingers follow the hand); the feet stay flat, turned with the shin. Then
each foot is put where the scaled dance has its ankle (two-bone IK, knee bent in the
dance's knee plane), with the vertical placed so that a dance ankle at the stage's floor
height puts the sole on the floor: planted feet stay planted even where the rig's thigh to
shin proportions differ from the dancer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.outputs.bvh import solve_rotations
from kakashi.outputs.stage import _ANKLE_HEIGHT, stage_positions

# Which H36M-17 joint's solved rotation moves each rig bone (the rest inherit their parent's).
DRIVERS = {
    "Hips": "pelvis", "Spine": "pelvis", "Spine1": "spine", "Spine2": "spine",
    "Neck": "thorax", "LeftShoulder": "thorax", "RightShoulder": "thorax", "Head": "neck",
    "LeftUpLeg": "left_hip", "LeftLeg": "left_knee",
    "RightUpLeg": "right_hip", "RightLeg": "right_knee",
    "LeftArm": "left_shoulder", "LeftForeArm": "left_elbow", "LeftHand": "left_wrist",
    "RightArm": "right_shoulder", "RightForeArm": "right_elbow", "RightHand": "right_wrist",
}  # fmt: skip
# The rig point standing in for each H36M-17 joint: (bone, "head" or "tail").
_JOINT_POINTS = {
    "right_hip": ("RightUpLeg", "head"), "right_knee": ("RightLeg", "head"),
    "right_ankle": ("RightFoot", "head"), "left_hip": ("LeftUpLeg", "head"),
    "left_knee": ("LeftLeg", "head"), "left_ankle": ("LeftFoot", "head"),
    "spine": ("Spine1", "head"), "thorax": ("Neck", "head"), "neck": ("Head", "head"),
    "head": ("Head", "tail"), "left_shoulder": ("LeftArm", "head"),
    "left_elbow": ("LeftForeArm", "head"), "left_wrist": ("LeftHand", "head"),
    "right_shoulder": ("RightArm", "head"), "right_elbow": ("RightForeArm", "head"),
    "right_wrist": ("RightHand", "head"),
}  # fmt: skip
# The two legs: (hip, knee, ankle) H36M joints and (thigh, shin, foot) rig bones.
_LEGS = (
    (("left_hip", "left_knee", "left_ankle"), ("LeftUpLeg", "LeftLeg", "LeftFoot")),
    (("right_hip", "right_knee", "right_ankle"), ("RightUpLeg", "RightLeg", "RightFoot")),
)


@dataclass(frozen=True)
class Character:
    """The rigged body at rest (see the module doc)."""

    positions: np.ndarray  # (V, 3) float32
    normals: np.ndarray  # (V, 3) float32, unit
    triangles: np.ndarray  # (F, 3) uint16
    lod_triangles: np.ndarray  # (F', 3) uint16: 40 % of them, same vertices (the MP4's)
    joints: np.ndarray  # (V, 4) uint8 bone indices
    weights: np.ndarray  # (V, 4) float32, rows sum to 1
    bones: tuple[str, ...]  # parents before children, "Hips" first
    parents: np.ndarray  # (B,) int, -1 for the root
    heads: np.ndarray  # (B, 3) float64 rest head of each bone
    tails: np.ndarray  # (B, 3) float64

    def index(self, bone: str) -> int:
        return self.bones.index(bone)

    def rest_joints(self) -> np.ndarray:
        """The rig's stand-ins for the 17 joints at rest (17, 3); the pelvis is between the hips."""
        points = np.zeros((skeleton.NUM_JOINTS, 3))
        for joint, (bone, end) in _JOINT_POINTS.items():
            points[skeleton.INDEX[joint]] = (self.heads if end == "head" else self.tails)[
                self.index(bone)
            ]
        points[0] = points[[skeleton.INDEX["left_hip"], skeleton.INDEX["right_hip"]]].mean(axis=0)
        return points


def vertex_normals(positions: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3) of a triangle mesh."""
    a, b, c = (positions[triangles[:, k]] for k in range(3))
    face = np.cross(b - a, c - a)
    normals = np.zeros_like(positions)
    for k in range(3):
        np.add.at(normals, triangles[:, k], face)
    return normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-12)


@cache
def load_character() -> Character:
    """The bundled character (read once per process)."""
    with resources.files("kakashi").joinpath("assets", "character.npz").open("rb") as handle:
        data = np.load(handle)
        arrays = {key: data[key] for key in data.files}
    positions = arrays["positions"].astype(np.float32)
    triangles = arrays["triangles"].astype(np.uint16)
    return Character(
        positions=positions,
        normals=vertex_normals(positions.astype(np.float64), triangles).astype(np.float32),
        triangles=triangles,
        lod_triangles=arrays["lod_triangles"].astype(np.uint16),
        joints=arrays["joints"].astype(np.uint8),
        weights=arrays["weights"].astype(np.float32),
        bones=tuple(str(name) for name in arrays["bones"]),
        parents=arrays["parents"].astype(np.int64),
        heads=arrays["heads"].astype(np.float64),
        tails=arrays["tails"].astype(np.float64),
    )


@dataclass
class CharacterMotion:
    """A dance on the character: each bone's global rotation and posed head, per frame."""

    rotations: np.ndarray  # (T, B, 3, 3) global rotation of each bone from its rest
    heads: np.ndarray  # (T, B, 3) posed head of each bone (world, metres)
    fps: float
    scale: float  # rig leg length / dancer's leg length

    def local_rotations(self, character: Character) -> np.ndarray:
        """Each bone's rotation relative to its parent (T, B, 3, 3): glTF's node rotations."""
        local = self.rotations.copy()
        child = character.parents >= 0
        parent_rot = self.rotations[:, character.parents[child]]
        local[:, child] = np.swapaxes(parent_rot, -1, -2) @ self.rotations[:, child]
        return local

    def skin(self, character: Character, frame: int) -> np.ndarray:
        """Posed vertex positions (V, 3) at ``frame`` (linear blend skinning)."""
        rotation, head = self.rotations[frame], self.heads[frame]
        # Per bone: v' = R v + (P - R h).
        shift = head - np.einsum("bij,bj->bi", rotation, character.heads)
        out = np.zeros(character.positions.shape)
        for k in range(4):
            bone = character.joints[:, k]
            moved = np.einsum("vij,vj->vi", rotation[bone], character.positions) + shift[bone]
            out += character.weights[:, k, None] * moved
        return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-9)


def _yaw(forward: np.ndarray) -> np.ndarray:
    """Rotations (T, 3, 3) about +y turning +z towards the horizontal part of ``forward``."""
    angle = np.arctan2(forward[:, 0], forward[:, 2])
    cos, sin = np.cos(angle), np.sin(angle)
    rotation = np.zeros((len(forward), 3, 3))
    rotation[:, 0, 0], rotation[:, 0, 2], rotation[:, 1, 1] = cos, sin, 1.0
    rotation[:, 2, 0], rotation[:, 2, 2] = -sin, cos
    return rotation


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Shortest-arc rotations (T, 3, 3) taking unit vectors a (T, 3) onto unit b (T, 3)."""
    axis = np.cross(a, b)
    cosine = np.clip(np.einsum("ti,ti->t", a, b), -1.0, 1.0)
    skew = np.zeros((len(a), 3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    skew -= np.swapaxes(skew, 1, 2)
    factor = 1 / np.maximum(1 + cosine, 1e-9)
    return np.eye(3) + skew + (skew @ skew) * factor[:, None, None]


def _leg_length(points: np.ndarray) -> np.ndarray:
    """Hip-knee plus knee-ankle length (..., ) of both legs' mean, from (..., 17, 3)."""
    total = 0.0
    for (hip, knee, ankle), _ in _LEGS:
        h, k, a = (points[..., skeleton.INDEX[name], :] for name in (hip, knee, ankle))
        total = total + np.linalg.norm(k - h, axis=-1) + np.linalg.norm(a - k, axis=-1)
    return total / 2


def retarget(dance: Dance, character: Character | None = None) -> CharacterMotion:
    """The dance's motion on the character's bones (see the module doc)."""
    character = character or load_character()
    rest_points = character.rest_joints()
    stage = stage_positions(dance)  # floor at y = 0, the stage's ankle height above it
    scale = float(_leg_length(rest_points) / np.median(_leg_length(stage)))
    # Scaled about the floor, with the stage's ankle height mapped onto the rig's: a dance
    # ankle standing on the stage floor puts the rig's sole on y = 0.
    rig_ankle = rest_points[list(skeleton.ANKLES), 1].mean()
    world = stage * scale
    world[..., 1] += rig_ankle - _ANKLE_HEIGHT * scale

    parents = np.array(skeleton.PARENTS)
    rest = np.zeros((skeleton.NUM_JOINTS, 3))
    rest[1:] = _unit(rest_points[1:] - rest_points[parents[1:]])
    lengths = np.linalg.norm(rest_points[1:] - rest_points[parents[1:]], axis=-1)
    # Each bone copies the dance's bone direction (aimed from the measured joint, not the
    # rebuilt one): the rig's proportions differ, so aiming from its own shoulder would bend
    # the arms by the difference (7-10 cm at the wrists on a real dance).
    joint_rot, _, _ = solve_rotations(world, rest, lengths, stretch=True)

    frames, count = len(world), len(character.bones)
    rotations = np.zeros((frames, count, 3, 3))
    for bone, name in enumerate(character.bones):
        driver = DRIVERS.get(name)
        if driver is not None:
            rotations[:, bone] = joint_rot[:, skeleton.INDEX[driver]]
        else:
            rotations[:, bone] = rotations[:, character.parents[bone]]

    def heads() -> np.ndarray:
        """Posed heads by forward kinematics; the pelvis follows the scaled dance's."""
        posed = np.zeros((frames, count, 3))
        pelvis = rest_points[0]
        posed[:, 0] = world[:, 0] + rotations[:, 0] @ (character.heads[0] - pelvis)
        for bone in range(1, count):
            parent = character.parents[bone]
            offset = character.heads[bone] - character.heads[parent]
            posed[:, bone] = posed[:, parent] + rotations[:, parent] @ offset
        return posed

    posed = heads()
    for (hip, knee, ankle), (thigh, shin, foot) in _LEGS:
        _two_bone_ik(character, rotations, posed, world, (hip, knee, ankle), (thigh, shin, foot))
        # Feet flat, pointing where the shin's frame points (a turned-out knee turns the foot).
        shin_rot = rotations[:, character.index(shin)]
        forward = shin_rot @ np.array([0.0, 0.0, 1.0]) + 0.5 * (
            rotations[:, 0] @ np.array([0.0, 0.0, 1.0])
        )
        rotations[:, character.index(foot)] = _yaw(forward)
    for bone in range(count):  # toes (and anything under a foot) follow it
        if DRIVERS.get(character.bones[bone]) is None and character.bones[bone] != "Hips":
            parent = character.parents[bone]
            if "Foot" in character.bones[parent]:
                rotations[:, bone] = rotations[:, parent]
    return CharacterMotion(rotations, heads(), dance.fps, scale)


def _two_bone_ik(
    character: Character,
    rotations: np.ndarray,
    posed: np.ndarray,
    world: np.ndarray,
    joints: tuple[str, str, str],
    bones: tuple[str, str, str],
) -> None:
    """Turn the thigh and shin ``bones`` (in place) so the foot's head reaches the scaled
    dance's ankle, the knee bending in the plane of the dance's hip, knee and ankle."""
    hip, knee, ankle = joints
    t, s, foot = (character.index(name) for name in bones)
    upper = np.linalg.norm(character.heads[s] - character.heads[t])
    lower = np.linalg.norm(character.heads[foot] - character.heads[s])
    hip_at = posed[:, t]
    target = world[:, skeleton.INDEX[ankle]]
    reach = target - hip_at
    distance = np.clip(
        np.linalg.norm(reach, axis=-1), abs(upper - lower) + 1e-4, upper + lower - 1e-4
    )
    along = _unit(reach)
    # The bend direction: the dance's knee, off the hip-ankle line.
    dance_knee = world[:, skeleton.INDEX[knee]] - world[:, skeleton.INDEX[hip]]
    bend = dance_knee - np.einsum("ti,ti->t", dance_knee, along)[:, None] * along
    fallback = rotations[:, t] @ np.array([0.0, 0.0, 1.0])  # straight leg: knee forward
    small = np.linalg.norm(bend, axis=-1) < 1e-4
    bend[small] = (
        fallback[small]
        - np.einsum("ti,ti->t", fallback[small], along[small])[:, None] * along[small]
    )
    bend = _unit(bend)
    cos_hip = (upper**2 + distance**2 - lower**2) / (2 * upper * distance)
    sin_hip = np.sqrt(np.clip(1 - cos_hip**2, 0, 1))
    knee_at = hip_at + upper * (cos_hip[:, None] * along + sin_hip[:, None] * bend)
    ankle_at = hip_at + along * distance[:, None]
    # Re-aim each bone from its current pose (keeps the solver's twist).
    for bone, start, end, child in ((t, hip_at, knee_at, s), (s, knee_at, ankle_at, foot)):
        rest_dir = _unit(character.heads[child] - character.heads[bone])
        current = _unit(np.einsum("tij,j->ti", rotations[:, bone], rest_dir))
        rotations[:, bone] = _rotation_between(current, _unit(end - start)) @ rotations[:, bone]
