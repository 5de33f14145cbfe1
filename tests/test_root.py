"""Root motion from video (kakashi.pose.root): known answers on real motion capture filmed
by a virtual camera, and the pose stage on real videos.

The bounds are the figures studies/root.py measured (docs/evaluation.md, "Root from video")
plus a margin; the video figures are in docs/contracts.md.
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import SHARED, shared_file
from kakashi import settings, skeleton
from kakashi.dance import Dance
from kakashi.errors import PoseError
from kakashi.evaluate.contact import physical_foot_contact
from kakashi.evaluate.quality import skate_rate
from kakashi.features import AudioFeatures
from kakashi.pose import estimate_pose
from kakashi.pose import root as root_module
from kakashi.shards import build_shard
from known_answers import root as virtual_camera

SMOOTHING = settings.defaults("pose.smoothing")


@pytest.fixture(scope="module")
def mocap() -> list[tuple[str, Dance]]:
    """Two Dance-with-Melody dances and the three CMU subject-131 takes, at 30 fps."""
    for _, path, _, _ in virtual_camera.SEQUENCES:
        shared_file(path)  # skips, saying so, without the shared data
    return virtual_camera.load_mocap(SHARED)


@pytest.fixture(scope="module")
def answers(mocap) -> dict:
    return virtual_camera.known_answers(mocap)["mean"]


# --- known answers: real mocap through a virtual camera ---------------------------------


def test_exact_keypoints_give_the_real_root(answers) -> None:
    # The equations are exact for a pinhole camera: only float rounding is left.
    assert max(answers["exact keypoints"].values()) < 1e-3  # cm


def test_root_error_with_detector_noise_stays_as_measured(answers) -> None:
    # Measured 2026-11-26 (studies/root.py): 3 px noise 0.95 / 0.40 / 6.67 cm (sideways,
    # vertical, depth); plus the videos' 3-D pose noise 1.14 / 0.49 / 7.82; filtered
    # 0.64 / 0.29 / 4.24. Bounds: measured + ~50 %.
    noisy = answers["3 px keypoint noise"]
    assert noisy["sideways_cm"] < 1.5 and noisy["vertical_cm"] < 0.6 and noisy["depth_cm"] < 10
    both = answers["3 px + video 3-D pose noise"]
    assert both["sideways_cm"] < 1.7 and both["vertical_cm"] < 0.75 and both["depth_cm"] < 12
    filtered = answers["3 px + 3-D noise, filtered"]
    assert filtered["sideways_cm"] < 1.0 and filtered["vertical_cm"] < 0.45
    assert filtered["depth_cm"] < 6.5 and filtered["depth_travel_cm"] < 6
    # The filter (pose.smoothing) removes at least a third of every axis's error.
    for key in ("sideways_cm", "vertical_cm", "depth_cm"):
        assert filtered[key] < 0.67 * both[key], key


def test_a_wrong_field_of_view_scales_depth_only(answers, mocap) -> None:
    wrong = answers["true FOV 70 deg, 60 assumed"]
    # Sideways and vertical are measured against the body: under 0.5 cm off.
    assert wrong["sideways_cm"] < 0.5 and wrong["vertical_cm"] < 0.5
    # Depth scales with the focal length: tan(35 deg) / tan(30 deg) - 1 = 21 % too far.
    ratio = math.tan(math.radians(35)) / math.tan(math.radians(30)) - 1
    distances = [
        np.abs(d.root[:, 2] - virtual_camera.camera_position(d.world())[2]).mean() for _, d in mocap
    ]
    frames = [len(d) for _, d in mocap]
    mean_distance_cm = 100 * np.average(distances, weights=frames)
    assert wrong["depth_cm"] == pytest.approx(ratio * mean_distance_cm, rel=0.05)


def test_floor_is_at_zero_on_mocap_with_a_real_floor(mocap) -> None:
    """CMU's floor is y = 0: the estimated root, put on the floor, has the real height."""
    for name, dance in mocap:
        if not name.startswith("cmu/"):
            continue
        world = dance.world().astype(np.float64)
        camera = virtual_camera.camera_position(world)
        points, pixels = virtual_camera.film(world, camera)
        estimate = Dance(dance.pose, virtual_camera.estimate(points, pixels), 30.0, meta={})
        root_module.place_on_floor(estimate, name)
        # Its lowest ankle stands 8 cm up (ANKLE_HEIGHT_M) where CMU's stands 8.9 cm up.
        height_error = np.abs(estimate.root[:, 1] - dance.root[:, 1]).mean()
        assert height_error < 0.015, name
        assert estimate.meta["root"]["floor_drift_m"] < 0.05  # measured 0.004-0.023 m


