"""Export a dance as a GLB: the character's skinned mesh and one animation (glTF 2.0).

One binary buffer holds the mesh (positions, normals, 4 bone indices and weights per
vertex, triangles), the skin's inverse bind matrices and the animation: a rotation channel
for every bone that moves relative to its parent (the fingers ride on the hands) and a
translation channel for ``Hips``, one keyframe per dance frame (LINEAR, ``1 / fps`` apart).
Bones are nodes named like Mixamo's (without the ``mixamorig:`` prefix) with identity rest
rotations, so a bone's animated rotation is its pose. Units are metres, y up, facing +z
(glTF's axes). ``extras.kakashi`` records the fps, the frame count, the retargeting scale
and the music's name. Written with pygltflib (an independent reader of the same spec);
CI checks the files with the Khronos glTF validator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygltflib
from scipy.spatial.transform import Rotation

from kakashi.atomic import atomic_output
from kakashi.dance import Dance
from kakashi.outputs.character import Character, CharacterMotion, load_character, retarget

_SKIN_COLOUR = [0.78, 0.74, 0.70, 1.0]  # a plain mannequin grey-beige


def _quaternions(rotations: np.ndarray) -> np.ndarray:
    """(T, 3, 3) -> (T, 4) xyzw, sign-continuous so interpolation takes the short way."""
    quats = Rotation.from_matrix(rotations).as_quat()
    flips = np.einsum("ti,ti->t", quats[1:], quats[:-1]) < 0
    signs = np.concatenate([[1.0], np.where(np.cumsum(flips) % 2 == 1, -1.0, 1.0)])
    return quats * signs[:, None]


class _Buffer:
    """Accumulates binary views and their accessors (4-byte aligned, as glTF requires)."""

    def __init__(self, gltf: pygltflib.GLTF2) -> None:
        self.gltf, self.blob = gltf, bytearray()

    def add(
        self,
        array: np.ndarray,
        accessor_type: str,
        target: int | None = None,
        bounds: bool = False,
        normalized: bool = False,
    ) -> int:
        component = {
            np.dtype(np.float32): pygltflib.FLOAT,
            np.dtype(np.uint16): pygltflib.UNSIGNED_SHORT,
            np.dtype(np.uint8): pygltflib.UNSIGNED_BYTE,
        }[array.dtype]
        data = np.ascontiguousarray(array).tobytes()
        self.blob += b"\0" * (-len(self.blob) % 4)
        view = pygltflib.BufferView(
            buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target
        )
        self.blob += data
        self.gltf.bufferViews.append(view)
        flat = array.reshape(len(array), -1)
        accessor = pygltflib.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1,
            componentType=component,
            count=len(array),
            type=accessor_type,
            normalized=normalized or None,
            min=flat.min(axis=0).tolist() if bounds else None,
            max=flat.max(axis=0).tolist() if bounds else None,
        )
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1


def animated_bones(character: Character, motion: CharacterMotion) -> list[int]:
    """Bones whose rotation relative to their parent ever leaves the identity."""
    local = motion.local_rotations(character)
    moving = np.abs(local - np.eye(3)).max(axis=(0, 2, 3)) > 1e-6
    moving[0] = True
    return [int(bone) for bone in np.flatnonzero(moving)]


def glb_document(
    motion: CharacterMotion, character: Character, music: str | None = None
) -> pygltflib.GLTF2:
    """The glTF document (one buffer, embedded as GLB's binary chunk) for ``motion``."""
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator="kakashi"))
    buffer = _Buffer(gltf)
    count = len(character.bones)

    # Bone nodes: translation from the parent's head, identity rotation at rest.
    for bone, name in enumerate(character.bones):
        parent = character.parents[bone]
        offset = character.heads[bone] - (character.heads[parent] if parent >= 0 else 0)
        gltf.nodes.append(pygltflib.Node(name=name, translation=offset.tolist()))
    for bone in range(count):
        children = [int(c) for c in np.flatnonzero(character.parents == bone)]
        gltf.nodes[bone].children = children or None

    attributes = pygltflib.Attributes(
        POSITION=buffer.add(character.positions, "VEC3", pygltflib.ARRAY_BUFFER, bounds=True),
        NORMAL=buffer.add(character.normals, "VEC3", pygltflib.ARRAY_BUFFER),
        JOINTS_0=buffer.add(character.joints, "VEC4", pygltflib.ARRAY_BUFFER),
        WEIGHTS_0=buffer.add(character.weights, "VEC4", pygltflib.ARRAY_BUFFER),
    )
    indices = buffer.add(character.triangles.reshape(-1), "SCALAR", pygltflib.ELEMENT_ARRAY_BUFFER)
    gltf.materials.append(
        pygltflib.Material(
            name="mannequin",
            pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
                baseColorFactor=_SKIN_COLOUR, metallicFactor=0.0, roughnessFactor=0.65
            ),
        )
    )
    gltf.meshes.append(
        pygltflib.Mesh(
            name="body",
            primitives=[pygltflib.Primitive(attributes=attributes, indices=indices, material=0)],
        )
    )
    inverse_bind = np.tile(np.eye(4, dtype=np.float32), (count, 1, 1))
    inverse_bind[:, :3, 3] = -character.heads
    # glTF matrices are column-major: write each transposed.
    bind_accessor = buffer.add(np.swapaxes(inverse_bind, 1, 2).astype(np.float32), "MAT4")
    gltf.skins.append(
        pygltflib.Skin(
            name="mixamo", joints=list(range(count)), skeleton=0, inverseBindMatrices=bind_accessor
        )
    )
    gltf.nodes.append(pygltflib.Node(name="character", mesh=0, skin=0))
    gltf.scenes.append(pygltflib.Scene(name="dance", nodes=[0, count]))
    gltf.scene = 0

    frames = len(motion.heads)
    times = (np.arange(frames) / motion.fps).astype(np.float32)
    time_accessor = buffer.add(times, "SCALAR", bounds=True)
    local = motion.local_rotations(character)
    animation = pygltflib.Animation(name="dance", samplers=[], channels=[])

    def channel(node: int, path: str, values: np.ndarray, kind: str) -> None:
        output = buffer.add(values.astype(np.float32), kind)
        animation.samplers.append(
            pygltflib.AnimationSampler(input=time_accessor, output=output, interpolation="LINEAR")
        )
        target = pygltflib.AnimationChannelTarget(node=node, path=path)
        animation.channels.append(
            pygltflib.AnimationChannel(sampler=len(animation.samplers) - 1, target=target)
        )

    channel(0, "translation", motion.heads[:, 0], "VEC3")
    for bone in animated_bones(character, motion):
        channel(bone, "rotation", _quaternions(local[:, bone]), "VEC4")
    gltf.animations.append(animation)
    extras = {"fps": motion.fps, "frames": frames, "scale": round(motion.scale, 5)}
    if music:
        extras["music"] = music
    gltf.extras = {"kakashi": extras}
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(buffer.blob)))
    gltf.set_binary_blob(bytes(buffer.blob))
    return gltf


def glb_bytes(dance: Dance, music: str | None = None) -> bytes:
    """The GLB file's bytes for ``dance`` on the bundled character."""
    character = load_character()
    document = glb_document(retarget(dance, character), character, music)
    return b"".join(document.save_to_bytes())


def export_glb(dance_path: str | Path, output: str | Path, music: str | None = None) -> int:
    """Write the dance in ``dance_path`` as the GLB file ``output``; return its size in bytes."""
    data = glb_bytes(Dance.load(dance_path), music)
    with atomic_output(output) as temporary:
        temporary.write_bytes(data)
    return len(data)
