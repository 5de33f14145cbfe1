"""maskdance: masking, parallel decoding that keeps given codes, edits, seeds, checkpoints,
the body-frame root velocity (``root_frame``).

Tiny networks on real motion (CMU subject 131 mocap from the shared test data) with
synthetic audio features, and one few-step run of `kakashi train`'s path on the demo shards.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools

import numpy as np
import pytest
import torch

from conftest import NOISE_FEATURES, mocap_sequences
from kakashi import skeleton
from kakashi.errors import ModelError
from kakashi.kinematics import ROOT_FRAMES, root_to_body, root_to_world, root_velocity
from kakashi.models import maskdance, maskdance_train
from kakashi.models.config import TrainConfig, resolve
from kakashi.models.data import Sequence, compute_stats, motion_of
from kakashi.models.editing import Constraints
from kakashi.models.motif import finish_motion
from kakashi.models.stats import POSE_DIM

TINY = {
    "down": 4,
    "parts": 2,
    "codebook": 32,
    "code_dim": 16,
    "vq_width": 32,
    "vq_window": 32,
    "vq_batch": 8,
    "vq_steps": 40,
    "dim": 32,
    "heads": 2,
    "layers": 2,
    "window": 12,
    "overlap": 4,
    "mask_batch": 8,
    "mask_steps": 40,
    "residual_steps": 40,
    "log_every": 20,
    "iterations": 4,
}
FEATURES = NOISE_FEATURES  # the width of the fixture sequences' audio


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**changes) -> TrainConfig:
    return resolve("maskdance", {}, {**TINY, **changes})


def tiny_arch(**changes) -> dict:
    settings = tiny()
    arch = {key: getattr(settings, key) for key in maskdance_train.ARCH_KEYS}
    arch["audio_dim"] = FEATURES
    arch.update(changes)
    return arch


@pytest.fixture(scope="module")
def sequences() -> list[Sequence]:
    return mocap_sequences()


@pytest.fixture(scope="module")
def trained(sequences):
    settings = tiny()  # the schema's root_frame: the stats are computed in it
    stats = compute_stats(sequences, settings.root_frame)
    result = maskdance_train.fit(settings, sequences[:2], sequences[2:], stats, torch.device("cpu"))
    net = maskdance.build(result["arch"])
    net.load_state_dict(result["model"])
    return result, stats, net.eval()


def test_masking_follows_the_schedule_and_the_bert_scheme():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(32, (400, 12, 2), generator=gen)
    inputs, hidden = maskdance_train.mask_tokens(codes, 32, 0.0, gen)
    assert torch.equal(inputs[~hidden], codes[~hidden])  # visible tokens are the codes
    share = hidden.float().mean((1, 2))
    assert share.min() > 0 and abs(share.mean().item() - 2 / np.pi) < 0.05  # E cos(u pi/2)
    masked = (inputs == 32) & hidden
    assert abs(masked.sum() / hidden.sum() - 0.9 * 0.88) < 0.03
    # span masks: one contiguous span of steps, both parts
    _, spans = maskdance_train.mask_tokens(codes, 32, 1.0, gen)
    assert torch.equal(spans[..., 0], spans[..., 1])
    for row in spans[..., 0]:
        steps = torch.nonzero(row).flatten()
        assert len(steps) >= 1 and steps[-1] - steps[0] + 1 == len(steps)


def test_transformer_is_bidirectional():
    torch.manual_seed(0)
    model = maskdance.build(tiny_arch(dropout=0.0)).transformer.eval()
    ids = torch.randint(32, (1, 12, 2))
    music = torch.randn(1, 12, 32)
    with torch.no_grad():
        base = model(ids, music)
        later = ids.clone()
        later[0, 10:] = 32  # hide the last steps: the first steps' logits change too
        changed = model(later, music)
    assert base.shape == (1, 12, 2, 32)
    assert not torch.allclose(base[:, :5], changed[:, :5])


def test_rhythm_input_reads_only_the_onset_and_beat_columns():
    names = [f"mfcc_{i}" for i in range(FEATURES - 3)] + ["onset_strength", "beat", "onset_peak"]
    columns = maskdance.music_columns(names, maskdance.RHYTHM_KINDS)
    assert columns == [FEATURES - 3, FEATURES - 2, FEATURES - 1]
    torch.manual_seed(0)
    rhythm = maskdance.build(tiny_arch(music_columns=columns)).transformer.eval()
    torch.manual_seed(0)
    every = maskdance.build(tiny_arch()).transformer.eval()
    down = TINY["down"]
    padded = torch.randn(1, 20, FEATURES * down)
    timbre = padded.clone().view(1, 20, down, FEATURES)
    timbre[..., : FEATURES - 3] += 1.0  # other mfcc values in every frame of every step
    timbre = timbre.view(1, 20, -1)
    beats = padded.clone().view(1, 20, down, FEATURES)
    beats[..., FEATURES - 2] += 1.0
    beats = beats.view(1, 20, -1)
    with torch.no_grad():
        base = rhythm.music_features(padded, None)
        assert torch.equal(rhythm.music_features(timbre, None), base)
        assert not torch.allclose(rhythm.music_features(beats, None), base)
        assert not torch.allclose(
            every.music_features(timbre, None), every.music_features(padded, None)
        )
    with pytest.raises(ModelError, match="hold none of onset, beat, peak.*music_input: all"):
        maskdance.music_columns(names[:3], maskdance.RHYTHM_KINDS)


def test_decoding_keeps_given_codes_and_is_seeded():
    torch.manual_seed(0)
    model = maskdance.build(tiny_arch(dropout=0.0)).transformer.eval()
    music = torch.randn(12, 32)
    codes = np.full((12, 2), -1)
    codes[:4] = np.arange(8).reshape(4, 2)  # the overlap a window keeps
    codes[6:, 1] = 5  # an upper body given
    fills = [
        maskdance.fill_window(model, codes, music, np.random.default_rng(s), 4, 1.0, 8)
        for s in (3, 3, 4)
    ]
    for out in fills:
        given = codes >= 0
        np.testing.assert_array_equal(out[given], codes[given])
        assert ((out >= 0) & (out < 32)).all()
    np.testing.assert_array_equal(fills[0], fills[1])
    assert not np.array_equal(fills[0], fills[2])
    full = np.arange(24).reshape(12, 2)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(maskdance.fill_window(model, full, music, rng, 4, 1.0, 8), full)


def test_windows_cover_any_length_and_overlap():
    assert maskdance.windows(5, 12, 4) == [0]
    assert maskdance.windows(12, 12, 4) == [0]
    assert maskdance.windows(30, 12, 4) == [0, 8, 16, 18]
    for steps in (65, 100, 1125):
        starts = maskdance.windows(steps, 64, 32)
        assert starts[0] == 0 and starts[-1] + 64 == steps
        assert all(b - a <= 32 for a, b in itertools.pairwise(starts))


def test_generation_seeded_exact_length_any_song(trained, sequences):
    _, stats, net = trained
    rng = np.random.default_rng(1)
    first = sequences[0].pose[10]
    for frames in (1, 7, 33, 301):  # shorter than a step, than a window, several windows
        audio = rng.standard_normal((frames, FEATURES)).astype(np.float32)
        pose, root = maskdance.generate_motion(net, stats, audio, first, seed=3)
        assert pose.shape == (frames, 17, 3) and root.shape == (frames, 3)
        assert pose.dtype == np.float32 and np.isfinite(pose).all() and np.isfinite(root).all()
    again = maskdance.generate_motion(net, stats, audio, first, seed=3)
    np.testing.assert_array_equal(pose, again[0])
    np.testing.assert_array_equal(root, again[1])
    other, _ = maskdance.generate_motion(net, stats, audio, first, seed=4)
    assert not np.array_equal(pose, other)
    bones = skeleton.bone_lengths(pose)
    np.testing.assert_allclose(bones, np.broadcast_to(stats.bone_lengths, bones.shape), atol=1e-4)
    np.testing.assert_allclose(pose[0, 1:4] - pose[0, 0], first[1:4] - first[0], atol=0.05)
    assert np.abs(np.diff(pose, axis=0)).mean() > 1e-4  # it moves


def _real(seq: Sequence, frames: int) -> tuple[np.ndarray, np.ndarray]:
    pose = (seq.pose[:frames] - seq.pose[:frames, :1]).astype(np.float32)
    return pose, seq.root[:frames].astype(np.float32)


def test_edits_keep_the_codes_of_given_frames(trained, sequences):
    """Steps whose frames are all given keep the tokenizer's codes of those frames (per body
    part); the span of a generated dance that was given comes out close to the given dance."""
    _, stats, net = trained
    seq, frames = sequences[2], 160
    pose, root = _real(seq, frames)
    audio = seq.audio[:frames]
    steps = frames // 4

    span = Constraints.free(frames)  # in-betweening: frames 0..63 and 128..159 kept
    span.pose[:64], span.root[:64] = pose[:64], root[:64]
    span.pose[128:], span.root[128:] = pose[128:], root[128:]
    span.exact[:64] = span.exact[128:] = True
    given = maskdance.given_codes(net, stats, span, steps)
    assert (given[:16] >= 0).all() and (given[32:] >= 0).all() and (given[16:32] < 0).all()
    whole = Constraints.free(frames)
    whole.pose[:], whole.root[:] = pose, root
    truth = maskdance.given_codes(net, stats, whole, steps)
    np.testing.assert_array_equal(given[2:14], truth[2:14])  # away from the seams: the same

    upper = Constraints.free(frames)  # keep the upper body, generate the lower
    upper_joints = [j for j in range(17) if j > 6]
    upper.pose[:, upper_joints] = pose[:, upper_joints]
    kept = maskdance.given_codes(net, stats, upper, steps)
    assert (kept[:, 1] >= 0).all() and (kept[:, 0] < 0).all()

    key = Constraints.free(frames)  # a keyframe: one full pose keeps its step's code
    key.pose[90] = pose[90]
    assert (maskdance.given_codes(net, stats, key, steps) >= 0).sum(0).tolist() == [1, 1]

    free, _ = maskdance.generate_motion(net, stats, audio, pose[0], seed=0)
    edited, _ = maskdance.generate_motion(net, stats, audio, pose[0], seed=0, constraints=span)
    other, _ = maskdance.generate_motion(net, stats, audio, pose[0], seed=5, constraints=span)
    # Frames decoded from kept codes alone (the decoder reaches ~3 steps) hardly depend on
    # the seed; the span in between does, and the kept span is nearer the given dance.
    np.testing.assert_allclose(edited[16:48], other[16:48], atol=2e-3)  # measured 0.7 mm
    assert not np.allclose(edited[72:120], other[72:120], atol=1e-3)
    err_free = np.linalg.norm(free[8:56] - pose[8:56], axis=-1).mean()
    err_edit = np.linalg.norm(edited[8:56] - pose[8:56], axis=-1).mean()
    assert err_edit < err_free, (err_edit, err_free)
    with pytest.raises(ModelError, match="the edits cover 10 frames but the song has 160"):
        maskdance.generate_motion(net, stats, audio, pose[0], constraints=Constraints.free(10))


def _reloaded(result: dict, stats) -> maskdance.MaskDance:
    """The fit's network, saved and loaded back with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save({**result, "stats": stats.to_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    again = maskdance.build(loaded["arch"])
    again.load_state_dict(loaded["model"])
    return again.eval()