def test_moving_camera_is_warned_about(mocap, caplog) -> None:
    dance = next(d for n, d in mocap if n == "cmu/131_03")
    world = dance.world().astype(np.float64)
    camera = virtual_camera.camera_position(world)
    # The camera rises 0.6 m over the take (a crane, or a phone lifted): the dancer seems
    # to sink, floor and all.
    rising = camera + np.linspace(0, 0.6, len(world))[:, None, None] * np.array([0, 1, 0])
    for cameras, warned in ((camera, False), (rising, True)):
        points, pixels = virtual_camera.film(world, cameras)
        estimate = Dance(dance.pose, virtual_camera.estimate(points, pixels), 30.0, meta={})
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="kakashi.pose.root"):
            root_module.place_on_floor(estimate, "crane-shot")
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert bool(messages) is warned
        assert estimate.meta["root"].get("camera_moving_warning", False) is warned
    assert "crane-shot: the floor under the dancer drifts by" in messages[0]
    assert "camera probably moves" in messages[0]


def test_unsolvable_frames_are_filled_and_counted() -> None:
    frames = 6
    pose = np.zeros((frames, 17, 3))
    pose[:, :, 1] = np.linspace(-0.9, 0.9, 17)  # a vertical line of joints, 1.8 m
    camera = pose + np.array([0.0, 0.0, 3.0])
    focal = root_module.focal_length_px(640, 480, 60)
    pixels = focal * camera[..., :2] / camera[..., 2:] + np.array([320, 240])
    weight = np.ones((frames, 17))
    weight[2] = 0  # no joint seen: no solve
    translation = root_module.solve_camera_translation(pose, pixels, weight, focal, (320, 240))
    assert np.isnan(translation[2]).all()
    np.testing.assert_allclose(translation[[0, 1, 3, 4, 5]], [[0, 0, 3]] * 5, atol=1e-9)
    found = np.ones(frames, dtype=bool)
    root, meta = root_module.camera_root(pose, pixels, weight, found, (640, 480), 60)
    assert meta["frames_unsolved"] == 1
    np.testing.assert_allclose(root, [[0, 0, -3]] * frames, atol=1e-6)  # interpolated
    with pytest.raises(PoseError, match="pose.root_fov_deg is 180; it must be between 0"):
        root_module.focal_length_px(640, 480, 180)


# --- the pose stage on real videos -------------------------------------------------------


def _standing_spread_cm(dance: Dance) -> float:
    """Spread (90th - 10th percentile, cm) of the lower ankle's height in the frames where
    it stands still (horizontal speed under 0.2 m/s): how steadily it rests on the floor."""
    world = dance.world()
    ankles = world[:, [skeleton.INDEX["left_ankle"], skeleton.INDEX["right_ankle"]]]
    lower = ankles[np.arange(len(world)), ankles[..., 1].argmin(axis=1)]
    speed = np.linalg.norm(np.gradient(lower[:, [0, 2]], axis=0), axis=-1) * dance.fps
    heights = lower[speed < 0.2, 1]
    return float(100 * (np.percentile(heights, 90) - np.percentile(heights, 10)))


def _stage(clip, root: str = "estimate") -> Dance:
    return estimate_pose(clip, clip.name, "mediapipe", {"workers": 1}, 1, "keep", 0.5,
                         SMOOTHING, root, settings.default("pose.root_fov_deg"))  # fmt: skip


@pytest.fixture(scope="module")
def demo_root(demo_clip) -> Dance:
    return _stage(demo_clip[0])


@pytest.fixture(scope="module")
def dance_video_root(tmp_path_factory) -> Dance:
    """The qengineering dancer (9.5 s, travels about 0.6 m sideways), cut to 30 fps."""
    from kakashi.cut import cut_video

    video = shared_file("video_qengineering_dance/Dance.mp4")
    folder = tmp_path_factory.mktemp("qengineering")
    clip = cut_video(video, folder / "clip.mp4", folder / "clip.wav", 0, 9.5, fps=30).video
    return _stage(clip)


