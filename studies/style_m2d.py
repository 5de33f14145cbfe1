"""Does a model dance the style it is asked for? m2d test split, issue #24.

    nice -n 10 .venv/bin/python studies/style_m2d.py [--models motiongraph] [--shards DIR]

1. Labelled shards: the m2d shards of a finished run (default /work/main/results/m2d/shards,
   built before the sheet had a style column) copied to results/m2d_style/shards with the
   sheet's style (config/m2d_sources.tsv) added to each shard's metadata: exactly what the
   shard step writes with the new sheet, without recomputing features and poses.
2. Each model trained on them with config/m2d.yaml's settings (the checkpoint then holds the
   music-style model and the styles).
3. Every test song generated with --style auto and with each train style requested; each
   dance's 5-s windows classified by the evaluation's style classifier
   (kakashi.evaluate.style, trained on the real train dances).

Prints, per model: music-style inference on the test songs, the style accuracy of the
auto dances (against the sheet's label), and per requested style the share of windows
classified as requested.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import pyarrow.parquet as pq

from kakashi.atomic import atomic_output
from kakashi.evaluate import style as style_eval
from kakashi.evaluate.harness import load_split
from kakashi.models.config import config_from
from kakashi.models.distributed import train
from kakashi.models.generate import generate_split

REPO = Path(__file__).resolve().parents[1]


def labelled_shards(source: Path, target: Path, sheet: Path) -> Path:
    """Copy ``source`` to ``target`` with each shard's sheet style in its metadata."""
    with open(sheet, newline="") as handle:
        styles = {row["id"]: row["style"].lower() for row in csv.DictReader(handle, delimiter="\t")}
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    for path in sorted(target.glob("split=*/*.parquet")):
        table = pq.read_table(path)
        meta = dict(table.schema.metadata or {})
        meta[b"style"] = json.dumps(styles[path.stem]).encode()
        with atomic_output(path) as partial:
            pq.write_table(table.replace_schema_metadata(meta), partial, compression="zstd")
    return target


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="motiongraph")
    parser.add_argument("--shards", default="/work/main/results/m2d/shards")
    parser.add_argument("--out", default=str(REPO / "results" / "m2d_style"))
    parser.add_argument("--reuse", action="store_true", help="keep shards and checkpoints")
    parser.add_argument("--split", default="test", help="tune on val, report test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    shards = out / "shards"
    if not (args.reuse and shards.is_dir()):
        labelled_shards(Path(args.shards), shards, REPO / "config" / "m2d_sources.tsv")
    train_dances = load_split(shards, "train")
    test = load_split(shards, args.split)
    train_styles = sorted({d.style for d in train_dances if d.style})
    test = [d for d in test if d.style in train_styles]  # val's one tango: no train style
    truth = {d.name: d.style for d in test}
    classifier = style_eval.train_classifier([(d.world, d.fps, d.style) for d in train_dances])
    print(f"train styles {train_styles}; test songs {truth}")
    real = style_eval.style_accuracy(classifier, [(d.world, d.fps, d.style) for d in test])
    print(f"ground truth: {real['style_accuracy']:.3f} ({real['style_windows']} windows)")
    for model in args.models.split(","):
        checkpoint = out / "models" / f"{model}.pt"
        if not (args.reuse and checkpoint.is_file()):
            started = time.perf_counter()
            config = config_from(
                str(REPO / "config" / "m2d.yaml"),
                {"model": model, "shards": str(shards), "out": str(checkpoint)},
            )
            train(config, progress=False)
            print(f"{model}: trained in {time.perf_counter() - started:.0f} s")
        for requested in ["auto", *train_styles]:
            folder = out / "dances" / model / requested
            paths = generate_split(shards, args.split, checkpoint, folder, style=requested)
            paths = [p for p in paths if p.stem in truth]
            from kakashi.dance import Dance

            dances = [Dance.load(p) for p in paths]
            inferred = {p.stem: d.meta.get("style") for p, d in zip(paths, dances, strict=True)}
            wanted = {p.stem: truth[p.stem] if requested == "auto" else requested for p in paths}
            scored = [
                (d.world(), d.fps, wanted[p.stem]) for p, d in zip(paths, dances, strict=True)
            ]
            result = style_eval.style_accuracy(classifier, scored)
            per_song = {
                p.stem.removeprefix("m2d-DANCE_"): round(
                    style_eval.style_accuracy(classifier, [row])["style_accuracy"], 2
                )
                for p, row in zip(paths, scored, strict=True)
            }
            line = (
                f"{model} --style {requested}: accuracy {result['style_accuracy']:.3f} "
                f"({result['style_windows']} windows; per song {per_song}; "
                f"confusion {result['style_confusion']['counts']})"
            )
            if requested == "auto":
                right = sum(inferred[s] == truth[s] for s in truth)
                line += f"; inferred {inferred} ({right}/{len(truth)} right)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