def test_fit_history_and_weights_only_round_trip(trained):
    result, stats, net = trained
    steps = [e for e in result["history"] if "step" in e]
    assert steps and any("vq_step" in e for e in result["history"])
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert 0.0 <= steps[-1]["val_accuracy"] <= 1.0
    again = _reloaded(result, stats)
    audio = np.random.default_rng(2).standard_normal((80, FEATURES)).astype(np.float32)
    a = maskdance.generate_motion(net, stats, audio, stats.mean_pose(), seed=0)
    b = maskdance.generate_motion(again, stats, audio, stats.mean_pose(), seed=0)
    np.testing.assert_array_equal(a[0], b[0])
    with pytest.raises(ModelError, match="--no-such-setting is not a setting of model maskdance"):
        tiny(no_such_setting=1)


def test_trains_on_the_demo_shards_and_generates_with_a_keyframe(demo_shards, tmp_path):
    """`kakashi train`'s path on the demo shards (a few steps), then a dance with a keyframe
    from a real test dance: the keyframe's step, and only it, keeps its code."""
    from kakashi.models.checkpoint import load_checkpoint, load_model
    from kakashi.models.distributed import train
    from kakashi.shards import list_shards, read_shard

    out = tmp_path / "maskdance.pt"
    small = dict(TINY, vq_steps=10, mask_steps=10, log_every=5, window=16, overlap=8)
    train(resolve("maskdance", {}, {**small, "shards": str(demo_shards), "out": str(out)}), False)
    assert load_checkpoint(out)["arch"]["kind"] == "maskdance"
    model = load_model(out)
    assert model.takes_option("constraints") and model.takes_option("style")
    arrays, _ = read_shard(list_shards(demo_shards, "test")[0], ["audio", "pose"])
    audio, real = arrays["audio"][:200], arrays["pose"][:200].reshape(-1, 17, 3)
    real = real - real[:, :1]
    key = Constraints.free(len(audio))
    key.pose[120] = real[120]
    pose, root = model.generate_motion(audio, model.stats.mean_pose(), 0, constraints=key)
    assert pose.shape == (200, 17, 3) and root.shape == (200, 3) and np.isfinite(pose).all()
    # The keyframe fixes the codes of its step (frame 120: step 30) and of no other step.
    given = maskdance.given_codes(model.net, model.stats, key, 50)
    assert (given[30] >= 0).all() and (np.delete(given, 30, axis=0) < 0).all()
    other, _ = model.generate_motion(audio, model.stats.mean_pose(), 1, constraints=key)
    assert not np.array_equal(pose, other)  # the rest is generated: seeds differ


