"""Known answers of the columns a replay cannot win, on real motion capture (Dance with
Melody): novelty (copy share, longest replay, C_T), time-warped copies, style accuracy,
variety across takes and ground contact. Tiny: a few dances cut to 40 s."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from conftest import shared_file
from kakashi.evaluate import ground, heldout, novelty, style
from kakashi.evaluate.windows import interpolate

FPS = 30.0
SECONDS = 40
TRAIN = {"DANCE_C_2": "cha-cha", "DANCE_R_2": "rumba", "DANCE_W_1": "waltz", "DANCE_W_4": "waltz"}
TEST = {"DANCE_C_4": "cha-cha", "DANCE_R_7": "rumba", "DANCE_W_6": "waltz"}


@functools.cache
def _dance(name: str) -> np.ndarray:
    from kakashi.motion import read_motion

    path = shared_file(f"m2d_tang2018/joints/{name}.npy")
    return read_motion(path, int(FPS), "tang23", 25).world()[: int(SECONDS * FPS)]


@functools.cache
def _bank():
    return novelty.build_bank([(_dance(name), FPS) for name in TRAIN])


@functools.cache
def _test_windows():
    return novelty.query(_bank(), [(_dance(name), FPS) for name in TEST])


def _novelty(worlds: list[np.ndarray]) -> dict:
    rows = novelty.query(_bank(), [(world, FPS) for world in worlds])
    return novelty.novelty(_bank(), _test_windows(), rows)


def _warped(world: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``world`` played at fractional frames ``positions`` (a time warp)."""
    low, high = np.zeros_like(positions), np.full_like(positions, len(world) - 1.0)
    return interpolate(world.astype(np.float64), positions, low, high)


def test_verbatim_replay_of_a_train_dance_is_a_copy() -> None:
    source = _dance("DANCE_R_2")[15:]  # from half a second in: off the bank's start grid
    result = _novelty([source])
    assert result["copy_share"] > 0.97
    assert result["longest_replay_s"] == pytest.approx(len(source) / FPS, abs=1.1)  # 2 hops
    assert result["c_t"] < -5


def test_real_test_dances_copy_at_five_percent() -> None:
    result = _novelty([_dance(name) for name in TEST])
    assert result["copy_share"] == pytest.approx(0.05, abs=0.01)
    assert result["longest_replay_s"] < 10
    assert abs(result["c_t"]) < 0.5  # the reference itself: no copying, no underfitting


@pytest.mark.parametrize(
    "warp",
    [
        pytest.param(lambda n: np.arange(0.4, n - 1, 1.12), id="uniform-12%-faster"),
        pytest.param(lambda n: np.arange(0.0, n - 1, 0.9), id="uniform-10%-slower"),
        # A tempo that changes every 2 s between 0.85 and 1.15 (a copy fitted to the
        # beats of another song), sub-frame offsets included.
        pytest.param(
            lambda n: (
                np.cumsum(np.repeat([0.85, 1.15, 1.0, 0.9, 1.1] * 40, 60))[: int(n / 1.15)] + 0.3
            ),
            id="piecewise-tempo",
        ),
    ],
)
def test_time_warped_replay_is_still_caught(warp) -> None:
    source = _dance("DANCE_W_1")
    result = _novelty([_warped(source, warp(len(source)))])
    assert result["copy_share"] > 0.6, result
    # Several bars in one chain; a waltz repeats its figures, so a warped window's nearest
    # train window may be the same figure a bar earlier, which ends the chain.
    assert result["longest_replay_s"] > 5, result
    assert result["c_t"] < -3, result


def test_style_accuracy_of_a_replay_and_of_a_wrong_style() -> None:
    classifier = style.train_classifier([(_dance(n), FPS, s) for n, s in TRAIN.items()])
    real = style.style_accuracy(classifier, [(_dance(n), FPS, s) for n, s in TEST.items()])
    replay = style.style_accuracy(classifier, [(_dance("DANCE_W_1"), FPS, "waltz")])
    wrong = style.style_accuracy(classifier, [(_dance("DANCE_W_1"), FPS, "cha-cha")])
    assert replay["style_accuracy"] > 0.9
    assert wrong["style_accuracy"] < 0.1
    assert real["style_accuracy"] > 0.5  # unseen real dances of the three styles
    counts = np.array(wrong["style_confusion"]["counts"])
    assert counts.sum() == wrong["style_windows"] and counts[0].sum() == counts.sum()


def test_style_reads_the_dance_not_the_dancers_body() -> None:
    """A cha-cha danced by the waltz dancers' body (each bone re-placed at their lengths, as
    a motion graph's bone projection does) is still a cha-cha: the descriptors see one body."""
    from kakashi import skeleton
    from kakashi.kinematics import project_bones_np

    classifier = style.train_classifier([(_dance(n), FPS, s) for n, s in TRAIN.items()])
    chacha = _dance("DANCE_C_2").astype(np.float64)
    waltz_bones = np.median(skeleton.bone_lengths(_dance("DANCE_W_1")), axis=0)
    root = chacha[:, :1]
    reboned = project_bones_np(chacha - root, waltz_bones) + root
    assert np.abs(skeleton.bone_lengths(reboned) - skeleton.bone_lengths(chacha)).max() > 0.02
    np.testing.assert_allclose(
        style.window_descriptors(reboned, FPS), style.window_descriptors(chacha, FPS), atol=1e-6
    )
    result = style.style_accuracy(classifier, [(reboned, FPS, "cha-cha")])
    assert result["style_accuracy"] > 0.9


def test_fewer_than_two_styles_give_no_classifier() -> None:
    assert style.train_classifier([(_dance("DANCE_W_1"), FPS, "waltz")]) is None


def test_identical_takes_have_no_variety_and_real_dances_have_some() -> None:
    reference = heldout.clip_features([(_dance(n), FPS) for n in TEST], 5.0, 2.5)
    same = heldout.clip_features([(_dance("DANCE_W_1"), FPS)] * 2, 5.0, 2.5)
    assert heldout.variety(reference, same, ["song", "song"]) == 0.0
    two = heldout.clip_features([(_dance("DANCE_W_1"), FPS), (_dance("DANCE_W_4"), FPS)], 5, 2.5)
    assert 0.3 < heldout.variety(reference, two, ["song", "song"]) < 3
    assert heldout.variety(reference, two, ["a", "b"]) is None  # one take per song


def test_a_dance_pushed_ten_cm_into_the_floor() -> None:
    world = _dance("DANCE_W_1").copy()
    clean = ground.ground_contact([(world, FPS)])
    third = len(world) // 3
    world[third : 2 * third, :, 1] -= 0.10
    pushed = ground.ground_contact([(world, FPS)])
    assert pushed["penetration_cm"] == pytest.approx(10.0, abs=1.5)
    # Of the pushed third, the frames of a rise (both feet up) stay over the band.
    assert 0.2 < pushed["penetration_share"] < 0.34
    assert clean["penetration_share"] < 0.05
    lifted = _dance("DANCE_W_1").copy()
    lifted[third : 2 * third, :, 1] += 0.10
    floating = ground.ground_contact([(lifted, FPS)])["floating_share"]
    # The lifted third raises the median floor a little: not all of it floats.
    assert clean["floating_share"] + 0.1 < floating < clean["floating_share"] + 0.34
