"""The character: its asset, retargeting a real dance onto the rig (forward kinematics of the
rig against the dance's limbs), the GLB export read back by an independent reader and
checked by the Khronos validator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_file
from kakashi import skeleton
from kakashi.outputs.character import _JOINT_POINTS, load_character, retarget
from kakashi.outputs.stage import _ANKLE_HEIGHT, stage_positions

LIMBS = (
    ("left_shoulder", "left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow", "right_wrist"),
    ("left_hip", "left_knee", "left_ankle"),
    ("right_hip", "right_knee", "right_ankle"),
)


@pytest.fixture(scope="module")
def chacha(tmp_path_factory) -> Path:
    """Dance with Melody's cha-cha DANCE_C_2 (63 s of optical mocap) as a dance file."""
    from kakashi.motion import read_motion

    dance = read_motion(shared_file("m2d_tang2018/joints/DANCE_C_2.npy"), 30, "tang23", 25)
    path = tmp_path_factory.mktemp("character") / "chacha.npz"
    dance.save(path)
    return path


def rig_joints(motion, character) -> np.ndarray:
    """The rig's stand-ins for the 17 joints, posed (T, 17, 3), by its forward kinematics."""
    points = np.zeros((len(motion.heads), skeleton.NUM_JOINTS, 3))
    for joint, (bone, end) in _JOINT_POINTS.items():
        b = character.index(bone)
        point = motion.heads[:, b]
        if end == "tail":
            point = point + motion.rotations[:, b] @ (character.tails[b] - character.heads[b])
        points[:, skeleton.INDEX[joint]] = point
    return points


def test_asset_is_a_skinned_body():
    character = load_character()
    assert len(character.positions) == 13380 and len(character.bones) == 52
    assert character.bones[0] == "Hips" and character.parents[0] == -1
    assert (character.parents[1:] < np.arange(1, 52)).all()  # parents before children
    np.testing.assert_allclose(character.weights.sum(axis=1), 1, atol=1e-5)
    assert character.joints.max() < 52 and character.triangles.max() < 13380
    height = np.ptp(character.positions[:, 1])
    assert 1.5 < height < 1.9 and abs(character.positions[:, 1].min()) < 1e-6


def test_retarget_follows_the_limbs_and_plants_the_feet(chacha):
    from kakashi.dance import Dance

    dance = Dance.load(chacha)
    character = load_character()
    motion = retarget(dance, character)
    rig = rig_joints(motion, character)
    stage = stage_positions(dance) * motion.scale
    rest = character.rest_joints()
    stage[..., 1] += rest[list(skeleton.ANKLES), 1].mean() - _ANKLE_HEIGHT * motion.scale

    # Each limb rebuilt from its root along the dance's bone directions with the rig's bone
    # lengths (the dance "after scaling"): the rig's elbows, wrists and knees. (The ankles are
    # checked in world space below: IK puts them at the dance's ankles rather than along its
    # bone directions from the rig's wider hips, 2.5-3.1 cm mean off those here.)
    for limb in LIMBS:
        root, middle, end = (skeleton.INDEX[name] for name in limb)
        expected = rig[:, root].copy()
        for parent, joint in ((root, middle), (middle, end)):
            length = np.linalg.norm(rig[:, joint] - rig[:, parent], axis=-1, keepdims=True)
            bone = stage[:, joint] - stage[:, parent]
            expected = expected + length * bone / np.linalg.norm(bone, axis=-1, keepdims=True)
            error = np.linalg.norm(rig[:, joint] - expected, axis=-1)
            if "ankle" not in skeleton.JOINTS[joint]:
                assert error.mean() < 0.03, (limb, joint, error.mean())
    # The ankles go where the scaled dance puts them (two-bone IK): no sliding, no floating.
    ankles = list(skeleton.ANKLES)
    error = np.linalg.norm(rig[:, ankles] - stage[:, ankles], axis=-1)
    assert np.percentile(error, 95) < 0.03, np.percentile(error, 95)

    # Planted frames (the lower ankle in its lowest third): the posed body's lowest vertex
    # (a sole) is on the floor, within 3 cm.
    low = stage[:, ankles, 1].min(axis=1)
    planted = np.flatnonzero(low < np.percentile(low, 30))[::25]
    soles = np.array([motion.skin(character, frame)[:, 1].min() for frame in planted])
    assert np.abs(np.median(soles)) < 0.03 and (np.abs(soles) < 0.05).mean() > 0.9, soles


VALIDATOR = Path(__file__).resolve().parent.parent / "tools" / "gltf-validator"


