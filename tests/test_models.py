"""Seed RNN, C-RNN-GAN, training loop, checkpoints and generation, on the real demo shards."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile
import torch

from conftest import TINY_TOKEN_MODELS, shared_file
from kakashi import skeleton
from kakashi.cli import main
from kakashi.errors import CheckpointError, MediaError, ModelError
from kakashi.kinematics import project_bones
from kakashi.models.checkpoint import load_checkpoint, load_model, paths_for, save_checkpoint
from kakashi.models.config import TrainConfig, config_from, resolve
from kakashi.models.crnngan_train import state_digest
from kakashi.models.data import (
    load_training_data,
    make_windows,
    mirror_sequence,
    motion_of,
    read_split,
    stretch_sequence,
)
from kakashi.models.distributed import train
from kakashi.models.generate import generate, generate_split
from kakashi.models.rnn import generate_motion, masked_loss
from kakashi.models.stats import POSE_DIM

SONG = "music_librosa/sorohanro_-_solo-trumpet-06.hq.ogg"  # 5.3 s: fast to generate for

# Tiny and fast: one LSTM layer, 1-s windows, no scheduled sampling unless a test asks.
TINY = dict(hidden=32, layers=1, window_s=1.0, stride_s=1.0, batch_size=16, lr=3e-3,
            teacher_min=1.0, input_noise=0.0, dropout=0.0)  # fmt: skip


def tiny(shards: Path, out: Path, model: str = "rnn", **changes) -> TrainConfig:
    settings = {**TINY, **changes}
    if model != "rnn":  # the GAN takes its architecture and its data view from the RNN
        for key in ("hidden", "layers", "dropout", "teacher_min", "input_noise"):
            settings.pop(key, None)
    return resolve(model, {}, {**settings, "shards": str(shards), "out": str(out)})


def model_from_checkpoint(path: Path):
    """(network, stats, checkpoint dict) through the one loader every consumer uses."""
    loaded = load_model(path)
    return loaded.net, loaded.stats, loaded.payload


@pytest.fixture(scope="module")
def rnn_checkpoint(demo_shards: Path, tmp_path_factory) -> Path:
    """A seed RNN trained for 6 epochs on the demo shards (a few seconds)."""
    out = tmp_path_factory.mktemp("rnn") / "rnn.pt"
    train(tiny(demo_shards, out, epochs=6), progress=False)
    return out


def history(out: Path) -> list[dict]:
    return load_checkpoint(paths_for(out)["last"])["history"]


# ------------------------------------------------------------------ data


def test_mirror_maps_pose_to_its_mirror_and_back(demo_shards: Path) -> None:
    (seq,) = read_split(demo_shards, "train")
    mirrored = mirror_sequence(seq)
    left, right = skeleton.INDEX["left_wrist"], skeleton.INDEX["right_wrist"]
    # The mirrored left wrist is the original right wrist reflected in the x = 0 plane.
    np.testing.assert_allclose(mirrored.pose[:, left, 0], -seq.pose[:, right, 0])
    np.testing.assert_allclose(mirrored.pose[:, left, 1:], seq.pose[:, right, 1:])
    np.testing.assert_array_equal(mirrored.audio, seq.audio)
    back = mirror_sequence(mirrored)
    np.testing.assert_array_equal(back.pose, seq.pose)
    np.testing.assert_array_equal(back.root, seq.root)
    # The root velocity (last 3 motion columns) flips its x too.
    root = seq.root + np.linspace(0, 1, len(seq.root))[:, None]  # a moving root
    moved = mirror_sequence(type(seq)(**{**seq.__dict__, "root": root}))
    np.testing.assert_allclose(
        motion_of(moved.pose, moved.root)[:, POSE_DIM], -motion_of(seq.pose, root)[:, POSE_DIM]
    )


def test_tempo_stretch_resamples_dance_and_music_together(demo_shards: Path) -> None:
    (seq,) = read_split(demo_shards, "train")
    before = copy.deepcopy(seq)
    beat = seq.feature_names.index("beat")
    for rate in (0.9, 1.1):
        fast = stretch_sequence(seq, rate)
        assert fast.name == f"dancer-a~tempo{rate:g}"
        assert len(fast.pose) == len(fast.audio) == len(fast.root) == len(fast.conf)
        assert len(fast.pose) == round(len(seq.pose) / rate)
        # Frame i of the stretch is time i * rate of the source: a pose there is between the
        # source's neighbouring frames, linearly.
        i = 17
        lo, w = int(i * rate), i * rate - int(i * rate)
        np.testing.assert_allclose(
            fast.pose[i], (1 - w) * seq.pose[lo] + w * seq.pose[lo + 1], atol=1e-5
        )
        # Every beat survives as one impulse, at its time in the new tempo.
        hits = np.flatnonzero(seq.audio[:, beat])
        assert np.count_nonzero(fast.audio[:, beat]) == len(hits)
        np.testing.assert_array_equal(
            np.flatnonzero(fast.audio[:, beat]), np.round(hits / rate).astype(int)
        )
    for field in ("pose", "root", "audio", "conf"):  # the source is not modified
        np.testing.assert_array_equal(getattr(seq, field), getattr(before, field))
    train_seqs, _, _ = load_training_data(demo_shards, mirror=False, tempo_stretch=0.1)
    assert [s.name for s in train_seqs] == ["dancer-a", "dancer-a~tempo0.9", "dancer-a~tempo1.1"]


def test_statistics_come_from_the_train_split_only(demo_shards: Path) -> None:
    train_seqs, val_seqs, stats = load_training_data(demo_shards, mirror=True)
    assert [s.name for s in train_seqs] == ["dancer-a", "dancer-a~mirror"]
    assert [s.name for s in val_seqs] == ["dancer-b"]
    audio = np.concatenate([s.audio for s in train_seqs])
    np.testing.assert_allclose(stats.audio_mean, audio.mean(0), rtol=1e-5, atol=1e-5)
    # With mirrors the mean pose is left-right symmetric: x of the mean pelvis-centred hips cancel.
    mean = stats.mean_pose()
    np.testing.assert_allclose(mean[1, 0], -mean[4, 0], atol=1e-5)
    with pytest.raises(ModelError, match="test split"):
        read_split(demo_shards, "test")
    (windows,) = make_windows(train_seqs, stats, window=30, stride=30)
    assert windows.audio.shape[1:] == (31, 35) and windows.motion.shape[1:] == (31, 54)


# ------------------------------------------------------------------ training


def test_training_reduces_loss(rnn_checkpoint: Path) -> None:
    rows = history(rnn_checkpoint)
    assert len(rows) == 6
    assert rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    files = paths_for(rnn_checkpoint)
    assert files["csv"].read_text().splitlines()[0].startswith("epoch,step,teacher_prob,train_loss")
    assert files["png"].stat().st_size > 1000


def test_checkpoint_round_trip_gives_identical_outputs(
    rnn_checkpoint: Path, demo_shards: Path, tmp_path: Path
) -> None:
    payload = torch.load(rnn_checkpoint, weights_only=True)  # plain tensors/dicts only
    assert payload["kakashi_version"] and payload["config"]["hidden"] == 32
    model, stats, _ = model_from_checkpoint(rnn_checkpoint)
    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, payload)
    model2, stats2, _ = model_from_checkpoint(copy)
    (val,) = read_split(demo_shards, "val")
    first = generate_motion(model, stats, val.audio[:60], stats.mean_pose())
    second = generate_motion(model2, stats2, val.audio[:60], stats2.mean_pose())
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert np.abs(first[0][1:] - first[0][:1]).max() > 1e-3  # it moves


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(demo_shards: Path, tmp_path: Path) -> None:
    resumed = tmp_path / "a" / "rnn.pt"
    train(tiny(demo_shards, resumed, epochs=2), progress=False)
    step_after_two = history(resumed)[-1]["step"]
    train(tiny(demo_shards, resumed, epochs=3), progress=False)
    rows = history(resumed)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    assert rows[-1]["step"] == step_after_two + step_after_two // 2
    # A run that never stopped ends with exactly the same weights.
    straight = tmp_path / "b" / "rnn.pt"
    train(tiny(demo_shards, straight, epochs=3), progress=False)
    a = load_checkpoint(paths_for(resumed)["last"])["model"]
    b = load_checkpoint(paths_for(straight)["last"])["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_resume_starts_afresh_on_other_data(demo_shards: Path, tmp_path: Path) -> None:
    """A finished run's .last.pt is not resumed when the train split changed under the same
    settings (a re-split sheet used to 'resume' at the last epoch and train nothing)."""
    import shutil

    shards = tmp_path / "shards"
    shutil.copytree(demo_shards, shards)
    out = tmp_path / "rnn.pt"
    train(tiny(shards, out, epochs=1), progress=False)
    before = load_checkpoint(out)["model"]
    # The val sequence joins train: same settings, other data.
    (val,) = (shards / "split=val").glob("*.parquet")
    val.rename(shards / "split=train" / val.name)
    manifest = shards / "_manifest.tsv"
    manifest.write_text(manifest.read_text().replace(f"{val.stem}\tval", f"{val.stem}\ttrain"))
    train(tiny(shards, out, epochs=1), progress=False)
    assert history(out)[-1]["epoch"] == 1
    after = load_checkpoint(out)["model"]  # trained again, not resumed past the end
    assert any(not torch.equal(after[key], before[key]) for key in before)


def test_crnngan_starts_afresh_from_a_retrained_seed_rnn(
    demo_shards: Path, tmp_path: Path, caplog
) -> None:
    """Same settings, same data, but the seed RNN trained again (another seed): the GAN's
    .last.pt started from other weights and is not resumed (the m2d run resumed it)."""
    seed_rnn, out = tmp_path / "rnn.pt", tmp_path / "gan.pt"
    gan = dict(model="crnngan", init=str(seed_rnn), window_s=0.5, batch_size=32)
    train(tiny(demo_shards, seed_rnn, epochs=1), progress=False)
    train(tiny(demo_shards, out, epochs=1, **gan), progress=False)
    with caplog.at_level("INFO"):
        train(tiny(demo_shards, out, epochs=2, **gan), progress=False)  # the same seed RNN
    assert "resuming" in caplog.text and "starting afresh" not in caplog.text
    assert [row["epoch"] for row in history(out)] == [1, 2]
    train(tiny(demo_shards, seed_rnn, epochs=1, seed=7), progress=False)
    caplog.clear()
    with caplog.at_level("WARNING"):
        train(tiny(demo_shards, out, epochs=2, **gan), progress=False)
    assert "started from other weights: starting afresh" in caplog.text
    assert [row["epoch"] for row in history(out)] == [1, 2]
    # The new .last.pt names the retrained seed RNN it started from.
    assert load_checkpoint(paths_for(out)["last"])["start"] == state_digest(
        load_checkpoint(seed_rnn)["model"]
    )


@pytest.mark.slow
def test_scheduled_sampling_runs_frame_by_frame(demo_shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "ss.pt"
    row = train(
        tiny(
            demo_shards,
            out,
            epochs=2,
            teacher_min=0.0,
            input_noise=0.05,
            window_s=0.5,
            batch_size=32,
        ),
        progress=False,
    )
    assert row["teacher_prob"] == 0.0
    assert np.isfinite(row["train_loss"]) and row["vel_ratio"] > 0


def test_config_layers_yaml_model_section_and_flags(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "fps: 30\ntrain:\n  epochs: 7\n  rnn:\n    hidden: 48\n    loss: huber\n"
        "  crnngan:\n    epochs: 3\n    d_lr: 0.001\n"
    )
    rnn = config_from(str(config), {"model": "rnn", "hidden": 16})
    assert (rnn.epochs, rnn.hidden, rnn.loss) == (7, 16, "huber")
    gan = config_from(str(config), {"model": "crnngan", "init": "rnn.pt"})
    assert (gan.epochs, gan.d_lr, gan.init) == (3, 0.001, "rnn.pt")
    # Defaults are the schema's: what the workflow runs is what a bare command runs.
    from kakashi.settings import default

    assert config_from(None, {"model": "rnn"}).hidden == default("train.rnn.hidden")
    config.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ModelError, match="unknown training setting train.epoch"):
        config_from(str(config), {})
    config.write_text("train:\n  hidden: 3\n")  # an rnn setting at the shared level
    with pytest.raises(ModelError, match="train.hidden .a setting of rnn"):
        config_from(str(config), {})
    with pytest.raises(ModelError, match="--noise-dim is not a setting of model rnn"):
        config_from(None, {"model": "rnn", "noise_dim": 4})
    # Ranges and choices are checked by jsonschema against the schema, as the workflow's are.
    with pytest.raises(
        ModelError, match=r"lr=-1.0: -1.0 is less than or equal to the minimum of 0 \(see train.lr"
    ):
        config_from(None, {"model": "rnn", "lr": -1.0})
    with pytest.raises(ModelError, match=r"loss='l1': 'l1' is not one of .*see train.rnn.loss"):
        config_from(None, {"model": "rnn", "loss": "l1"})
    assert config_from(None, {"model": "rnn", "mirror": "off"}).mirror is False
    with pytest.raises(ModelError, match="mirror='maybe': expected true or false"):
        config_from(None, {"model": "rnn", "mirror": "maybe"})


# ------------------------------------------------------------------ C-RNN-GAN


@pytest.mark.slow
def test_crnngan_trains_from_the_rnn_checkpoint(
    rnn_checkpoint: Path, demo_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gan.pt"
    # Half-second windows, 32 per batch: 3 steps an epoch (free-running rollouts are slow).
    config = tiny(
        demo_shards, out, model="crnngan", init=str(rnn_checkpoint), epochs=2,
        window_s=0.5, batch_size=32,
    )  # fmt: skip
    row = train(config, progress=False)
    rows = history(out)
    assert len(rows) == 2
    assert all(np.isfinite(r["d_loss"]) and np.isfinite(r["g_loss"]) for r in rows)
    # The generator starts as the RNN: with zero noise, before training, the outputs agree.
    from kakashi.models.crnngan import init_generator_from_rnn
    from kakashi.models.rnn import DanceRNN

    rnn, stats, payload = model_from_checkpoint(rnn_checkpoint)
    gen = DanceRNN(35, 54, 32, 1, 0.0, noise_dim=config.noise_dim).eval()
    init_generator_from_rnn(gen, payload["model"])
    audio, motion = torch.randn(2, 10, 35), torch.randn(2, 10, 54)
    torch.testing.assert_close(
        gen(audio, motion, noise=torch.zeros(2, 10, config.noise_dim)), rnn(audio, motion)
    )
    # Different noise seeds give different dances; the same seed the same dance.
    model, stats, _ = model_from_checkpoint(out)
    (val,) = read_split(demo_shards, "val")
    a = generate_motion(model, stats, val.audio[:40], stats.mean_pose(), seed=1)[0]
    b = generate_motion(model, stats, val.audio[:40], stats.mean_pose(), seed=1)[0]
    c = generate_motion(model, stats, val.audio[:40], stats.mean_pose(), seed=2)[0]
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-5
    assert row["epoch"] == 2


# ------------------------------------------------------------------ mixture output (MDN)


@pytest.fixture(scope="module")
def mdn_checkpoint(demo_shards: Path, tmp_path_factory) -> Path:
    """A seed RNN with a 2-component mixture output, 4 epochs with auto-conditioning."""
    out = tmp_path_factory.mktemp("mdn") / "rnn.pt"
    train(tiny(demo_shards, out, epochs=4, mixtures=2, autocond_free=3), progress=False)
    return out


def test_mixture_nll_is_the_mixture_log_likelihood_and_its_gradient_is_sane() -> None:
    from torch import distributions as D

    from kakashi.models.rnn import mixture_nll, output_size, split_mixture

    gen = torch.Generator().manual_seed(0)
    k, d = 3, 5
    out = torch.randn(4, 6, output_size(d, k), generator=gen, requires_grad=True)
    target = torch.randn(4, 6, d, generator=gen)
    logits, means, log_std = split_mixture(out, k, d)
    reference = D.MixtureSameFamily(
        D.Categorical(logits=logits), D.Independent(D.Normal(means, log_std.exp()), 1)
    )
    torch.testing.assert_close(mixture_nll(out, target, k), -reference.log_prob(target) / d)
    # One Gaussian at the target: the gradient pulls each mean toward its target value.
    single = torch.zeros(1, output_size(d, 1), requires_grad=True)
    value = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0]])
    mixture_nll(single, value, 1).sum().backward()
    mean_grad = single.grad[0, 1 : 1 + d]
    assert torch.all(torch.sign(mean_grad[value[0] != 0]) == -torch.sign(value[0][value[0] != 0]))
    # The std grows where the error is larger than it (|z| > 1) and shrinks where smaller.
    std_grad = single.grad[0, 1 + d :]
    assert torch.all((std_grad < 0) == (value[0].abs() > 1))
    assert torch.isfinite(single.grad).all()


def test_mixture_training_writes_a_sampling_checkpoint(mdn_checkpoint: Path) -> None:
    payload = torch.load(mdn_checkpoint, weights_only=True)
    arch = payload["arch"]
    assert arch["mixtures"] == 2 and arch["temperature"] == payload["config"]["temperature"]
    assert {"sample_smooth", "smooth"} <= set(arch)
    rows = history(mdn_checkpoint)
    assert all(np.isfinite(r["train_loss"]) and np.isfinite(r["val_loss"]) for r in rows)
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]  # the val NLL (may go below 0)
    model, _, _ = model_from_checkpoint(mdn_checkpoint)
    assert model.out.out_features == 2 * (1 + 2 * 54)


def test_mixture_sampling_is_seeded_and_tempered(mdn_checkpoint: Path, demo_shards: Path) -> None:
    model, stats, _ = model_from_checkpoint(mdn_checkpoint)
    (val,) = read_split(demo_shards, "val")
    audio, first = val.audio[:50], stats.mean_pose()
    a = generate_motion(model, stats, audio, first, seed=1)
    b = generate_motion(model, stats, audio, first, seed=1)
    c = generate_motion(model, stats, audio, first, seed=2)
    assert a[0].shape == (50, 17, 3) and a[1].shape == (50, 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert np.abs(a[0] - c[0]).max() > 1e-3  # another seed, another dance
    np.testing.assert_allclose(a[0][0], project_bones(torch.from_numpy(first), torch.from_numpy(
        stats.bone_lengths)).numpy() - first[0], atol=1e-5)  # fmt: skip
    # Temperature 0 with one component drawn by weight: only the component choice varies;
    # a hotter sample moves more, and smoothing removes frame-level ripple.
    cold = generate_motion(model, stats, audio, first, seed=1, temperature=0.0, smooth=0.0)[0]
    hot = generate_motion(model, stats, audio, first, seed=1, temperature=1.0, smooth=0.0)[0]
    soft = generate_motion(model, stats, audio, first, seed=1, temperature=1.0, smooth=2.0)[0]

    def jerk(pose):
        return np.abs(np.diff(pose, n=3, axis=0)).mean()

    assert jerk(hot) > jerk(cold) and jerk(soft) < 0.5 * jerk(hot)


def test_mixture_numpy_step_and_torch_sample_agree(mdn_checkpoint: Path) -> None:
    from kakashi.models.rnn import _NumpyStepper, split_mixture

    model, _, _ = model_from_checkpoint(mdn_checkpoint)
    stepper = _NumpyStepper(model)
    x = torch.randn(1, 2 * 35 + 54, generator=torch.Generator().manual_seed(3))
    out, _ = model.step(x[:, :35], x[:, 35:70], x[:, 70:])
    np.testing.assert_allclose(stepper(x[0].double().numpy()), out[0].detach(), atol=1e-5)
    # numpy: component, then mean + temperature * std * eps; torch draws the same way.
    eps = np.random.default_rng(0).standard_normal(54)
    drawn = stepper.sample(out[0].detach().double().numpy(), np.random.default_rng(0), eps, 0.5)
    _, means, log_std = split_mixture(out[0].detach().double(), 2, 54)
    options = [(means[j] + 0.5 * log_std[j].exp() * torch.from_numpy(eps)).numpy() for j in (0, 1)]
    assert any(np.allclose(drawn, option) for option in options)
    torch_draw = model.sample(out.detach(), torch.Generator().manual_seed(0), temperature=0.0)
    assert torch_draw.shape == (1, 54)
    assert any(torch.allclose(torch_draw[0], means[j].float()) for j in (0, 1))


def test_mixture_checkpoint_round_trip_and_old_checkpoints_load(
    mdn_checkpoint: Path, rnn_checkpoint: Path, demo_shards: Path, tmp_path: Path
) -> None:
    payload = torch.load(mdn_checkpoint, weights_only=True)
    copy = tmp_path / "copy.pt"
    save_checkpoint(copy, payload)
    (val,) = read_split(demo_shards, "val")
    first, second = (load_model(p) for p in (mdn_checkpoint, copy))
    a = first.generate_motion(val.audio[:30], first.stats.mean_pose(), 4)
    b = second.generate_motion(val.audio[:30], second.stats.mean_pose(), 4)
    np.testing.assert_array_equal(a[0], b[0])
    # A checkpoint from before the mixture output (no such arch keys) is a plain MSE network.
    old = torch.load(rnn_checkpoint, weights_only=True)
    for key in ("mixtures", "temperature", "sample_smooth", "smooth"):
        old["arch"].pop(key, None)
    save_checkpoint(tmp_path / "old.pt", old)
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.net.mixtures == 0 and loaded.net.out.out_features == 54
    now = load_model(rnn_checkpoint)
    np.testing.assert_array_equal(
        loaded.generate_motion(val.audio[:30], loaded.stats.mean_pose(), 0)[0],
        now.generate_motion(val.audio[:30], now.stats.mean_pose(), 0)[0],
    )


@pytest.mark.slow
def test_crnngan_trains_and_generates_from_a_mixture_rnn(
    mdn_checkpoint: Path, demo_shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gan.pt"
    config = tiny(
        demo_shards, out, model="crnngan", init=str(mdn_checkpoint), epochs=1,
        window_s=0.5, batch_size=32,
    )  # fmt: skip
    train(config, progress=False)
    row = history(out)[-1]
    assert np.isfinite(row["d_loss"]) and np.isfinite(row["g_loss"])
    gan = load_model(out)
    assert gan.payload["arch"]["mixtures"] == 2 and gan.net.noise_dim == config.noise_dim
    (val,) = read_split(demo_shards, "val")
    pose, root = gan.generate_motion(val.audio[:30], gan.stats.mean_pose(), 0)
    assert pose.shape == (30, 17, 3) and np.isfinite(pose).all() and np.isfinite(root).all()


# ------------------------------------------------------------------ generation


@pytest.mark.slow
def test_generate_for_a_real_song(rnn_checkpoint: Path, tmp_path: Path) -> None:
    song = shared_file(SONG)
    out = tmp_path / "dance.npz"
    assert main(["generate", str(song), "--checkpoint", str(rnn_checkpoint), "-o", str(out)]) == 0
    from kakashi.dance import Dance

    dance = Dance.load(out)
    assert dance.fps == 30.0
    assert len(dance) == round(soundfile.info(str(song)).duration * 30)
    _, stats, _ = model_from_checkpoint(rnn_checkpoint)
    ratio = skeleton.bone_lengths(dance.pose) / stats.bone_lengths
    assert np.abs(ratio - 1).max() < 0.05
    mean = project_bones(torch.from_numpy(stats.mean_pose()), torch.from_numpy(stats.bone_lengths))
    np.testing.assert_allclose(dance.pose[0], mean.numpy(), atol=1e-6)
    # A start pose from a dance file is used as frame 0.
    again = generate(song, rnn_checkpoint, tmp_path / "b.npz", start=str(out))
    np.testing.assert_allclose(again.pose[0], dance.pose[0], atol=1e-5)


def test_generate_split_dances_to_every_test_shard(
    rnn_checkpoint: Path, demo_shards: Path, tmp_path: Path, capsys
) -> None:
    """`kakashi generate --shards`: a dance per test shard, from the shard's own features."""
    out = tmp_path / "dances"
    args = ["generate", "--shards", str(demo_shards), "--split", "test"]
    assert main([*args, "--checkpoint", str(rnn_checkpoint), "-o", str(out)]) == 0
    shards = sorted((demo_shards / "split=test").glob("*.parquet"))
    assert [p.name for p in sorted(out.iterdir())] == [f"{p.stem}.npz" for p in shards]
    from kakashi.dance import Dance

    for shard in shards:
        dance = Dance.load(out / f"{shard.stem}.npz")
        table = pq.read_table(shard, columns=["audio"])
        assert len(dance) == table.num_rows  # exactly its ground truth's length
        # The same dance as the model gives on those features alone: nothing else leaks in.
        model, stats, _ = model_from_checkpoint(rnn_checkpoint)
        audio = np.stack(table.column("audio").to_numpy(zero_copy_only=False)).astype(np.float32)
        pose, _ = generate_motion(model, stats, audio, stats.mean_pose())
        np.testing.assert_allclose(dance.pose, pose, atol=1e-5)
    with pytest.raises(ModelError, match="no shards of split 'nope'"):
        generate_split(demo_shards, "nope", rnn_checkpoint, tmp_path / "none")
    assert main(["generate", "--checkpoint", str(rnn_checkpoint), "-o", str(out)]) == 1
    assert "give either a song or --shards" in capsys.readouterr().err


