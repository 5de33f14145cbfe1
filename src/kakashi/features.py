"""Audio features: one vector per video frame.

Audio is resampled to ``fps * hop_length`` Hz so that one hop is exactly one frame
(30 fps x 512 = 15360 Hz). A power-of-two hop also keeps ``chroma_cens`` fast: its
constant-Q transform halves the signal per octave, which an odd hop (735 = 22050/30)
forbids, costing 40x the time.

The default set is the 35-dimensional AIST++ / FACT one: MFCC (20), chroma (12),
onset strength (1), beat one-hot (1), onset-peak one-hot (1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi.atomic import atomic_savez
from kakashi.errors import MediaError, tool_reason
from kakashi.inputs import require

FEATURE_KINDS = ("mfcc", "chroma", "onset", "beat", "peak")
CHROMA_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


@dataclass
class AudioFeatures:
    """Features (T, F) float32 at ``fps``, one name per column, and the settings that made
    them (``hop_length``; the set and n_mfcc follow from the names). The settings travel
    into every shard and checkpoint, so a model is never fed features computed otherwise."""

    values: np.ndarray
    names: list[str]
    fps: float
    duration_s: float
    hop_length: int

    def settings(self) -> dict:
        """What a shard and a checkpoint record: fps, hop_length, the set, n_mfcc, names."""
        feature_set, n_mfcc = settings_of(self.names)
        return {
            "fps": float(self.fps),
            "hop_length": int(self.hop_length),
            "feature_set": feature_set,
            "n_mfcc": n_mfcc,
            "feature_names": list(self.names),
        }

    def save(self, path: str | Path) -> None:
        self.validate(str(path))
        atomic_savez(
            path,
            values=self.values,
            names=np.array(self.names),
            fps=np.float64(self.fps),
            duration_s=np.float64(self.duration_s),
            hop_length=np.int64(self.hop_length),
        )

    @classmethod
    def load(cls, path: str | Path) -> AudioFeatures:
        """Read and validate a features file; errors name the file and say what is wrong."""
        path = require(path, "features file", MediaError, "run `kakashi features`")
        try:
            # Too large for float32 becomes inf, which validate() reports.
            with np.load(path) as data, np.errstate(over="ignore"):
                features = cls(
                    values=np.asarray(data["values"], dtype=np.float32),
                    names=[str(name) for name in np.atleast_1d(data["names"])],
                    fps=float(data["fps"].item()),
                    duration_s=float(data["duration_s"].item()),
                    hop_length=int(data["hop_length"].item()),
                )
        except KeyError as exc:
            raise MediaError(
                f"features file {path} lacks {exc}; it was written by an older Kakashi, "
                "delete it and run `kakashi features` again"
            ) from None
        except Exception as exc:  # zip, pickle and value errors from a damaged file
            raise MediaError(f"cannot read features file {path}: {tool_reason(str(exc))}") from exc
        return features.validate(str(path))

    def validate(self, name: str) -> AudioFeatures:
        """Raise MediaError, naming ``name``, unless every field is sane and consistent."""
        from kakashi.dance import MAX_FPS, MIN_FPS
        from kakashi.settings import node

        fix = "; the file is damaged: delete it and run `kakashi features` again"
        values = self.values
        if values.ndim != 2 or len(values) == 0 or values.shape[1] != len(self.names):
            raise MediaError(
                f"{name}: values must be (frames, {len(self.names)} named features), got "
                f"{values.shape}{fix}"
            )
        if not np.isfinite(values).all():
            bad = int((~np.isfinite(values)).any(axis=1).sum())
            raise MediaError(f"{name}: {bad} frame(s) hold NaN or infinite features{fix}")
        if not (math.isfinite(self.fps) and MIN_FPS <= self.fps <= MAX_FPS):
            raise MediaError(f"{name}: fps is {self.fps}, outside {MIN_FPS:g}-{MAX_FPS:g}{fix}")
        if self.hop_length < node("features.hop_length")["minimum"] or self.hop_length > 2**16:
            raise MediaError(f"{name}: hop_length is {self.hop_length}, outside 64-65536{fix}")
        expected = self.duration_s * self.fps
        if not (math.isfinite(expected) and abs(len(values) - expected) <= 1):
            raise MediaError(
                f"{name}: {len(values)} frames, but {self.duration_s} s at {self.fps:g} fps "
                f"makes {expected:.1f}{fix}"
            )
        try:
            settings_of(self.names)
        except MediaError as exc:
            raise MediaError(f"{name}: {exc}{fix}") from None
        return self


_COLUMN_KINDS = {"onset_strength": "onset", "beat": "beat", "onset_peak": "peak"}


def settings_of(names: list[str]) -> tuple[list[str], int]:
    """(feature set, n_mfcc) that produce these column names: the inverse of feature_names."""
    n_mfcc = sum(name.startswith("mfcc_") for name in names)
    kinds: list[str] = []
    for name in names:
        kind = column_kind(name)
        if kind not in kinds:
            kinds.append(kind)
    return kinds, n_mfcc


def column_kind(name: str) -> str:
    """The feature kind (``FEATURE_KINDS``) of one column name."""
    kind = _COLUMN_KINDS.get(name)
    if kind is None and name.startswith("mfcc_"):
        kind = "mfcc"
    if kind is None and name.startswith("chroma_"):
        kind = "chroma"
    if kind is None:
        raise MediaError(f"unknown audio feature column {name!r}")
    return kind


def feature_names(feature_set: tuple[str, ...] | list[str], n_mfcc: int) -> list[str]:
    """Column names of the features, in order."""
    names: list[str] = []
    for kind in feature_set:
        if kind == "mfcc":
            names += [f"mfcc_{i}" for i in range(n_mfcc)]
        elif kind == "chroma":
            names += [f"chroma_{note}" for note in CHROMA_NAMES]
        elif kind == "onset":
            names.append("onset_strength")
        elif kind == "beat":
            names.append("beat")
        elif kind == "peak":
            names.append("onset_peak")
        else:
            raise MediaError(f"unknown audio feature {kind!r}; known: {', '.join(FEATURE_KINDS)}")
    return names


def load_audio(path: str | Path, sr: int) -> np.ndarray:
    """Decode any audio file librosa reads to mono float32 at ``sr``; clear error if not."""
    import warnings

    import librosa

    require(path, "audio file", MediaError, "give an audio file (WAV, OGG, FLAC, MP3, M4A)")
    try:
        with warnings.catch_warnings():
            # librosa warns (FutureWarning) when libsndfile fails and audioread takes over;
            # the error below says what matters.
            warnings.simplefilter("ignore")
            samples, _ = librosa.load(str(path), sr=sr, mono=True)
    except Exception as exc:  # soundfile, audioread and ffmpeg raise many kinds
        # audioread's NoBackendError has no message: libsndfile's, before it, says why.
        reason = str(exc).strip() or str(exc.__context__ or "").strip() or type(exc).__name__
        if "not a regular file" in reason:
            # libsndfile's one message for every file it cannot open, and this one is a
            # regular file (checked above): say what is wrong with it instead.
            reason = _undecodable(Path(path))
        raise MediaError(
            f"cannot decode audio file {path}: {tool_reason(reason)}; check that it is a "
            "readable audio file"
        ) from exc
    if samples.size == 0:
        raise MediaError(f"audio file {path} is empty")
    return samples


def _undecodable(path: Path) -> str:
    """Why a regular file holds no audio libsndfile reads: a truncated ID3 tag, or none."""
    with open(path, "rb") as handle:
        head = handle.read(10)
    size = path.stat().st_size
    if head[:3] == b"ID3" and len(head) == 10:
        declared = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:]))
        if declared > size:
            return (
                f"its ID3 tag declares {declared:,} bytes, past the end of the {size:,}-byte "
                "file: the file is truncated or damaged"
            )
    return f"no audio stream found in its {size:,} bytes: the file is damaged or not audio"


def compute_features(
    samples: np.ndarray,
    sr: int,
    fps: float,
    hop_length: int,
    feature_set: tuple[str, ...] | list[str],
    n_mfcc: int,
    n_frames: int | None = None,
) -> np.ndarray:
    """Features (n_frames, F) of mono ``samples`` at ``sr == fps * hop_length``.

    ``n_frames`` defaults to ``round(duration * fps)``, the time base of the project.
    """
    import librosa

    if abs(sr - fps * hop_length) > 1e-6:
        raise ValueError(f"sr ({sr}) must equal fps * hop_length ({fps} * {hop_length})")
    if n_frames is None:
        n_frames = round(len(samples) / sr * fps)
    # One STFT (librosa's defaults: n_fft 2048, Hann, centred) serves MFCC, onset strength
    # and the tuning estimate of chroma; each would otherwise compute the same one again.
    # At the default hop (512) the values equal the separate calls exactly (a test checks).
    magnitude = None
    mel_db = None
    envelope = None
    columns: list[np.ndarray] = []

    def stft_magnitude() -> np.ndarray:
        nonlocal magnitude
        if magnitude is None:
            magnitude = np.abs(librosa.stft(samples, n_fft=2048, hop_length=hop_length))
        return magnitude

    def log_mel() -> np.ndarray:
        nonlocal mel_db
        if mel_db is None:
            mel_db = librosa.power_to_db(
                librosa.feature.melspectrogram(S=stft_magnitude() ** 2, sr=sr)
            )
        return mel_db

    for kind in feature_set:
        if kind == "mfcc":
            columns.append(librosa.feature.mfcc(S=log_mel(), sr=sr, n_mfcc=n_mfcc).T)
        elif kind == "chroma":
            # chroma_cens estimates tuning at its CQT resolution, 36 bins per octave.
            tuning = librosa.estimate_tuning(S=stft_magnitude(), sr=sr, bins_per_octave=36)
            columns.append(
                librosa.feature.chroma_cens(
                    y=samples, sr=sr, hop_length=hop_length, tuning=tuning
                ).T
            )
        elif kind in ("onset", "beat", "peak"):
            if envelope is None:
                envelope = librosa.onset.onset_strength(S=log_mel(), sr=sr, hop_length=hop_length)
            if kind == "onset":
                columns.append(envelope[:, None])
            elif kind == "beat":
                _, beats = librosa.beat.beat_track(
                    onset_envelope=envelope, sr=sr, hop_length=hop_length
                )
                columns.append(_one_hot(beats, len(envelope)))
            else:
                peaks = librosa.onset.onset_detect(
                    onset_envelope=envelope, sr=sr, hop_length=hop_length
                )
                columns.append(_one_hot(peaks, len(envelope)))
        else:
            raise MediaError(f"unknown audio feature {kind!r}; known: {', '.join(FEATURE_KINDS)}")
    length = min(len(column) for column in columns)
    stacked = np.concatenate([column[:length] for column in columns], axis=1).astype(np.float32)
    return _fit_length(stacked, n_frames)


_NUMBA_READY = False
# How long a process waits for another's warm-up before giving up: a cold compile takes
# 20-60 s on 2 busy cores, so 10 minutes means the holder is stuck, not slow.
WARM_UP_WAIT_S = 600.0


def cache_dir() -> Path:
    """Kakashi's per-user cache folder (``$XDG_CACHE_HOME/kakashi``, else
    ``~/.cache/kakashi``), created private: a fixed name in a shared folder such as /tmp
    could be taken, or held, by another user."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    folder = Path(base) / "kakashi"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def _lock(lock, lock_path: Path) -> None:
    """Take the exclusive warm-up lock, waiting at most :data:`WARM_UP_WAIT_S` and saying
    what for once the wait is noticeable."""
    import fcntl
    import logging
    import time

    started = time.monotonic()
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            waited = time.monotonic() - started
            if waited > WARM_UP_WAIT_S:
                raise MediaError(
                    f"waited {waited:.0f} s for the numba warm-up lock {lock_path}, held by "
                    "another kakashi process compiling librosa's functions; stop that "
                    f"process (`fuser {lock_path}` names it) or run again when it is done"
                ) from None
            if not told and waited > 2:
                logging.getLogger("kakashi").info(
                    "waiting for the numba warm-up lock %s: another kakashi process is "
                    "compiling librosa's functions (once per install; up to a minute), "
                    "giving up after %.0f s",
                    lock_path,
                    WARM_UP_WAIT_S,
                )
                told = True
            time.sleep(0.2)


