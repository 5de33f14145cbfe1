"""motiongraph: beat segments, the graph's search, seams, feet, seeds and long songs.

Real motion (CMU subject 131 mocap from the shared test data) with a beat every half
second, and the hand-annotated beats of the madmom fixture; the file runs in seconds.
"""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch

from conftest import mocap_sequences, shared_file
from kakashi import skeleton
from kakashi.errors import ModelError
from kakashi.evaluate.quality import frozen_frames, longest_run
from kakashi.kinematics import project_bones
from kakashi.models import motiongraph as mg
from kakashi.models.checkpoint import CHECKPOINT_FORMAT, load_model
from kakashi.models.config import resolve
from kakashi.models.data import Sequence, compute_stats, mirror_sequence
from kakashi.models.motiongraph_train import build_library

FPS = 30.0
NAMES = ["f0", "f1", "f2", "onset_strength", "beat"]
BEAT_EVERY = 15  # frames: 120 bpm at 30 fps


def settings(**changes):
    """motiongraph's settings as its trainer gets them: the schema's defaults, then these."""
    return resolve("motiongraph", {}, changes)


def audio_for(frames: int, rng: np.random.Generator, beats: np.ndarray | None = None) -> np.ndarray:
    audio = rng.standard_normal((frames, len(NAMES))).astype(np.float32)
    beat = np.zeros(frames, np.float32)
    beat[np.arange(0, frames, BEAT_EVERY) if beats is None else beats] = 1.0
    audio[:, -1] = beat
    return audio


@pytest.fixture(scope="module")
def sequences() -> list[Sequence]:
    out = mocap_sequences(audio_for, NAMES)
    return out + [mirror_sequence(s) for s in out]


@pytest.fixture(scope="module")
def library(sequences):
    stats = compute_stats(sequences)
    result = build_library(sequences, stats, settings(neighbours=8))
    net = mg.build(result["arch"])
    net.load_state_dict(result["model"])
    return net.eval(), stats, result


def test_segments_cut_on_the_annotated_beats(sequences) -> None:
    """The madmom fixture's hand-annotated beats as the beat column: segments start on them."""
    text = (shared_file("beat_fixture_madmom") / "sample.beats").read_text().splitlines()
    beats_s = [float(line.split()[0]) for line in text if line and not line.startswith("#")]
    beats = np.round(np.asarray(beats_s) * FPS).astype(int)  # 3, 24, 44, 64
    seq = sequences[0]
    frames = 80
    clip = Sequence(
        "fixture",
        audio_for(frames, np.random.default_rng(1), beats),
        seq.pose[:frames],
        seq.root[:frames],
        np.ones(frames, np.float32),
        FPS,
        NAMES,
        512,
    )
    stats = compute_stats([clip])
    for per in (1, 2):
        arch = build_library([clip], stats, settings(beats=per, neighbours=1))["arch"]
        net = mg.build(arch)
        net.load_state_dict(
            build_library([clip], stats, settings(beats=per, neighbours=1))["model"]
        )
        lib = net.arrays()
        starts = beats[: len(beats) - per]
        np.testing.assert_array_equal(lib["seg_start"], starts)
        np.testing.assert_array_equal(lib["seg_length"], beats[per:] - starts)
        # the natural successor starts where the segment ends
        for i, nxt in enumerate(lib["seg_next"]):
            if nxt >= 0:
                assert lib["seg_start"][nxt] == lib["seg_start"][i] + lib["seg_length"][i]


def test_viterbi_is_optimal_on_a_hand_checkable_graph() -> None:
    # 3 states, 3 steps; edges 0->1 (1), 1->2 (0), 0->2 (5), 2->0 (2), 1->1 (3)
    src, dst = np.array([0, 1, 0, 2, 1]), np.array([1, 2, 2, 0, 1])
    cost = np.array([1.0, 0.0, 5.0, 2.0, 3.0])
    unary = np.array([[0.0, 9.0, 9.0], [9.0, 1.0, 0.0], [0.0, 9.0, 4.0]])
    first = np.zeros(3)
    path, total = mg.viterbi(unary, first, src, dst, cost)
    # 0 -(1)-> 1 -(0)-> 2 costs 0+1+1+0+4 = 6; 0 -(5)-> 2 -(2)-> 0 costs 0+5+0+2+0 = 7
    assert path.tolist() == [0, 1, 2] and total == pytest.approx(6.0)


