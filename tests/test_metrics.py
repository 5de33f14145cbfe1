"""Known answers for each metric (docs/evaluation.md), on constructed motions."""

from __future__ import annotations

import numpy as np
import pytest

from kakashi.evaluate.beats import SIGMA_S, beat_alignment, motion_beats
from kakashi.evaluate.contact import physical_foot_contact
from kakashi.evaluate.diversity import diversity, mean_pairwise_distance
from kakashi.evaluate.fid import fid
from kakashi.evaluate.geometric import NAMES, NUM_GEOMETRIC, geometric_features
from kakashi.evaluate.kinetic import kinetic_features

FPS = 30.0

# A person standing upright facing +z (left side at +x), arms hanging, metres, y up.
STANDING = np.array(
    [
        [0.0, 1.0, 0.0],  # 0 pelvis
        [-0.1, 1.0, 0.0],  # 1 right hip
        [-0.1, 0.55, 0.0],  # 2 right knee
        [-0.1, 0.1, 0.0],  # 3 right ankle
        [0.1, 1.0, 0.0],  # 4 left hip
        [0.1, 0.55, 0.0],  # 5 left knee
        [0.1, 0.1, 0.0],  # 6 left ankle
        [0.0, 1.25, 0.0],  # 7 spine
        [0.0, 1.5, 0.0],  # 8 thorax
        [0.0, 1.6, 0.05],  # 9 neck/nose
        [0.0, 1.75, 0.0],  # 10 head
        [0.2, 1.5, 0.0],  # 11 left shoulder
        [0.2, 1.22, 0.0],  # 12 left elbow
        [0.2, 0.97, 0.0],  # 13 left wrist
        [-0.2, 1.5, 0.0],  # 14 right shoulder
        [-0.2, 1.22, 0.0],  # 15 right elbow
        [-0.2, 0.97, 0.0],  # 16 right wrist
    ]
)


def still(frames: int = 60, pose: np.ndarray = STANDING) -> np.ndarray:
    return np.repeat(pose[None], frames, axis=0).copy()


# --- FID and diversity ------------------------------------------------------------------


def test_fid_of_a_set_against_itself_is_zero_and_grows_with_a_shift() -> None:
    real = np.random.default_rng(0).normal(size=(300, 6)) * [1, 2, 3, 0.5, 1, 4]
    assert fid(real, real) == pytest.approx(0.0, abs=1e-6)
    # Standardised with the real std, a shift of c std in every one of D features adds
    # D * c^2 to the distance (same covariance: the trace terms cancel).
    std = real.std(axis=0)
    values = [fid(real, real + c * std) for c in (0.25, 0.5, 1.0, 2.0)]
    for c, value in zip((0.25, 0.5, 1.0, 2.0), values, strict=True):
        assert value == pytest.approx(6 * c**2, rel=1e-6, abs=1e-6)
    assert values == sorted(values)


def test_std_floor_keeps_a_rare_feature_from_dominating() -> None:
    rng = np.random.default_rng(3)
    real = np.column_stack([rng.normal(size=200), np.r_[np.full(199, 0.0), 0.01]])
    generated = real.copy()
    generated[:, 1] = 0.05  # 5 % of frames where the reference shows it once
    raw = fid(real, generated)
    floored = fid(real, generated, std_floor=0.01)
    assert raw > 1000  # (0.05 / 0.0007)^2: one feature swamps the distance
    assert floored == pytest.approx((0.05 - 0.00005) ** 2 / 0.01**2, rel=0.01)


def test_fid_handles_fewer_clips_than_features() -> None:
    rng = np.random.default_rng(1)
    real, generated = rng.normal(size=(5, 51)), rng.normal(size=(3, 51))
    value = fid(real, generated)
    assert np.isfinite(value) and value > 0
    assert fid(real, real) == pytest.approx(0.0, abs=1e-3)


