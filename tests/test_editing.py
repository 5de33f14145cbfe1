"""Editing a dance with `kakashi generate` (docs/editing.md), for every model, on real
checkpoints trained on the demo shards and real clips of the demo songs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import DEMO, TINY_TOKEN_MODELS
from kakashi import skeleton
from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.errors import ModelError
from kakashi.models.checkpoint import load_model
from kakashi.models.config import resolve
from kakashi.models.distributed import train
from kakashi.models.editing import (
    BLEND_S,
    PARTS,
    Constraints,
    EditRequest,
    _fall,
    enforce,
    keyframe_error,
    seam_jerk,
    seam_stencils,
)
from kakashi.models.generate import dance_for_audio, song_features

SONG = DEMO / "music" / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
# The largest joint jerk of a frame (world positions, m/s^3) that 99.5 % of the frames of
# the 35 real Dance-with-Melody dances stay under (bench/editing.py; docs/editing.md).
MOCAP_JERK_995 = 3119.0
# Tiny settings per model: seconds to train on the demo shards.
SMALL = {
    "rnn": dict(hidden=32, layers=1, window_s=1.0, stride_s=1.0, batch_size=16, epochs=2),
    **TINY_TOKEN_MODELS,
    "motiongraph": {},
}


@pytest.fixture(scope="module")
def checkpoints(demo_shards: Path, tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint of each model (the C-RNN-GAN: from the RNN, one epoch)."""
    folder = tmp_path_factory.mktemp("edit_models")
    paths = {}
    for name in ("rnn", "motiongraph", "motif", "crnngan", "maskdance"):
        out = folder / f"{name}.pt"
        small = SMALL[name] if name in SMALL else dict(init=str(paths["rnn"]), epochs=1)
        settings_ = {**small, "shards": str(demo_shards), "out": str(out)}
        train(resolve(name, {}, settings_), progress=False)
        paths[name] = out
    return paths


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> dict[str, Path]:
    """6-s and 9-s clips of one demo song (the longer one goes on where the shorter ends)."""
    import librosa

    folder = tmp_path_factory.mktemp("edit_songs")
    samples, sr = librosa.load(SONG, sr=22050, mono=True, offset=20.0, duration=9.0)
    out = {}
    for name, seconds in (("short", 6.0), ("long", 9.0)):
        out[name] = folder / f"{name}.wav"
        soundfile.write(out[name], samples[: int(seconds * sr)], sr)
    return out


def run(*args: str) -> None:
    assert main(["generate", *map(str, args)]) == 0


def jerk_ok(dance: Dance, constraints: Constraints, own: Dance) -> float:
    """The seams add no jerk beyond the mocap's 99.5th percentile or, for a tiny test
    model that jitters by itself (the 2-epoch RNN: 99.5th percentile ~7,500 m/s^3), beyond
    10 % over the largest of its unedited dance ``own`` (after its first 10 frames, where
    a model blends its start pose in)."""
    jerk = seam_jerk(dance, constraints)
    world = np.linalg.norm(np.diff(own.world()[10:], 3, axis=0), axis=2).max(axis=1)
    assert 0 < jerk <= max(MOCAP_JERK_995, 1.1 * world.max() * own.fps**3), jerk
    return jerk


@pytest.mark.parametrize("model", ["rnn", "motiongraph", "motif", "crnngan", "maskdance"])
def test_every_model_continues_and_regenerates_keeping_frames_bit_identical(
    model: str, checkpoints, songs, tmp_path: Path
) -> None:
    ckpt = checkpoints[model]
    first = tmp_path / "first.npz"
    run(songs["short"], "--checkpoint", ckpt, "-o", first, "--seed", 1)
    source = Dance.load(first)

    longer = tmp_path / "longer.npz"
    run(songs["long"], "--checkpoint", ckpt, "-o", longer, "--continue", first, "--seed", 2)
    dance = Dance.load(longer)
    assert len(dance) == 270 and len(source) == 180
    assert np.array_equal(dance.pose[:180], source.pose)
    assert np.array_equal(dance.root[:180], source.root)
    assert dance.meta["edit"] == {
        "kind": "continuation",
        "blend_s": BLEND_S,
        "kept_s": 6.0,
        "of": "first.npz",
        "of_meta": {"model": model, "seed": 1},
    }
    # maskdance inpaints in code space; the others are made whole by the enforcement alone.
    assert dance.meta["inpainted"] is (model == "maskdance")
    constraints, _ = EditRequest(continue_from=str(first)).plan(270, 30.0)
    jerk_ok(dance, constraints, source)
    # The new part starts where the dance ends: the root goes on from its last position.
    step = np.linalg.norm(dance.root[180] - dance.root[179])
    assert step < 0.1, step

    span = tmp_path / "span.npz"
    run(songs["short"], "--checkpoint", ckpt, "-o", span, "--dance", first,
        "--regenerate", "2-4", "--seed", 7)  # fmt: skip
    again = Dance.load(span)
    assert np.array_equal(again.pose[:60], source.pose[:60])
    assert np.array_equal(again.pose[120:], source.pose[120:])
    assert np.array_equal(again.root[120:], source.root[120:])
    assert again.meta["edit"]["kind"] == "inbetween"
    assert (again.meta["edit"]["from_s"], again.meta["edit"]["to_s"]) == (2.0, 4.0)
    constraints, _ = EditRequest(dance=str(first), regenerate="2-4").plan(180, 30.0)
    jerk_ok(again, constraints, source)