def test_rhythm_input_and_tempo_stretch_train_from_the_demo_shards(demo_shards, tmp_path):
    """music_input rhythm and tempo_stretch through `kakashi train`'s path: the checkpoint
    names the rhythm columns, and its dance of a song does not change with the song's mfcc
    and chroma (the same seed, the same dance)."""
    from kakashi.models.checkpoint import load_checkpoint, load_model
    from kakashi.models.distributed import train
    from kakashi.shards import list_shards, read_shard

    out = tmp_path / "maskdance.pt"
    small = dict(TINY, vq_steps=10, mask_steps=10, log_every=5, window=16, overlap=8)
    settings = {**small, "music_input": "rhythm", "tempo_stretch": 0.1}
    train(
        resolve("maskdance", {}, {**settings, "shards": str(demo_shards), "out": str(out)}), False
    )
    checkpoint = load_checkpoint(out)
    names = checkpoint["stats"]["feature_names"]
    rhythm = [names.index(n) for n in ("onset_strength", "beat", "onset_peak")]
    assert checkpoint["arch"]["music_columns"] == rhythm
    assert checkpoint["arch"]["music_input"] == "rhythm"
    model = load_model(out)
    arrays, _ = read_shard(list_shards(demo_shards, "test")[0], ["audio"])
    audio = arrays["audio"][:120]
    other = audio.copy()
    timbre = [c for c in range(audio.shape[1]) if c not in rhythm]
    other[:, timbre] = np.random.default_rng(0).standard_normal((len(audio), len(timbre)))
    start = model.stats.mean_pose()
    a, _ = model.generate_motion(audio, start, 0)
    b, _ = model.generate_motion(other, start, 0)
    np.testing.assert_array_equal(a, b)
    louder = audio.copy()
    louder[:, rhythm[0]] = louder[::-1, rhythm[0]]  # other onsets: another dance
    c, _ = model.generate_motion(louder, start, 0)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------- root_frame: body


