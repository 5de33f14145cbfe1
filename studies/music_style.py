"""Study: how well the music-style model names the dance style of a song it never saw.

Run from the repository root (the data at ../shared/data/m2d_tang2018)::

    nice -n 10 .venv/bin/python studies/music_style.py [--data PATH] [--cache DIR]

Features are computed with kakashi.features at the workflow's settings (the schema's fps
and features.*) for each of the 35 Dance-with-Melody songs twice: the danced span (what the
training shards hold: audio from audio_offset_s for motion_sec) and the whole song (what a
user gives at generation). They are cached in ``--cache`` (default: a folder in the temp
dir), so a second run decodes nothing. Prints leave-one-song-out accuracy over all 35 songs,
per-style recall and the confusion, the m2d test split trained on the train split, and an
ablation of the descriptor groups. Figures and how to read them: docs/music_style.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))  # this checkout's kakashi, installed or not

from kakashi import music_style  # noqa: E402
from kakashi.features import compute_features, feature_names, load_audio, warm_up  # noqa: E402
from kakashi.settings import default  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "m2d_tang2018"
SHEET = REPO / "config" / "m2d_sources.tsv"


def song_features(data: Path, cache: Path) -> list[dict]:
    """One record per manifest entry: name, style, split, and the (values, names) features of
    the danced span and of the whole song, computed once and cached as npz."""
    import librosa

    fps = default("fps")
    hop = default("features.hop_length")
    kinds = default("features.set")
    n_mfcc = default("features.n_mfcc")
    audio_sr = default("cut.audio_sr")
    names = feature_names(kinds, n_mfcc)
    sr = round(fps * hop)
    splits = {}
    with open(SHEET, newline="") as sheet:
        for row in csv.DictReader(sheet, delimiter="\t"):
            splits[row["id"].removeprefix("m2d-")] = row["split"]
    cache.mkdir(parents=True, exist_ok=True)
    warm_up(fps, hop)
    records = []
    for entry in json.loads((data / "manifest.json").read_text()):
        name = entry["name"]
        path = cache / f"{name}-{fps}fps-{hop}.npz"
        if not path.exists():
            started = time.perf_counter()
            # As the workflow does: decode at cut.audio_sr, cut the span there (stage.py),
            # then resample to fps * hop as load_audio does for the features.
            samples = load_audio(data / "audio" / f"{name}.mp3", audio_sr)
            begin = round(entry["audio_offset_s"] * audio_sr)
            span = samples[begin : begin + round(entry["motion_sec"] * audio_sr)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                values = {
                    part: compute_features(
                        librosa.resample(audio, orig_sr=audio_sr, target_sr=sr),
                        sr,
                        fps,
                        hop,
                        kinds,
                        n_mfcc,
                    )
                    for part, audio in (("span", span), ("whole", samples))
                }
            np.savez(path, **values)
            print(f"  features {name}: {time.perf_counter() - started:.1f} s", flush=True)
        with np.load(path) as cached:
            records.append(
                {
                    "name": name,
                    "style": entry["style"],
                    "split": splits.get(name, "train"),
                    "span": (cached["span"], names),
                    "whole": (cached["whole"], names),
                }
            )
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "kakashi-music-style"
    )
    parser.add_argument("--only-cache", action="store_true", help="compute the features and stop")
    parser.add_argument("--C", type=float, default=1.0, help="inverse L2 strength")
    parser.add_argument(
        "--ablation",
        type=lambda s: tuple(s.split("+")),
        action="append",
        help="descriptor groups joined by +, e.g. tempo+metre (repeatable)",
    )
    args = parser.parse_args()
    records = song_features(args.data, args.cache)
    if args.only_cache:
        return
    fps = default("fps")
    started = time.perf_counter()
    print(
        f"{len(records)} songs at {fps} fps; windows {music_style.WINDOW_S:g} s every "
        f"{music_style.HOP_S:g} s; trained on the danced spans"
    )
    styles = sorted({r["style"] for r in records})
    base = leave_one_out(records, fps, music_style.DEFAULT_GROUPS, C=args.C)
    for part in ("span", "whole"):
        report(f"leave-one-song-out, {part}", records, base[part], styles)
    split_eval(records, fps, styles, C=args.C)
    timing(records, fps)
    print("\nablation (leave-one-song-out accuracy, span / whole):")
    for groups in args.ablation or ABLATIONS:
        result = leave_one_out(records, fps, groups, C=args.C)
        print(
            f"  {'+'.join(groups):40s} {accuracy(records, result['span']):.3f} / "
            f"{accuracy(records, result['whole']):.3f}"
        )
    print(f"\n{time.perf_counter() - started:.0f} s")


ABLATIONS = [
    ("tempo",),
    ("tempogram",),
    ("metre",),
    ("rhythm",),
    ("harmony",),
    ("timbre",),
    ("tempo", "metre"),
    ("tempo", "tempogram"),
    ("tempo", "tempogram", "metre"),
    ("tempo", "tempogram", "rhythm"),
    ("tempo", "tempogram", "metre", "rhythm"),
    ("tempo", "tempogram", "metre", "rhythm", "harmony"),
    ("tempo", "tempogram", "metre", "rhythm", "timbre"),
]


def rows(record, part, fps, groups):
    """A song's descriptors for these groups: per group computed once and cached, then
    joined in GROUPS order (the order descriptors() writes them)."""
    cache = record.setdefault("descriptors", {})
    blocks, names = [], []
    for group in music_style.GROUPS:
        if group not in groups:
            continue
        if (part, group) not in cache:
            cache[part, group] = music_style.descriptors(
                *record[part], fps, groups=(group,), song=record["name"]
            )
        blocks.append(cache[part, group][0])
        names += cache[part, group][1]
    return np.concatenate(blocks, axis=1), names


def fitted(records, fps, groups, C=1.0):
    x = [rows(r, "span", fps, groups) for r in records]
    return music_style.fit_descriptors(
        [a for a, _ in x],
        [r["style"] for r in records],
        x[0][1],
        fps=fps,
        groups=groups,
        regularization=C,
    )


def predicted(model, record, part, fps):
    x, names = rows(record, part, fps, model.groups)
    assert names == model.descriptor_names
    return model.song_prediction(model.descriptor_log_probabilities(x))


def leave_one_out(records, fps, groups, C=1.0) -> dict:
    """Predicted style of each song's span and whole song by a model fitted on the other
    songs' spans (what the training shards would hold)."""
    out = {"span": [], "whole": []}
    for i, record in enumerate(records):
        model = fitted([r for j, r in enumerate(records) if j != i], fps, groups, C)
        for part in out:
            out[part].append(predicted(model, record, part, fps))
    return out


