"""Dance styles end to end on tiny real shards with two labelled styles.

The shards pair real demo poses with real click-track music: a "waltz" in 3/4 (~90 bpm)
and a "cha-cha" in 4/4 (~120 bpm), two train songs of each and one test song of each, so
the music-style model has something real to learn and to infer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.errors import ModelError
from kakashi.features import audio_features, settings_of
from kakashi.models import motiongraph as mg
from kakashi.models.checkpoint import load_checkpoint, load_model
from kakashi.models.config import resolve
from kakashi.models.distributed import train
from kakashi.models.generate import generate
from kakashi.models.styles import choose_style, training_styles
from kakashi.settings import default
from kakashi.shards import Sequence, read_shard, write_shard

FPS = default("fps")
HOP = default("features.hop_length")
SR = int(FPS * HOP)
SECONDS = 24
# (split, name, style, bpm, beats per bar)
SONGS = [
    ("train", "w1", "waltz", 88, 3),
    ("train", "w2", "waltz", 94, 3),
    ("train", "c1", "cha-cha", 118, 4),
    ("train", "c2", "cha-cha", 126, 4),
    ("test", "w3", "waltz", 91, 3),
    ("test", "c3", "cha-cha", 122, 4),
]


def click_track(beats_per_bar: int, bpm: float) -> np.ndarray:
    """Clicks on every beat, the first of each bar a loud low one, the others soft high."""
    samples = np.zeros(SECONDS * SR, dtype=np.float32)
    t = np.arange(round(0.03 * SR)) / SR
    envelope = np.exp(-t / 0.008)
    for beat, start in enumerate(np.arange(0.5, SECONDS - 0.1, 60 / bpm)):
        down = beat % beats_per_bar == 0
        click = (1.0 if down else 0.25) * envelope * np.sin(2 * np.pi * (600 if down else 1800) * t)
        begin = round(start * SR)
        samples[begin : begin + len(click)] += click[: len(samples) - begin]
    return samples


@pytest.fixture(scope="module")
def styled(demo_shards: Path, tmp_path_factory) -> dict:
    """{"shards": folder, "songs": {name: wav}}: the six click-track songs as shards."""
    root = tmp_path_factory.mktemp("styled")
    first = next((demo_shards / "split=train").glob("*.parquet"))
    arrays, meta = read_shard(first, ["pose", "root", "conf"])
    kinds, n_mfcc = settings_of(list(meta["feature_names"]))
    pose = arrays["pose"].reshape(-1, 17, 3)
    songs = {}
    for split, name, style, bpm, bar in SONGS:
        wav = root / f"{name}.wav"
        soundfile.write(wav, click_track(bar, bpm), SR)
        songs[name] = wav
        features = audio_features(wav, fps=FPS, hop_length=HOP, feature_set=kinds, n_mfcc=n_mfcc)
        frames = len(features.values)
        take = np.arange(frames) % len(pose)  # the demo dance, repeated to the song's length
        seq = Sequence(
            name,
            features.values,
            pose[take],
            arrays["root"][take],
            arrays["conf"][take],
            FPS,
            features.names,
            HOP,
        )
        write_shard(
            root / f"split={split}" / f"{name}.parquet", name, seq, features, {"style": style}
        )
    return {"shards": root, "songs": songs}


@pytest.fixture(scope="module")
def graph(styled: dict, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("graph") / "motiongraph.pt"
    config = resolve("motiongraph", {}, {"shards": str(styled["shards"]), "out": str(out)})
    train(config, progress=False)
    return out


def test_every_checkpoint_knows_the_train_styles_and_infers_held_out_songs(styled, graph):
    payload = torch.load(graph, weights_only=True)  # still a weights_only checkpoint
    assert payload["styles"] == ["cha-cha", "waltz"]
    assert payload["music_style"]["trained_on"] == {"cha-cha": 2, "waltz": 2}
    assert payload["sequence_styles"] == {
        "w1": "waltz",
        "w2": "waltz",
        "c1": "cha-cha",
        "c2": "cha-cha",
    }
    # (the same keys as training_styles gives every model: one place writes them)
    assert training_styles(styled["shards"])["styles"] == payload["styles"]
    # the motion graph keeps each of its recordings' label, mirrors included
    labels = dict(
        zip(payload["arch"]["sequences"], payload["arch"]["sequence_styles"], strict=True)
    )
    assert labels["w1~mirror"] == "waltz" and labels["c2"] == "cha-cha"
    for name, truth in (("w3", "waltz"), ("c3", "cha-cha")):
        arrays, _ = read_shard(styled["shards"] / "split=test" / f"{name}.parquet", ["audio"])
        choice = choose_style(payload, None, arrays["audio"], graph, name)
        assert (choice.style, choice.source) == (truth, "auto")
        assert choice.confidence == max(choice.probabilities.values()) > 0.5


def test_generate_records_the_inferred_or_requested_style(styled, graph, tmp_path, caplog):
    caplog.set_level("INFO", logger="kakashi.models.styles")
    auto = generate(styled["songs"]["w3"], graph, tmp_path / "auto.npz")
    assert auto.meta["style"] == "waltz" and auto.meta["style_source"] == "auto"
    assert 0.5 < auto.meta["style_confidence"] <= 1 and auto.meta["style_conditioned"] is True
    assert "w3.wav: style waltz (confidence" in caplog.text
    asked = tmp_path / "asked.npz"
    args = ["generate", str(styled["songs"]["w3"]), "--checkpoint", str(graph)]
    assert main([*args, "-o", str(asked), "--style", "Cha-Cha"]) == 0
    meta = Dance.load(asked).meta
    assert (meta["style"], meta["style_source"]) == ("cha-cha", "requested")
    assert "style_confidence" not in meta
    # --shards: each test shard's style inferred from its own music (what evaluation scores)
    out = tmp_path / "split"
    assert (
        main(
            [
                "generate",
                "--shards",
                str(styled["shards"]),
                "--checkpoint",
                str(graph),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert Dance.load(out / "c3.npz").meta["style"] == "cha-cha"
    assert Dance.load(out / "w3.npz").meta["style"] == "waltz"


def test_the_motion_graph_dances_with_the_requested_styles_segments(styled, graph):
    model = load_model(graph)
    arrays, _ = read_shard(styled["shards"] / "split=test" / "w3.parquet", ["audio"])
    lib, arch = model.net.arrays(), model.net.arch
    labels = np.asarray(arch["sequence_styles"])[lib["seg_sequence"]]
    first = model.stats.mean_pose()
    for style in ("waltz", "cha-cha"):
        _, path = mg.plan(model.net, model.stats, arrays["audio"], first - first[0], 0, style=style)
        assert set(labels[path]) == {style}
    # too few segments of a style: every style's, with a warning (not an empty dance)
    assert mg.style_segments(arch, {"seg_sequence": lib["seg_sequence"][:10]}, "waltz") is None
    # An inferred style (auto) is a cost of the other styles' segments, not a restriction: at
    # no cost it is the dance without a style; a high cost takes that style's segments where
    # they fit the song's tempo (a restriction takes them wherever).
    centred = first - first[0]
    free = mg.plan(model.net, model.stats, arrays["audio"], centred, 0)[1]
    soft = {}
    for penalty in (0.0, 1e6):
        model.net.arch["style_penalty"] = penalty
        soft[penalty] = mg.plan(
            model.net, model.stats, arrays["audio"], centred, 0, style="cha-cha", strict_style=False
        )[1]
    model.net.arch["style_penalty"] = arch["style_penalty"]
    np.testing.assert_array_equal(soft[0.0], free)
    assert np.mean(labels[soft[1e6]] == "cha-cha") > np.mean(labels[free] == "cha-cha")


def test_style_errors_are_one_line(styled, graph, demo_shards, tmp_path, capsys, caplog):
    song = str(styled["songs"]["c3"])
    args = ["generate", song, "--checkpoint", str(graph), "-o", str(tmp_path / "x.npz")]
    assert main([*args, "--style", "tango"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"kakashi: error: unknown style 'tango'; {graph} knows cha-cha, waltz (or auto)")
    assert not (tmp_path / "x.npz").exists()
    # A checkpoint trained without style labels (the demo): as before; a named style is
    # an error, auto a warning.
    plain = tmp_path / "plain.pt"
    config = resolve("motiongraph", {}, {"shards": str(demo_shards), "out": str(plain)})
    train(config, progress=False)
    assert "styles" not in load_checkpoint(plain) and "music_style" not in load_checkpoint(plain)
    args = ["generate", song, "--checkpoint", str(plain), "-o", str(tmp_path / "y.npz")]
    assert main([*args, "--style", "waltz"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("kakashi: error:") and "trained without style labels" in err
    assert "\n" not in err
    assert main([*args, "--style", "auto"]) == 0
    assert "--style auto ignored" in caplog.text
    assert "style" not in Dance.load(tmp_path / "y.npz").meta
    with pytest.raises(ModelError, match="unknown style"):
        choose_style(load_checkpoint(graph), "rumba", np.zeros((10, 3)), graph)


def test_a_song_in_the_workflow_config_may_name_its_style(tmp_path):
    """`songs:` takes {path, style} beside the plain path; generate passes the style on."""
    from conftest import DEMO, DEMO_SONG, run_snakemake

    config = {
        "sources": DEMO / "sources.tsv",
        "songs": {"asked": {"path": str(DEMO_SONG), "style": "waltz"}, "plain": str(DEMO_SONG)},
    }
    targets = ["results/dances/motiongraph/asked.npz", "results/dances/motiongraph/plain.npz"]
    dry = run_snakemake(tmp_path, "-n", "-p", *targets, config=config)
    commands = [line for line in dry.stdout.splitlines() if " generate " in line]
    assert len(commands) == 2, dry.stdout
    (asked,) = [c for c in commands if "asked.npz" in c]
    (plain,) = [c for c in commands if "plain.npz" in c]
    assert "--style waltz" in asked and "--style" not in plain
    bad = {**config, "songs": {"x": {"path": str(DEMO_SONG), "styel": "waltz"}}}
    refused = run_snakemake(tmp_path, "-n", config=bad, check=False)
    assert refused.returncode != 0 and "styel" in refused.stdout + refused.stderr


MOTIF_TINY = {
    "down": 4,
    "parts": 2,
    "codebook": 32,
    "code_dim": 16,
    "vq_width": 32,
    "vq_window": 32,
    "vq_batch": 8,
    "vq_steps": 30,
    "dim": 32,
    "heads": 2,
    "layers": 1,
    "context": 12,
    "gpt_batch": 8,
    "gpt_steps": 30,
    "log_every": 15,
}


def test_style_balanced_batches_draw_a_rare_style_as_often() -> None:
    from kakashi.models.styles import style_weights

    groups = np.array([0] * 90 + [1] * 10)  # 90 % waltz windows, 10 % cha-cha
    gen = torch.Generator().manual_seed(0)
    drawn = torch.multinomial(style_weights(groups), 4000, True, generator=gen).numpy()
    assert abs(np.mean(groups[drawn] == 1) - 0.5) < 0.03
    assert style_weights(np.zeros(50, dtype=int)) is None  # one group: uniform, as before


def test_motif_takes_a_style_embedding(styled, demo_shards, tmp_path):
    out = tmp_path / "motif.pt"
    config = resolve("motif", {}, {**MOTIF_TINY, "shards": str(styled["shards"]), "out": str(out)})
    train(config, progress=False)
    model = load_model(out)
    assert model.net.arch["styles"] == ["cha-cha", "waltz"] == model.payload["styles"]
    assert model.net.choreographer.style.weight.shape[0] == 3  # two styles + "no style"
    arrays, _ = read_shard(styled["shards"] / "split=test" / "c3.parquet", ["audio"])
    first = model.stats.mean_pose()
    waltz = model.generate_motion(arrays["audio"], first, 0, style="waltz")[0]
    chacha = model.generate_motion(arrays["audio"], first, 0, style="cha-cha")[0]
    assert not np.allclose(waltz, chacha)  # the style reaches the dance
    dance = generate(styled["songs"]["c3"], out, tmp_path / "c3.npz", style="waltz")
    assert dance.meta["style"] == "waltz" and dance.meta["style_conditioned"] is True
    # Without labels: no embedding, as before.
    plain = tmp_path / "plain.pt"
    config = resolve("motif", {}, {**MOTIF_TINY, "shards": str(demo_shards), "out": str(plain)})
    train(config, progress=False)
    assert load_model(plain).net.choreographer.style is None


def test_the_recurrent_models_read_style_columns_and_draw_balanced_batches(styled, tmp_path):
    from kakashi.models.data import load_training_data, make_windows
    from kakashi.models.rnn_train import batches

    tiny = {"shards": str(styled["shards"]), "epochs": 1, "hidden": 16, "layers": 1}
    plain = tmp_path / "plain.pt"  # the default: no style input, as before
    train(resolve("rnn", {}, {**tiny, "out": str(plain)}), progress=False)
    assert load_model(plain).payload["arch"]["styles"] == []
    seed = tmp_path / "rnn.pt"
    train(resolve("rnn", {}, {**tiny, "styles": True, "out": str(seed)}), progress=False)
    rnn = load_model(seed)
    features = len(rnn.stats.feature_names)
    assert rnn.payload["arch"]["styles"] == ["cha-cha", "waltz"] == rnn.payload["styles"]
    assert rnn.payload["arch"]["audio_dim"] == features + 2  # one input column per style
    arrays, _ = read_shard(styled["shards"] / "split=test" / "w3.parquet", ["audio"])
    first = rnn.stats.mean_pose()
    waltz = rnn.generate_motion(arrays["audio"], first, 0, style="waltz")[0]
    chacha = rnn.generate_motion(arrays["audio"], first, 0, style="cha-cha")[0]
    assert not np.allclose(waltz, chacha)  # the style reaches the dance
    dance = generate(styled["songs"]["w3"], seed, tmp_path / "w3.npz", style="cha-cha")
    assert dance.meta["style"] == "cha-cha" and dance.meta["style_conditioned"] is True
    # The C-RNN-GAN continues the seed RNN, so it reads the same style columns.
    gan = tmp_path / "crnngan.pt"
    settings = {"shards": tiny["shards"], "epochs": 1, "out": str(gan), "init": str(seed)}
    train(resolve("crnngan", {}, settings), progress=False)
    assert load_model(gan).payload["arch"]["styles"] == ["cha-cha", "waltz"]
    # Its seed retrained without styles, the same settings train a new C-RNN-GAN: the old
    # one's .last.pt (another network) is not resumed (it failed on the weight shapes).
    train(resolve("rnn", {}, {**tiny, "out": str(seed)}), progress=False)
    train(resolve("crnngan", {}, settings), progress=False)
    assert load_model(gan).payload["arch"]["styles"] == []
    # Windows carry their style (one-hot columns after the audio) and batches balance them.
    train_seqs, _, stats = load_training_data(styled["shards"], mirror=False)
    train_seqs = train_seqs[:1] * 9 + train_seqs[-1:]  # 90 % one style, 10 % the other
    (windows,) = make_windows(train_seqs, stats, 10, 10, ["cha-cha", "waltz"])
    assert windows.audio.shape[-1] == features + 2
    np.testing.assert_array_equal(windows.audio[:, 0, features:].sum(axis=1), 1.0)
    plan = batches([windows], 1, torch.Generator().manual_seed(0))
    drawn = np.array([windows.style[index[0]] for _, index in plan])
    assert len(plan) == len(windows) and abs(np.mean(drawn == drawn[-1]) - 0.5) < 0.15


def test_the_studio_api_lists_and_takes_styles(styled, graph, tmp_path):
    """/api/models lists a model's styles; POST /api/dances takes 'style' (auto by default)."""
    import shutil
    import threading
    import time

    import requests
    import uvicorn

    from kakashi.studio.app import StudioSettings, create_app
    from test_studio import Studio, free_port

    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(graph, models / "motiongraph.pt")
    settings = StudioSettings(models=[str(models)], work_dir=tmp_path / "work", workers=1)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.05)
    studio = Studio(f"http://127.0.0.1:{port}", app, tmp_path / "work")
    try:
        listed = requests.get(f"{studio.url}/api/models", timeout=10).json()["models"]
        assert [m["styles"] for m in listed] == [["cha-cha", "waltz"]]
        auto = studio.wait(studio.post(styled["songs"]["c3"], "c3.wav").json()["id"])
        assert auto["status"] == "done", auto
        assert (auto["result"]["style"], auto["result"]["style_source"]) == ("cha-cha", "auto")
        asked = studio.wait(
            studio.post(styled["songs"]["c3"], "c3.wav", style="Waltz").json()["id"]
        )
        assert (asked["result"]["style"], asked["result"]["style_source"]) == ("waltz", "requested")
        bad = studio.post(styled["songs"]["c3"], "c3.wav", style="tango")
        assert bad.status_code == 422
        assert "unknown style 'tango'; model motiongraph knows cha-cha, waltz" in bad.text
    finally:
        server.should_exit = True
        thread.join(timeout=30)
