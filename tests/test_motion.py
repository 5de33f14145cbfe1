"""Motion-capture readers on real files: BVH (CMU, Bandai Namco), Dance with Melody, arrays.

Every check is on the canonical output the contract promises: metres, y up, constant
bones, left on +x when facing +z, round(duration * fps) frames. Orientation is checked
against physical facts independent of the reader's own cues: walkers move forwards, and
a rotated, mirrored-label, z-up or cm copy of a motion reads back as the same motion.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile

from conftest import DEMO_DATA_TARGET, run_snakemake, shared_file, write_sheet
from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.errors import KakashiError, MediaError
from kakashi.motion import read_motion
from kakashi.motion.layouts import COCO17
from kakashi.motion.stage import prepare_motion
from kakashi.shards import read_metadata

CMU = "mocap_cmu_131_bvh11/131_01.bvh"
BANDAI_DANCE = "mocap_bandai_namco/dataset-1_dance-short_normal_001.bvh"
BANDAI_WALK = "mocap_bandai_namco/dataset-1_walk_happy_001.bvh"
TANG = "m2d_tang2018"
_J = skeleton.INDEX


def _assert_canonical(motion: Dance, frames: int) -> None:
    """The contract checks every reader must pass."""
    assert motion.pose.shape == (frames, 17, 3) and motion.pose.dtype == np.float32
    assert motion.root.shape == (frames, 3) and motion.root.dtype == np.float32
    assert np.abs(motion.pose[:, 0]).max() < 1e-6  # root-centred
    lengths = skeleton.bone_lengths(motion.pose)
    assert (lengths.max(0) - lengths.min(0)).max() < 0.01  # bones constant within 1 cm
    assert 1.1 < skeleton.standing_height(motion.pose) < 2.0  # metres, an adult body
    # y up: the head is above the pelvis, the pelvis above the ankles, in most frames.
    assert np.mean(motion.pose[:, _J["head"], 1] > 0.3) > 0.95
    assert np.mean(motion.pose[:, [_J["left_ankle"], _J["right_ankle"]], 1].max(1) < -0.4) > 0.9
    # Facing +z over the first second: the left hip is on +x, the right hip on -x.
    first = motion.pose[: round(motion.fps)]
    assert first[:, _J["left_hip"], 0].mean() > 0.03
    assert first[:, _J["right_hip"], 0].mean() < -0.03


def _knees_forward(motion: Dance) -> float:
    """Fraction of frames whose knees bend towards the facing that left/right imply."""
    pose = motion.pose
    side = pose[:, _J["left_hip"]] - pose[:, _J["right_hip"]]
    forward = np.cross(side, [0.0, 1.0, 0.0])
    bend = sum(
        pose[:, _J[f"{s}_knee"]] - 0.5 * (pose[:, _J[f"{s}_hip"]] + pose[:, _J[f"{s}_ankle"]])
        for s in ("left", "right")
    )
    return float(np.mean(np.sum(bend * forward, axis=1) > 0))


@pytest.mark.parametrize("name", [CMU, BANDAI_WALK])
def test_bvh_walks_forward_along_plus_z(name: str) -> None:
    path = shared_file(name)
    motion = read_motion(path, 30)
    frames_in_file = motion.meta["frames_in_file"]
    _assert_canonical(motion, round(frames_in_file / motion.meta["source_fps"] * 30))
    assert motion.fps == 30.0
    # A walker moves the way they face: the net travel is along +z, little sideways.
    travel = motion.root[-1] - motion.root[0]
    assert travel[2] > 1.0 and abs(travel[0]) < 0.35 * travel[2]
    # The files name their joints Left*/Right* (CMU) and *_L/*_R (Bandai): they are right.
    assert motion.meta["left_right_swapped"] is False
    assert motion.meta["up_axis"] == "+y"


def test_bvh_units_and_frame_rates() -> None:
    cmu = read_motion(shared_file(CMU), 30)
    assert cmu.meta["units"] == "cmu_asf" and cmu.meta["source_fps"] == 120.0
    assert len(cmu.pose) == round(994 / 120 * 30)
    # The pelvis of a standing adult is about 0.9-1.0 m above the floor.
    assert 0.8 < np.median(cmu.root[:, 1]) < 1.05

    dance = read_motion(shared_file(BANDAI_DANCE), 60)  # upsampled 30 -> 60 fps
    _assert_canonical(dance, round(1901 / 30 * 60))
    assert dance.meta["units"] == "cm" and dance.meta["format"] == "bvh"
    assert _knees_forward(dance) > 0.7
    # Upsampling interpolates: every other frame is a source frame.
    at_30 = read_motion(shared_file(BANDAI_DANCE), 30)
    np.testing.assert_allclose(dance.root[::2], at_30.root, atol=1e-4)


def test_mixamo_joint_names_map_like_the_bandai_rig(tmp_path: Path) -> None:
    """The Bandai dance renamed to Mixamo's names (same joints) reads back identically."""
    side = {"L": "Left", "R": "Right"}
    rename = {"Spine": "Spine", "Chest": "Spine1", "Neck": "Neck", "Head": "Head", "Hips": "Hips"}
    for s, name in side.items():
        rename |= {
            f"Shoulder_{s}": f"{name}Shoulder", f"UpperArm_{s}": f"{name}Arm",
            f"LowerArm_{s}": f"{name}ForeArm", f"Hand_{s}": f"{name}Hand",
            f"UpperLeg_{s}": f"{name}UpLeg", f"LowerLeg_{s}": f"{name}Leg",
            f"Foot_{s}": f"{name}Foot", f"Toes_{s}": f"{name}ToeBase",
        }  # fmt: skip
    lines = []
    for line in shared_file(BANDAI_DANCE).read_text().splitlines():
        words = line.split()
        if len(words) == 2 and words[0] in ("ROOT", "JOINT") and words[1] in rename:
            line = line.replace(words[1], "mixamorig:" + rename[words[1]])
        lines.append(line)
    mixamo = tmp_path / "mixamo.bvh"
    mixamo.write_text("\n".join(lines) + "\n")
    motion = read_motion(mixamo, 30)
    assert "left_shoulder=mixamorig:LeftArm" in motion.meta["layout"]
    reference = read_motion(shared_file(BANDAI_DANCE), 30)
    np.testing.assert_allclose(motion.pose, reference.pose, atol=1e-5)


