"""motif: tokenizer, choreographer causality, generation, training and checkpoints.

Tiny networks on real motion (CMU subject 131 mocap from the shared test data) with
synthetic audio features; the whole file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from conftest import NOISE_FEATURES, mocap_sequences
from kakashi import skeleton
from kakashi.errors import ModelError
from kakashi.models import motif, motif_train
from kakashi.models.config import TrainConfig, resolve
from kakashi.models.data import Sequence, compute_stats, motion_of

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
    "context": 12,
    "gpt_batch": 8,
    "gpt_steps": 40,
    "log_every": 20,
}
FEATURES = NOISE_FEATURES  # the width of the fixture sequences' audio


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**changes) -> TrainConfig:
    """motif's settings as every trainer gets them: the schema's defaults, then these."""
    return resolve("motif", {}, {**TINY, **changes})


def tiny_arch(**changes) -> dict:
    settings = tiny()
    arch = {key: getattr(settings, key) for key in motif_train.ARCH_KEYS}
    arch["audio_dim"] = FEATURES
    arch.update(changes)
    return arch


@pytest.fixture(scope="module")
def sequences() -> list[Sequence]:
    return mocap_sequences()


@pytest.fixture(scope="module")
def trained(sequences):
    torch.manual_seed(0)
    stats = compute_stats(sequences)
    result = motif_train.fit(tiny(), sequences[:2], sequences[2:], stats, torch.device("cpu"))
    return result, stats


def normalised(seq: Sequence, stats) -> torch.Tensor:
    motion = (motion_of(seq.pose, seq.root) - stats.motion_mean) / stats.motion_std
    return torch.from_numpy(motion.astype(np.float32))


def test_tokenizer_shapes_and_usage(sequences):
    stats = compute_stats(sequences)
    torch.manual_seed(0)
    tok = motif.build(tiny_arch()).tokenizer.train()
    motion = normalised(sequences[0], stats)[:96].reshape(3, 32, -1)
    out, codes, loss = tok(motion)  # first call: k-means init from this batch
    assert out.shape == (3, 32, 54) and codes.shape == (3, 8, 2) and loss.ndim == 0
    codes = tok.encode(motion)
    assert codes.shape == (3, 8, 2) and codes.dtype == torch.long
    assert tok.decode(codes).shape == (3, 32, 54)
    for part in range(2):  # k-means init spreads the real motion over many codes
        assert len(codes[..., part].unique()) >= 8


def test_dead_codes_restart(sequences):
    stats = compute_stats(sequences)
    torch.manual_seed(0)
    tok = motif.build(tiny_arch(dead_code=2.0)).tokenizer.train()
    motion = normalised(sequences[0], stats)[:128].reshape(4, 32, -1)
    tok(motion)
    book = tok.parts[0].vq._codebook
    with torch.no_grad():
        book.embed[0, :5] = 1e3  # far from every latent: never chosen
        book.embed_avg[0, :5] = 1e3
        book.cluster_size[0, :5] = 0.0
    tok(motion)
    assert book.embed[0, :5].abs().max() < 1e2  # restarted from latents of the batch


def test_choreographer_is_causal():
    torch.manual_seed(0)
    arch = tiny_arch(dropout=0.0, music_back=1, music_ahead=2, summary=True)
    model = motif.build(arch).choreographer.eval()
    length, cut = 12, 5
    prev = torch.randint(32, (1, length, 2))
    target = torch.randint(32, (1, length, 2))
    pooled = torch.randn(1, length, FEATURES * 4)
    summary = torch.randn(1, 2 * FEATURES)  # the song's summary: global, held fixed
    with torch.no_grad():
        base = model(prev, model.music_features(pooled, summary), target)
        prev2, target2, pooled2 = prev.clone(), target.clone(), pooled.clone()
        prev2[:, cut + 1 :] = torch.randint(32, (1, length - cut - 1, 2))
        target2[:, cut + 1 :] = torch.randint(32, (1, length - cut - 1, 2))
        pooled2[:, cut + 1 + arch["music_ahead"] :] += 5.0
        changed = model(prev2, model.music_features(pooled2, summary), target2)
    for a, b in zip(base, changed, strict=True):
        assert torch.allclose(a[:, : cut + 1], b[:, : cut + 1], atol=1e-5)
        assert not torch.allclose(a[:, cut + 1 :], b[:, cut + 1 :])


def test_numpy_stepper_matches_torch():
    """Generation's numpy trunk (one step at a time, key/value cache) = the torch forward."""
    torch.manual_seed(0)
    model = motif.build(tiny_arch(dropout=0.0)).choreographer.eval()
    prev = torch.randint(32, (1, 10, 2))
    music = torch.randn(1, 10, 32)
    with torch.no_grad():
        full = model.trunk(model.embed(prev, music))[0]
        logits = model.logits(full, 1, prev[0])
    stepper = motif.Stepper(model)
    block = stepper.advance(stepper.inputs(prev[0, :4].numpy(), music[0, :4].numpy()))
    steps = [block] + [
        stepper.advance(stepper.inputs(prev[0, i : i + 1].numpy(), music[0, i : i + 1].numpy()))
        for i in range(4, 10)
    ]
    np.testing.assert_allclose(np.concatenate(steps), full.numpy(), atol=1e-4)
    mine = stepper.logits(full[9].numpy(), 1, prev[0, 9].numpy())
    np.testing.assert_allclose(mine, logits[9].numpy(), atol=1e-4)