def _import_librosa() -> None:
    """Import librosa, with the one numba function it compiles afresh in every process cached
    on disk like all its others.

    librosa 0.11 declares ``beat.__beat_local_score`` with ``cache=False``, and numba compiles
    a ``guvectorize`` function with signatures when its module is imported: 1.5 CPU s of every
    cold process (3.5 -> 2.0 CPU s for librosa's import and the warm-up, bench/cold_start.py),
    half a 3-minute song's features. Cached, it is loaded like the others (numba keys the
    cache on the source file, so a new librosa compiles anew). The cache is written under
    the lock of :func:`warm_up`, which keeps two processes from writing it at once.
    """
    import sys

    if "librosa.beat" not in sys.modules:
        import numba

        original = numba.guvectorize

        def cached(*args, **options):
            options["cache"] = True
            return original(*args, **options)

        numba.guvectorize = cached
        try:
            import librosa.beat
        finally:
            numba.guvectorize = original
    import librosa  # noqa: F401


def warm_up(fps: float | None = None, hop_length: int | None = None) -> None:
    """Compile (or load from cache) librosa's numba functions, one process at a time.

    librosa's numba functions compile on first use and cache to disk. Two processes
    compiling at once (two Snakemake jobs on a fresh install) can load each other's
    half-written cache files and crash with a segmentation fault. So the first use in
    each process runs on one second of noise under an exclusive file lock; later
    processes find the cache complete and only load it.
    """
    global _NUMBA_READY
    if _NUMBA_READY:
        return
    import fcntl
    import warnings

    try:
        lock_path = cache_dir() / "numba-warm-up.lock"
        lock = open(lock_path, "a")  # noqa: SIM115 (closed below, after the unlock)
    except OSError as exc:
        raise MediaError(
            f"cannot open the numba warm-up lock in {exc.filename or 'the cache folder'} "
            f"({exc.strerror}); remove what is there or set XDG_CACHE_HOME to a writable "
            "folder"
        ) from None
    with lock:
        _lock(lock, lock_path)
        try:
            # Importing librosa compiles some of its cached numba ufuncs too, so the
            # import happens under the lock as well.
            _import_librosa()

            from kakashi.settings import default

            fps = fps or default("fps")
            hop_length = hop_length or default("features.hop_length")
            sr = round(fps * hop_length)
            noise = np.random.default_rng(0).normal(scale=0.1, size=sr).astype(np.float32)
            with warnings.catch_warnings():
                # One second is short for chroma's lowest octaves; librosa says so, and a
                # user would take the warning for a problem with their song.
                warnings.simplefilter("ignore", UserWarning)
                compute_features(
                    noise, sr, fps, hop_length, default("features.set"), default("features.n_mfcc")
                )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _NUMBA_READY = True


