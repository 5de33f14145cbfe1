"""Music to dance style: which dance (waltz, cha-cha, ...) a song calls for.

A small classifier over song-level descriptors of the per-frame audio features that the
shards store and generation computes (:mod:`kakashi.features`), fitted on labelled songs:

- **tempo**: the beat period from the ``beat`` column, as log2 bpm, and its regularity;
- **tempogram**: the autocorrelation of ``onset_strength`` at log-spaced lags of 0.25-4 s,
  which keeps tempo and bar length in seconds whatever level the beat tracker locked on;
- **metre**: how the music repeats every 3 versus every 4 beats: the autocorrelation of the
  beat-synchronous onset accents and of the onset envelope at 2, 3, 4, 6 and 8 beats (a
  waltz accents every third beat, a cha-cha every fourth);
- **rhythm**: onset strength folded on the beat grid, four steps per beat (the mean
  pattern within a beat, and its autocorrelation over 8 beats: a cha-cha's "4-and-1");
- **harmony**: the same bar periodicity in the beat-synchronous MFCC and chroma (bass and
  chords changing on the bar line);
- **timbre**: MFCC means and spreads.

A song is cut into windows (``WINDOW_S`` long, every ``HOP_S``), each window is one
descriptor vector, and the song's style is the one with the highest mean window
log-probability, so an intro or a break does not decide. The classifier is scikit-learn's
standardised, class-balanced logistic regression; the fitted model is exported as plain
lists and floats (:meth:`MusicStyle.to_dict`), so it travels inside a
``torch.load(weights_only=True)`` checkpoint and predicts with numpy alone.

The default groups (tempo, tempogram, metre, rhythm) need only ``onset_strength``: without
a ``beat`` column the beats are tracked from it as :mod:`kakashi.features` does (the same
beats, but in the last second or two, where the stored column saw one frame more).
Harmony and timbre, which need MFCC or chroma, did not help on Dance with Melody and are
off by default; asked for without their columns, they are left out of the model.
Accuracy (leave-one-song-out over the 35 Dance-with-Melody songs) and what each group adds:
docs/music_style.md, from ``studies/music_style.py``.
"""

from __future__ import annotations

import itertools
import logging
import math
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from kakashi.errors import MediaError, ModelError

log = logging.getLogger(__name__)

GROUPS = ("tempo", "tempogram", "metre", "rhythm", "harmony", "timbre")
# The groups a model uses unless told otherwise (chosen by studies/music_style.py).
DEFAULT_GROUPS = ("tempo", "tempogram", "metre", "rhythm")
# 20-s windows hold 9 waltz bars at 84 bpm; 10 and 30 s measured the same (the study).
WINDOW_S = 20.0
HOP_S = 5.0
# Shorter songs hold too few bars to tell 3 from 4 beats (8 s: 3 waltz bars at 84 bpm).
MIN_SONG_S = 8.0
MIN_BEATS = 8  # a window with fewer (an intro, a break) is not described
BEAT_LAGS = (2, 3, 4, 6, 8)
STEPS_PER_BEAT = 4
RHYTHM_BEATS = 8
TEMPOGRAM_LAGS_S = tuple(float(x) for x in 0.25 * 2 ** (np.arange(33) / 8))  # 0.25-4 s
FORMAT_VERSION = 1  # of to_dict(); from_dict() refuses another


class StylePrediction(NamedTuple):
    """A song's most likely style, its probability, and every style's probability."""

    style: str
    confidence: float
    probabilities: dict[str, float]


def _columns(names: list[str]) -> dict[str, list[int]]:
    index = {name: i for i, name in enumerate(names)}
    return {
        "onset_strength": [index["onset_strength"]] if "onset_strength" in index else [],
        "beat": [index["beat"]] if "beat" in index else [],
        "mfcc": [i for i, name in enumerate(names) if name.startswith("mfcc_")],
        "chroma": [i for i, name in enumerate(names) if name.startswith("chroma_")],
    }


def _require_onset(names: list[str]) -> None:
    if "onset_strength" not in names:
        raise ModelError(
            "music style needs the onset_strength audio feature, which these features lack; "
            "add onset to features.set in the config and rebuild the shards"
        )


def usable_groups(names: list[str], groups=DEFAULT_GROUPS) -> tuple[str, ...]:
    """The descriptor groups of ``groups`` that features with these columns can feed."""
    _require_onset(names)
    columns = _columns(names)
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        raise ModelError(f"unknown music-style descriptor group {unknown[0]!r}; known: {GROUPS}")
    kept = []
    for group in groups:
        if group == "timbre" and not columns["mfcc"]:
            continue
        if group == "harmony" and not (columns["mfcc"] or columns["chroma"]):
            continue
        kept.append(group)
    return tuple(kept)


