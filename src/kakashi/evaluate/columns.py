"""The columns a replay of the train set cannot win, for every row of the table.

Held-out FID (:mod:`kakashi.evaluate.heldout`), style accuracy
(:mod:`kakashi.evaluate.style`), novelty (:mod:`kakashi.evaluate.novelty`), variety
across takes and ground contact (:mod:`kakashi.evaluate.ground`); docs/evaluation.md
defines each.
"""

from __future__ import annotations

import logging
import time

from kakashi.evaluate import ground, heldout, novelty, style
from kakashi.evaluate.harness import EvalDance

log = logging.getLogger("kakashi.evaluate")
REAL_LINE = "real_val"


def take_song(name: str) -> str:
    """The song of a take ``SEQ__take``; any other dance is its own group (the pieces of
    random retrieval are not takes of their song)."""
    return name.split("__", 1)[0] if "__" in name else name


def song_of(name: str) -> str:
    """The song a dance of any row is danced to: ``SEQ``, ``SEQ__take``, ``...->SEQ@t``."""
    if "->" in name:
        return name.rsplit("->", 1)[-1].split("@", 1)[0]
    return name.split("__", 1)[0]


def real_line_of(val: list[EvalDance], test: list[EvalDance]) -> tuple[list, list[str]]:
    """The val dances of the styles the test songs have (all of them when the test songs
    are not labelled), and a note naming those left out.

    A style no test song has is not the real dancing the rows are asked for: m2d's only
    tango (in val) alone made the real line's FID_k 803 against the test dances' 33 for
    its four waltzes.
    """
    wanted = {d.style for d in test if d.style}
    if not wanted:
        return val, []
    kept = [d for d in val if d.style in wanted]
    out = [d for d in val if d.style not in wanted]
    if not out:
        return kept, []
    names = ", ".join(f"{d.name} ({d.style or 'no style'})" for d in out)
    return kept, [f"real line: left out val dance(s) of a style no test song has: {names}"]


def add_columns(
    rows: list[dict],
    sets: dict[str, tuple[str, list[EvalDance]]],
    train: list[EvalDance],
    test: list[EvalDance],
    clip_s: float,
    hop_s: float,
) -> dict:
    """Fill the new columns into ``rows`` (by name, as ``sets``); returns the notes and the
    timings of each part."""
    notes, timings = [], {}
    styles = {d.name: d.style for dances in ([test] + [s for _, s in sets.values()])
              for d in dances if d.style}  # fmt: skip
    started = time.perf_counter()
    reference = heldout.clip_features([(d.world, d.fps) for d in test], clip_s, hop_s)
    features = {
        name: heldout.clip_features([(d.world, d.fps) for d in dances], clip_s, hop_s)
        for name, (_, dances) in sets.items()
    }
    real_line = None
    if REAL_LINE in features:
        real_line = heldout.heldout_fid(reference, features[REAL_LINE])
    for row in rows:
        name = row["name"]
        dances = sets[name][1]
        if name == "ground_truth":  # the reference itself: 0 by construction
            fid_k = fid_g = None
        else:
            fid_k, fid_g = heldout.heldout_fid(reference, features[name])
        row["fid_k_heldout"], row["fid_g_heldout"] = fid_k, fid_g
        for key, value, line in (("fid_k", fid_k, 0), ("fid_g", fid_g, 1)):
            ratio = None
            if value is not None and real_line and real_line[line] > 0:
                ratio = value / real_line[line]
            row[f"{key}_heldout_ratio"] = ratio
        songs = [take_song(d.name) for d in dances]
        row["takes"] = max(songs.count(s) for s in set(songs)) if songs else 0
        row["variety"] = heldout.variety(reference, features[name], songs)
        row.update(ground.ground_contact([(d.world, d.fps) for d in dances]))
    if real_line is None:
        notes.append("no val split: held-out FID has no real line to divide by")
    if len(reference.kinetic) <= reference.kinetic.shape[1]:
        notes.append(
            f"held-out FID rests on {len(reference.kinetic)} reference clips, no more than the "
            f"{reference.kinetic.shape[1]} kinetic features: its covariance is singular; "
            "compare rows, not values"
        )
    timings["heldout_fid_variety_ground_s"] = time.perf_counter() - started

    started = time.perf_counter()
    labelled = [(d.world, d.fps, d.style) for d in train]
    classifier = style.train_classifier(labelled)
    for row in rows:
        if classifier is None:
            row.update(style_accuracy=None, style_windows=0, style_confusion=None)
            continue
        dances = sets[row["name"]][1]
        row.update(style.style_accuracy(
            classifier, [(d.world, d.fps, styles.get(song_of(d.name))) for d in dances]
        ))  # fmt: skip
    if classifier is None:
        notes.append("fewer than two styles are labelled in the train split (the sheet's "
                     "style column): no style accuracy")  # fmt: skip
    timings["style_s"] = time.perf_counter() - started

    started = time.perf_counter()
    bank = novelty.build_bank([(d.world, d.fps) for d in train])
    test_windows = novelty.query(bank, [(d.world, d.fps) for d in test])
    for row in rows:
        dances = sets[row["name"]][1]
        rows_windows = novelty.query(bank, [(d.world, d.fps) for d in dances])
        row.update(novelty.novelty(bank, test_windows, rows_windows))
    timings["novelty_s"] = time.perf_counter() - started
    for part, seconds in timings.items():
        log.info("%s: %.1f s", part, seconds)
    return {
        "notes": notes,
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "real_line": {"fid_k": real_line[0], "fid_g": real_line[1]} if real_line else None,
        "copy_threshold": novelty.copy_threshold(test_windows),
        "reference_clips": len(reference.kinetic),
    }
