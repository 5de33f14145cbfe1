"""The ``kakashi`` command line: one subcommand per pipeline stage, in five modules.

- :mod:`kakashi.cli.data`: fetch, playlist, cut, features, pose, motion, shard, dataset,
  sheet (sources -> shards);
- :mod:`kakashi.cli.models`: train, generate;
- :mod:`kakashi.cli.outputs`: render, viewer, export-bvh, export-glb, export-dance;
- :mod:`kakashi.cli.evaluate`: evaluate;
- :mod:`kakashi.cli.studio`: studio (the local web page and JSON API).

Each module has ``add_commands(subparsers)`` and only parses: every command calls one
function of the stage's own module, which tests and notebooks can call directly. Flag
defaults come from the config schema (:mod:`kakashi.settings`), so a command run by hand
does what the workflow does. Heavy imports (torch, OpenCV, librosa) happen inside the
commands, so ``kakashi --help`` is fast. Errors a user can cause print one clear line
(``kakashi: error: ...``) and exit 1 (2 for a bad flag); anything else is a bug and shows
its traceback.

Before any command runs, :mod:`kakashi.cli.guard` checks its outputs (declared with each
command as ``set_defaults(paths=...)``). SIGTERM (Snakemake, Slurm, ``kill``) is turned
into an exception like Ctrl-C's, so every ``finally`` runs and no temporary file stays.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

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
    """A flag whose default, help and allowed values are config key ``key``'s in the
    schema, so a command run by hand does what the workflow does and refuses what the
    workflow's config would (``features --fps 0`` used to reach librosa). ``options`` go to
    ``add_argument``; ``type`` converts the text before the schema checks the value."""
    from kakashi.settings import default, help_text

    options["type"] = schema_checked(key, options.get("type", str))
    parser.add_argument(flag, default=default(key), help=help_text(key), **options)


def schema_checked(key: str, convert):
    """``convert``, then the schema's check of ``key`` (range, pattern, enum, items)."""
    from kakashi.settings import check_setting

    def checked(text: str):
        value = convert(text)
        problem = check_setting(key, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    # argparse names the converter in "invalid int value: 'x'".
    checked.__name__ = getattr(convert, "__name__", "value")
    return checked


class Parser(argparse.ArgumentParser):
    """argparse with the project's one-line error: ``kakashi: error: COMMAND: message``
    instead of the usage block (``--help`` still shows it). Subcommands inherit the class."""

    def error(self, message: str) -> None:
        command = self.prog.removeprefix("kakashi").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"kakashi: error: {where}{message}; see {self.prog} --help\n")


class Stopped(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C's KeyboardInterrupt, through every ``finally``."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    from kakashi.cli.guard import check_outputs

    main_process = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != main_process:
            # A forked worker (pose, data loading) dies the default way; the main process
            # cleans up.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Stopped(signum)

    # Handlers can only be set from the main thread (main() called from a worker thread,
    # e.g. by a notebook, keeps the default).
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if in_main_thread else None
    try:
        check_outputs(args.paths(args))
        args.func(args)
    except KakashiError as exc:
        # One line, always: a message that quotes a library (torch, ffmpeg) may hold several.
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        print(f"kakashi: error: {message}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Stopped) as exc:
        signum = exc.args[0] if isinstance(exc, Stopped) else signal.SIGINT
        name = signal.Signals(signum).name
        print(f"kakashi: error: stopped by {name}; no partial output left", file=sys.stderr)
        return 128 + signum
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
    return 0
