"""``kakashi train`` and ``kakashi generate``.

Every training setting of every model is a flag (``window_s`` -> ``--window-s``), typed
and documented from the config schema, so a Snakemake rule can pass ``--model rnn
--shards DIR --epochs N``; ``--config FILE`` reads the ``train:`` section of a YAML file
first, and flags override it. A flag the chosen model does not have is an error. torch is
imported inside the commands so that ``kakashi --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kakashi.cli import setting_flag
from kakashi.cli.guard import CommandPaths, given
from kakashi.errors import EditError, ModelError
from kakashi.settings import argparse_text, flag_type


def _cmd_train(args: argparse.Namespace) -> None:
    from kakashi.models.config import all_keys, config_from
    from kakashi.models.distributed import train

    overrides = {name: getattr(args, name) for name in all_keys()}
    overrides.update(model=args.model, shards=args.shards, out=args.out)
    config = config_from(args.config, overrides)
    train(config, progress=not args.no_progress)


def _edit_of(args: argparse.Namespace):
    """The edit flags as one :class:`kakashi.models.editing.EditRequest`."""
    from kakashi.models.editing import EditRequest

    return EditRequest(
        continue_from=args.continue_from,
        dance=args.dance,
        regenerate=args.regenerate,
        keep=args.keep,
        keyframes=args.keyframes or [],
    )


def _cmd_generate(args: argparse.Namespace) -> None:
    from kakashi.models.generate import generate, generate_split

    if args.shards is not None:
        generate_split(
            args.shards,
            args.split,
            args.checkpoint,
            args.output,
            args.seed,
            args.start_pose,
            args.only,
            args.takes,
            args.style,
            args.sampling,
        )
    else:
        generate(
            args.song,
            args.checkpoint,
            args.output,
            seed=args.seed,
            start=args.start_pose,
            only=args.only,
            style=args.style,
            edit=_edit_of(args),
            sampling=args.sampling,
        )


def _train_paths(args: argparse.Namespace) -> CommandPaths:
    """The checkpoint and the files beside it; the shards, the config and the --init model
    (a path, or a model name: that model's checkpoint beside --out)."""
    from kakashi.models.checkpoint import paths_for
    from kakashi.models.config import init_path

    beside = paths_for(args.out)
    files = [("--out", beside["best"])]
    files += [(f"--out (its {name} file)", beside[name]) for name in ("last", "csv", "png")]
    inputs = given(args, ["--shards", "--config"])
    if args.init:
        inputs.append(("--init", init_path(args.init, args.out)))
    return CommandPaths(files, [], inputs)


def _generate_paths(args: argparse.Namespace) -> CommandPaths:
    """-o is a dance file for a song, a folder of them with --shards (checked here, as the
    guard runs first: what -o is depends on it)."""
    if (args.song is None) == (args.shards is None):
        raise ModelError("give either a song or --shards DIR (a dance per shard of --split)")
    edit = _edit_of(args)
    edit.check()
    if edit.any() and args.shards:
        raise EditError("an edit is of one song's dance: drop --shards, give the song")
    if args.start_pose != "mean" and (args.continue_from or args.regenerate):
        raise EditError(
            "--start-pose and the edit both say how the dance starts: drop --start-pose"
        )
    inputs = given(args, ["song", "--checkpoint", "--shards", "--dance"])
    if args.continue_from:  # its attribute is not the flag's name (continue is a keyword)
        inputs.append(("--continue", Path(args.continue_from)))
    inputs += [("--keyframes", _keyframe_file(spec)) for spec in edit.keyframes]
    if args.start_pose != "mean":
        inputs += given(args, ["--start-pose"])
    output = given(args, ["-o"])
    return CommandPaths([] if args.shards else output, output if args.shards else [], inputs)


def _keyframe_file(spec: str) -> Path:
    """The file of a ``--keyframes`` value (``FILE.json`` or ``DANCE.npz@T1,T2``)."""
    if "@" in spec and not spec.endswith(".json"):
        spec = spec.rpartition("@")[0]
    return Path(spec)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train`` and ``generate``."""
    from kakashi.models.config import all_keys
    from kakashi.models.registry import MODELS

    train = subparsers.add_parser(
        "train",
        help="train a dance model on Parquet shards",
        description="Settings not given take the config schema's defaults "
        "(schemas/config.schema.yaml, section train; docs/models.md).",
    )
    models = "; ".join(f"{name}: {summary}" for name, summary in MODELS.items())
    train.add_argument("--model", help=f"one of {models} (default: rnn)")
    train.add_argument("--shards", required=True, help="shard folder (split=NAME/SEQ.parquet)")
    train.add_argument(
        "--out",
        required=True,
        help="checkpoint to write; also OUT.last.pt, OUT.csv, OUT.png beside it",
    )
    train.add_argument("--config", help="YAML file; its 'train:' section gives settings")
    train.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    for name, entry in all_keys().items():
        train.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=flag_type(entry),
            default=None,
            help=argparse_text(entry.get("description", f"train.{name}")),
        )
    train.set_defaults(func=_cmd_train, paths=_train_paths)

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
    setting_flag(generate, "--takes", "eval.takes", type=int)
    setting_flag(generate, "--seed", "generate.seed", type=int)
    generate.add_argument(
        "--start-pose",
        default="mean",
        help="'mean' (the training mean pose) or a dance .npz whose first pose starts the dance",
    )
    generate.add_argument(
        "--only",
        metavar="GLOB",
        help="motiongraph: dance only with segments of training recordings whose id matches "
        "this glob (e.g. 'm2d-DANCE_W_7'; mirror images follow); with --style, both apply",
    )
    generate.add_argument(
        "--style",
        metavar="NAME|auto",
        help="the dance style: one the checkpoint knows (its train shards' style labels) "
        "or auto, the style the song's music calls for (default: auto when the checkpoint "
        "knows styles)",
    )
    generate.add_argument(
        "--sampling",
        action="append",
        metavar="KEY=VALUE",
        help="change one of the checkpoint's generation settings for these dances (motif and "
        "maskdance: temperature, top_k, smooth, foot_lock; maskdance also iterations, "
        "guidance; see train.MODEL in schemas/config.schema.yaml); "
        "may be repeated, the dance's metadata records them",
    )
    edits = generate.add_argument_group(
        "editing", "keep parts of a dance, or poses at given times (docs/editing.md)"
    )
    edits.add_argument(
        "--keyframes",
        action="append",
        metavar="FILE.json|DANCE.npz@T1,T2",
        help="poses the dance passes through: a JSON of time (s) -> 17 root-centred [x, y, z] "
        "joints (metres, H36M-17 order), or the poses of a dance file at those times; "
        "may be repeated",
    )
    edits.add_argument(
        "--continue",
        dest="continue_from",
        metavar="DANCE.npz",
        help="extend this dance to the (longer) song: its frames are kept bit-identically, "
        "the new part starts where it ends",
    )
    edits.add_argument(
        "--dance", metavar="DANCE.npz", help="the dance that --regenerate or --keep edits"
    )
    edits.add_argument(
        "--regenerate",
        metavar="START-END",
        help="make the span START-END (seconds) of --dance anew, keeping the rest bit-identically",
    )
    edits.add_argument(
        "--keep",
        choices=("upper", "lower"),
        help="keep the upper (or lower, with the root) body of --dance, generate the rest",
    )
    generate.set_defaults(func=_cmd_generate, paths=_generate_paths)
