"""Convert a Kakashi GLB (kakashi export-glb) into FBX with Blender.

Run with Blender's own Python, either the application or the ``bpy`` wheel (GPL, Python
3.11; not a Kakashi dependency)::

    blender --background --python scripts/glb-to-fbx.py -- dance.glb dance.fbx
    python scripts/glb-to-fbx.py dance.glb dance.fbx      # where `import bpy` works

The scene's frame rate is set to the dance's (``extras.kakashi.fps`` in the GLB) before the
import, so each keyframe lands on a whole frame; the FBX has the mesh, the 52-bone armature
(Mixamo names, no leaf bones) and the baked animation.
"""

from __future__ import annotations

import json
import struct
import sys


def dance_fps(path: str) -> float:
    """``extras.kakashi.fps`` from the GLB's JSON chunk (30 when absent)."""
    with open(path, "rb") as handle:
        magic, _, _ = struct.unpack("<4sII", handle.read(12))
        length, kind = struct.unpack("<I4s", handle.read(8))
        if magic != b"glTF" or kind != b"JSON":
            raise SystemExit(f"{path}: not a GLB file; give the output of kakashi export-glb")
        document = json.loads(handle.read(length))
    return float(document.get("extras", {}).get("kakashi", {}).get("fps", 30))


def main(glb: str, fbx: str) -> None:
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.context.scene.render.fps = round(dance_fps(glb))
    bpy.ops.import_scene.gltf(filepath=glb)
    bpy.ops.export_scene.fbx(filepath=fbx, add_leaf_bones=False, bake_anim=True)
    print(f"{glb} -> {fbx} at {bpy.context.scene.render.fps} fps")


if __name__ == "__main__":
    arguments = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    if len(arguments) != 2:
        raise SystemExit(__doc__)
    main(*arguments)
