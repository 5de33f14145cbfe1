"""Which style classifier reads the dance's style robustly? m2d, issue #24.

    nice -n 10 .venv/bin/python studies/style_classifier.py --shards results/m2d/shards \
        --motif results/m2d/models/motif.pt

The evaluation's style column must recognise real dances the classifier never saw, and
must not flip on a dance that is the same dance up to a few centimetres: the round trip of
the real val dances through a trained motif tokenizer (encode, decode: joints 4-10 cm off,
pose spread 10-15 % smaller) is still the same dance. Prints, for each classifier on the
descriptors of ``kakashi.evaluate.style``, the accuracy on the real val and test dances and
on the round trips of the val dances.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from kakashi.dance import Dance
from kakashi.evaluate import style
from kakashi.evaluate.harness import load_split
from kakashi.models import motif
from kakashi.models.checkpoint import load_checkpoint
from kakashi.models.data import motion_of, read_split
from kakashi.models.stats import Stats


def round_trip(net, stats: Stats, seq) -> np.ndarray:
    """The world joints of ``seq`` encoded and decoded by motif's tokenizer (its root kept)."""
    motion = ((motion_of(seq.pose, seq.root) - stats.motion_mean) / stats.motion_std).astype(
        np.float32
    )
    usable = len(motion) // net.arch["down"] * net.arch["down"]
    with torch.no_grad():
        codes = net.tokenizer.encode(torch.from_numpy(motion[:usable])[None])
        decoded = net.tokenizer.decode(codes)[0].numpy()
    decoded = gaussian_filter1d(decoded, net.arch.get("smooth", 1.0), axis=0, mode="nearest")
    decoded = decoded * stats.motion_std + stats.motion_mean
    return Dance(decoded[:, :51].reshape(-1, 17, 3), seq.root[:usable], stats.fps).world()


def main() -> None:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", required=True)
    parser.add_argument("--motif", required=True, help="a motif checkpoint of these shards")
    args = parser.parse_args()
    payload = load_checkpoint(args.motif)
    net = motif.build(payload["arch"])
    net.load_state_dict(payload["model"], strict=False)  # style vocabularies: not used here
    net.eval()
    stats = Stats.from_dict(payload["stats"])
    train = load_split(args.shards, "train")
    styles = sorted({d.style for d in train if d.style})
    val = [d for d in load_split(args.shards, "val") if d.style in styles]
    test = [d for d in load_split(args.shards, "test") if d.style in styles]
    trips = [
        (round_trip(net, stats, seq), stats.fps, seq.style)
        for seq in read_split(args.shards, "val")
        if seq.style in styles
    ]
    described = {}

    def windows(world, fps):
        if id(world) not in described:
            described[id(world)] = style.window_descriptors(world, fps)
        return described[id(world)]

    features = np.concatenate([windows(d.world, d.fps) for d in train])
    labels = np.concatenate([[d.style] * len(windows(d.world, d.fps)) for d in train])
    candidates = {
        "logistic regression (C 1, before)": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
        ),
        f"random forest ({style.TREES} trees, leaf {style.LEAF}: the evaluation's)": (
            RandomForestClassifier(
                style.TREES, min_samples_leaf=style.LEAF, class_weight="balanced", random_state=0
            )
        ),
    }
    for name, classifier in candidates.items():
        classifier.fit(features, labels)

        def accuracy(items, classifier=classifier) -> float:
            hits = [classifier.predict(windows(w, fps)) == s for w, fps, s in items]
            return float(np.mean(np.concatenate(hits)))

        print(
            f"{name}: real val {accuracy([(d.world, d.fps, d.style) for d in val]):.2f}, "
            f"real test {accuracy([(d.world, d.fps, d.style) for d in test]):.2f}, "
            f"tokenizer round trip of val {accuracy(trips):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