def audio_features(
    audio_path: str | Path,
    *,
    fps: float,
    hop_length: int,
    feature_set: tuple[str, ...] | list[str],
    n_mfcc: int,
) -> AudioFeatures:
    """Decode an audio file and compute one feature vector per frame at ``fps``.

    A song shorter than two frames is an error: no motion can be made for it, and librosa
    would only warn, once per octave, about a window longer than the signal.
    """
    if fps <= 0 or hop_length <= 0 or ("mfcc" in feature_set and n_mfcc <= 0):
        raise MediaError(
            f"fps ({fps}), hop_length ({hop_length}) and n_mfcc ({n_mfcc}) must be positive; "
            "see schemas/config.schema.yaml"
        )
    feature_names(feature_set, n_mfcc)  # an unknown kind fails here, before any work
    warm_up(fps, hop_length)
    sr = round(fps * hop_length)
    samples = load_audio(audio_path, sr)
    duration = len(samples) / sr
    if round(duration * fps) < 2:
        raise MediaError(
            f"song {audio_path} lasts {duration:.3f} s, less than two frames at {fps:g} fps; "
            "give a longer song"
        )
    values = compute_features(samples, sr, fps, hop_length, feature_set, n_mfcc)
    return AudioFeatures(
        values, feature_names(feature_set, n_mfcc), float(fps), duration, int(hop_length)
    )


