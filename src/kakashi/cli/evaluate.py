"""``kakashi evaluate``: the metrics table of baselines and generated dances."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kakashi.cli import setting_flag
from kakashi.cli.guard import CommandPaths, given
from kakashi.errors import EvaluationError
from kakashi.settings import default

log = logging.getLogger("kakashi.evaluate")


def _named_path(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from kakashi.evaluate.baselines import BASELINES
    from kakashi.evaluate.report import markdown_table
    from kakashi.evaluate.run import evaluate

    generated: dict[str, Path] = {}
    for name, path in args.generated:
        if name in generated:
            raise EvaluationError(f"--generated name {name!r} is given twice; use distinct names")
        generated[name] = path
    names = [] if args.baselines.strip() in ("", "none") else args.baselines.split(",")
    names = [n.strip() for n in names]
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise EvaluationError(
            f"--baselines: unknown {', '.join(unknown)}; choose from {', '.join(BASELINES)} or none"
        )
    result = evaluate(
        Path(args.reference),
        generated,
        Path(args.output),
        clip_s=args.clip_s,
        music=Path(args.music) if args.music else None,
        baseline_names=names,
        timeline=args.timeline,
        seed=args.seed,
        heldout_clip_s=args.heldout_clip_s,
        heldout_hop_s=args.heldout_hop_s,
    )
    print(markdown_table(result), end="")
    log.info("evaluation written to %s in %.1f s", args.output, result["elapsed_s"])


def _evaluate_paths(args: argparse.Namespace) -> CommandPaths:
    """-o is a folder; the reference, the music and every --generated NAME=PATH are read."""
    inputs = given(args, ["--reference", "--music"])
    inputs += [(f"--generated {name}", path) for name, path in args.generated]
    return CommandPaths([], given(args, ["-o"]), inputs)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``kakashi evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="FID_k, FID_g, Div_k, Div_g, BAS and PFC of dances, with baselines",
        description=(
            "Score generated dances and baselines (ground truth, random retrieval, mean pose) "
            "against a reference set; write metrics.json, metrics.md and plots/*.png. A "
            "generated dance NAME.npz (or NAME__take.npz) dances to the song NAME: a shard "
            "sequence of the music shards or an audio file NAME.* in --music."
        ),
    )
    parser.add_argument(
        "--reference",
        required=True,
        help="shard folder (train split = reference, test split = ground truth) "
        "or a folder of dance .npz files",
    )
    parser.add_argument(
        "--generated",
        type=_named_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a model's dances: a .npz file or a folder of them (repeatable)",
    )
    parser.add_argument("-o", "--output", required=True, help="output folder")
    setting_flag(parser, "--clip-s", "eval.clip_s", type=float)
    parser.add_argument(
        "--music", help="shard folder or folder of songs (default: the reference shards)"
    )
    parser.add_argument(
        "--baselines",
        default=",".join(default("eval.baselines")),
        help="comma-separated baselines, or 'none'",
    )
    parser.add_argument("--timeline", metavar="SEQ", help="song of the beat timeline plot")
    setting_flag(parser, "--seed", "eval.seed", type=int)
    setting_flag(parser, "--heldout-clip-s", "eval.heldout_clip_s", type=float)
    setting_flag(parser, "--heldout-hop-s", "eval.heldout_hop_s", type=float)
    parser.set_defaults(func=_cmd_evaluate, paths=_evaluate_paths)