def test_viterbi_matches_brute_force_on_random_graphs() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        states, steps = 4, 5
        pairs = [(a, b) for a in range(states) for b in range(states) if rng.random() < 0.5]
        src = np.array([a for a, _ in pairs], dtype=np.int64)
        dst = np.array([b for _, b in pairs], dtype=np.int64)
        cost = rng.random(len(pairs))
        unary, first = rng.random((steps, states)), rng.random(states)
        edge = {(a, b): c for a, b, c in zip(src, dst, cost, strict=True)}
        best = np.inf
        for path in itertools.product(range(states), repeat=steps):
            if all((a, b) in edge for a, b in itertools.pairwise(path)):
                total = first[path[0]] + sum(unary[j, s] for j, s in enumerate(path))
                best = min(best, total + sum(edge[p] for p in itertools.pairwise(path)))
        path, total = mg.viterbi(unary, first, src, dst, cost)
        assert total == pytest.approx(best)


def _dance(library, frames: int, seed: int = 0, first=None):
    net, stats, _ = library
    audio = audio_for(frames, np.random.default_rng(seed + 100))
    first = stats.mean_pose() if first is None else first
    return mg.generate_motion(net, stats, audio, first, seed)


def test_seams_are_continuous(library, sequences) -> None:
    """At every seam the position and velocity jumps stay within what the mocap itself does."""
    net, stats, _ = library
    frames = 60 * int(FPS)
    audio = audio_for(frames, np.random.default_rng(7))
    pose, root = mg.generate_motion(net, stats, audio, stats.mean_pose(), 7)
    world = pose + root[:, None]
    spans, _ = mg.plan(net, stats, audio, stats.mean_pose(), 7)
    seams = spans[1:, 0]
    step = np.linalg.norm(np.diff(world, axis=0), axis=-1).max(axis=1)  # (T-1,)
    accel = np.linalg.norm(np.diff(world, n=2, axis=0), axis=-1).max(axis=1)  # (T-2,)
    real = [s.pose + s.root[:, None] for s in sequences]
    real_step = np.percentile(
        np.concatenate([np.linalg.norm(np.diff(w, axis=0), axis=-1).max(1) for w in real]), 99.5
    )
    real_accel = np.percentile(
        np.concatenate([np.linalg.norm(np.diff(w, n=2, axis=0), axis=-1).max(1) for w in real]),
        99.5,
    )
    assert step[seams - 1].max() <= 1.5 * real_step
    assert accel[seams - 1].max() <= 2.0 * real_accel
    # and a seam is not a typical frame's shake either
    assert np.median(accel[seams - 1]) <= 2.0 * np.median(accel)


def test_planted_feet_do_not_slide_at_seams(library) -> None:
    """In the blend after a seam, a foot the new segment has planted moves over the floor
    exactly as in the segment itself: the root takes up the blend's and the bone
    projection's motion of that foot."""
    net, stats, _ = library
    arch, lib = {**net.arch, "foot_lock": 0.0}, net.arrays()
    frames = 60 * int(FPS)
    audio = audio_for(frames, np.random.default_rng(5))
    first = stats.mean_pose().astype(np.float64)
    spans, path = mg.plan(net, stats, audio, first, 5)
    pose, root = mg.assemble(lib, arch, stats, spans, path, first)

    world = (pose + root[:, None]).astype(np.float64)
    blend = round(arch["blend_s"] * FPS)
    ankles = list(mg.ANKLES)
    errors, slides = [], []  # m per frame: the foot's slip, and what the blend alone would do
    for j in range(1, len(spans)):
        if lib["seg_next"][path[j - 1]] == path[j]:
            continue  # a natural succession: no blend
        lo, hi = spans[j]
        start, length = lib["seg_start"][path[j]], lib["seg_length"][path[j]]
        positions = np.arange(hi - lo + 1) * (length / (hi - lo))
        source = mg._sample(lib["pose"] + lib["root"][:, None], start,
                            np.minimum(positions, length - 1e-6))  # fmt: skip
        centred = source - source[:, :1]
        contact = lib["contact"][start + np.round(positions[:-1]).astype(int)]
        for t in range(min(blend, hi - lo) - 1):
            for side in (0, 1):
                if contact[t, side] and not contact[t, 1 - side] and contact[t + 1, side]:
                    a = ankles[side]
                    moved = world[lo + t + 1, a, [0, 2]] - world[lo + t, a, [0, 2]]
                    wanted = source[t + 1, a, [0, 2]] - source[t, a, [0, 2]]
                    errors.append(np.linalg.norm(moved - wanted))
                    blended = pose[lo + t + 1, a, [0, 2]] - pose[lo + t, a, [0, 2]]
                    own = centred[t + 1, a, [0, 2]] - centred[t, a, [0, 2]]
                    slides.append(np.linalg.norm(blended - own))
    assert len(errors) > 10
    # Measured: slip under 2e-6 m per frame (float32); the blend and the bone projection
    # alone would slide the foot 13 mm (median) per frame.
    assert np.median(slides) > 5e-3
    assert max(errors) < 1e-4