# Songs whose features stay in the cache (newest kept): ~0.75 MB each for 3 minutes.
FEATURE_CACHE_SONGS = 64


def remembered_audio_features(
    audio_path: str | Path,
    *,
    fps: float,
    hop_length: int,
    feature_set: tuple[str, ...] | list[str],
    n_mfcc: int,
) -> AudioFeatures:
    """:func:`audio_features`, remembered across runs in the user's cache folder.

    A cold `kakashi generate` spends half its time importing librosa and computing the
    features (bench/cold_start.py); the workflow and the studio dance one song with several
    models, and each run would compute them again. The key is the song's bytes (SHA-256)
    with every setting and the versions of Kakashi and librosa, so an edited song or a new
    librosa computes afresh; a damaged or unwritable cache only costs the computation.
    """
    import hashlib
    import json
    import logging
    from importlib.metadata import version

    from kakashi import __version__

    require(audio_path, "audio file", MediaError, "give an audio file (WAV, OGG, FLAC, MP3, M4A)")
    digest = hashlib.sha256()
    with open(audio_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    settings = [float(fps), int(hop_length), list(feature_set), int(n_mfcc)]
    settings += [__version__, version("librosa")]
    digest.update(json.dumps(settings).encode())
    log = logging.getLogger("kakashi")
    try:
        folder = cache_dir() / "features"
        folder.mkdir(exist_ok=True)
        path = folder / f"{digest.hexdigest()}.npz"
        if path.is_file():
            try:
                return AudioFeatures.load(path)
            except MediaError as exc:  # damaged: compute afresh, and replace it
                log.debug("feature cache: %s", exc)
    except OSError as exc:
        log.debug("feature cache unusable (%s): computing the features", exc)
        path = None
    features = audio_features(
        audio_path, fps=fps, hop_length=hop_length, feature_set=feature_set, n_mfcc=n_mfcc
    )
    if path is not None:
        try:
            features.save(path)
            kept = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_mtime, reverse=True)
            for old in kept[FEATURE_CACHE_SONGS:]:
                old.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("feature cache not written (%s)", exc)
    return features


def _one_hot(indices: np.ndarray, length: int) -> np.ndarray:
    column = np.zeros((length, 1), dtype=np.float32)
    indices = indices[(indices >= 0) & (indices < length)]
    column[indices, 0] = 1.0
    return column


def _fit_length(values: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim or edge-pad to exactly ``n_frames`` (librosa's centred frames give T+1)."""
    if len(values) >= n_frames:
        return values[:n_frames]
    pad = np.repeat(values[-1:], n_frames - len(values), axis=0)
    return np.concatenate([values, pad], axis=0)
