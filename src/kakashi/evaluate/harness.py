"""Load real and generated dances, cut them into clips, and compute one table row per set.

A *dance set* is a list of :class:`EvalDance`: world positions, fps, and the music beat
times of its song (``None`` when the set has no music, e.g. the reference set). Each dance
is cut into non-overlapping clips of ``clip_s`` seconds; a trailing piece shorter than a
clip is dropped, but a dance shorter than one clip counts as one clip, so short generated
dances are still scored. The motion-quality metrics (liveliness, freeze, jitter, foot
skating, travel) are computed on whole dances instead, so no freeze is cut by a clip edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kakashi.errors import EvaluationError
from kakashi.evaluate import quality
from kakashi.evaluate.beats import beat_alignment, beats_from_column, motion_beats, song_beats
from kakashi.evaluate.contact import physical_foot_contact
from kakashi.evaluate.diversity import diversity
from kakashi.evaluate.fid import fid
from kakashi.evaluate.geometric import geometric_features
from kakashi.evaluate.kinetic import kinetic_features

METRICS = ("fid_k", "fid_g", "div_k", "div_g", "bas", "pfc")
MIN_CLIP_FRAMES = 3
# Geometric features are fractions of frames; a std below 1 % of frames (a relation the
# reference hardly ever shows) is floored so that it cannot dominate FID_g and Div_g.
GEOMETRIC_STD_FLOOR = 0.01
AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".flac", ".m4a", ".aac", ".opus")


@dataclass
class EvalDance:
    """One dance to score: world positions (T, 17, 3) at ``fps``, its song's beats (s), and
    its song's style label (the sheet's ``style`` column; ``None`` when not labelled)."""

    name: str
    world: np.ndarray
    fps: float
    music_beats: np.ndarray | None = None
    style: str | None = None


@dataclass
class Clip:
    world: np.ndarray
    fps: float
    music_beats: np.ndarray | None  # seconds from the clip's start


def is_shard_dir(path: Path) -> bool:
    """True if ``path`` holds shards in the ``split=NAME/SEQ.parquet`` layout."""
    return path.is_dir() and any(path.glob("split=*/*.parquet"))


def shard_paths(root: Path, split: str) -> list[Path]:
    """The shards of a split: the manifest's (the current sheet's) when there is one."""
    from kakashi.shards import list_shards

    return list_shards(root, split)


def load_shard(path: Path) -> EvalDance:
    """A real dance from a shard, with the music beats of its own ``beat`` audio column."""
    from kakashi.shards import read_sequence

    dance, audio, meta = read_sequence(path)
    names = list(meta["feature_names"])
    if "beat" not in names:
        raise EvaluationError(
            f"shard {path} has no 'beat' audio column (features: {', '.join(names) or 'none'}); "
            "rebuild the shards with 'beat' in features.set, or pass --music with the songs"
        )
    beat = audio[:, names.index("beat")]
    beats = beats_from_column(beat, dance.fps)
    return EvalDance(path.stem, dance.world(), dance.fps, beats, meta.get("style") or None)


def load_split(root: Path, split: str) -> list[EvalDance]:
    return [load_shard(path) for path in shard_paths(root, split)]


def dance_files(path: Path) -> list[Path]:
    """The ``.npz`` dance files at ``path`` (a file, or a folder of them)."""
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*.npz"))
        if files:
            return files
        raise EvaluationError(
            f"{path} holds no .npz dance files; point at `kakashi generate` output"
        )
    raise EvaluationError(f"{path} does not exist; give a dance .npz file or a folder of them")


def load_dance_file(path: Path, music_beats: np.ndarray | None = None) -> EvalDance:
    from kakashi.dance import Dance

    dance = Dance.load(path)
    return EvalDance(path.stem, dance.world(), dance.fps, music_beats)


class MusicLibrary:
    """Finds the song of a generated dance by its file stem and returns its beat times.

    A dance ``NAME.npz`` (or ``NAME__anything.npz``, for several takes on one song) belongs
    to the shard sequence ``NAME`` of the music shards (any split; its ``beat`` column), or
    else to the song file ``NAME.<audio suffix>`` in the music folder (librosa beats).
    """

    def __init__(self, shards: Path | None, songs: Path | None) -> None:
        self.shards = shards
        self.songs = songs
        self._cache: dict[tuple[str, float], np.ndarray] = {}

    def describe(self) -> str:
        places = [
            f"shards {self.shards}" if self.shards else "",
            f"songs {self.songs}" if self.songs else "",
        ]
        return " or ".join(p for p in places if p) or "no music source (pass --music)"

    def beats(self, name: str, fps: float) -> np.ndarray:
        for key in dict.fromkeys([name, name.split("__", 1)[0]]):
            found = self._lookup(key, fps)
            if found is not None:
                return found
        raise EvaluationError(
            f"generated dance {name}.npz: no song named {name.split('__', 1)[0]!r} in "
            f"{self.describe()}; name each generated dance after its song (a shard sequence id "
            "or an audio file stem in --music), optionally with a '__take' suffix"
        )

    def _lookup(self, key: str, fps: float) -> np.ndarray | None:
        if (key, fps) in self._cache:
            return self._cache[(key, fps)]
        beats = None
        if self.shards is not None:
            from kakashi.shards import list_shards

            matches = [path for path in list_shards(self.shards) if path.stem == key]
            if matches:
                shard = load_shard(matches[0])
                beats = shard.music_beats  # times in seconds: valid at any dance fps
        if beats is None and self.songs is not None:
            candidates = (
                [self.songs] if self.songs.is_file() else sorted(self.songs.glob(f"{key}.*"))
            )
            songs = [p for p in candidates if p.stem == key and p.suffix.lower() in AUDIO_SUFFIXES]
            if songs:
                beats = song_beats(songs[0], fps)
        if beats is not None:
            self._cache[(key, fps)] = beats
        return beats


def clips_of(dance: EvalDance, clip_s: float) -> list[Clip]:
    """Non-overlapping clips of ``clip_s`` seconds (see the module docstring)."""
    length = max(1, round(clip_s * dance.fps))
    total = len(dance.world)
    count = max(1, total // length)
    out = []
    for index in range(count):
        start, stop = index * length, min(total, (index + 1) * length)
        if stop - start < MIN_CLIP_FRAMES:
            continue
        beats = None
        if dance.music_beats is not None:
            t0, t1 = start / dance.fps, stop / dance.fps
            inside = dance.music_beats[(dance.music_beats >= t0) & (dance.music_beats < t1)]
            beats = inside - t0
        out.append(Clip(dance.world[start:stop], dance.fps, beats))
    return out


@dataclass
class FeatureSet:
    kinetic: np.ndarray  # (clips, 51)
    geometric: np.ndarray  # (clips, 32)
    clips: list[Clip]


def features_of(dances: list[EvalDance], clip_s: float, what: str) -> FeatureSet:
    clips = [clip for dance in dances for clip in clips_of(dance, clip_s)]
    if not clips:
        raise EvaluationError(
            f"{what}: no clip of at least {MIN_CLIP_FRAMES} frames; give longer dances"
        )
    kinetic = np.stack([kinetic_features(c.world, c.fps) for c in clips])
    geometric = np.stack([geometric_features(c.world, c.fps) for c in clips])
    return FeatureSet(kinetic, geometric, clips)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def score_set(
    name: str, kind: str, dances: list[EvalDance], reference: FeatureSet, clip_s: float
) -> dict:
    """One table row: FID_k, FID_g, Div_k, Div_g against ``reference``; BAS and PFC per clip;
    the motion-quality values (:mod:`kakashi.evaluate.quality`) per whole dance."""
    generated = features_of(dances, clip_s, name)
    bas_values = [
        beat_alignment(c.music_beats, motion_beats(c.world, c.fps))
        for c in generated.clips
        if c.music_beats is not None
    ]
    bas_values = [v for v in bas_values if not math.isnan(v)]
    pfc_values = [physical_foot_contact(c.world, c.fps) for c in generated.clips]
    return {
        "name": name,
        "kind": kind,
        "dances": len(dances),
        "clips": len(generated.clips),
        "clips_with_beats": len(bas_values),
        "fid_k": fid(reference.kinetic, generated.kinetic),
        "fid_g": fid(reference.geometric, generated.geometric, GEOMETRIC_STD_FLOOR),
        "div_k": _nan_to_none(diversity(reference.kinetic, generated.kinetic)),
        "div_g": _nan_to_none(
            diversity(reference.geometric, generated.geometric, GEOMETRIC_STD_FLOOR)
        ),
        "bas": float(np.mean(bas_values)) if bas_values else None,
        "pfc": float(np.mean(pfc_values)),
        **quality.row_quality((d.world, d.fps) for d in dances),
    }