def test_keyframes_from_a_dance_and_from_json_are_reached(checkpoints, songs, tmp_path) -> None:
    ckpt = checkpoints["rnn"]
    other = tmp_path / "other.npz"
    run(songs["long"], "--checkpoint", checkpoints["motiongraph"], "-o", other)
    poses = Dance.load(other)
    keyed = tmp_path / "keyed.npz"
    run(songs["short"], "--checkpoint", ckpt, "-o", keyed, "--keyframes", f"{other}@1.5,4")
    dance = Dance.load(keyed)
    for t in (1.5, 4.0):
        error = np.linalg.norm(dance.pose[round(t * 30)] - poses.pose[round(t * 30)], axis=1)
        assert error.mean() <= 0.03, (t, error.mean())
    assert dance.meta["edit"]["keyframes_s"] == [1.5, 4.0]
    constraints, _ = EditRequest(keyframes=[f"{other}@1.5,4"]).plan(180, 30.0)
    assert keyframe_error(dance.pose, constraints) <= 0.03
    plain = tmp_path / "plain.npz"
    run(songs["short"], "--checkpoint", ckpt, "-o", plain)
    far = Dance.load(plain)
    jerk_ok(dance, constraints, far)
    # Away from the keyframes the model's own dance is left as it was.
    assert np.array_equal(far.pose[150:], dance.pose[150:])
    assert not np.allclose(far.pose[45], dance.pose[45], atol=0.03)

    # A JSON of time -> 17 root-centred joints: a real pose with both arms raised to the
    # shoulders' height.
    pose = poses.pose[30].astype(np.float64)
    pose[11:17, 1] = pose[skeleton.INDEX["left_shoulder"], 1]
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"3.0": pose.tolist()}))
    out = tmp_path / "json.npz"
    run(songs["short"], "--checkpoint", ckpt, "-o", out, "--keyframes", path)
    reached = Dance.load(out).pose[90]
    assert np.linalg.norm(reached - (pose - pose[0]), axis=1).mean() <= 0.03


def test_keep_the_upper_or_lower_body(checkpoints, songs, tmp_path) -> None:
    source_file = tmp_path / "source.npz"
    run(songs["short"], "--checkpoint", checkpoints["motiongraph"], "-o", source_file)
    source = Dance.load(source_file)
    bones = np.median(skeleton.bone_lengths(source.pose), axis=0)
    for part in ("upper", "lower"):
        out = tmp_path / f"{part}.npz"
        run(songs["short"], "--checkpoint", checkpoints["rnn"], "-o", out,
            "--dance", source_file, "--keep", part, "--seed", 3)  # fmt: skip
        dance = Dance.load(out)
        kept, made = list(PARTS[part]), [j for j in range(17) if j not in PARTS[part]]
        assert np.array_equal(dance.pose[:, kept], source.pose[:, kept])
        assert not np.allclose(dance.pose[:, made], source.pose[:, made], atol=0.02)
        # One dancer: the generated bones have the kept dance's lengths.
        lengths = skeleton.bone_lengths(dance.pose)
        np.testing.assert_allclose(lengths, np.broadcast_to(bones, lengths.shape), atol=0.02)
        # The generated part faces where the kept part faces (no twisted torso).
        hips = dance.pose[:, 4] - dance.pose[:, 1]
        shoulders = dance.pose[:, 11] - dance.pose[:, 14]
        cos = (hips[:, [0, 2]] * shoulders[:, [0, 2]]).sum(1) / (
            np.linalg.norm(hips[:, [0, 2]], axis=1) * np.linalg.norm(shoulders[:, [0, 2]], axis=1)
        )
        assert np.median(cos) > 0.7, np.median(cos)
        assert dance.meta["edit"]["keep"] == part
        if part == "lower":  # the legs carry the root
            assert np.array_equal(dance.root, source.root)


