"""``kakashi train`` and ``kakashi generate``.

Every ``TrainConfig`` field is a flag (``window_s`` -> ``--window-s``), so a Snakemake rule can
pass ``--model rnn --shards DIR --epochs N``; ``--config FILE`` reads the ``train:`` section
of a YAML file first, and flags override it. torch is imported inside the commands so that
``kakashi --help`` stays fast.
"""

from __future__ import annotations

import argparse

from kakashi.models import ModelError

# Field names and types without importing torch (train.py imports it).
_HELP = {
    "model": "rnn | crnngan",
    "shards": "shard folder (split=NAME/SEQ.parquet)",
    "out": "checkpoint to write; also OUT.last.pt, OUT.csv, OUT.png beside it",
    "init": "crnngan: seed RNN checkpoint the generator starts from",
    "mode": "per_frame | seq2seq_short | seq2seq_long",
    "device": "auto | cpu | cuda",
    "devices": "processes for DistributedDataParallel (one GPU each, or CPU with gloo); "
    "spawned here unless run under torchrun",
    "optimizer": "adam | sgd",
    "loss": "mse | huber",
}


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _train_fields() -> list[tuple[str, type]]:
    # A light copy of TrainConfig's field list, read from the module source without
    # importing torch: parse the dataclass with ast.
    import ast
    import importlib.util

    spec = importlib.util.find_spec("kakashi.models.train")
    with open(spec.origin) as handle:
        tree = ast.parse(handle.read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "TrainConfig":
            out = []
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    kind = {"int": int, "float": float, "bool": _bool, "str": str}[
                        ast.unparse(item.annotation)
                    ]
                    out.append((item.target.id, kind))
            return out
    raise RuntimeError("TrainConfig not found")  # pragma: no cover


def _cmd_train(args: argparse.Namespace) -> None:
    from kakashi.models.train import config_from, train

    overrides = {name: getattr(args, name) for name, _ in _train_fields()}
    config = config_from(args.config, overrides)
    train(config, progress=not args.no_progress)


def _cmd_generate(args: argparse.Namespace) -> None:
    from kakashi.models.generate import generate, generate_split

    if (args.song is None) == (args.shards is None):
        raise ModelError("give either a song or --shards DIR (a dance per shard of --split)")
    if args.shards is not None:
        generate_split(
            args.shards, args.split, args.checkpoint, args.output, args.seed, args.start_pose
        )
    else:
        generate(args.song, args.checkpoint, args.output, seed=args.seed, start=args.start_pose)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``generate``."""
    train = subparsers.add_parser(
        "train", help="train the seed RNN or the C-RNN-GAN on Parquet shards"
    )
    train.add_argument("--config", help="YAML file; its 'train:' section gives defaults")
    train.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    for name, kind in _train_fields():
        train.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            default=None,
            help=_HELP.get(name, f"train.{name}"),
        )
    train.set_defaults(func=_cmd_train)

    generate = subparsers.add_parser("generate", help="generate a dance for any song")
    generate.add_argument("song", nargs="?", help="audio file (wav, mp3, ogg, flac, ...)")
    generate.add_argument("--checkpoint", required=True, help="a model from `kakashi train`")
    generate.add_argument(
        "-o",
        "--output",
        required=True,
        help="dance file to write (.npz); with --shards, the folder for SEQ.npz files",
    )
    generate.add_argument(
        "--shards",
        help="instead of a song: a dance for every shard of --split, from its audio features",
    )
    generate.add_argument("--split", default="test", help="with --shards (default: test)")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (C-RNN-GAN)")
    generate.add_argument(
        "--start-pose",
        default="mean",
        help="'mean' (the training mean pose) or a dance .npz whose first pose starts the dance",
    )
    generate.set_defaults(func=_cmd_generate)
