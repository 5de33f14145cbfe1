"""The ``kakashi`` command line: one subcommand per pipeline stage, in five modules.

- :mod:`kakashi.cli.data`: fetch, playlist, cut, features, pose, motion, shard, dataset,
  sheet (sources -> shards);
- :mod:`kakashi.cli.models`: train, generate;
- :mod:`kakashi.cli.outputs`: render, viewer, export-bvh, export-dance;
- :mod:`kakashi.cli.evaluate`: evaluate;
- :mod:`kakashi.cli.studio`: studio (the local web page and JSON API).

Each module has ``add_commands(subparsers)`` and only parses: every command calls one
function of the stage's own module, which tests and notebooks can call directly. Flag
defaults come from the config schema (:mod:`kakashi.settings`), so a command run by hand
does what the workflow does. Heavy imports (torch, OpenCV, librosa) happen inside the
commands, so ``kakashi --help`` is fast. Errors a user can cause print one clear line
(``kakashi: error: ...``) and exit 1; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from kakashi import __version__
from kakashi.errors import KakashiError

COMMAND_MODULES = (
    "kakashi.cli.data",
    "kakashi.cli.models",
    "kakashi.cli.outputs",
    "kakashi.cli.evaluate",
    "kakashi.cli.studio",
)


def setting_flag(parser: argparse.ArgumentParser, flag: str, key: str, **options) -> None:
    """A flag whose default and help are config key ``key``'s in the schema, so a command
    run by hand does what the workflow does (``options`` go to ``add_argument``)."""
    from kakashi.settings import default, help_text

    parser.add_argument(flag, default=default(key), help=help_text(key), **options)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kakashi", description="Learn dance choreography from music: pipeline stages."
    )
    parser.add_argument("--version", action="version", version=f"kakashi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        args.func(args)
    except KakashiError as exc:
        print(f"kakashi: error: {exc}", file=sys.stderr)
        return 1
    return 0
