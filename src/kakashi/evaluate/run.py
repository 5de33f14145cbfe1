"""The whole evaluation: load sets, score baselines and models, write the report."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from kakashi.errors import EvaluationError
from kakashi.evaluate import baselines, columns, quality, report
from kakashi.evaluate.harness import (
    EvalDance,
    MusicLibrary,
    dance_files,
    features_of,
    is_shard_dir,
    load_dance_file,
    load_split,
    score_set,
)

log = logging.getLogger("kakashi.evaluate")

REFERENCE_SPLIT = "train"
TEST_SPLIT = "test"
REAL_LINE_SPLIT = "val"


def _song_key(name: str) -> str:
    return name.split("__", 1)[0]


def evaluate(
    reference: Path,
    generated: dict[str, Path],
    out_dir: Path,
    clip_s: float = 10.0,
    music: Path | None = None,
    baseline_names: list[str] | tuple[str, ...] = baselines.BASELINES,
    timeline: str | None = None,
    seed: int = 0,
    heldout_clip_s: float | None = None,
    heldout_hop_s: float | None = None,
) -> dict:
    """Score every baseline and generated set against ``reference``; write ``out_dir``.

    ``reference`` is a shard folder (its train split is the reference set, its test split
    the ground truth and the music of the baselines) or a folder of dance files. ``music``
    is a shard folder or a folder of songs; generated dances find their song by file stem.
    """
    from kakashi.settings import default

    started = time.perf_counter()
    heldout_clip_s = heldout_clip_s or default("eval.heldout_clip_s")
    heldout_hop_s = heldout_hop_s or default("eval.heldout_hop_s")
    if clip_s <= 0:
        raise EvaluationError(f"--clip-s must be positive, got {clip_s}")
    reference = Path(reference)
    music = Path(music) if music is not None else None
    music_shards = reference if is_shard_dir(reference) else None
    songs = None
    if music is not None:
        if is_shard_dir(music):
            music_shards = music
        elif music.exists():
            songs = music
        else:
            raise EvaluationError(f"--music {music} does not exist; give shards or a song folder")

    if is_shard_dir(reference):
        ref_dances = load_split(reference, REFERENCE_SPLIT)
        if not ref_dances:
            raise EvaluationError(
                f"reference {reference} has no split={REFERENCE_SPLIT} shards; build the dataset"
            )
        source = f"{reference} (split={REFERENCE_SPLIT})"
    elif reference.is_dir() or reference.is_file():
        ref_dances = [load_dance_file(p) for p in dance_files(reference)]
        source = str(reference)
    else:
        raise EvaluationError(
            f"reference {reference} does not exist; give a shard folder (split=*/SEQ.parquet) "
            "or a folder of dance .npz files"
        )
    test = load_split(music_shards, TEST_SPLIT) if music_shards is not None else []
    ref_features = features_of(ref_dances, clip_s, f"reference {reference}")

    sets: dict[str, tuple[str, list[EvalDance]]] = {}
    for name, dances in (
        baselines.build(list(baseline_names), ref_dances, test, clip_s, seed).items()
        if baseline_names
        else []
    ):
        sets[name] = ("baseline", dances)
    # The real line of the held-out FID: real dances no model saw, scored like a model.
    real_line = load_split(music_shards, REAL_LINE_SPLIT) if music_shards is not None else []
    real_line, left_out = columns.real_line_of(real_line, test)
    if real_line and test and baseline_names:  # --baselines none: only the given dances
        sets[columns.REAL_LINE] = ("real line", real_line)
    library = MusicLibrary(music_shards, songs)
    for name, path in generated.items():
        if name in sets:
            raise EvaluationError(f"--generated name {name!r} is used twice or names a baseline")
        dances = []
        for file in dance_files(Path(path)):
            dance = load_dance_file(file)
            dance.music_beats = library.beats(file.stem, dance.fps)
            dances.append(dance)
        sets[name] = ("model", dances)

    _check_one_fps(
        [(f"reference {reference}", ref_dances), ("the test split", test)]
        + [(name, dances) for name, (_, dances) in sets.items()]
    )
    rows = []
    for name, (kind, dances) in sets.items():
        log.info("scoring %s (%d dances)", name, len(dances))
        rows.append(score_set(name, kind, dances, ref_features, clip_s))
    ground_truth = quality.add_ratios(rows)
    extra = {"notes": [], "timings": {}, "real_line": None, "copy_threshold": None,
             "reference_clips": None}  # fmt: skip
    if test:  # the held-out columns need the real test dances (shards)
        extra = columns.add_columns(rows, sets, ref_dances, test, heldout_clip_s, heldout_hop_s)
    result = {
        "clip_s": clip_s,
        "seed": seed,
        "reference": {
            "source": source,
            "dances": len(ref_dances),
            "clips": len(ref_features.clips),
        },
        "test_split": [d.name for d in test],
        # The held-out columns: reference = the test split's clips, real line = val.
        "heldout": {
            "clip_s": heldout_clip_s,
            "hop_s": heldout_hop_s,
            "reference_clips": extra["reference_clips"],
            "real_line": extra["real_line"],
            "copy_threshold": extra["copy_threshold"],
            "timings_s": extra["timings"],
        },
        "better": report.better(),
        # The row the quality ratios (liveliness, jitter, skate_ratio, travel_ratio) divide
        # by; null without a ground-truth row, and then every ratio is null.
        "quality_reference": ground_truth["name"] if ground_truth else None,
        "rows": rows,
        "notes": list(extra["notes"]) + left_out,
    }
    if test and all((len(d.world) / d.fps) < clip_s for d in test):
        result["notes"].append("every test dance is shorter than one clip; FID rests on few clips")
    if ground_truth and ground_truth["travel_ratio"] is None:
        result["notes"].append(
            f"ground-truth travel is {ground_truth['travel_m_min'] or 0.0:.2f} m/min (under "
            f"{quality.TRAVEL_MIN_M_MIN:g}: the root is not measured); travel is shown in m/min"
        )
    seq = timeline or (test[0].name if test else None)
    panel = _timeline_dances(seq, sets) if seq else {}
    if timeline and not panel:
        raise EvaluationError(
            f"--timeline {timeline}: no evaluated dance belongs to song {timeline!r}"
        )
    result["timeline"] = seq if panel else None
    result["elapsed_s"] = round(time.perf_counter() - started, 3)
    report.write(result, Path(out_dir), (seq, panel) if panel else None)
    return result


def _check_one_fps(groups: list[tuple[str, list[EvalDance]]]) -> None:
    """Every metric compares motion per frame (velocities, clip lengths in frames), so dances
    of different frame rates cannot be scored together: say which differ, never mix them."""
    first: tuple[str, EvalDance] | None = None
    for group, dances in groups:
        for dance in dances:
            if first is None:
                first = (group, dance)
            elif abs(dance.fps - first[1].fps) > 1e-3:
                raise EvaluationError(
                    f"dances at different frame rates: {dance.name} ({group}) is at "
                    f"{dance.fps:g} fps, {first[1].name} ({first[0]}) at {first[1].fps:g} fps; "
                    "evaluate dances of one frame rate (from a model trained on the "
                    "reference's fps)"
                )


def _timeline_dances(
    seq: str, sets: dict[str, tuple[str, list[EvalDance]]]
) -> dict[str, EvalDance]:
    """One dance per set that is danced to song ``seq``, for the beat timeline plot."""
    panel = {}
    for name, (_, dances) in sets.items():
        for dance in dances:
            key = _song_key(dance.name)
            if "->" in dance.name:  # a baseline built for a test song: "...->SEQ[@start]"
                key = dance.name.rsplit("->", 1)[-1].split("@", 1)[0]
            if key == seq and dance.music_beats is not None:
                panel[name] = dance
                break
    return panel