def test_foot_lock_removes_the_glide_of_planted_feet(library) -> None:
    """foot_lock 1: a planted foot (in the source) barely moves over the floor; 0: as in the
    source; in between, in between."""
    net, stats, _ = library
    lib = net.arrays()
    audio = audio_for(60 * int(FPS), np.random.default_rng(6))
    first = stats.mean_pose().astype(np.float64)
    spans, path = mg.plan(net, stats, audio, first, 6)
    planted = np.concatenate(
        [
            lib["contact"][lib["seg_start"][s] + np.round(
                np.arange(hi - lo) * lib["seg_length"][s] / (hi - lo)).astype(int)]
            for (lo, hi), s in zip(spans, path, strict=True)
        ]
    )  # fmt: skip
    glide = {}
    for lock in (0.0, 0.5, 1.0):
        pose, root = mg.assemble(lib, {**net.arch, "foot_lock": lock}, stats, spans, path, first)
        feet = (pose + root[:, None])[:, list(mg.ANKLES)][..., [0, 2]]
        speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * FPS  # (T-1, 2) m/s
        glide[lock] = speed[planted[:-1] & planted[1:]].mean()
    # Measured 0.10 against 0.17 m/s: where both feet are down the lock averages them, and
    # the lock eases in and out over a few frames.
    assert glide[1.0] < 0.7 * glide[0.0]
    assert glide[1.0] < glide[0.5] < glide[0.0]


def test_start_pose_seed_and_exact_length(library, sequences) -> None:
    stats = library[1]
    start = sequences[1].pose[40]
    pose, root = _dance(library, 95, seed=1, first=start)
    assert pose.shape == (95, skeleton.NUM_JOINTS, 3) and root.shape == (95, 3)
    lengths = torch.from_numpy(stats.bone_lengths)
    expected = project_bones(torch.from_numpy(start - start[0]), lengths).numpy()
    np.testing.assert_allclose(pose[0], expected, atol=1e-5)
    again, _ = _dance(library, 95, seed=1, first=start)
    np.testing.assert_array_equal(pose, again)
    other, _ = _dance(library, 95, seed=2, first=start)
    assert not np.array_equal(pose, other)
    for frames in (1, 2, 3, 17):
        assert len(_dance(library, frames)[0]) == frames


def test_ten_minute_song_never_freezes(library) -> None:
    frames = 10 * 60 * int(FPS)
    pose, root = _dance(library, frames, seed=3)
    assert len(pose) == frames and np.isfinite(pose).all() and np.isfinite(root).all()
    assert longest_run(frozen_frames(pose + root[:, None], FPS)) < 2 * FPS
    # bones keep the training lengths over the whole song
    bones = skeleton.bone_lengths(pose)
    np.testing.assert_allclose(
        bones, np.broadcast_to(library[1].bone_lengths, bones.shape), atol=1e-4
    )


def test_checkpoint_round_trip_weights_only(library, tmp_path) -> None:
    net, stats, result = library
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": {**result["arch"], "kind": "motiongraph"},
        "stats": stats.to_dict(),
        "model": result["model"],
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = tmp_path / "graph.pt"
    path.write_bytes(buffer.getvalue())
    loaded = load_model(path)
    assert loaded.name == "motiongraph"
    first = stats.mean_pose()
    audio = audio_for(200, np.random.default_rng(9))
    a = loaded.generate_motion(audio, first, 4)
    b = mg.generate_motion(net, stats, audio, first, 4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    only = net.arch["sequences"][0]
    c = loaded.generate_motion(audio, first, 4, only=only)
    np.testing.assert_array_equal(c[0], mg.generate_motion(net, stats, audio, first, 4, only)[0])
    with pytest.raises(ModelError, match="model motiongraph has no generation option temper"):
        loaded.generate_motion(audio, first, 4, temper=2.0)


def test_only_restricts_the_dance_to_matching_recordings(library, sequences) -> None:
    """A style restriction: only segments of the recordings whose id matches (and mirrors)."""
    net, stats, _ = library
    names = net.arch["sequences"]
    wanted = sequences[1].name
    audio = audio_for(40 * int(FPS), np.random.default_rng(11))
    spans, path = mg.plan(net, stats, audio, stats.mean_pose(), 0, only=wanted)
    used = {names[i] for i in net.arrays()["seg_sequence"][path]}
    assert used <= {wanted, wanted + "~mirror"} and len(spans) > 10
    pose, _ = mg.generate_motion(net, stats, audio, stats.mean_pose(), 0, only=wanted[:3] + "*")
    assert len(pose) == len(audio)
    with pytest.raises(ModelError, match="matches none of the model's 3 training recordings"):
        mg.generate_motion(net, stats, audio, stats.mean_pose(), 0, only="no-such-*")
