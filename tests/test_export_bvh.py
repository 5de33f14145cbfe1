"""BVH export: re-read with an independent parser (bvhio), run its forward kinematics and
compare with the dance's joint positions, on real motion (the demo video's dance and CMU
motion capture)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_file
from kakashi import skeleton
from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.outputs.bvh import export_bvh
from kakashi.shards import read_dance
from kakashi.skeleton import BVH_NAMES

# bvhio imports PyGLM the old way; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:Importing PyGLM:PendingDeprecationWarning")


def bvhio_positions(path: Path, units: float, step: int = 1) -> np.ndarray:
    """World joint positions (frames, 17, 3) in metres, computed by bvhio."""
    import bvhio

    root = bvhio.readAsHierarchy(str(path))
    joints = {joint.Name: joint for joint, *_ in root.layout()}
    order = [joints[name] for name in BVH_NAMES]
    positions = []
    for frame in range(0, root.getKeyframeRange()[1] + 1, step):
        root.loadPose(frame)
        positions.append([list(joint.PositionWorld) for joint in order])
    return np.array(positions) / units


@pytest.fixture(scope="module")
def video_dance(demo_shards: Path, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bvh") / "dancer-c.npz"
    read_dance(demo_shards / "split=test" / "dancer-c.parquet").save(path)
    return path


def cmu_mocap_dance(folder: Path) -> Path:
    """CMU subject 131 (rigid optical mocap, travels 2.6 m), mapped to H36M-17 with bvhio,
    at 30 fps, saved as a dance file in ``folder``. Skips when the shared data is absent."""
    source = shared_file("mocap_cmu_131_bvh11/131_01.bvh")
    names = {
        "pelvis": "Hips", "right_hip": "RightHip", "right_knee": "RightKnee",
        "right_ankle": "RightAnkle", "left_hip": "LeftHip", "left_knee": "LeftKnee",
        "left_ankle": "LeftAnkle", "spine": "Chest", "thorax": "lowerneck", "neck": "Neck",
        "head": "Head", "left_shoulder": "LeftShoulder", "left_elbow": "LeftElbow",
        "left_wrist": "LeftWrist", "right_shoulder": "RightShoulder",
        "right_elbow": "RightElbow", "right_wrist": "RightWrist",
    }  # fmt: skip
    import bvhio

    root = bvhio.readAsHierarchy(str(source))
    joints = {joint.Name: joint for joint, *_ in root.layout()}
    order = [joints[names[name]] for name in skeleton.JOINTS]
    world = []
    for frame in range(0, root.getKeyframeRange()[1] + 1, 4):  # 120 fps -> 30 fps
        root.loadPose(frame)
        world.append([list(joint.PositionWorld) for joint in order])
    world = np.array(world) * 0.056444  # CMU units (1/0.45 inch) to metres
    path = folder / "cmu-131-01.npz"
    Dance(world - world[:, :1], world[:, 0], 30.0).save(path)
    return path


@pytest.fixture(scope="module")
def mocap_dance(tmp_path_factory) -> Path:
    return cmu_mocap_dance(tmp_path_factory.mktemp("bvh"))


def test_stretch_bvh_reproduces_video_dance_exactly(video_dance, tmp_path):
    out = tmp_path / "dance.bvh"
    report = export_bvh(video_dance, out, stretch=True)
    world = Dance.load(video_dance).world()
    positions = bvhio_positions(out, units=100.0)
    assert positions.shape == world.shape
    error = np.linalg.norm(positions - world, axis=-1)
    print(f"stretch BVH vs dance: mean {error.mean() * 1000:.3f} mm, max {error.max() * 1000:.3f}")
    assert error.max() < 0.02
    assert report.max_error_m < 0.001


def test_rigid_bvh_on_video_dance(video_dance, tmp_path):
    out = tmp_path / "dance.bvh"
    report = export_bvh(video_dance, out)
    text = out.read_text()
    # A proper rig: Hips root with 6 channels, every other joint 3 rotations, 5 end sites.
    assert text.count("CHANNELS 6 ") == 1 and text.count("CHANNELS 3 ") == 16
    assert text.count("End Site") == 5
    assert text.startswith("HIERARCHY\nROOT Hips")
    dance = Dance.load(video_dance)
    positions = bvhio_positions(out, units=100.0)
    lengths = skeleton.bone_lengths(positions)
    # Rigid: every bone keeps the dance's mean length in every frame.
    np.testing.assert_allclose(lengths, np.broadcast_to(
        skeleton.bone_lengths(dance.world()).mean(axis=0), lengths.shape), atol=1e-4)  # fmt: skip
    error = np.linalg.norm(positions - dance.world(), axis=-1)
    print(
        f"rigid BVH vs video dance: mean {error.mean() * 100:.2f} cm, max {error.max() * 100:.1f}"
    )
    # Video bone lengths vary by 1-4 cm, which a rigid skeleton cannot follow: the mean
    # stays within 2.5 cm, and bvhio agrees with the exporter's own error report.
    assert error.mean() < 0.025
    assert abs(error.mean() - report.mean_error_m) < 1e-3
    # Limb directions follow the motion closely (each bone aims at its measured child).
    world = dance.world()
    for parent, child in skeleton.BONES:
        measured = world[:, child] - world[:, parent]
        exported = positions[:, child] - positions[:, parent]
        cosine = (
            (measured * exported).sum(-1)
            / np.linalg.norm(measured, axis=-1)
            / np.linalg.norm(exported, axis=-1)
        )
        assert np.median(cosine) > 0.98, skeleton.JOINTS[child]


def test_rigid_bvh_matches_mocap_within_2cm(mocap_dance, tmp_path):
    out = tmp_path / "mocap.bvh"
    assert main(["export-bvh", str(mocap_dance), "-o", str(out), "--units", "m"]) == 0
    world = Dance.load(mocap_dance).world()
    positions = bvhio_positions(out, units=1.0)
    error = np.linalg.norm(positions - world, axis=-1)
    print(f"rigid BVH vs CMU mocap: mean {error.mean() * 1000:.1f} mm, "
          f"99th percentile {np.percentile(error, 99) * 1000:.1f} mm")  # fmt: skip
    assert error.mean() < 0.01
    assert np.percentile(error, 99) < 0.02
    # The ends of the limbs, what animators see, stay within 2 cm in every frame.
    ends = [skeleton.INDEX[name] for name in ("left_wrist", "right_wrist", "left_ankle",
                                              "right_ankle", "head")]  # fmt: skip
    assert error[:, ends].max() < 0.02
    # Channels are continuous: unwrapped angles never jump by half a turn between frames.
    motion = np.loadtxt(out.read_text().split("Frame Time:")[1].splitlines()[1:])
    assert np.abs(np.diff(motion[:, 3:], axis=0)).max() < 180


def test_bad_dances_are_clear_errors_and_leave_nothing(tmp_path, capsys):
    nan_pose = np.zeros((10, 17, 3), np.float32)
    nan_pose[4, 3] = np.nan
    np.savez(tmp_path / "nan.npz", pose=nan_pose, root=np.zeros((10, 3)), fps=30.0)
    np.savez(tmp_path / "shape.npz", pose=np.zeros((10, 15, 3)), root=np.zeros((10, 3)), fps=30)
    for name, message in (("nan.npz", "NaN"), ("shape.npz", "(T, 17, 3)"),
                          ("missing.npz", "does not exist")):  # fmt: skip
        out = tmp_path / "out" / f"{name}.bvh"
        assert main(["export-bvh", str(tmp_path / name), "-o", str(out)]) == 1
        error = capsys.readouterr().err
        assert "kakashi: error:" in error and message in error and name in error
        assert not out.exists()


def test_unwritable_folder_is_a_clear_error(video_dance, tmp_path, capsys):
    # A regular file where the folder should be: unwritable even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker / "x.bvh"
    assert main(["export-bvh", str(video_dance), "-o", str(out)]) == 1
    error = capsys.readouterr().err
    assert "kakashi: error: cannot create the folder" in error and str(out) in error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["blocker"]
