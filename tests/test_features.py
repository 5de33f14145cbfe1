"""Audio features on real recordings: one vector per frame, the AIST++ set by default."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile

from conftest import DEMO_SONG
from kakashi.errors import MediaError
from kakashi.features import AudioFeatures, audio_features, feature_names

# The workflow's feature settings (schema defaults), as the `features` rule passes them.
DEFAULTS = {
    "fps": 30,
    "hop_length": 512,
    "feature_set": ["mfcc", "chroma", "onset", "beat", "peak"],
    "n_mfcc": 20,
}


def test_default_features_one_row_per_frame() -> None:
    features = audio_features(DEMO_SONG, **DEFAULTS)
    info = soundfile.info(str(DEMO_SONG))
    assert features.values.shape == (round(info.duration * 30), 35)
    assert features.values.dtype == np.float32
    assert np.isfinite(features.values).all()
    names = features.names
    assert names[:2] == ["mfcc_0", "mfcc_1"] and names[20] == "chroma_C"
    assert names[-3:] == ["onset_strength", "beat", "onset_peak"]
    beats = features.values[:, names.index("beat")]
    assert set(np.unique(beats)) == {0.0, 1.0}
    # "Vibe Ace" is a steady jazz groove: a beat every 0.3-1 s.
    intervals = np.diff(np.flatnonzero(beats)) / 30
    assert 0.3 < np.median(intervals) < 1.0


def test_feature_subset_and_fps(tmp_path) -> None:
    features = audio_features(
        DEMO_SONG, fps=25, hop_length=512, feature_set=["mfcc", "onset"], n_mfcc=13
    )
    info = soundfile.info(str(DEMO_SONG))
    assert features.values.shape == (round(info.duration * 25), 14)
    assert features.names == feature_names(["mfcc", "onset"], 13)
    features.save(tmp_path / "f.npz")
    loaded = AudioFeatures.load(tmp_path / "f.npz")
    np.testing.assert_array_equal(loaded.values, features.values)
    assert loaded.names == features.names and loaded.fps == 25


def test_unreadable_audio_names_the_file(tmp_path) -> None:
    bad = tmp_path / "not_audio.ogg"
    bad.write_bytes(b"this is not an ogg file" * 10)
    with pytest.raises(MediaError, match="not_audio.ogg"):
        audio_features(bad, **DEFAULTS)


@pytest.mark.slow
def test_parallel_first_runs_do_not_crash(tmp_path) -> None:
    """Two jobs compiling librosa's numba cache at once used to segfault (fresh install)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "kakashi", "features", str(DEMO_SONG), "-o", str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for out in (tmp_path / "a.npz", tmp_path / "b.npz")
    ]
    for job in jobs:
        output, _ = job.communicate(timeout=300)
        assert job.returncode == 0, output
    assert list((tmp_path / "numba-cache").rglob("*.nbi")), "the cache went elsewhere"
    a, b = AudioFeatures.load(tmp_path / "a.npz"), AudioFeatures.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(a.values, b.values)


def test_shared_stft_gives_librosas_own_values() -> None:
    """The one-STFT path equals librosa's separate default calls (same features, less work)."""
    import librosa

    from kakashi.features import compute_features, load_audio

    sr = 30 * 512
    samples = load_audio(DEMO_SONG, sr)[: sr * 20]
    ours = compute_features(samples, sr, 30, 512, ["mfcc", "chroma", "onset"], 20)
    frames = len(ours)
    mfcc = librosa.feature.mfcc(y=samples, sr=sr, n_mfcc=20, hop_length=512).T[:frames]
    chroma = librosa.feature.chroma_cens(y=samples, sr=sr, hop_length=512).T[:frames]
    onset = librosa.onset.onset_strength(y=samples, sr=sr, hop_length=512)[:frames]
    np.testing.assert_allclose(ours[:, :20], mfcc, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ours[:, 20:32], chroma, atol=1e-6)
    np.testing.assert_allclose(ours[:, 32], onset, rtol=1e-5, atol=1e-5)


def test_features_are_remembered_across_runs(tmp_path, monkeypatch) -> None:
    """A song's features come from the user's cache the second time, bit-identical; a
    damaged cache file or a changed song computes afresh."""
    import shutil

    from kakashi import features as module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    song = tmp_path / "song.ogg"
    shutil.copyfile(DEMO_SONG, song)
    first = module.remembered_audio_features(song, **DEFAULTS)
    np.testing.assert_array_equal(first.values, audio_features(song, **DEFAULTS).values)
    (cached,) = (tmp_path / "cache" / "kakashi" / "features").glob("*.npz")

    computed = []
    real = module.audio_features
    monkeypatch.setattr(
        module, "audio_features", lambda *a, **k: computed.append(1) or real(*a, **k)
    )
    again = module.remembered_audio_features(song, **DEFAULTS)
    np.testing.assert_array_equal(again.values, first.values)
    assert again.names == first.names and computed == []

    cached.write_bytes(b"damaged")
    assert module.remembered_audio_features(song, **DEFAULTS).values.shape == first.values.shape
    assert computed == [1] and AudioFeatures.load(cached).values.shape == first.values.shape

    other = module.remembered_audio_features(song, **{**DEFAULTS, "n_mfcc": 13})
    assert other.values.shape[1] == first.values.shape[1] - 7 and computed == [1, 1]
