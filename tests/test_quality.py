"""Known answers for the motion-quality metrics (docs/evaluation.md, "Motion quality").

Real motion capture where possible (the shared test data; skipped with the reason when it
is absent): a still pose, noise, a real dance against itself, a dragged planted foot.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import shared_file
from kakashi import skeleton
from kakashi.evaluate import quality
from kakashi.evaluate.harness import EvalDance, features_of, score_set
from kakashi.evaluate.quality import (
    add_ratios,
    foot_contact,
    frozen_frames,
    joint_speed,
    longest_run,
    mean_jerk,
    row_quality,
    travel_distance,
)

FPS = 30.0
BANDAI_DANCE = "mocap_bandai_namco/dataset-1_dance-short_normal_001.bvh"
CMU_131 = "mocap_cmu_131_bvh11/131_01.bvh"
M2D_CHACHA = "m2d_tang2018/joints/DANCE_C_2.npy"
LEFT_ANKLE = skeleton.INDEX["left_ankle"]


def _read(relative: str, *args) -> np.ndarray:
    from kakashi.motion import read_motion

    motion = read_motion(shared_file(relative), int(FPS), *args)
    return (motion.pose + motion.root[:, None]).astype(np.float64)


@pytest.fixture(scope="module")
def bandai() -> np.ndarray:
    """Bandai Namco's short dance, 63 s at 30 fps (it opens with ~9 s standing still)."""
    return _read(BANDAI_DANCE)


@pytest.fixture(scope="module")
def chacha() -> np.ndarray:
    """Dance with Melody's DANCE_C_2 (cha-cha), 76 s of motion capture at 30 fps."""
    return _read(M2D_CHACHA, "tang23", 25)


def rows_of(**sets: list[np.ndarray]) -> list[dict]:
    """Rows named like the harness's, raw values and ratios, dances at ``FPS``."""
    rows = [
        {"name": name, **row_quality((w, FPS) for w in worlds)} for name, worlds in sets.items()
    ]
    add_ratios(rows)
    return rows


# --- a still pose -----------------------------------------------------------------------


def test_a_still_real_pose_is_frozen_for_its_whole_length(chacha) -> None:
    still = np.repeat(chacha[1000:1001], 300, axis=0)  # 10 s holding one real pose
    gt, row = rows_of(ground_truth=[chacha], still=[still])
    assert row["speed_m_s"] == 0.0 and row["liveliness"] == 0.0
    assert row["freeze_max_s"] == 10.0 and row["freeze_share"] == 1.0
    assert row["jerk_m_s3"] == 0.0 and row["jitter"] == 0.0
    assert row["skate_rate"] == 0.0 and row["skate_ratio"] == 0.0
    # Its ankles never move: they are at the floor (its own percentile) the whole time.
    assert row["foot_contact_share"] == 1.0
    assert row["travel_m_min"] == 0.0 and row["travel_ratio"] == 0.0
    # The real dance itself holds still for about a second at most.
    assert 0.5 < gt["freeze_max_s"] < 1.5 and gt["freeze_share"] < 0.05


def test_a_one_frame_twitch_does_not_break_a_freeze(chacha) -> None:
    still = np.repeat(chacha[1000:1001], 90, axis=0)
    still[45, skeleton.INDEX["right_wrist"]] += [0.0, 0.2, 0.0]  # wrist jumps 20 cm for a frame
    speed = joint_speed(still, FPS)
    # Central differences put the spike on the frames either side: 3 m/s / 16 joints.
    assert speed[44] == speed[46] == pytest.approx(0.2 * FPS / 2 / 16)
    assert speed[44] > quality.FREEZE_SPEED_M_S
    assert frozen_frames(still, FPS).all()  # the running median (7 frames) removes it
    assert row_quality([(still, FPS)])["freeze_max_s"] == 3.0


