"""The music-style model on real songs (a waltz and a cha-cha) and on click tracks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from conftest import shared_file
from kakashi import music_style
from kakashi.errors import CheckpointError, MediaError, ModelError
from kakashi.features import compute_features, feature_names
from kakashi.settings import default

FPS = default("fps")
HOP = default("features.hop_length")
SR = FPS * HOP
KINDS = default("features.set")
NAMES = feature_names(KINDS, default("features.n_mfcc"))
# 40 s of each danced span: the first 25 s fit the model, the last 15 s are held out.
# (C_4 is a cha-cha too, but 25 s of it are too few: its next 15 s come out waltz.)
SONGS = {"waltz": ("DANCE_W_20", 1.28), "cha-cha": ("DANCE_C_2", 6.24)}
FIT_S = 25


def features_of(samples: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # chroma's lowest octave on short clips
        return compute_features(samples, SR, FPS, HOP, KINDS, default("features.n_mfcc"))


@pytest.fixture(scope="module")
def songs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per style: (features of the fitting part, features of the held-out part)."""
    import librosa

    out = {}
    for style, (name, offset) in SONGS.items():
        path = shared_file(f"m2d_tang2018/audio/{name}.mp3")
        samples, _ = librosa.load(str(path), sr=SR, mono=True, offset=offset, duration=40)
        split = FIT_S * SR
        out[style] = (features_of(samples[:split]), features_of(samples[split:]))
    return out


@pytest.fixture(scope="module")
def model(songs) -> music_style.MusicStyle:
    styles = list(songs)
    return music_style.fit([(songs[s][0], NAMES) for s in styles], styles, FPS)


def test_held_out_music_gets_its_style(model, songs) -> None:
    assert model.styles == ["cha-cha", "waltz"]
    assert model.trained_on == {"cha-cha": 1, "waltz": 1}
    for style, (_, held_out) in songs.items():
        prediction = model.predict(held_out, NAMES, fps=FPS)
        assert prediction.style == style
        assert prediction.confidence == max(prediction.probabilities.values()) > 0.5
        assert sum(prediction.probabilities.values()) == pytest.approx(1.0)
        style_name, confidence, probabilities = prediction  # it unpacks as a tuple
        assert (style_name, confidence, probabilities) == (style, *prediction[1:])


def test_round_trip_through_a_weights_only_checkpoint(model, songs, tmp_path) -> None:
    path = tmp_path / "model.pt"
    torch.save({"music_style": model.to_dict()}, path)
    loaded = music_style.MusicStyle.from_dict(torch.load(path, weights_only=True)["music_style"])
    assert loaded == model
    held_out = songs["waltz"][1]
    assert loaded.predict(held_out, NAMES) == model.predict(held_out, NAMES)


def test_a_malformed_export_is_a_checkpoint_error(model) -> None:
    data = model.to_dict()
    data["coef"] = data["coef"][:1]
    with pytest.raises(CheckpointError, match="inconsistent sizes; retrain"):
        music_style.MusicStyle.from_dict(data)
    with pytest.raises(CheckpointError, match="malformed"):
        music_style.MusicStyle.from_dict({"format": 1, "styles": ["waltz"]})


def test_a_short_song_is_a_clear_error(model, songs) -> None:
    five_seconds = songs["waltz"][1][: 5 * FPS]
    with pytest.raises(MediaError, match=r"^song.mp3 lasts 5\.0 s; .* at least 8 s"):
        model.predict(five_seconds, NAMES, song="song.mp3")


def test_one_style_cannot_be_fitted(songs, caplog) -> None:
    with pytest.raises(ModelError, match="at least two styles"):
        music_style.fit([(songs["waltz"][0], NAMES)], ["waltz"], FPS)
    # A cha-cha too short to describe is left out, naming it, and one style remains.
    short = songs["cha-cha"][0][: 5 * FPS]
    with pytest.raises(ModelError, match=r"at least two styles .*, got \['waltz'\]"):
        music_style.fit(
            [(songs["waltz"][0], NAMES), (short, NAMES)],
            ["waltz", "cha-cha"],
            FPS,
            song_names=["w.mp3", "c.mp3"],
        )
    assert "c.mp3 lasts 5.0 s" in caplog.text


def test_features_without_onset_strength_are_refused() -> None:
    keep = [i for i, name in enumerate(NAMES) if name != "onset_strength"]
    values = features_of(click_track(3, seconds=10))[:, keep]
    with pytest.raises(ModelError, match="needs the onset_strength .* add onset to features.set"):
        music_style.descriptors(values, [NAMES[i] for i in keep], FPS)


def test_without_a_beat_column_the_beats_are_tracked_as_features_does(model, songs) -> None:
    values = songs["cha-cha"][1]
    stored = np.flatnonzero(values[:, NAMES.index("beat")] > 0.5)
    tracked = music_style.track_beats(values[:, NAMES.index("onset_strength")], FPS)
    # The same beats but near the end, where the stored column saw one frame more (T + 1).
    end = len(values) - 2 * FPS
    np.testing.assert_array_equal(tracked[tracked < end], stored[stored < end])
    keep = [i for i, name in enumerate(NAMES) if name != "beat"]
    without = model.predict(values[:, keep], [NAMES[i] for i in keep])
    assert without.style == "cha-cha"
    assert without.confidence == pytest.approx(model.predict(values, NAMES).confidence, abs=0.05)


def click_track(beats_per_bar: int, bpm: float = 100, seconds: float = 30) -> np.ndarray:
    """Clicks on every beat, the first of each bar a loud low one, the others soft high."""
    samples = np.zeros(round(seconds * SR), dtype=np.float32)
    t = np.arange(round(0.03 * SR)) / SR
    envelope = np.exp(-t / 0.008)
    for beat, start in enumerate(np.arange(0.5, seconds - 0.1, 60 / bpm)):
        downbeat = beat % beats_per_bar == 0
        click = (
            (1.0 if downbeat else 0.25)
            * envelope
            * np.sin(2 * np.pi * (600 if downbeat else 1800) * t)
        )
        begin = round(start * SR)
        samples[begin : begin + len(click)] += click[: len(samples) - begin]
    return samples


@pytest.mark.parametrize("beats_per_bar", [3, 4])
def test_click_track_metre(beats_per_bar) -> None:
    values = features_of(click_track(beats_per_bar))
    rows, names = music_style.descriptors(values, NAMES, FPS, groups=("tempo", "metre"))
    described = dict(zip(names, rows.mean(axis=0), strict=True))
    assert 2 ** described["log2_bpm"] == pytest.approx(100, rel=0.05)
    other = 7 - beats_per_bar
    # The bar repeats at its own length, not at the other metre's.
    assert described[f"accent_ac_{beats_per_bar}"] > 0.5 > described[f"accent_ac_{other}"]
    assert described[f"onset_ac_{beats_per_bar}beats"] > described[f"onset_ac_{other}beats"]