def _spun(seq: Sequence, yaw: float) -> Sequence:
    """``seq`` turned about the vertical axis by ``yaw`` (radians): pose and root."""
    c, s = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], np.float64)
    pose = (seq.pose.astype(np.float64) @ turn.T).astype(np.float32)
    root = (seq.root.astype(np.float64) @ turn.T).astype(np.float32)
    return Sequence(seq.name, seq.audio, pose, root, seq.conf, seq.fps, seq.feature_names, 512)


def test_body_frame_velocity_round_trips_and_ignores_the_facing(sequences):
    """Real mocap: body -> world with the same poses gives the world velocity back; the same
    dance turned by a constant yaw has other world velocities but the same body ones."""
    for seq in sequences:
        world = root_velocity(seq.root.astype(np.float64), seq.pose, "world")
        body = root_velocity(seq.root.astype(np.float64), seq.pose, "body")
        assert np.abs(world[:, [0, 2]]).max() > 1e-3  # the dancer travels
        np.testing.assert_allclose(root_to_world(body, seq.pose), world, rtol=0, atol=1e-15)
        np.testing.assert_array_equal(body[:, 1], world[:, 1])  # up is up in both
        spun = _spun(seq, 2.0)
        spun_world = motion_of(spun.pose, spun.root)[:, POSE_DIM:]
        spun_body = motion_of(spun.pose, spun.root, "body")[:, POSE_DIM:]
        assert np.abs(spun_world - world).max() > 1e-3
        np.testing.assert_allclose(spun_body, body, rtol=0, atol=2e-6)  # float32 storage
    # Facing +z (yaw 0) the body frame is the world frame: x left, z forward.
    rest = np.zeros((1, skeleton.NUM_JOINTS, 3))
    rest[0, skeleton.INDEX["left_hip"], 0], rest[0, skeleton.INDEX["right_hip"], 0] = 0.1, -0.1
    step = np.array([[0.3, 0.0, 0.5]])
    np.testing.assert_array_equal(root_to_body(step, rest), step)
    with pytest.raises(ValueError, match="root_frame must be one of"):
        root_velocity(seq.root, seq.pose, "camera")