def track_beats(onset_strength: np.ndarray, fps: float) -> np.ndarray:
    """Beat frames from an onset envelope, tracked as kakashi.features tracks ``beat``
    (librosa's tracker sees only the frame rate, sr / hop_length, so any hop will do)."""
    import librosa

    hop = 512
    _, beats = librosa.beat.beat_track(
        onset_envelope=np.asarray(onset_strength, dtype=np.float32), sr=fps * hop, hop_length=hop
    )
    return np.asarray(beats, dtype=int)


def _autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalised autocorrelation of a mean-removed series (lag 0 is 1; flat gives 0)."""
    x = x - x.mean()
    energy = float(np.dot(x, x))
    if energy <= 1e-12:
        return np.zeros(len(x))
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    full = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    # Unbiased: lag k sums n - k products; scaled so lag 0 stays 1.
    return full / energy * n / (n - np.arange(n))


def _lag_correlation(series: np.ndarray, lag: int) -> float:
    """Mean cosine similarity of mean-removed vectors ``lag`` steps apart."""
    if len(series) <= lag:
        return 0.0
    x = series - series.mean(axis=0)
    a, b = x[:-lag], x[lag:]
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    ok = norms > 1e-9
    if not ok.any():
        return 0.0
    return float(np.mean(np.sum(a[ok] * b[ok], axis=1) / norms[ok]))


def _window_descriptors(
    values: np.ndarray, columns: dict, beats: np.ndarray, fps: float, groups
) -> tuple[np.ndarray, list[str]] | None:
    """Descriptors of one window (None when it holds too few beats or no onsets)."""
    onset = values[:, columns["onset_strength"][0]].astype(np.float64)
    if len(beats) < MIN_BEATS or onset.mean() <= 1e-9:
        return None
    onset = onset / onset.mean()  # loudness does not matter, the pattern does
    period = float(np.median((beats[4:] - beats[:-4]) / 4)) if len(beats) > 4 else 0.0
    if period <= 0:
        return None
    out: list[float] = []
    names: list[str] = []
    if "tempo" in groups:
        intervals = np.diff(beats)
        out += [math.log2(60 * fps / period), float(np.std(intervals) / np.mean(intervals))]
        names += ["log2_bpm", "beat_irregularity"]
    frame_ac = _autocorrelation(onset)
    if "tempogram" in groups:
        lags = np.asarray(TEMPOGRAM_LAGS_S) * fps
        out += list(np.interp(lags, np.arange(len(frame_ac)), frame_ac, right=0.0))
        names += [f"tempogram_{lag:.2f}s" for lag in TEMPOGRAM_LAGS_S]
    # The onset envelope on the beat grid: STEPS_PER_BEAT samples per beat interval.
    steps = np.concatenate(
        [np.linspace(a, b, STEPS_PER_BEAT, endpoint=False) for a, b in itertools.pairwise(beats)]
    )
    grid = np.interp(steps, np.arange(len(onset)), onset)
    grid_ac = _autocorrelation(grid)
    if "metre" in groups:
        accents = grid[::STEPS_PER_BEAT]
        accent_ac = _autocorrelation(accents)
        out += [float(accent_ac[lag]) if lag < len(accent_ac) else 0.0 for lag in BEAT_LAGS]
        names += [f"accent_ac_{lag}" for lag in BEAT_LAGS]
        out += [
            float(np.interp(lag * period, np.arange(len(frame_ac)), frame_ac, right=0.0))
            for lag in BEAT_LAGS
        ]
        names += [f"onset_ac_{lag}beats" for lag in BEAT_LAGS]
    if "rhythm" in groups:
        profile = grid[: len(grid) // STEPS_PER_BEAT * STEPS_PER_BEAT]
        profile = profile.reshape(-1, STEPS_PER_BEAT).mean(axis=0)
        out += list(profile / max(profile.sum(), 1e-9))
        names += [f"beat_step_{i}" for i in range(STEPS_PER_BEAT)]
        lags = range(1, RHYTHM_BEATS * STEPS_PER_BEAT + 1)
        out += [float(grid_ac[lag]) if lag < len(grid_ac) else 0.0 for lag in lags]
        names += [f"rhythm_ac_{lag}" for lag in lags]
    if "harmony" in groups:
        for kind in ("mfcc", "chroma"):
            if not columns[kind]:
                continue
            block = values[:, columns[kind]].astype(np.float64)
            synced = np.stack([block[a:b].mean(axis=0) for a, b in itertools.pairwise(beats)])
            out += [_lag_correlation(synced, lag) for lag in BEAT_LAGS]
            names += [f"{kind}_sync_{lag}" for lag in BEAT_LAGS]
    if "timbre" in groups:
        block = values[:, columns["mfcc"]].astype(np.float64)
        out += list(block.mean(axis=0)) + list(block.std(axis=0))
        names += [f"mfcc_mean_{i}" for i in range(block.shape[1])]
        names += [f"mfcc_std_{i}" for i in range(block.shape[1])]
    return np.asarray(out, dtype=np.float64), names


def descriptors(
    values: np.ndarray,
    names: list[str],
    fps: float,
    groups=DEFAULT_GROUPS,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    song: str = "the song",
) -> tuple[np.ndarray, list[str]]:
    """Descriptor vectors (windows, D) of a song's features (T, F) at ``fps``, and their names.

    A song shorter than a window is one window. Raises MediaError, naming ``song``, when it
    lasts less than MIN_SONG_S or no window holds enough beats.
    """
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise ModelError(f"{song}: features must be (frames, {len(names)}), got {values.shape}")
    groups = usable_groups(names, groups)
    columns = _columns(names)
    seconds = len(values) / fps
    if seconds < MIN_SONG_S:
        raise MediaError(
            f"{song} lasts {seconds:.1f} s; telling its dance style needs at least "
            f"{MIN_SONG_S:g} s of music: give a longer song or name the style"
        )
    if columns["beat"]:
        beat_frames = np.flatnonzero(values[:, columns["beat"][0]] > 0.5)
    else:
        beat_frames = track_beats(values[:, columns["onset_strength"][0]], fps)
    window = min(len(values), round(window_s * fps))
    hop = max(1, round(hop_s * fps))
    starts = range(0, len(values) - window + 1, hop)
    rows, row_names = [], None
    for start in starts:
        inside = beat_frames[(beat_frames >= start) & (beat_frames < start + window)] - start
        result = _window_descriptors(values[start : start + window], columns, inside, fps, groups)
        if result is not None:
            rows.append(result[0])
            row_names = result[1]
    if not rows:
        raise MediaError(
            f"{song}: no {window / fps:.0f}-s stretch holds {MIN_BEATS} beats and onsets, so "
            "its dance style cannot be told; give a song with a beat or name the style"
        )
    return np.stack(rows), row_names


@dataclass
class MusicStyle:
    """A fitted music-style model: plain numbers only, so checkpoints stay weights_only."""

    styles: list[str]
    groups: list[str]
    fps: float
    window_s: float
    hop_s: float
    descriptor_names: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[list[float]]  # (styles, descriptors); a binary model is stored as two rows
    intercept: list[float]
    trained_on: dict[str, int] = field(default_factory=dict)  # songs per style

    def window_log_probabilities(
        self, values: np.ndarray, names: list[str], song: str = "the song"
    ):
        """Log-probabilities (windows, styles) of each window of a song."""
        missing = [g for g in self.groups if g not in usable_groups(names, self.groups)]
        if missing:
            raise ModelError(
                f"{song}: the music-style model uses {missing[0]} descriptors, whose audio "
                "features are absent; compute the song's features with the checkpoint's settings"
            )
        rows, row_names = descriptors(
            values, names, self.fps, self.groups, self.window_s, self.hop_s, song
        )
        if row_names != self.descriptor_names:
            raise ModelError(
                f"{song}: its features give other descriptors than the music-style model was "
                "fitted on; compute the song's features with the checkpoint's settings"
            )
        return self.descriptor_log_probabilities(rows)

    def descriptor_log_probabilities(self, rows: np.ndarray) -> np.ndarray:
        """Log-probabilities (windows, styles) of descriptor rows from :func:`descriptors`."""
        z = (rows - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.coef).T + np.asarray(self.intercept)
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

    def predict(
        self, values: np.ndarray, names: list[str], fps: float | None = None, song: str = "the song"
    ) -> StylePrediction:
        """The song's style, its probability, and every style's probability.

        The song-level probabilities are the softmax of the mean window log-probability.
        """
        if fps is not None and abs(fps - self.fps) > 1e-6:
            raise ModelError(
                f"{song}: features at {fps:g} fps, the music-style model was fitted at "
                f"{self.fps:g}; compute the song's features with the checkpoint's settings"
            )
        return self.song_prediction(self.window_log_probabilities(values, names, song))

    def song_prediction(self, window_log_probabilities: np.ndarray) -> StylePrediction:
        """One song's prediction from its windows' log-probabilities."""
        mean = window_log_probabilities.mean(axis=0)
        probabilities = np.exp(mean - mean.max())
        probabilities /= probabilities.sum()
        best = int(np.argmax(probabilities))
        return StylePrediction(
            self.styles[best],
            float(probabilities[best]),
            {style: float(p) for style, p in zip(self.styles, probabilities, strict=True)},
        )

    def to_dict(self) -> dict:
        """Plain lists, floats and strings: storable in a weights_only checkpoint."""
        return {
            "format": FORMAT_VERSION,
            "styles": list(self.styles),
            "groups": list(self.groups),
            "fps": float(self.fps),
            "window_s": float(self.window_s),
            "hop_s": float(self.hop_s),
            "descriptor_names": list(self.descriptor_names),
            "mean": [float(x) for x in self.mean],
            "scale": [float(x) for x in self.scale],
            "coef": [[float(x) for x in row] for row in self.coef],
            "intercept": [float(x) for x in self.intercept],
            "trained_on": {str(k): int(v) for k, v in self.trained_on.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> MusicStyle:
        """The model :meth:`to_dict` wrote; CheckpointError if it is not one."""
        from kakashi.errors import CheckpointError

        try:
            if data["format"] != FORMAT_VERSION:
                raise CheckpointError(
                    f"music-style model format {data['format']}, this Kakashi reads "
                    f"{FORMAT_VERSION}; retrain the model"
                )
            model = cls(**{key: value for key, value in data.items() if key != "format"})
        except (KeyError, TypeError) as exc:
            raise CheckpointError(
                f"the checkpoint's music-style model is malformed ({exc}); retrain the model"
            ) from None
        n_styles, n_desc = len(model.styles), len(model.descriptor_names)
        if (
            np.asarray(model.coef).shape != (n_styles, n_desc)
            or len(model.intercept) != n_styles
            or len(model.mean) != n_desc
            or len(model.scale) != n_desc
        ):
            raise CheckpointError(
                "the checkpoint's music-style model has inconsistent sizes; retrain the model"
            )
        return model


def fit(
    songs: list[tuple[np.ndarray, list[str]]],
    styles: list[str],
    fps: float,
    *,
    groups=DEFAULT_GROUPS,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    regularization: float = 1.0,
    song_names: list[str] | None = None,
) -> MusicStyle:
    """Fit a music-style model on labelled songs: (features (T, F), column names) each.

    Every window of every song is one example; each style weighs as much as any other
    (balanced class weights), so a style with three songs is not drowned by one with 25.
    ``regularization`` is the inverse L2 strength (scikit-learn's ``C``). A song too short
    or without beats to describe is left out with a warning naming it; ModelError if fewer
    than two styles remain.
    """
    if len(songs) != len(styles):
        raise ModelError(f"{len(songs)} songs but {len(styles)} style labels")
    known = sorted(set(styles))
    if len(known) < 2:
        raise ModelError(
            f"a music-style model needs songs of at least two styles, got {known or 'none'}; "
            "label more styles in the sources sheet's style column"
        )
    groups = usable_groups(songs[0][1], groups)
    rows, kept_styles, descriptor_names = [], [], None
    for i, ((values, names), style) in enumerate(zip(songs, styles, strict=True)):
        song = song_names[i] if song_names else f"song {i + 1}"
        if list(names) != list(songs[0][1]):
            raise ModelError(f"{song}: its feature columns differ from the first song's")
        try:
            x, descriptor_names = descriptors(values, names, fps, groups, window_s, hop_s, song)
        except MediaError as exc:
            log.warning("music style: %s; left out of the model", exc)
            continue
        rows.append(x)
        kept_styles.append(style)
    if len(set(kept_styles)) < 2:
        raise ModelError(
            f"a music-style model needs songs of at least two styles long enough to describe "
            f"({MIN_SONG_S:g} s with a beat), got {sorted(set(kept_styles)) or 'none'}; "
            "label more styles in the sources sheet's style column"
        )
    return fit_descriptors(
        rows,
        kept_styles,
        descriptor_names,
        fps=fps,
        groups=groups,
        window_s=window_s,
        hop_s=hop_s,
        regularization=regularization,
    )


def fit_descriptors(
    rows: list[np.ndarray],
    styles: list[str],
    descriptor_names: list[str],
    *,
    fps: float,
    groups,
    window_s: float = WINDOW_S,
    hop_s: float = HOP_S,
    regularization: float = 1.0,
) -> MusicStyle:
    """:func:`fit` from each song's descriptors (windows, D), computed by :func:`descriptors`
    with the same settings (a study computes them once for many fits)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    known = sorted(set(styles))
    labels = [style for x, style in zip(rows, styles, strict=True) for _ in range(len(x))]
    x = np.concatenate(rows)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 1e-9, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    classifier = LogisticRegression(C=regularization, class_weight="balanced", max_iter=5000).fit(
        z, labels
    )
    coef, intercept = classifier.coef_, classifier.intercept_
    if len(classifier.classes_) == 2:  # one row for the second class: spell out both
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return MusicStyle(
        styles=[str(s) for s in classifier.classes_],
        groups=list(groups),
        fps=float(fps),
        window_s=float(window_s),
        hop_s=float(hop_s),
        descriptor_names=list(descriptor_names),
        mean=scaler.mean_.tolist(),
        scale=scale.tolist(),
        coef=np.asarray(coef).tolist(),
        intercept=np.asarray(intercept).tolist(),
        trained_on={style: styles.count(style) for style in known},
    )