def test_a_held_pose_is_measured_whole_even_across_clip_edges(chacha) -> None:
    dance = chacha[:1200]
    held = np.concatenate([dance[:400], np.repeat(dance[400:401], 90, axis=0), dance[401:]])
    assert 0.5 < row_quality([(dance, FPS)])["freeze_max_s"] < 1.5
    reference = features_of([EvalDance("ref", chacha, FPS)], 10.0, "reference")
    # 2-s clips cut the 3-s hold at 14 s; the quality metrics see the whole dance.
    row = score_set("held", "model", [EvalDance("held", held, FPS)], reference, clip_s=2.0)
    assert row["freeze_max_s"] == pytest.approx(3.0, abs=0.1)


# --- liveliness and jitter --------------------------------------------------------------


def test_a_real_dance_against_itself_scores_exactly_one(bandai, chacha) -> None:
    gt, same = rows_of(ground_truth=[bandai, chacha], same=[bandai, chacha])
    for key in quality.RATIO_KEYS:
        assert same[key] == 1.0 == gt[key], key
    # Raw values of real motion capture, time-weighted over the two dances.
    assert 0.5 < gt["speed_m_s"] < 0.7  # m/s, root-centred joints
    assert 100 < gt["jerk_m_s3"] < 200
    assert 15 < gt["travel_m_min"] < 45


def test_the_same_frames_at_half_the_frame_rate_are_half_as_lively(chacha) -> None:
    gt = row_quality([(chacha, FPS)])
    slow = row_quality([(chacha, FPS / 2)])  # the same frames, played at 15 fps
    slow.update(quality.ratios(slow, gt))
    assert slow["liveliness"] == pytest.approx(0.5, rel=1e-12)
    assert slow["jitter"] == pytest.approx(0.125, rel=1e-12)  # jerk goes with fps^3
    assert slow["freeze_share"] > gt["freeze_share"]


def test_sliding_the_whole_body_is_travel_not_liveliness(chacha) -> None:
    slid = chacha + np.array([0.3, 0.0, 0.4]) * (np.arange(len(chacha)) / FPS)[:, None, None]
    gt, row = rows_of(ground_truth=[chacha], slid=[slid])
    assert row["liveliness"] == pytest.approx(1.0, abs=1e-9)  # root-centred: unchanged
    assert row["jitter"] == pytest.approx(1.0, abs=1e-6)  # constant velocity has no jerk
    # The drift (0.5 m/s) lengthens the root's path: it travels further than the dancer.
    assert row["travel_ratio"] > 1.1 and gt["travel_ratio"] == 1.0


def test_jerk_of_a_cubic_is_its_constant_third_derivative() -> None:
    t = np.arange(60) / FPS
    world = np.zeros((60, 17, 3))
    world[:, :, 0] = (4.0 * t**3 / 6)[:, None]  # x''' = 4 m/s^3 for every joint
    assert mean_jerk(world, FPS) == pytest.approx(4.0, rel=1e-6)


def test_noise_is_jittery_far_beyond_a_real_dance(bandai, chacha) -> None:
    sigma = 0.01  # 1 cm of Gaussian noise per coordinate around a real pose
    noise = np.repeat(chacha[1000:1001], 3000, axis=0)
    noise += np.random.default_rng(0).normal(0.0, sigma, noise.shape)
    # Third difference of white noise: std sqrt(1 + 9 + 9 + 1) sigma per coordinate; the
    # mean norm of a 3-D Gaussian is 2 sqrt(2 / pi) times its std.
    expected = math.sqrt(20) * sigma * 2 * math.sqrt(2 / math.pi) * FPS**3
    assert mean_jerk(noise, FPS) == pytest.approx(expected, rel=0.02)
    _, row = rows_of(ground_truth=[bandai, chacha], noise=[noise])
    assert row["jitter"] > 8.0
    # A little noise on a real dance: as lively, but far more jittery.
    noisy = chacha + np.random.default_rng(1).normal(0.0, 0.002, chacha.shape)
    _, row = rows_of(ground_truth=[chacha], noisy=[noisy])
    assert 1.0 < row["liveliness"] < 1.1
    assert row["jitter"] > 2.0


# --- foot skating -----------------------------------------------------------------------