def one_line_error(capsys, args) -> str:
    assert main(["generate", *map(str, args)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kakashi: error: ") and "\n" not in err, err
    return err


def test_bad_edits_are_one_line_errors(checkpoints, songs, tmp_path, capsys) -> None:
    ckpt = checkpoints["motiongraph"]
    base = [songs["short"], "--checkpoint", ckpt, "-o", tmp_path / "out.npz"]
    dance = tmp_path / "dance.npz"
    run(songs["short"], "--checkpoint", ckpt, "-o", dance)
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({"8.5": np.zeros((17, 3)).tolist()}))
    err = one_line_error(capsys, [*base, "--keyframes", keys])
    assert f"{keys}: the keyframe at 8.5 s is outside the song (0-6.00 s)" in err
    err = one_line_error(capsys, [*base, "--keyframes", f"{dance}@7"])
    assert f"{dance}: no frame at 7 s, the dance lasts 6.00 s" in err
    keys.write_text(json.dumps({"1": np.zeros((15, 3)).tolist()}))
    err = one_line_error(capsys, [*base, "--keyframes", keys])
    assert "has shape [15, 3], not the 17 [x, y, z] joints of H36M-17" in err
    # A dance of another skeleton or fps.
    loaded = Dance.load(dance)
    np.savez(tmp_path / "fifteen.npz", pose=loaded.pose[:, :15], root=loaded.root, fps=30.0)
    err = one_line_error(capsys, [*base, "--continue", tmp_path / "fifteen.npz"])
    assert "fifteen.npz: pose must be (T, 17, 3), got (180, 15, 3)" in err
    Dance(loaded.pose[::2], loaded.root[::2], 15.0).save(tmp_path / "slow.npz")
    longer = [songs["long"], *base[1:]]
    err = one_line_error(capsys, [*longer, "--continue", tmp_path / "slow.npz"])
    assert "slow.npz: the dance is at 15 fps and the model makes 30-fps dances" in err
    err = one_line_error(capsys, [*base, "--continue", dance])
    assert "nothing to continue; give a longer song" in err
    err = one_line_error(capsys, [*base, "--dance", dance, "--regenerate", "5-7"])
    assert "the span 5-7 s lies outside the dance (0-6.00 s)" in err
    err = one_line_error(capsys, [*base, "--dance", dance, "--regenerate", "4-2"])
    assert "START must be before END" in err
    err = one_line_error(capsys, [*longer, "--dance", dance, "--regenerate", "1-2"])
    assert "give the song the dance was made for" in err
    # Flags that do not go together.
    for flags, message in (
        (["--continue", dance, "--dance", dance, "--keep", "upper"], "two edits"),
        (["--continue", dance, "--dance", dance], "--continue names the dance it extends"),
        (["--regenerate", "1-2"], "--regenerate needs --dance DANCE.npz"),
        (["--dance", dance], "--dance needs --regenerate START-END or --keep"),
        (["--dance", dance, "--keep", "upper", "--keyframes", keys], "use one"),
        (["--continue", dance, "--start-pose", dance], "drop --start-pose"),
    ):
        assert message in one_line_error(capsys, [*longer, *flags])
    shards = ["--shards", tmp_path, "--checkpoint", ckpt, "-o", tmp_path / "d"]
    err = one_line_error(capsys, [*shards, "--keep", "upper", "--dance", dance])
    assert "drop --shards" in err
    # The dance edited is never written over.
    err = one_line_error(capsys, [songs["long"], "--checkpoint", ckpt, "-o", dance,
                                  "--continue", dance])  # fmt: skip
    assert "dance.npz" in err and Dance.load(dance).duration_s == 6.0
    assert not (tmp_path / "out.npz").exists()  # nothing written by a refused edit


@settings(max_examples=40, deadline=None)
@given(
    frames=st.integers(8, 90),
    start=st.floats(0, 1),
    length=st.floats(0, 1),
    keyframe=st.floats(0, 1),
    seed=st.integers(0, 2**16),
)
def test_enforce_keeps_exact_frames_and_reaches_keyframes(frames, start, length, keyframe, seed):
    """On random real-sized arrays: exact frames are copied bit for bit, a keyframe is
    reached, the rest stays finite and every seam is continuous."""
    rng = np.random.default_rng(seed)
    source = rng.normal(0, 0.3, (frames, 17, 3)).astype(np.float32)
    source_root = rng.normal(0, 1, (frames, 3)).astype(np.float32)
    made = rng.normal(0, 0.3, (frames, 17, 3)).astype(np.float32)
    made_root = rng.normal(0, 1, (frames, 3)).astype(np.float32)
    constraints = Constraints.free(frames)
    a = int(start * (frames - 1))
    b = min(frames, a + 1 + int(length * frames))
    keep = np.ones(frames, bool)
    keep[a:b] = False
    constraints.pose[keep], constraints.root[keep], constraints.exact[keep] = (
        source[keep], source_root[keep], True)  # fmt: skip
    key = a + int(keyframe * (b - a - 1))
    constraints.pose[key] = source[key] + 0.1
    pose, root = enforce(made, made_root, constraints, 30.0)
    assert np.array_equal(pose[keep], source[keep]) and np.array_equal(
        root[keep], source_root[keep]
    )
    assert np.abs(pose[key] - (source[key] + 0.1)).max() < 1e-6
    assert np.isfinite(pose).all() and np.isfinite(root).all()


@pytest.mark.parametrize("model", ["rnn", "motiongraph", "motif", "crnngan", "maskdance"])
def test_an_edit_without_constraints_leaves_the_dance_bit_identical(model, checkpoints, songs):
    """Through the edit path (generation per span, enforcement) with nothing constrained,
    every model's dance is the unedited one, bit for bit."""
    loaded = load_model(checkpoints[model])
    audio = song_features(songs["short"], loaded.stats, checkpoints[model]).values
    first = loaded.stats.mean_pose()
    plain = dance_for_audio(loaded, audio, first, 4)
    free = dance_for_audio(loaded, audio, first, 4, constraints=Constraints.free(len(plain)))
    assert np.array_equal(free.pose, plain.pose) and np.array_equal(free.root, plain.root)


def test_the_blend_profile_is_flat_in_position_velocity_and_acceleration_at_both_ends():
    """The fall of a seam's offset (minimum-jerk quintic): 1 -> 0 over ``width`` with its
    first and second derivatives 0 at both ends (a raised cosine's second derivative is
    -pi^2/2 and +pi^2/2 there), and monotone in between."""
    width = 1000
    d = np.arange(-3, width + 4, dtype=np.float64)
    f = _fall(d, width)
    assert f[3] == 1.0 and f[3 + width] == 0.0
    assert np.all(np.diff(f) <= 0)
    for end in (3, 3 + width):  # index of distance 0 and of distance ``width``
        near = f[end - 3 : end + 4]
        velocity = np.diff(near) * width  # d f / d x, x = distance / width
        acceleration = np.diff(near, 2) * width**2
        assert np.abs(velocity).max() < 1e-3, velocity  # cosine: 0.015
        assert np.abs(acceleration).max() < 0.5, acceleration  # cosine: 4.9


def test_a_seam_adds_no_step_in_acceleration():
    """A kept dance moving at a steady speed and a model whose motion is that dance moved
    (an offset q) and drifting (a velocity d): the edited dance minus the kept one is
    (q + d t) (1 - fall) on each seam of a span, so its jerk is at most
    60 |q + d t| / W^3 + 60 |d| / W^2 (W: the blend in frames), where a raised cosine's
    step in acceleration would give q pi^2 / (2 W^2)."""
    fps = 600.0  # a long blend (W = 300 frames) tells O(1 / W^3) from O(1 / W^2)
    width = round(BLEND_S * fps)
    frames = 4 * width
    t = np.arange(frames, dtype=np.float64)
    rng = np.random.default_rng(0)
    speed = rng.uniform(-0.3, 0.3, (1, 17, 3)) / fps  # m per frame
    given = (rng.uniform(-0.5, 0.5, (1, 17, 3)) + speed * t[:, None, None]).astype(np.float32)
    given[:, 0] = 0  # root-centred
    q = np.float32(0.4)
    drift = np.float32(0.5 / fps)  # 0.5 m/s, per frame
    made = given + q + drift * t[:, None, None].astype(np.float32)
    made[:, 0] = 0
    root = np.zeros((frames, 3), np.float32)
    constraints = Constraints.free(frames)
    a, b = width, 3 * width
    keep = np.ones(frames, bool)
    keep[a:b] = False
    constraints.pose[keep], constraints.root[keep], constraints.exact[keep] = (
        given[keep], root[keep], True)  # fmt: skip
    pose, _ = enforce(made, root, constraints, fps)
    added = pose.astype(np.float64) - given
    jerk = np.abs(np.diff(added, 3, axis=0)).max()
    bound = 60 * (q + drift * b) / width**3 + 60 * drift / width**2
    assert jerk <= 1.1 * bound, (jerk, bound)
    assert jerk < 0.2 * q * np.pi**2 / (2 * width**2)  # the cosine's step, for scale
    # Position and velocity meet the kept frames on both sides.
    for seam, step in ((a - 1, 1), (b, -1)):
        assert np.abs(added[seam]).max() == 0
        assert np.abs(added[seam + step]).max() < 1e-4


def test_seam_stencils_mark_the_frames_a_seam_touches():
    constraints = Constraints.free(40)
    constraints.exact[:10] = True
    constraints.pose[:10] = 0
    near, crossing = seam_stencils(constraints, 30.0)
    # stencil i holds frames i .. i + 3; frame 9 is the last given, 10 .. 24 within 0.5 s
    assert np.flatnonzero(crossing).tolist() == [7, 8, 9]
    assert np.flatnonzero(near).tolist() == list(range(7, 25))
    assert not seam_stencils(Constraints.free(40), 30.0)[0].any()


def test_sampling_overrides_a_checkpoints_generation_settings(
    checkpoints, songs, tmp_path, capsys
) -> None:
    """`kakashi generate --sampling KEY=VALUE`: the dance made with a changed setting differs
    (seeded), records it, and with the checkpoint's own value is the dance without the flag;
    a key that is not a generation setting of the model, a bad value, or guidance on a
    model without a style-free row are one-line errors naming the fix."""
    ckpt = checkpoints["maskdance"]
    base = [songs["short"], "--checkpoint", ckpt, "-o"]
    own = load_model(ckpt).net.arch["temperature"]
    paths = {name: tmp_path / f"{name}.npz" for name in ("plain", "same", "hot", "hot2")}
    run(*base, paths["plain"])
    run(*base, paths["same"], "--sampling", f"temperature={own}")
    run(*base, paths["hot"], "--sampling", "temperature=3", "--sampling", "top_k=0")
    run(*base, paths["hot2"], "--sampling", "temperature=3", "--sampling", "top_k=0")
    plain, same, hot = (Dance.load(paths[n]) for n in ("plain", "same", "hot"))
    np.testing.assert_array_equal(plain.pose, same.pose)
    np.testing.assert_array_equal(hot.pose, Dance.load(paths["hot2"]).pose)  # seeded
    assert not np.array_equal(hot.pose, plain.pose)
    assert hot.meta["sampling"] == {"temperature": 3.0, "top_k": 0}
    assert "sampling" not in plain.meta

    out = [*base, tmp_path / "bad.npz"]
    err = one_line_error(capsys, [*out, "--sampling", "dim=64"])
    assert "'dim=64': give KEY=VALUE with a generation setting of model maskdance" in err
    assert "(iterations, guidance, " in err and "temperature, top_k, smooth, foot_lock)" in err
    err = one_line_error(capsys, [*out, "--sampling", "top_k=-1"])
    assert "'top_k=-1': -1 is less than the minimum of 0" in err
    err = one_line_error(capsys, [*out, "--sampling", "temperature=warm"])
    assert "'temperature=warm'" in err
    err = one_line_error(capsys, [*out, "--sampling", "temperature"])
    assert "give KEY=VALUE" in err
    rnn = [songs["short"], "--checkpoint", checkpoints["rnn"], "-o", tmp_path / "r.npz"]
    err = one_line_error(capsys, [*rnn, "--sampling", "temperature=1"])
    assert "a generation setting of model rnn (none)" in err
    assert not (tmp_path / "bad.npz").exists() and not (tmp_path / "r.npz").exists()

    model = load_model(ckpt)
    model.payload["config"]["style_drop"] = 0.0  # as a model trained without style_drop
    with pytest.raises(ModelError, match="guidance needs a model trained with style_drop"):
        model.set_sampling(["guidance=4"], ckpt)