def read_accessor(gltf, index: int) -> np.ndarray:
    """An accessor's data as an array, read with pygltflib's model of the file."""
    accessor = gltf.accessors[index]
    view = gltf.bufferViews[accessor.bufferView]
    blob = gltf.binary_blob()
    dtype = {5126: np.float32, 5123: np.uint16, 5121: np.uint8}[accessor.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[accessor.type]
    start = view.byteOffset + (accessor.byteOffset or 0)
    data = np.frombuffer(blob, dtype, accessor.count * width, start)
    return data.reshape(accessor.count, width) if width > 1 else data


def test_glb_round_trip_and_khronos_validator(chacha, tmp_path):
    import pygltflib
    from scipy.spatial.transform import Rotation

    from kakashi.cli import main
    from kakashi.dance import Dance

    dance = Dance.load(chacha)
    output = tmp_path / "chacha.glb"
    main(["export-glb", str(chacha), "-o", str(output), "--music", "DANCE_C_2.mp3"])

    gltf = pygltflib.GLTF2().load(str(output))
    (skin,) = gltf.skins
    (animation,) = gltf.animations
    assert len(skin.joints) == 52 and gltf.nodes[skin.joints[0]].name == "Hips"
    times = read_accessor(gltf, animation.samplers[0].input)
    assert len(times) == len(dance)
    assert times[-1] == pytest.approx((len(dance) - 1) / dance.fps, abs=1e-4)
    assert gltf.extras["kakashi"]["music"] == "DANCE_C_2.mp3"
    assert gltf.extras["kakashi"]["fps"] == dance.fps

    # Pose the skin from the file alone at a few frames: every vertex stays near the body's
    # size around the hips, and the lowest vertex (a sole) is near the floor when the dance
    # stands.
    channels = {(c.target.node, c.target.path): c.sampler for c in animation.channels}
    mesh = gltf.meshes[0].primitives[0]
    positions = read_accessor(gltf, mesh.attributes.POSITION).astype(np.float64)
    joints = read_accessor(gltf, mesh.attributes.JOINTS_0).astype(np.int64)
    weights = read_accessor(gltf, mesh.attributes.WEIGHTS_0).astype(np.float64)
    inverse_bind = read_accessor(gltf, skin.inverseBindMatrices).reshape(-1, 4, 4)
    inverse_bind = np.swapaxes(inverse_bind, 1, 2)  # column-major in the file
    parents = {
        child: parent for parent, node in enumerate(gltf.nodes) for child in node.children or []
    }
    lowest = []
    for frame in (0, len(dance) // 2, len(dance) - 1):
        world = {}
        for node_index in skin.joints:  # parents come before children in this file
            node = gltf.nodes[node_index]
            local = np.eye(4)
            translation = node.translation
            if (node_index, "translation") in channels:
                translation = read_accessor(
                    gltf, animation.samplers[channels[node_index, "translation"]].output
                )[frame]
            if (node_index, "rotation") in channels:
                quaternion = read_accessor(
                    gltf, animation.samplers[channels[node_index, "rotation"]].output
                )[frame]
                local[:3, :3] = Rotation.from_quat(quaternion).as_matrix()
            local[:3, 3] = translation
            parent = parents.get(node_index)
            world[node_index] = local if parent is None else world[parent] @ local
        matrices = np.array([world[j] @ inverse_bind[k] for k, j in enumerate(skin.joints)])
        homogeneous = np.c_[positions, np.ones(len(positions))]
        posed = np.einsum("vk,vkij,vj->vi", weights, matrices[joints], homogeneous)[:, :3]
        assert np.ptp(posed, axis=0).max() < 2.2
        lowest.append(posed[:, 1].min())
    assert np.median(lowest) == pytest.approx(0.0, abs=0.05), lowest

    validate = VALIDATOR / "validate.js"
    if not (VALIDATOR / "node_modules" / "gltf-validator").is_dir():
        pytest.skip(
            "the Khronos glTF validator is not installed: npm ci --prefix tools/gltf-validator"
        )
    import json
    import subprocess

    result = subprocess.run(["node", str(validate), str(output)], capture_output=True, text=True)
    report = json.loads(result.stdout.splitlines()[0])
    assert report["numErrors"] == 0 and result.returncode == 0, report["messages"]
    assert report["info"]["hasSkins"] and report["info"]["animationCount"] == 1
    assert report["info"]["totalVertexCount"] == 13380 and report["info"]["maxInfluences"] == 4


def test_export_glb_bad_inputs_are_clear_errors(tmp_path, capsys):
    from kakashi.cli import main

    out = tmp_path / "out" / "dance.glb"
    assert main(["export-glb", str(tmp_path / "missing.npz"), "-o", str(out)]) == 1
    assert "missing.npz does not exist" in capsys.readouterr().err
    bad = tmp_path / "nan.npz"
    pose = np.zeros((10, 17, 3), np.float32)
    pose[4] = np.nan
    np.savez(bad, pose=pose, root=np.zeros((10, 3), np.float32), fps=30.0)
    assert main(["export-glb", str(bad), "-o", str(out)]) == 1
    assert "nan.npz: 1 frame(s) contain NaN" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing half-written