def accuracy(records, predictions) -> float:
    return float(
        np.mean([p.style == r["style"] for r, p in zip(records, predictions, strict=True)])
    )


def report(title, records, predictions, styles) -> None:
    correct = sum(p.style == r["style"] for r, p in zip(records, predictions, strict=True))
    print(f"\n{title}: accuracy {accuracy(records, predictions):.3f} ({correct}/{len(records)})")
    print("  true \\ predicted  " + " ".join(f"{s:>8s}" for s in styles) + "   recall")
    for style in styles:
        row = [p.style for r, p in zip(records, predictions, strict=True) if r["style"] == style]
        counts = [row.count(s) for s in styles]
        print(
            f"  {style:17s} "
            + " ".join(f"{c:8d}" for c in counts)
            + f"   {row.count(style) / len(row):.2f} ({row.count(style)}/{len(row)})"
        )
    wrong = [
        f"{r['name']} {r['style']}->{p.style} ({p.confidence:.2f})"
        for r, p in zip(records, predictions, strict=True)
        if p.style != r["style"]
    ]
    print("  wrong: " + (", ".join(wrong) or "none"))


def timing(records, fps) -> None:
    """Seconds to fit on all 35 spans and to predict the longest whole song, from features."""
    started = time.perf_counter()
    model = music_style.fit([r["span"] for r in records], [r["style"] for r in records], fps)
    fitted_s = time.perf_counter() - started
    longest = max(records, key=lambda r: len(r["whole"][0]))
    started = time.perf_counter()
    model.predict(*longest["whole"])
    seconds = len(longest["whole"][0]) / fps
    print(
        f"\ntime (shared 2-core machine): fit on {len(records)} spans "
        f"{fitted_s:.1f} s; predict {longest['name']} ({seconds:.0f} s of music) "
        f"{time.perf_counter() - started:.2f} s"
    )


def split_eval(records, fps, styles, C=1.0) -> None:
    train = [r for r in records if r["split"] == "train"]
    model = fitted(train, fps, music_style.DEFAULT_GROUPS, C)
    print(
        f"\nm2d split: trained on the {len(train)} train songs "
        f"({', '.join(f'{k} {v}' for k, v in model.trained_on.items())})"
    )
    for split in ("val", "test"):
        chosen = [r for r in records if r["split"] == split]
        for part in ("span", "whole"):
            predictions = [model.predict(*r[part], song=r["name"]) for r in chosen]
            print(
                f"  {split} {part}: accuracy {accuracy(chosen, predictions):.3f}; "
                + ", ".join(
                    f"{r['name']} {r['style']}->{p.style} ({p.confidence:.2f})"
                    for r, p in zip(chosen, predictions, strict=True)
                )
            )


if __name__ == "__main__":
    main()
