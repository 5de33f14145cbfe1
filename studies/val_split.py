"""Score a trained checkpoint on the val split, to tune without looking at the test split.

Run from the repository root::

    nice -n 10 .venv/bin/python studies/val_split.py results/m2d/models/maskdance.pt
        [--shards results/m2d/shards] [--seeds 0,1,2] [--set foot_lock=0.5 --set smooth=2]

Each val song is danced with ``--style auto`` where the checkpoint knows styles (the styles
chosen are printed first), from the mean pose, for each seed; ``--set`` changes one of the
checkpoint's generation settings as ``kakashi generate --sampling`` does (maskdance:
``temperature``, ``top_k``, ``smooth``, ``foot_lock``, ``iterations``, ``guidance``).
The reference is the real val dances of the
styles the train split has (a style training never saw cannot be asked for), as 5-s clips
every 2.5 s, the evaluation's held-out clips.

Prints per seed: held-out FID_k / FID_g against the real val dances, the share of 5-s
windows the evaluation's style classifier puts in the song's style (overall, then per
style), and skating, PFC, mean jerk and joint speed as ratios to the real val dances'
(``kakashi.evaluate``'s definitions); then, with two seeds or more, the variety across them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kakashi import shards  # noqa: E402
from kakashi.errors import KakashiError  # noqa: E402
from kakashi.evaluate import heldout  # noqa: E402
from kakashi.evaluate import style as style_eval  # noqa: E402
from kakashi.evaluate.contact import physical_foot_contact  # noqa: E402
from kakashi.evaluate.harness import load_split  # noqa: E402
from kakashi.evaluate.quality import joint_speed, mean_jerk, skate_rate  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.generate import dance_for_audio  # noqa: E402
from kakashi.models.styles import choose_style  # noqa: E402

CLIP_S, HOP_S = 5.0, 2.5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--shards", type=Path, default=REPO / "results" / "m2d" / "shards")
    parser.add_argument("--seeds", default="0", help="comma-separated generation seeds")
    parser.add_argument(
        "--set", action="append", default=[], help="KEY=VALUE, as generate --sampling"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--first-layer-only",
        action="store_true",
        help="maskdance with residual quantizers: decode the first layer's "
        "codes alone (what the residual transformer adds, by its absence)",
    )
    return parser.parse_args()


def quality(dances: list[tuple[np.ndarray, float]]) -> dict[str, float]:
    return {
        "skate": np.mean([skate_rate(w, fps) for w, fps in dances]),
        "pfc": np.mean([physical_foot_contact(w, fps) for w, fps in dances]),
        "jerk": np.mean([mean_jerk(w, fps) for w, fps in dances]),
        "speed": np.mean([joint_speed(w, fps).mean() for w, fps in dances]),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train = load_split(args.shards, "train")
    styles = sorted({d.style for d in train if d.style})
    val = [d for d in load_split(args.shards, "val") if not styles or d.style in styles]
    classifier = style_eval.train_classifier([(d.world, d.fps, d.style) for d in train])
    reference = heldout.clip_features([(d.world, d.fps) for d in val], CLIP_S, HOP_S)
    real = quality([(d.world, d.fps) for d in val])
    audio = {
        d.name: shards.read_shard(args.shards / "split=val" / f"{d.name}.parquet", ["audio"])[0][
            "audio"
        ]
        for d in val
    }
    model = load_model(args.checkpoint)
    if args.first_layer_only:  # the residual layers left out: the tokenizer decodes layer 0
        if getattr(model.net, "residual", None) is None:
            sys.exit(f"{args.checkpoint}: --first-layer-only needs a maskdance with quantizers > 1")
        from kakashi.models import maskdance

        maskdance.fill_residual = lambda model, codes, music, overlap: codes[..., :1]
    try:  # the network's shape (quantizers: see --first-layer-only) is no such setting
        overrides = model.set_sampling(args.set, args.checkpoint)
    except KakashiError as exc:
        sys.exit(f"{exc}")
    chosen = {
        d.name: choose_style(model.payload, "auto", audio[d.name], str(args.checkpoint), d.name)
        for d in val
    }
    print(
        "auto styles (chosen/real): "
        + ", ".join(f"{d.name} {c.style if (c := chosen[d.name]) else None}/{d.style}" for d in val)
    )
    takes, songs = [], []  # every seed's dances, for the variety across seeds
    for seed in (int(s) for s in args.seeds.split(",")):
        dances, scored = [], []
        for d in val:
            choice = chosen[d.name]
            dance = dance_for_audio(
                model, audio[d.name], model.stats.mean_pose(), seed, style=choice
            )
            dances.append((dance.world(), dance.fps))
            scored.append((dance.world(), dance.fps, d.style))
        takes += dances
        songs += [d.name for d in val]
        clips = heldout.clip_features(dances, CLIP_S, HOP_S)
        fid_k, fid_g = heldout.heldout_fid(reference, clips)
        in_style, per_style = 0.0, ""
        if styles:
            result = style_eval.style_accuracy(classifier, scored)
            in_style, confusion = result["style_accuracy"], result["style_confusion"]
            counts = np.array(confusion["counts"])
            per_style = (
                " ("
                + " ".join(
                    f"{name} {counts[i, i] / counts[i].sum():.2f}"
                    for i, name in enumerate(confusion["classes"])
                    if counts[i].sum()
                )
                + ")"
            )
        ratios = quality(dances)
        print(
            f"{args.checkpoint.name} {overrides or ''} seed {seed}: val FID_k {fid_k:.2f} "
            f"FID_g {fid_g:.2f} style {in_style:.3f}{per_style} "
            + " ".join(f"{key} x{ratios[key] / real[key]:.2f}" for key in ratios),
            flush=True,
        )

    variety = heldout.variety(reference, heldout.clip_features(takes, CLIP_S, HOP_S), songs)
    if variety is not None:
        print(f"variety across the seeds {variety:.3f} (the evaluation's: 1 = as two real dances)")


if __name__ == "__main__":
    main()