def test_demo_root_is_measured_finite_and_on_the_floor(demo_root, demo_clip) -> None:
    dance = demo_root
    assert dance.meta["root_measured"] is True and dance.meta["root_source"] == "video"
    record = dance.meta["root"]
    assert record["fov_deg"] == settings.default("pose.root_fov_deg")
    assert record["image_size"] == [518, 496] and record["frames_unsolved"] == 0
    assert np.isfinite(dance.root).all()
    # The lowest ankle's 5th percentile stands ANKLE_HEIGHT_M above y = 0.
    lowest = root_module.lowest_ankle(dance.world())
    assert np.percentile(lowest, 5) == pytest.approx(root_module.ANKLE_HEIGHT_M, abs=1e-4)
    # The fourMs dancer dances on the spot, pelvis ~0.85 m up, 2 m from the camera.
    assert 0.7 < np.median(dance.root[:, 1]) < 1.0
    assert np.ptp(dance.root[:, 0]) < 0.15 and -3.0 < np.median(dance.root[:, 2]) < -1.5
    # Measured 2026-11-26: the standing ankle's height spreads 2.6 cm; floor drift 1.7 cm.
    assert _standing_spread_cm(dance) < 4.0
    assert record["floor_drift_m"] < 0.05 and "camera_moving_warning" not in record

    # The root step leaves the pose alone: the same pose as without it, same bone lengths.
    unrooted = _stage(demo_clip[0], root="none")
    assert unrooted.meta["root_measured"] is False and "root" not in unrooted.meta
    np.testing.assert_array_equal(unrooted.root, 0.0)
    np.testing.assert_array_equal(unrooted.pose, dance.pose)
    np.testing.assert_allclose(
        skeleton.bone_lengths(dance.world()), skeleton.bone_lengths(dance.pose), atol=1e-5
    )


def test_travelling_dancer_root_on_the_floor(dance_video_root) -> None:
    dance = dance_video_root
    assert np.isfinite(dance.root).all() and dance.meta["root"]["frames_unsolved"] == 0
    # She steps about 0.6 m sideways and 0.5 m in depth (measured 0.63 / 0.50).
    assert 0.4 < np.ptp(dance.root[:, 0]) < 0.9 and np.ptp(dance.root[:, 2]) < 0.8
    lowest = root_module.lowest_ankle(dance.world())
    assert np.percentile(lowest, 5) == pytest.approx(root_module.ANKLE_HEIGHT_M, abs=1e-4)
    # Measured: 8.6 cm spread of the still ankle, 9 cm floor drift (static camera).
    assert _standing_spread_cm(dance) < 12
    assert dance.meta["root"]["floor_drift_m"] < root_module.FLOOR_DRIFT_WARN_M


def test_foot_metrics_of_video_ground_truth_are_finite_like_mocap(dance_video_root, mocap) -> None:
    """PFC needs a root that accelerates; video roots now do, like mocap's (same order)."""
    video = dance_video_root.world()
    video_pfc = physical_foot_contact(video, 30.0)
    video_skate = skate_rate(video, 30.0)
    flat = dance_video_root.pose  # the same dance with the root at zeros, as before
    assert physical_foot_contact(flat, 30.0) == 0.0
    mocap_pfc = [physical_foot_contact(d.world()[:300], 30.0) for _, d in mocap]
    mocap_skate = [skate_rate(d.world(), 30.0) for _, d in mocap]
    # Measured 2026-11-26: video PFC 2.36, skate 0.109; mocap PFC 0.28-2.12 (first 10 s
    # of each), skate 0.016-0.256.
    assert np.isfinite(video_pfc) and 0.5 * min(mocap_pfc) < video_pfc < 2 * max(mocap_pfc)
    assert 0.5 * min(mocap_skate) < video_skate < 2 * max(mocap_skate)


def test_shard_records_where_the_root_came_from(demo_root, tmp_path) -> None:
    demo_root.save(tmp_path / "pose.npz")
    frames = len(demo_root)
    values = np.zeros((frames, 2), np.float32)
    AudioFeatures(values, ["onset_strength", "beat"], 30.0, frames / 30, 512).save(
        tmp_path / "f.npz"
    )
    source = {"source_kind": "video", "source_uri": "clip.mp4", "config_hash": "x"}
    out = tmp_path / "split=train" / "s.parquet"

    def shard_meta(pose_file: str) -> dict:
        build_shard(tmp_path / pose_file, tmp_path / "f.npz", "s", "train", out, 2, source)
        return {k.decode(): json.loads(v) for k, v in pq.read_schema(out).metadata.items()}

    meta = shard_meta("pose.npz")
    assert meta["root_measured"] is True and meta["root_source"] == "video"
    assert meta["root_estimate"] == demo_root.meta["root"]
    root = np.stack(pq.read_table(out)["root"].to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(root, demo_root.root)

    mocap = Dance(demo_root.pose, demo_root.root, 30.0, meta={"backend": "motion",
                                                              "root_measured": True})  # fmt: skip
    mocap.save(tmp_path / "motion.npz")
    meta = shard_meta("motion.npz")
    assert meta["root_source"] == "motion_capture" and "root_estimate" not in meta
    flat = Dance(demo_root.pose, np.zeros((frames, 3)), 30.0, meta={"root_measured": False})
    flat.save(tmp_path / "flat.npz")
    assert shard_meta("flat.npz")["root_source"] == "none"