def test_kakashi_bvh_export_reads_back(tmp_path: Path) -> None:
    """kakashi export-bvh output (its own H36M-named rig, cm) reads back as the same motion."""
    from kakashi.dance import Dance
    from kakashi.outputs.bvh import export_bvh

    reference = read_motion(shared_file(BANDAI_WALK), 30)
    Dance(reference.pose, reference.root, 30).save(tmp_path / "walk.npz")
    report = export_bvh(tmp_path / "walk.npz", tmp_path / "walk.bvh")
    motion = read_motion(tmp_path / "walk.bvh", 30)
    assert motion.meta["units"] == "cm" and motion.meta["left_right_swapped"] is False
    assert "thorax=Thorax" in motion.meta["layout"]
    # Within the export's own fitting error (a few mm) of the original.
    tolerance = report.max_error_m + 1e-3
    np.testing.assert_allclose(motion.pose, reference.pose, atol=tolerance)
    np.testing.assert_allclose(motion.root, reference.root, atol=tolerance)


def test_truncated_or_broken_bvh_fails_naming_the_file(tmp_path: Path) -> None:
    lines = shared_file(CMU).read_text().splitlines()
    truncated = tmp_path / "truncated.bvh"
    truncated.write_text("\n".join(lines[: len(lines) - 100]) + "\n")
    with pytest.raises(KakashiError, match=r"truncated\.bvh.*(truncated|header says)"):
        read_motion(truncated, 30)
    cut_row = tmp_path / "cut_row.bvh"
    cut_row.write_text("\n".join([*lines[:-1], lines[-1][: len(lines[-1]) // 2]]) + "\n")
    with pytest.raises(KakashiError, match=r"cut_row\.bvh.*channel values"):
        read_motion(cut_row, 30)
    no_motion = tmp_path / "no_motion.bvh"
    no_motion.write_text("\n".join(lines[:40]) + "\n")
    with pytest.raises(KakashiError, match=r"no_motion\.bvh.*MOTION"):
        read_motion(no_motion, 30)


def test_tang_json_matches_its_joint_array_and_gives_the_audio_offset() -> None:
    raw = shared_file(f"{TANG}/raw_json_examples/DANCE_C_2_skeletons.json")
    motion = read_motion(raw, 30)
    _assert_canonical(motion, round(1890 / 25 * 30))
    assert motion.meta["audio_offset_s"] == pytest.approx(156 / 25)  # config start_position
    assert motion.meta["format"] == "tang2018_json" and motion.meta["units"] == "cm"
    assert _knees_forward(motion) > 0.8
    joints = read_motion(shared_file(f"{TANG}/joints/DANCE_C_2.npy"), 30, "tang23", 25)
    np.testing.assert_allclose(joints.pose, motion.pose, atol=1e-4)
    np.testing.assert_allclose(joints.root, motion.root, atol=1e-4)
    # The dataset's root height moves more than the body allows; after the fix the lowest
    # foot point stays near one floor at y = 0.
    assert 0 < motion.meta["root_height_scale"] < 1
    ankles = (motion.pose + motion.root[:, None])[:, [_J["left_ankle"], _J["right_ankle"]], 1]
    assert -0.05 < np.percentile(ankles.min(1), 5) < 0.25


@pytest.mark.parametrize("name", ["DANCE_W_1", "DANCE_R_2", "DANCE_T_5", "DANCE_C_4"])
def test_tang_joint_arrays_each_style(name: str) -> None:
    source = shared_file(f"{TANG}/joints/{name}.npy")
    frames = len(np.load(source, mmap_mode="r"))
    motion = read_motion(source, 30, "tang23", 25)
    _assert_canonical(motion, round(frames / 25 * 30))
    assert _knees_forward(motion) > 0.7  # with left/right swapped it would be under 0.3


def test_orientation_units_and_labels_are_found_in_the_data(tmp_path: Path) -> None:
    """A rotated, z-up, cm, label-swapped h36m17 copy of a motion reads back as itself."""
    reference = read_motion(shared_file(BANDAI_WALK), 30)
    world = (reference.pose + reference.root[:, None]).astype(np.float64)
    angle = np.radians(130)
    turn = np.array(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    z_up = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # y -> z
    disguised = world @ turn.T @ z_up.T * 100.0  # facing 130 degrees away, z up, in cm
    disguised = disguised[:, list(skeleton.MIRROR_PERMUTATION)]  # left labelled right
    path = tmp_path / "disguised.npy"
    np.save(path, disguised.astype(np.float32))
    motion = read_motion(path, 30, "h36m17", 30)
    assert motion.meta["up_axis"] == "+z" and motion.meta["units"] == "cm"
    assert motion.meta["left_right_swapped"] is True
    np.testing.assert_allclose(motion.pose, reference.pose, atol=2e-3)
    np.testing.assert_allclose(motion.root, reference.root, atol=2e-3)


def _coco_from(motion: Dance) -> np.ndarray:
    """COCO-17 keypoints (cm) from a canonical motion: limbs exact, face points near the head."""
    world = (motion.pose + motion.root[:, None]) * 100.0
    out = np.zeros((len(world), 17, 3))
    for index, name in enumerate(COCO17):
        if name in _J:
            out[:, index] = world[:, _J[name]]
    nose, head = world[:, _J["neck"]], world[:, _J["head"]]
    out[:, 0] = nose
    for index, side in ((1, 3.0), (2, -3.0), (3, 7.0), (4, -7.0)):
        out[:, index] = 0.5 * (nose + head) + np.array([side, 0.0, 0.0])
    return out


def test_aist_keypoints3d_pickle(tmp_path: Path) -> None:
    reference = read_motion(shared_file(BANDAI_WALK), 60)
    keypoints = _coco_from(reference)
    path = tmp_path / "gWA_sFM_cAll_d27_mWA0_ch01.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"keypoints3d": keypoints + 1.0, "keypoints3d_optim": keypoints}, handle)
    motion = read_motion(path, 30)  # AIST++ is 60 fps
    _assert_canonical(motion, round(len(keypoints) / 60 * 30))
    assert motion.meta["key"] == "keypoints3d_optim" and motion.meta["units"] == "cm"
    limbs = [_J[n] for n in ("left_knee", "right_ankle", "left_elbow", "right_wrist")]
    expected = reference.pose[::2][: len(motion.pose)]
    np.testing.assert_allclose(motion.pose[:, limbs], expected[:, limbs], atol=0.03)


def test_aist_smpl_motion_pickle(tmp_path: Path) -> None:
    """AIST++ SMPL parameters: a knees-bent dancer turned to face +x, travelling along +x."""
    frames = 240  # 4 s at AIST++'s 60 fps
    poses = np.zeros((frames, 24, 3))
    poses[:, 0, 1] = np.radians(90)  # global orient: turned about y to face +x
    for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):  # hips flexed, knees bent, feet flat
        poses[:, hip, 0], poses[:, knee, 0], poses[:, ankle, 0] = -0.6, 1.2, -0.6
    poses[:, 18, 2] = np.linspace(0, 1.0, frames)  # the left elbow moves
    scaling = 93.8
    trans = np.zeros((frames, 3))
    trans[:, 0] = np.linspace(0, 150.0, frames)  # 1.5 m forward, in AIST++'s scaled units
    trans[:, 1] = 80.0
    path = tmp_path / "gBR_sBM_cAll_d04_mBR0_ch01.pkl"
    with open(path, "wb") as handle:
        pickle.dump(
            {
                "smpl_poses": poses.reshape(frames, 72).astype(np.float32),
                "smpl_scaling": np.array([scaling]),
                "smpl_trans": trans,
                "smpl_loss": 0.1,
            },
            handle,
        )
    motion = read_motion(path, 30)
    _assert_canonical(motion, 120)
    assert motion.meta["key"] == "smpl_poses" and motion.meta["units"] == "m"
    assert motion.meta["initial_heading_deg"] == pytest.approx(90, abs=5)
    travel = motion.root[-1] - motion.root[0]
    assert travel[2] == pytest.approx(150.0 / scaling * 238 / 239, abs=0.005)  # now along +z
    assert abs(travel[0]) < 0.05
    assert _knees_forward(motion) > 0.95
    # The template's thigh (0.39 m) and the elbow moving without stretching the arm.
    assert motion.meta["bone_lengths_m"][4] == pytest.approx(0.388, abs=0.005)

    broken = tmp_path / "broken.pkl"
    with open(broken, "wb") as handle:
        pickle.dump({"smpl_poses": np.zeros((10, 69)), "smpl_trans": np.zeros((10, 3))}, handle)
    with pytest.raises(KakashiError, match=r"broken\.pkl.*\(frames, 72\)"):
        read_motion(broken, 30)


def test_bad_pickles_and_arrays_fail_clearly(tmp_path: Path) -> None:
    other = tmp_path / "other.pkl"
    with open(other, "wb") as handle:
        pickle.dump({"poses": np.zeros((10, 3))}, handle)
    with pytest.raises(KakashiError, match=r"other\.pkl.*keypoints3d"):
        read_motion(other, 30)
    flat = tmp_path / "flat.npy"
    np.save(flat, np.zeros((50, 17), dtype=np.float32))
    with pytest.raises(KakashiError, match=r"flat\.npy.*\(frames, joints, 3\)"):
        read_motion(flat, 30, "h36m17", 30)
    wrong = tmp_path / "wrong_layout.npy"
    np.save(wrong, np.zeros((50, 17, 3), dtype=np.float32))
    with pytest.raises(KakashiError, match=r"wrong_layout\.npy.*tang23 has 23"):
        read_motion(wrong, 30, "tang23", 25)
    garbage = tmp_path / "garbage.pkl"
    garbage.write_bytes(b"not a pickle at all")
    with pytest.raises(KakashiError, match=r"garbage\.pkl"):
        read_motion(garbage, 30)


def test_prepare_motion_writes_pose_and_the_matching_music(tmp_path: Path) -> None:
    raw = shared_file(f"{TANG}/raw_json_examples/DANCE_C_2_skeletons.json")
    song = shared_file(f"{TANG}/audio/DANCE_C_2.mp3")
    sequence = prepare_motion(
        raw, song, tmp_path / "pose.npz", tmp_path / "clip.wav", fps=30, start=2.0, end=6.0
    )
    assert len(sequence) == 120
    loaded = Dance.load(tmp_path / "pose.npz")
    assert loaded.pose.shape == (120, 17, 3) and loaded.meta["root_measured"] is True
    assert loaded.meta["audio_offset_s"] == pytest.approx(6.24)  # from config.json
    samples, rate = soundfile.read(tmp_path / "clip.wav")
    assert rate == 44100 and len(samples) == 4 * 44100
    assert np.sqrt(np.mean(samples**2)) > 0.01  # real music, not silence


def test_audio_shorter_than_the_motion_is_an_error(tmp_path: Path) -> None:
    from kakashi.features import load_audio

    source = shared_file(f"{TANG}/joints/DANCE_W_24.npy")  # 38.8 s of waltz
    song = load_audio(shared_file(f"{TANG}/audio/DANCE_W_24.mp3"), 22050)
    short = tmp_path / "short.wav"
    soundfile.write(short, song[: 10 * 22050], 22050)  # only its first 10 s
    with pytest.raises(MediaError, match=r"short\.wav is too short for motion .*DANCE_W_24"):
        prepare_motion(
            source, short, tmp_path / "p.npz", tmp_path / "a.wav", fps=30, skeleton="tang23",
            source_fps=25, audio_offset_s=0.0,
        )  # fmt: skip
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.slow
def test_workflow_turns_two_m2d_rows_into_shards(tmp_path: Path) -> None:
    """A JSON sequence (offset from its config.json) and a joint array, through snakemake."""
    data = shared_file(TANG)
    raw = tmp_path / "DANCE_C_2"
    raw.mkdir()  # the dataset's own folder layout: skeletons.json + config.json
    for kind in ("skeletons", "config"):
        shutil.copyfile(data / f"raw_json_examples/DANCE_C_2_{kind}.json", raw / f"{kind}.json")
    sheet = write_sheet(
        tmp_path / "sources.tsv",
        [
            {"id": "m2d-c2", "source": raw, "audio": data / "audio/DANCE_C_2.mp3",
             "audio_offset_s": "", "fps": "", "skeleton": "", "end": 5, "split": "train"},
            {"id": "m2d-w24", "source": data / "joints/DANCE_W_24.npy",
             "audio": data / "audio/DANCE_W_24.mp3", "audio_offset_s": 0, "fps": 25,
             "skeleton": "tang23", "end": 4, "split": "val", "style": "Waltz"},
        ],
    )  # fmt: skip
    run_snakemake(tmp_path, "--cores", "2", DEMO_DATA_TARGET, config={"sources": sheet})
    # The sheet's style reaches the shard (lower case); a row without one has none.
    assert read_metadata(tmp_path / "results/shards/split=val/m2d-w24.parquet")["style"] == "waltz"
    assert "style" not in read_metadata(tmp_path / "results/shards/split=train/m2d-c2.parquet")
    assert "waltz" in (tmp_path / DEMO_DATA_TARGET).read_text()
    for seq, split, seconds in (("m2d-c2", "train", 5), ("m2d-w24", "val", 4)):
        shard = tmp_path / f"results/shards/split={split}/{seq}.parquet"
        table = pq.read_table(shard)
        assert table.num_rows == seconds * 30
        pose = np.stack(table.column("pose").to_numpy(zero_copy_only=False)).reshape(-1, 17, 3)
        root = np.stack(table.column("root").to_numpy(zero_copy_only=False))
        lengths = skeleton.bone_lengths(pose)
        assert (lengths.max(0) - lengths.min(0)).max() < 0.01
        assert 0.5 < np.median(root[:, 1]) < 1.2  # a measured pelvis height, metres
    meta = Dance.load(tmp_path / "results/motion/m2d-c2.npz").meta
    assert meta["audio_offset_s"] == pytest.approx(6.24)