@pytest.mark.parametrize("relative, ceiling", [(BANDAI_DANCE, 0.06), (CMU_131, 0.08)])
def test_real_motion_capture_skates_little(relative, ceiling) -> None:
    row = row_quality([(_read(relative), FPS)])
    assert 0.0 < row["skate_rate"] < ceiling
    assert row["foot_contact_share"] > 0.5  # the feet are on the floor most of the time


def test_dragging_a_planted_foot_makes_it_skate(bandai) -> None:
    contact, skating = foot_contact(bandai, FPS)
    ankle = bandai[:, LEFT_ANKLE][:, [0, 2]]
    horizontal = np.linalg.norm(np.gradient(ankle, axis=0), axis=-1) * FPS
    planted = contact[:, 0] & (horizontal < 0.1) & ~skating.any(axis=1)
    # The longest stretch with the left foot planted and no foot skating.
    edges = np.diff(np.concatenate([[0], planted.astype(int), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    longest = int(np.argmax(stops - starts))
    start, frames = int(starts[longest]), int((stops - starts)[longest])
    assert frames == longest_run(planted) >= 30
    # Slide the whole body along x at 1 m/s during that stretch only (continuous position).
    shift = np.clip(np.arange(len(bandai)) - start, 0, frames) / FPS
    dragged = bandai.copy()
    dragged[:, :, 0] += shift[:, None]
    before = quality.skate_rate(bandai, FPS)
    after = quality.skate_rate(dragged, FPS)
    # Every frame inside the stretch now skates; its two edge frames see half the speed.
    assert (frames - 1) / len(bandai) <= after - before <= (frames + 1) / len(bandai)
    # Sliding the whole dance at 1 m/s: nearly every frame with a foot on the floor skates.
    slid = bandai.copy()
    slid[:, :, 0] += np.arange(len(bandai))[:, None] / FPS
    row = row_quality([(slid, FPS)])
    assert row["skate_rate"] > 0.9 * row["foot_contact_share"] > 10 * before


def test_a_floating_foot_is_not_in_contact() -> None:
    world = np.zeros((60, 17, 3))
    world[:, :, 1] = np.linspace(0.0, 1.0, 60)[:, None]  # rising at 0.5 m/s, over the band
    world[:, :, 0] = np.arange(60)[:, None] / FPS  # and moving at 1 m/s
    contact, skating = foot_contact(world, FPS)
    assert not contact.any() and not skating.any()  # moving vertically: never in contact


# --- travel -----------------------------------------------------------------------------


def test_travel_at_constant_speed_and_ratio_without_a_measured_root(chacha) -> None:
    pose = np.repeat(chacha[1000:1001], 301, axis=0)
    walking = pose + np.array([0.3, 0.0, 0.4]) * (np.arange(301) / FPS)[:, None, None]
    assert travel_distance(walking, FPS) == pytest.approx(5.0)  # 10 s at 0.5 m/s
    assert row_quality([(walking, FPS)])["travel_m_min"] == pytest.approx(30.0)
    # Video without a measured root: ground truth does not travel, so no travel ratio.
    centred = chacha - chacha[:, :1] + [0.0, 1.0, 0.0]
    gt, row = rows_of(ground_truth=[centred], walking=[walking])
    assert gt["travel_m_min"] == 0.0
    assert gt["travel_ratio"] is None and row["travel_ratio"] is None
    assert row["travel_m_min"] == pytest.approx(30.0)
    assert gt["liveliness"] == 1.0  # the other ratios are still defined


def test_without_a_ground_truth_row_every_ratio_is_none(chacha) -> None:
    rows = [{"name": "model", **row_quality([(chacha, FPS)])}]
    assert add_ratios(rows) is None
    assert all(rows[0][key] is None for key in quality.RATIO_KEYS)
    assert rows[0]["speed_m_s"] > 0 and rows[0]["jerk_m_s3"] > 0


def test_short_dances_are_skipped_or_partly_scored() -> None:
    assert row_quality([(np.zeros((1, 17, 3)), FPS)]) == dict.fromkeys(quality.RAW_KEYS)
    three = row_quality([(np.zeros((3, 17, 3)), FPS)])
    assert three["jerk_m_s3"] is None and three["speed_m_s"] == 0.0