def test_diversity_of_identical_clips_is_zero_and_of_known_points_is_their_distance() -> None:
    real = np.random.default_rng(2).normal(size=(50, 4))
    same = np.repeat(real[:1], 10, axis=0)
    assert diversity(real, same) == 0.0
    # Three corners of a 3-4-5 triangle: distances 3, 4, 5, mean 4.
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])) == 4.0
    assert np.isnan(mean_pairwise_distance(real[:1]))


# --- kinetic features -------------------------------------------------------------------


@pytest.mark.parametrize("axis, component", [(0, 0), (2, 0), (1, 1)])
def test_kinetic_constant_speed_gives_v_squared_and_no_acceleration(axis, component) -> None:
    speed = 1.5  # m/s
    world = still(40)
    world[:, 16, axis] += speed * np.arange(40) / FPS  # right wrist glides
    features = kinetic_features(world, FPS).reshape(17, 3)
    assert features[16, component] == pytest.approx(speed**2)
    assert features[16, 1 - component] == pytest.approx(0.0, abs=1e-12)
    assert features[16, 2] == pytest.approx(0.0, abs=1e-9)
    assert np.abs(np.delete(features, 16, axis=0)).max() == 0.0


def test_kinetic_acceleration_is_the_magnitude_of_a_constant_acceleration() -> None:
    accel = 2.0  # m/s^2 along x, from rest
    t = np.arange(60) / FPS
    world = still(60)
    world[:, 0, 0] += 0.5 * accel * t**2
    assert kinetic_features(world, FPS).reshape(17, 3)[0, 2] == pytest.approx(accel)


# --- geometric features -----------------------------------------------------------------


def test_geometric_relations_flip_where_the_joint_relations_flip() -> None:
    standing = geometric_features(still(10), FPS)
    assert standing.shape == (NUM_GEOMETRIC,) == (32,)
    raised = STANDING.copy()
    raised[15] = [-0.22, 1.78, 0.0]  # right elbow above the shoulder
    raised[16] = [-0.24, 2.05, 0.0]  # right wrist above the head
    arm_up = geometric_features(still(10, raised), FPS)
    bent = STANDING.copy()
    bent[3] = [-0.1, 0.45, -0.4]  # right foot swung back: knee bent to ~104 degrees
    knee = geometric_features(still(10, bent), FPS)
    apart = STANDING.copy()
    apart[3, 0], apart[6, 0] = -0.2, 0.2  # feet 0.4 m apart > 2.1 hip widths
    feet = geometric_features(still(10, apart), FPS)

    def value(features: np.ndarray, name: str) -> float:
        return features[NAMES.index(name)]

    for name, changed in [
        ("rwrist_above_neck", arm_up),
        ("rarm_from_body", arm_up),
        ("rknee_bent", knee),
        ("feet_apart", feet),
    ]:
        assert value(standing, name) == 0.0, name
        assert value(changed, name) == 1.0, name
    # The left side did not move, so its twins stay false.
    assert value(arm_up, "lwrist_above_neck") == 0.0
    assert value(knee, "lknee_bent") == 0.0


def test_geometric_motion_relations_follow_their_names() -> None:
    world = still(31)
    world[:, 16, 0] -= 2.0 * np.arange(31) / FPS  # right wrist swings out to the right
    features = geometric_features(world, FPS)
    assert features[NAMES.index("rwrist_moves_from_root")] == 1.0
    assert features[NAMES.index("lwrist_moves_from_root")] == 0.0
    assert features[NAMES.index("always_false")] == 0.0  # AIST++ relation 9, see the module
    back = still(31)
    back[:, 16, 2] -= 2.0 * np.arange(31) / FPS  # right wrist moves backwards (-z) at 2 m/s
    assert geometric_features(back, FPS)[NAMES.index("rwrist_moves_back")] == 1.0
    front = STANDING.copy()
    front[3, 2] = 0.3  # right ankle 0.3 m in front of the left leg's plane
    assert geometric_features(still(5, front), FPS)[NAMES.index("rankle_before_lleg")] == 1.0
    assert geometric_features(still(5), FPS)[NAMES.index("rankle_before_lleg")] == 0.0