def test_corrupt_checkpoint_gives_a_clear_error(
    rnn_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(rnn_checkpoint.read_bytes()[:5000])  # truncated download
    with pytest.raises(CheckpointError, match="broken.pt.*retrain"):
        model_from_checkpoint(broken)
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF not really a wave file")
    assert main(["generate", str(song), "--checkpoint", str(broken), "-o", "x.npz"]) == 1
    assert "kakashi: error: cannot read checkpoint" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="does not exist"):
        model_from_checkpoint(tmp_path / "missing.pt")


def test_unreadable_audio_gives_a_clear_error(rnn_checkpoint: Path, tmp_path: Path) -> None:
    song = tmp_path / "song.mp3"
    song.write_bytes(b"\x00" * 2048)
    with pytest.raises(MediaError, match="song.mp3"):
        generate(song, rnn_checkpoint, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_masked_loss_ignores_frames_without_a_person() -> None:
    pred, target = torch.zeros(1, 4, 2), torch.tensor([[[1.0, 1], [1, 1], [9, 9], [1, 1]]])
    mask = torch.tensor([[1.0, 1, 0, 1]])
    assert masked_loss(pred, target, mask, "mse").item() == pytest.approx(1.0)


def test_numpy_generation_step_matches_the_torch_model(rnn_checkpoint: Path) -> None:
    from kakashi.models.rnn import _NumpyStepper

    model, _, _ = model_from_checkpoint(rnn_checkpoint)
    stepper = _NumpyStepper(model)
    inputs = torch.randn(5, 2 * 35 + 54, generator=torch.Generator().manual_seed(0))
    state = None
    for x in inputs:  # several steps, so the carried LSTM state is checked too
        expected, state = model.step(x[None, :35], x[None, 35:70], x[None, 70:], state)
        np.testing.assert_allclose(stepper(x.double().numpy()), expected[0].detach(), atol=1e-5)


def test_leaky_root_bounds_a_constant_drift_but_keeps_steps() -> None:
    """A biased root velocity no longer walks the dancer off stage; a quick step survives."""
    from kakashi.kinematics import leaky_integral

    fps, tau = 30, 4.0 * 30
    drift = np.tile([0.01, 0.0, 0.0], (fps * 600, 1))  # 0.3 m/s for 10 minutes
    root = leaky_integral(drift, tau)
    assert np.cumsum(drift, axis=0)[-1, 0] == pytest.approx(180.0)
    assert root[-1, 0] == pytest.approx(0.01 * tau, rel=0.01)  # settles at v * tau = 1.2 m
    step = np.zeros((fps, 3))
    step[1:6, 2] = 0.1  # 0.5 m forward in 5 frames
    assert leaky_integral(step, tau)[5, 2] == pytest.approx(0.5, rel=0.03)


def test_shards_of_other_audio_settings_are_refused(
    rnn_checkpoint: Path, demo_shards: Path, tmp_path: Path
) -> None:
    """A model is never fed features computed with other settings: a clear error instead."""
    import json

    from kakashi.errors import ShardError

    source = next((demo_shards / "split=test").glob("*.parquet"))
    table = pq.read_table(source)
    for key, value, message in (
        ("hop_length", 256, "hop_length is 256 but .* has 512"),
        ("feature_names", [f"mfcc_{i}" for i in range(35)], "feature_names is 35 columns"),
    ):
        folder = tmp_path / key
        meta = {**table.schema.metadata, key.encode(): json.dumps(value).encode()}
        (folder / "split=test").mkdir(parents=True)
        pq.write_table(table.replace_schema_metadata(meta), folder / "split=test" / source.name)
        with pytest.raises(ShardError, match=message):
            generate_split(folder, "test", rnn_checkpoint, tmp_path / f"out-{key}")


@pytest.fixture(scope="module")
def every_model(rnn_checkpoint: Path, demo_shards: Path, tmp_path_factory) -> dict[str, Path]:
    """A tiny checkpoint of every registered model, each trained by `kakashi train`'s path
    (kakashi.models.distributed.train) on the demo shards (seconds)."""
    from kakashi.models.registry import MODELS

    folder = tmp_path_factory.mktemp("every")
    small = {
        "crnngan": dict(init=str(rnn_checkpoint), epochs=1, window_s=0.5, batch_size=32),
        **TINY_TOKEN_MODELS,
        "motiongraph": {},
    }
    paths = {"rnn": rnn_checkpoint}
    for name in MODELS:
        if name == "rnn":
            continue
        out = folder / f"{name}.pt"
        settings = {**small[name], "shards": str(demo_shards), "out": str(out)}
        train(resolve(name, {}, settings), progress=False)
        paths[name] = out
    return paths


def test_registry_schema_enum_and_sections_agree() -> None:
    """The registry is the one list of models: the schema's enum of train.models and its
    per-model sections name the same models, and each has its two modules."""
    from kakashi.models import registry
    from kakashi.models.config import model_keys
    from kakashi.settings import node

    train_schema = node("train")["properties"]
    assert train_schema["models"]["items"]["enum"] == list(registry.MODELS)
    sections = [key for key, value in train_schema.items() if value.get("type") == "object"]
    assert sections == list(registry.MODELS)
    for name in registry.MODELS:
        network, trainer = registry.network(name), registry.trainer(name)
        assert (network.__name__, trainer.__name__) == (
            f"kakashi.models.{name}",
            f"kakashi.models.{name}_train",
        )
        assert callable(network.build) and callable(network.generate_motion)
        assert callable(trainer.run)
        assert "seed" in model_keys(name)
    with pytest.raises(ModelError, match="unknown model 'nope'; known: rnn, crnngan"):
        registry.trainer("nope")


def test_generation_needs_no_training_code(every_model: dict[str, Path]) -> None:
    """Loading any registered model's checkpoint and generating imports its network module,
    never a trainer, the training data or settings code, or the DDP launcher."""
    import subprocess
    import sys

    for name, checkpoint in every_model.items():
        code = (
            "import sys, numpy as np\n"
            "from kakashi.models.checkpoint import load_model\n"
            f"model = load_model({str(checkpoint)!r})\n"
            "names = model.stats.feature_names\n"
            "audio = np.zeros((60, len(names)), np.float32)\n"
            "if 'beat' in names:\n"
            "    audio[::15, names.index('beat')] = 1\n"
            "pose, root = model.generate_motion(audio, model.stats.mean_pose(), 0)\n"
            "assert pose.shape == (60, 17, 3) and root.shape == (60, 3)\n"
            "print(sorted(m for m in sys.modules if m.startswith('kakashi.models.')))\n"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
        loaded = set(eval(result.stdout.strip().splitlines()[-1]))
        assert f"kakashi.models.{name}" in loaded, name
        training = {f"kakashi.models.{other}_train" for other in every_model}
        training |= {"kakashi.models.distributed", "kakashi.models.data", "kakashi.models.config"}
        assert not training & loaded, (name, training & loaded)


def test_generate_split_writes_takes_with_consecutive_seeds(
    rnn_checkpoint: Path, demo_shards: Path, tmp_path: Path
) -> None:
    """`--takes K`: NAME__seedS.npz ... for seeds S..S+K-1 (evaluation's variety)."""
    from kakashi.dance import Dance

    out = tmp_path / "takes"
    args = ["generate", "--shards", str(demo_shards), "--split", "test", "--takes", "2"]
    assert main([*args, "--seed", "5", "--checkpoint", str(rnn_checkpoint), "-o", str(out)]) == 0
    stems = [p.stem for p in sorted((demo_shards / "split=test").glob("*.parquet"))]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(f"{s}__seed{k}.npz" for s in stems for k in (5, 6))
    assert Dance.load(out / f"{stems[0]}__seed6.npz").meta["seed"] == 6
    one = generate_split(demo_shards, "test", rnn_checkpoint, tmp_path / "one", seed=5)
    np.testing.assert_array_equal(Dance.load(one[0]).pose,
                                  Dance.load(out / f"{stems[0]}__seed5.npz").pose)  # fmt: skip
    with pytest.raises(ModelError, match="--takes must be at least 1"):
        generate_split(demo_shards, "test", rnn_checkpoint, tmp_path / "none", takes=0)
