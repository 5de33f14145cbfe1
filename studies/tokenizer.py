"""The ceiling of every model over motion tokens: real val dances encoded and decoded.

Run from the repository root::

    nice -n 10 .venv/bin/python studies/tokenizer.py [--shards results/m2d/shards]
        [--checkpoint results/m2d/models/maskdance.pt]   # its tokenizer, no training
        [--set down=2 --set codebook=256 ...]             # else: train one (motif's loop)

motif and maskdance choose codes; the tokenizer's decoder turns them into motion. A choice of
codes can at best give back what the tokenizer gives for a real dance, so the real val
dances' round trip (encode, decode, motif's finish) bounds every token model's held-out FID.
The reference is the real val dances themselves (styles the train split has), 5-s clips every
2.5 s, as ``studies/style_m2d.py``; a perfect tokenizer scores 0.

Prints per tokenizer: training time, reconstruction MSE, the share of codes used, and the
round trip's held-out FID_k / FID_g and style accuracy, with the finish's smoothing on
(the checkpoint's ``smooth``) and off.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from kakashi.evaluate import heldout  # noqa: E402
from kakashi.evaluate import style as style_eval  # noqa: E402
from kakashi.evaluate.harness import load_split  # noqa: E402
from kakashi.models import motif_train  # noqa: E402
from kakashi.models.checkpoint import load_model  # noqa: E402
from kakashi.models.config import resolve  # noqa: E402
from kakashi.models.data import load_training_data  # noqa: E402
from kakashi.models.maskdance import fill_residual  # noqa: E402
from kakashi.models.motif import Tokenizer, finish_motion, pool_audio, start_rows  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=Path, default=REPO / "results" / "m2d" / "shards")
    parser.add_argument("--checkpoint", type=Path, help="score this model's tokenizer")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE (JSON value)")
    parser.add_argument(
        "--model",
        choices=["motif", "maskdance"],
        default="motif",
        help="whose tokenizer settings to train (maskdance: residual quantizers)",
    )
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args()


def tokenizer_of(args, train, val, stats):
    """(tokenizer, arch, stats, seconds, residual transformer or None): the checkpoint's
    (its own stats, in its root_frame), or one trained with ``--model``'s settings."""
    if args.checkpoint:
        model = load_model(args.checkpoint)
        residual = getattr(model.net, "residual", None)
        return model.net.tokenizer, model.net.arch, model.stats, 0.0, residual
    settings = {"mirror": False}
    for item in args.set:
        key, value = item.split("=", 1)
        settings[key] = json.loads(value)
    s = resolve(args.model, {}, settings)
    keys = [*motif_train.TOKENIZER_KEYS, *(["quantizers"] if args.model == "maskdance" else [])]
    arch = {key: getattr(s, key) for key in keys}
    arch["smooth"] = s.smooth
    net = SimpleNamespace(tokenizer=Tokenizer(arch))  # what _train_tokenizer reads
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    if s.root_frame != "world":
        train, val, stats = load_training_data(args.shards, False, s.root_frame)
    train_m = motif_train._motion(train, stats, s.root_frame)
    val_m = motif_train._motion(val, stats, s.root_frame)
    started = time.perf_counter()
    history: list[dict] = []
    motif_train._train_tokenizer(net, s, train_m, val_m, torch.device("cpu"), gen, history)
    print(f"settings {settings}: last {history[-1]}")
    return net.tokenizer, arch, stats, time.perf_counter() - started, None


def predicted_residual(residual, codes, seq, stats, arch, style) -> torch.Tensor:
    """``codes`` (1, N, parts, quantizers) with the finer layers chosen by maskdance's
    residual transformer from the real first layer, the song and its style."""
    down = arch["down"]
    audio_n = (np.asarray(seq.audio, np.float32) - stats.audio_mean) / stats.audio_std
    pooled = pool_audio(audio_n, down, codes.shape[1])
    padded = torch.from_numpy(np.pad(pooled, ((residual.back, residual.ahead), (0, 0))))[None]
    music = residual.music_features(padded, torch.tensor([residual.style_index(style)]))[0]
    given = codes[0].numpy().copy()
    given[..., 1:] = -1
    filled = fill_residual(residual, given, music, arch["overlap"])
    return torch.from_numpy(filled)[None]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train, val, stats = load_training_data(args.shards, mirror=False)
    train_dances = load_split(args.shards, "train")
    styles = sorted({d.style for d in train_dances if d.style})
    real = {d.name: d for d in load_split(args.shards, "val") if d.style in styles}
    val = [s for s in val if s.name in real]
    classifier = style_eval.train_classifier([(d.world, d.fps, d.style) for d in train_dances])
    reference = heldout.clip_features([(d.world, d.fps) for d in real.values()], 5.0, 2.5)

    tok, arch, stats, seconds, residual = tokenizer_of(args, train, val, stats)
    tok.eval()
    down = arch["down"]
    print(f"tokenizer trained in {seconds:.0f} s; down {down}, codebook {arch['codebook']}")
    smooth_of, quantizers = arch.get("smooth", 0.0), arch.get("quantizers", 1)
    # A residual tokenizer also decodes its first layer alone (what the masked transformer
    # chooses before the residual layers are filled in).
    runs = [(smooth_of, quantizers), (0.0, quantizers)] + [(smooth_of, 1)] * (quantizers > 1)
    # A maskdance checkpoint's residual transformer: the real first layer, its finer layers.
    runs += [(smooth_of, "predicted")] * (residual is not None)
    for smooth, layers in runs:
        dances, scored = [], []
        val_m = motif_train._motion(val, stats, arch.get("root_frame", "world"))
        for seq, (motion, _) in zip(val, val_m, strict=True):
            usable = len(motion) // down * down
            with torch.no_grad():
                codes = tok.encode(torch.from_numpy(motion[:usable])[None])
                if layers == "predicted":
                    codes = predicted_residual(residual, codes, seq, stats, arch,
                                               real[seq.name].style)  # fmt: skip
                elif quantizers > 1:
                    codes = codes[..., :layers]
                out = tok.decode(codes)[0].numpy()
            start = start_rows(seq.pose[0], stats, down)[0]
            pose, root = finish_motion(out, start, stats, arch, smooth=smooth)
            world = pose + root[:, None]
            dances.append((world, stats.fps))
            scored.append((world, stats.fps, real[seq.name].style))
        fid_k, fid_g = heldout.heldout_fid(reference, heldout.clip_features(dances, 5.0, 2.5))
        accuracy = style_eval.style_accuracy(classifier, scored)["style_accuracy"]
        print(
            f"ROUND TRIP smooth {smooth}, layers {layers}: val FID_k {fid_k:.2f} FID_g {fid_g:.2f} "
            f"style {accuracy:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