def test_generation_seeded_exact_length_any_song(trained, sequences):
    result, stats = trained
    net = motif.build(result["arch"])
    net.load_state_dict(result["model"])
    rng = np.random.default_rng(1)
    first = sequences[0].pose[10]
    for frames in (1, 7, 33, 101):  # odd lengths, shorter than a step, longer than the context
        audio = rng.standard_normal((frames, FEATURES)).astype(np.float32)
        pose, root = motif.generate_motion(net, stats, audio, first, seed=3)
        assert pose.shape == (frames, 17, 3) and root.shape == (frames, 3)
        assert pose.dtype == np.float32 and root.dtype == np.float32
        assert np.isfinite(pose).all() and np.isfinite(root).all()
    pose2, root2 = motif.generate_motion(net, stats, audio, first, seed=3)
    np.testing.assert_array_equal(pose, pose2)
    np.testing.assert_array_equal(root, root2)
    pose3, _ = motif.generate_motion(net, stats, audio, first, seed=4)
    assert not np.array_equal(pose, pose3)
    # frame 0 is the start pose (on the training skeleton), every bone has its length
    bones = skeleton.bone_lengths(pose)
    np.testing.assert_allclose(bones, np.broadcast_to(stats.bone_lengths, bones.shape), atol=1e-4)
    np.testing.assert_allclose(pose[0, 1:4] - pose[0, 0], first[1:4] - first[0], atol=0.05)
    assert np.abs(np.diff(pose, axis=0)).mean() > 1e-4  # it moves


def test_fit_history_and_checkpoint_round_trip(trained, sequences):
    result, stats = trained
    assert any("vq_step" in e for e in result["history"])
    assert any("gpt_step" in e for e in result["history"])
    for entry in result["history"]:
        assert all(isinstance(v, float) for v in entry.values())
    first = [e for e in result["history"] if "gpt_step" in e]
    assert first[-1]["gpt_loss"] < first[0]["gpt_loss"] + 1e-6 or first[-1]["gpt_loss"] < np.log(32)
    buffer = io.BytesIO()
    torch.save({**result, "stats": stats.to_dict()}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    audio = np.random.default_rng(2).standard_normal((50, FEATURES)).astype(np.float32)
    outputs = []
    for payload in (result, loaded):
        net = motif.build(payload["arch"])
        net.load_state_dict(payload["model"])
        outputs.append(motif.generate_motion(net, stats, audio, stats.mean_pose(), seed=0))
    np.testing.assert_array_equal(outputs[0][0], outputs[1][0])


def test_fit_is_deterministic(sequences):
    stats = compute_stats(sequences)
    quick = tiny(vq_steps=5, gpt_steps=5, log_every=5)
    a = motif_train.fit(quick, sequences[:1], [], stats, torch.device("cpu"))
    b = motif_train.fit(quick, sequences[:1], [], stats, torch.device("cpu"))
    for key, value in a["model"].items():
        if key.endswith(("codebook_mean", "codebook_variance")):
            continue  # unused buffers the library leaves uninitialised
        assert torch.equal(value, b["model"][key]), key
    with pytest.raises(ModelError, match="--no-such-setting is not a setting of model motif"):
        tiny(no_such_setting=1)


def test_foot_lock_keeps_planted_feet_and_moves_only_the_root(trained, sequences):
    """Real mocap dragged sideways at 0.8 m/s skates on most frames; settling the dance's
    own planted feet brings it back to the real take's skating, through the root alone."""
    from kakashi.evaluate.quality import skate_rate
    from kakashi.kinematics import settle_own_feet

    for seq in sequences:
        pose, real = seq.pose.astype(np.float64), seq.root.astype(np.float64)
        root = real.copy()
        root[:, 0] += np.arange(len(pose)) * 0.8 / seq.fps
        np.testing.assert_array_equal(settle_own_feet(pose, root, seq.fps, 0.0), root)
        half = settle_own_feet(pose, root, seq.fps, 0.5)
        full = settle_own_feet(pose, root, seq.fps, 1.0)
        np.testing.assert_array_equal(full[:, 1], root[:, 1])  # the height is untouched
        truth, dragged, halved, locked = (
            skate_rate(pose + r[:, None], seq.fps) for r in (real, root, half, full)
        )
        assert dragged > 0.5 and halved < 0.3 * dragged, (dragged, halved)
        # measured (real, locked): 0.056 / 0.044, 0.016 / 0.032, 0.072 / 0.040
        assert locked < truth + 0.025, (truth, locked)

    # In generation: the same pose and root height, only the horizontal root changes.
    result, stats = trained
    net = motif.build(result["arch"])
    net.load_state_dict(result["model"])
    assert net.arch["foot_lock"] == 0.0  # the schema's default: off
    audio = np.random.default_rng(2).standard_normal((90, FEATURES)).astype(np.float32)
    first = sequences[0].pose[10]
    pose, root = motif.generate_motion(net, stats, audio, first, seed=1)
    pose_l, root_l = motif.generate_motion(net, stats, audio, first, seed=1, foot_lock=1.0)
    np.testing.assert_array_equal(pose, pose_l)
    np.testing.assert_array_equal(root[:, 1], root_l[:, 1])