def test_finish_turns_a_body_frame_velocity_back_to_the_world(sequences):
    """The real dance's body-frame motion, finished by a body-frame arch, travels as its
    world-frame motion finished by a world-frame arch (the bone projection nudges the
    heading: under a millimetre); an arch without the key is the world frame, bit for bit."""
    seq = sequences[1]
    arch = {"down": 4, "smooth": 0.0, "foot_lock": 0.0}
    out = {}
    for frame in ROOT_FRAMES:
        stats = compute_stats(sequences, frame)
        motion = (motion_of(seq.pose, seq.root, frame) - stats.motion_mean) / stats.motion_std
        motion = motion.astype(np.float32)
        out[frame] = finish_motion(motion.copy(), motion[0], stats, {**arch, "root_frame": frame})
        if frame == "world":
            old = finish_motion(motion.copy(), motion[0], stats, arch)  # a pre-setting arch
            np.testing.assert_array_equal(old[0], out[frame][0])
            np.testing.assert_array_equal(old[1], out[frame][1])
    travel = np.abs(out["world"][1] - out["world"][1][0]).max()
    assert travel > 0.2, travel
    np.testing.assert_allclose(out["body"][1], out["world"][1], rtol=0, atol=1e-3)
    np.testing.assert_allclose(out["body"][0], out["world"][0], rtol=0, atol=1e-6)