def test_geometric_speed_relation_counts_the_fraction_of_fast_frames() -> None:
    world = still(31)
    world[16:, 16, 0] += 2.0 * np.arange(15) / FPS  # wrist at 2 m/s > 2.5 HL/s (0.64) half the time
    assert geometric_features(world, FPS)[NAMES.index("rwrist_fast")] == pytest.approx(14 / 30)


# --- beat alignment ---------------------------------------------------------------------


def test_bas_is_one_on_beat_and_decays_with_drift() -> None:
    music = np.arange(0.5, 10, 0.5)
    assert beat_alignment(music, music) == 1.0
    scores = [beat_alignment(music, music + d) for d in (0.0, 0.025, 0.05, 0.1, 0.2)]
    assert scores[2] == pytest.approx(np.exp(-0.5))  # one sigma of drift
    assert scores == sorted(scores, reverse=True)
    assert scores[-1] < 1e-3
    assert beat_alignment(music, np.array([])) == 0.0
    assert np.isnan(beat_alignment(np.array([]), music))
    assert SIGMA_S == 0.05


def swaying(seconds: float, shift_s: float = 0.0) -> np.ndarray:
    """Every joint swings along x at 1 Hz: speed is zero at t = 0.25 + 0.5 k + shift."""
    t = np.arange(round(seconds * FPS)) / FPS
    world = still(len(t))
    world[:, :, 0] += 0.2 * np.sin(2 * np.pi * (t - shift_s))[:, None]
    return world


def test_bas_of_motion_with_speed_minima_on_the_music_beats() -> None:
    music = 0.25 + 0.5 * np.arange(1, 18)  # 120 BPM, away from the clip edges
    on_beat = beat_alignment(music, motion_beats(swaying(10), FPS))
    assert on_beat == pytest.approx(1.0, abs=1e-6)
    # Shifted by whole frames the minima stay on samples: d is exactly the shift.
    shifts = np.array([1, 2, 6]) / FPS
    drifting = [beat_alignment(music, motion_beats(swaying(10, s), FPS)) for s in shifts]
    assert drifting == pytest.approx(np.exp(-(shifts**2) / (2 * SIGMA_S**2)), abs=1e-6)
    assert on_beat > drifting[0] > drifting[1] > drifting[2]
    assert drifting[2] < 0.01


# --- physical foot contact --------------------------------------------------------------


def bobbing(frames: int = 90) -> np.ndarray:
    """The body rises and falls (root accelerates up and down) with the feet in place."""
    t = np.arange(frames) / FPS
    world = still(frames)
    world[:, [0, 1, 2, 4, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], 1] += (
        0.1 * np.sin(2 * np.pi * t)[:, None]
    )
    return world


def test_pfc_is_zero_for_a_floating_dancer_with_still_feet() -> None:
    assert physical_foot_contact(bobbing(), FPS) == 0.0
    assert physical_foot_contact(still(30), FPS) == 0.0  # no root acceleration at all


def test_pfc_grows_with_sliding_feet_as_the_product_of_their_speeds() -> None:
    t = np.arange(90) / FPS

    def sliding(speed: float) -> np.ndarray:
        world = bobbing()
        world[:, [3, 6], 0] += speed * t[:, None]  # both ankles skate sideways
        return world

    slow, fast = physical_foot_contact(sliding(0.5), FPS), physical_foot_contact(sliding(1.0), FPS)
    assert slow > 0
    assert fast == pytest.approx(4 * slow)  # left speed x right speed: twice as fast, x4
    one_foot = bobbing()
    one_foot[:, 3, 0] += t  # one foot sliding, the other planted: no penalty
    assert physical_foot_contact(one_foot, FPS) == 0.0
