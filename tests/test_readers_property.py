"""Property tests of the dance and features readers: whatever a file holds (random shapes
and dtypes, NaN and infinities, absurd frame rates, missing fields, random bytes), reading
it either gives a valid object or raises the project's own error, never another exception.
Each read is timed: a reader that takes seconds on a small file fails (no hang)."""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kakashi.dance import MAX_FPS, MAX_POSE_M, MAX_ROOT_M, MIN_FPS, Dance
from kakashi.errors import KakashiError
from kakashi.features import AudioFeatures, feature_names

SLOW_READ_S = 5.0  # files here are at most a few kB: anything slower is a hang
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
EXTREME = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 1e-9, 0.999, 1.0, 30.0, 240.0, 240.001, 1e6, 1e300]),
)
DTYPES = st.sampled_from([np.float32, np.float64, np.int16, np.bool_, np.complex64, "U3"])


def array(shape, dtype=np.float32) -> st.SearchStrategy[np.ndarray]:
    if dtype == "U3":
        # numpy strings cannot end in NUL: hypothesis refuses to generate what it cannot store.
        text = st.text(alphabet=st.characters(exclude_characters="\x00"), max_size=3)
        return hnp.arrays("U3", shape, elements=text)
    if np.dtype(dtype).kind == "f":
        return hnp.arrays(dtype, shape, elements=FLOATS if dtype == np.float32 else EXTREME)
    return hnp.arrays(dtype, shape)


SHAPES = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=20)


@st.composite
def dance_fields(draw) -> dict[str, np.ndarray]:
    """A dance file's fields, each either right or anything at all; some left out."""
    frames = draw(st.integers(0, 30))
    right = draw(st.booleans())
    fields = {
        "pose": draw(array((frames, 17, 3) if right else draw(SHAPES), draw(DTYPES))),
        "root": draw(array((frames, 3) if draw(st.booleans()) else draw(SHAPES))),
        "fps": draw(st.one_of(EXTREME.map(np.float64), array(draw(SHAPES), draw(DTYPES)))),
    }
    if draw(st.booleans()):
        fields["conf"] = draw(array((frames,) if draw(st.booleans()) else draw(SHAPES)))
    if draw(st.booleans()):
        fields["meta"] = np.array(draw(st.sampled_from(['{"backend": "x"}', "[1]", "{", ""])))
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
        del fields[name]
    return fields


@st.composite
def features_fields(draw) -> dict[str, np.ndarray]:
    """A features file's fields: consistent ones perturbed, or anything at all."""
    fps = draw(st.one_of(st.just(30.0), EXTREME))
    frames = draw(st.integers(0, 30))
    kinds = draw(st.lists(st.sampled_from(["mfcc", "chroma", "onset", "beat", "peak"]),
                          min_size=1, max_size=3, unique=True))  # fmt: skip
    names = feature_names(kinds, draw(st.integers(1, 4)))
    if draw(st.booleans()):
        names = draw(st.lists(st.text(max_size=8), max_size=5))
    width = len(names) if draw(st.booleans()) else draw(st.integers(0, 6))
    duration = frames / fps if fps and draw(st.booleans()) else draw(EXTREME)
    fields = {
        "values": draw(
            array((frames, width) if draw(st.booleans()) else draw(SHAPES), draw(DTYPES))
        ),
        "names": np.array(names, dtype=str),
        "fps": np.float64(fps),
        "duration_s": np.float64(duration),
        "hop_length": np.int64(draw(st.one_of(st.just(512), st.integers(-(2**40), 2**40)))),
    }
    for name in draw(st.sets(st.sampled_from(sorted(fields)), max_size=2)):
        del fields[name]
    return fields


def write(fields: dict[str, np.ndarray], folder: Path) -> Path:
    path = folder / "file.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **fields)
    return path


def read(loader, path: Path):
    """The loader's result, or None when it raised the project's error naming the file (any
    other exception propagates and fails the test); never slow."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # numpy warns when a complex array is cast to float: not the reader's error.
            warnings.simplefilter("ignore", np.ComplexWarning)
            return loader(path)
    except KakashiError as exc:
        assert str(path) in str(exc)
        return None
    finally:
        assert time.perf_counter() - started < SLOW_READ_S


@PROPERTY
@given(fields=dance_fields())
def test_dance_reader_loads_or_raises_its_own_error(fields):
    with tempfile.TemporaryDirectory() as folder:
        dance = read(Dance.load, write(fields, Path(folder)))
    if dance is not None:
        frames = len(dance.pose)
        assert frames > 0 and dance.pose.shape == (frames, 17, 3)
        assert dance.root.shape == (frames, 3) and dance.conf.shape == (frames,)
        assert np.isfinite(dance.pose).all() and np.isfinite(dance.root).all()
        assert np.abs(dance.pose).max() <= MAX_POSE_M and np.abs(dance.root).max() <= MAX_ROOT_M
        assert MIN_FPS <= dance.fps <= MAX_FPS


@PROPERTY
@given(fields=features_fields())
def test_features_reader_loads_or_raises_its_own_error(fields):
    with tempfile.TemporaryDirectory() as folder:
        features = read(AudioFeatures.load, write(fields, Path(folder)))
    if features is not None:
        frames, width = features.values.shape
        assert frames > 0 and width == len(features.names)
        assert np.isfinite(features.values).all()
        assert MIN_FPS <= features.fps <= MAX_FPS
        assert abs(frames - features.duration_s * features.fps) <= 1


@PROPERTY
@given(data=st.binary(max_size=4096), loader=st.sampled_from([Dance.load, AudioFeatures.load]))
def test_random_bytes_are_refused_by_both_readers(data, loader):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "file.npz"
        path.write_bytes(data)
        assert read(loader, path) is None