def test_root_frames_train_and_an_old_arch_is_the_world_frame(trained, sequences):
    """The schema's frame (body) is kept in the arch and its edits encode; a world-frame
    maskdance trains, edits and generates too, and given_codes of an arch without the key
    (a checkpoint from before the setting) are the world frame's, bit for bit."""
    result, stats, net = trained
    assert result["arch"]["root_frame"] == "body"
    seq, frames = sequences[2], 96
    pose, root = _real(seq, frames)
    whole = Constraints.free(frames)
    whole.pose[:], whole.root[:] = pose, root
    assert (maskdance.given_codes(net, stats, whole, frames // 4) >= 0).all()

    world_stats = compute_stats(sequences, "world")
    world = maskdance_train.fit(
        tiny(root_frame="world", vq_steps=20, mask_steps=10),
        sequences[:2],
        sequences[2:],
        world_stats,
        torch.device("cpu"),
    )
    assert world["arch"]["root_frame"] == "world"
    world_net = maskdance.build(world["arch"])
    world_net.load_state_dict(world["model"])
    codes = maskdance.given_codes(world_net.eval(), world_stats, whole, 24)
    old = maskdance.build({k: v for k, v in world["arch"].items() if k != "root_frame"})
    old.load_state_dict(world["model"])
    np.testing.assert_array_equal(maskdance.given_codes(old.eval(), world_stats, whole, 24), codes)
    dance, travel = maskdance.generate_motion(world_net, world_stats, seq.audio[:frames], pose[0])
    assert dance.shape == (frames, 17, 3) and np.isfinite(travel).all()


def test_style_guidance_steers_only_a_styled_dance_and_needs_a_style_free_model(sequences):
    """Classifier-free guidance: a model trained with style_drop guides a dance with a style
    (seeded, different from the unguided one); a dance without a style, or guidance 1, is
    the unguided dance bit for bit; guidance without style_drop is refused at training on
    labelled shards (unlabelled ones have nothing to guide)."""
    labelled = [
        dataclasses.replace(s, style=st) for s, st in zip(sequences, ("a", "b", "a"), strict=True)
    ]
    settings = tiny(style_drop=0.5, guidance=1.0, vq_steps=20, mask_steps=20)
    stats = compute_stats(labelled, settings.root_frame)
    result = maskdance_train.fit(settings, labelled[:2], labelled[2:], stats, torch.device("cpu"))
    assert result["arch"]["styles"] == ["a", "b"] and result["arch"]["guidance"] == 1.0

    def dance(guidance: float, style: str | None, seed: int = 0) -> np.ndarray:
        net = maskdance.build({**result["arch"], "guidance": guidance})
        net.load_state_dict(result["model"])
        audio = labelled[2].audio[:160]
        pose, _ = maskdance.generate_motion(
            net.eval(), stats, audio, labelled[2].pose[0], seed, style
        )
        return pose

    plain = dance(1.0, "a")
    guided = dance(4.0, "a")
    np.testing.assert_array_equal(guided, dance(4.0, "a"))  # seeded
    assert np.isfinite(guided).all() and not np.array_equal(guided, plain)
    np.testing.assert_array_equal(dance(4.0, None), dance(1.0, None))  # no style: no guidance

    unlabelled = tiny(guidance=3.0, style_drop=0.0, vq_steps=5, mask_steps=5)
    maskdance_train.fit(unlabelled, sequences[:2], sequences[2:], stats, torch.device("cpu"))
    with pytest.raises(ValueError, match="style_drop"):
        maskdance_train.fit(
            tiny(guidance=3.0, style_drop=0.0),
            labelled[:2],
            labelled[2:],
            stats,
            torch.device("cpu"),
        )


# ---------------------------------------------------------------- residual quantizers


@pytest.fixture(scope="module")
def residual(sequences):
    """A tiny maskdance over three residual layers: tokenizer, masked and residual
    transformer trained."""
    settings = tiny(quantizers=3)
    stats = compute_stats(sequences, settings.root_frame)
    result = maskdance_train.fit(settings, sequences[:2], sequences[2:], stats, torch.device("cpu"))
    net = maskdance.build(result["arch"])
    net.load_state_dict(result["model"])
    return result, stats, net.eval()


def test_residual_layers_code_finer_motion_and_the_first_decodes_alone(residual, sequences):
    result, stats, net = residual
    pose, root = _real(sequences[2], 160)
    motion = motion_of(pose, root, result["arch"]["root_frame"])
    motion = torch.from_numpy((motion - stats.motion_mean) / stats.motion_std).float()[None]
    codes = net.tokenizer.encode(motion)
    assert codes.shape == (1, 40, 2, 3) and codes.dtype == torch.long
    with torch.no_grad():
        errors = [
            ((net.tokenizer.decode(codes[..., :layers]) - motion) ** 2).mean().item()
            for layers in (1, 2, 3)
        ]
    assert errors[2] < errors[1] < errors[0], errors  # each layer codes what is left
    entries = [e for e in result["history"] if "residual_step" in e]
    assert [e["residual_step"] for e in entries] == [20.0, 40.0]
    assert 0.0 <= entries[-1]["residual_val_accuracy"] <= 1.0
    assert np.isfinite(entries[-1]["residual_val_loss"])


def test_quantizer_dropout_cuts_only_the_training_forwards_it_is_on_for(residual, sequences):
    """The switch the tokenizer's training flips on a quantizer_dropout share of steps: on,
    some forwards leave the finer layers out (-1), never the first; off, or in eval, none."""
    result, stats, net = residual
    tok = copy.deepcopy(net.tokenizer)  # a training forward moves the EMA codebooks
    pose, root = _real(sequences[2], 160)
    motion = motion_of(pose, root, result["arch"]["root_frame"])
    motion = torch.from_numpy((motion - stats.motion_mean) / stats.motion_std).float()[None]
    torch.manual_seed(0)  # vector-quantize-pytorch seeds its depth draw from torch's generator

    def codes(training: bool, on: bool) -> list[torch.Tensor]:
        tok.train(training)
        tok.drop_layers(on)
        with torch.no_grad():
            return [tok(motion)[1] for _ in range(12)]

    cut = codes(True, True)
    assert any((c[..., 1:] == -1).any() for c in cut)
    assert all((c[..., 0] >= 0).all() for c in cut)
    assert all((c >= 0).all() for c in codes(True, False) + codes(False, True))


def test_an_arch_without_quantizers_is_one_codebook(trained):
    """Checkpoints from before the setting: no key, one codebook, the same dance."""
    result, stats, net = trained
    assert result["arch"]["quantizers"] == 1 and net.residual is None
    old = maskdance.build({k: v for k, v in result["arch"].items() if k != "quantizers"})
    old.load_state_dict(result["model"])
    assert old.residual is None
    audio = np.random.default_rng(3).standard_normal((90, FEATURES)).astype(np.float32)
    a = maskdance.generate_motion(net, stats, audio, stats.mean_pose(), seed=1)
    b = maskdance.generate_motion(old.eval(), stats, audio, stats.mean_pose(), seed=1)
    np.testing.assert_array_equal(a[0], b[0])


def test_residual_transformer_reads_only_the_layers_below(residual):
    _, _, net = residual
    model = net.residual
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(32, (1, 12, 2, 3), generator=gen)
    music = torch.randn(1, 12, 32, generator=gen)
    with torch.no_grad():
        first = model(codes, music, torch.tensor([1]))
        changed = codes.clone()
        changed[..., 1:] = torch.randint(32, (1, 12, 2, 2), generator=gen)
        assert torch.equal(model(changed, music, torch.tensor([1])), first)  # layer 1 reads 0
        assert not torch.allclose(model(changed, music, torch.tensor([2])),
                                  model(codes, music, torch.tensor([2])))  # fmt: skip
        assert first.shape == (1, 12, 2, 32)


def test_residual_decoding_keeps_given_codes_and_edits_keep_every_layer(residual, sequences):
    result, stats, net = residual
    music = torch.randn(30, 32, generator=torch.Generator().manual_seed(1))
    codes = np.full((30, 2, 3), -1)
    codes[:, :, 0] = np.arange(60).reshape(30, 2) % 32  # the masked transformer's choice
    codes[5:9, 1, 1:] = 7  # an upper body given at every layer
    out = maskdance.fill_residual(net.residual, codes, music, 4)
    np.testing.assert_array_equal(out[codes >= 0], codes[codes >= 0])
    assert ((out >= 0) & (out < 32)).all()
    np.testing.assert_array_equal(maskdance.fill_residual(net.residual, codes, music, 4), out)
    # windows of 12 steps every 8: the first window's codes stay those of a fill of it alone
    alone = maskdance.fill_residual(net.residual, codes[:12], music[:12], 4)
    np.testing.assert_array_equal(out[:12], alone)

    seq, frames = sequences[2], 160
    pose, root = _real(seq, frames)
    span = Constraints.free(frames)
    span.pose[:64], span.root[:64], span.exact[:64] = pose[:64], root[:64], True
    given = maskdance.given_codes(net, stats, span, frames // 4)
    assert given.shape == (40, 2, 3)
    assert (given[:16] >= 0).all() and (given[16:] < 0).all()
    upper = Constraints.free(frames)  # keep the upper body: every layer of its codes
    upper.pose[:, 7:] = pose[:, 7:]
    kept = maskdance.given_codes(net, stats, upper, frames // 4)
    assert (kept[:, 1] >= 0).all() and (kept[:, 0] < 0).all()
    model = net.transformer
    audio_n = (seq.audio[:frames] - stats.audio_mean) / stats.audio_std
    pooled = maskdance.pool_audio(audio_n.astype(np.float32), 4, frames // 4)
    padded = torch.from_numpy(np.pad(pooled, ((model.back, model.ahead), (0, 0))))[None]
    with torch.no_grad():
        cond = model.music_features(padded, None)[0]
        chosen = maskdance.sample_codes(net, cond, kept, seed=0)
        chosen = maskdance.fill_residual(net.residual, chosen, cond, 4)
    np.testing.assert_array_equal(chosen[:, 1], kept[:, 1])  # the upper body, every layer
    assert (chosen >= 0).all()
    a = maskdance.generate_motion(net, stats, seq.audio[:frames], pose[0], seed=2,
                                  constraints=span)  # fmt: skip
    again = _reloaded(result, stats)
    b = maskdance.generate_motion(again, stats, seq.audio[:frames], pose[0], seed=2,
                                  constraints=span)  # fmt: skip
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.isfinite(a[0]).all() and a[0].shape == (frames, 17, 3)
