"""The ``studio`` command: a local web page and JSON API over generate, viewer, BVH, MP4.

Only parsing and starting the server here; the application is :mod:`kakashi.studio.app`.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys
from pathlib import Path

from kakashi.cli import setting_flag
from kakashi.cli.guard import declare
from kakashi.errors import KakashiError
from kakashi.settings import default, help_text

log = logging.getLogger("kakashi")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _cmd_studio(args: argparse.Namespace) -> None:
    import uvicorn

    from kakashi.studio.app import StudioSettings, create_app

    workers = args.workers or os.cpu_count() or 1  # studio.workers 0: one per core
    if not is_loopback(args.host):
        print(
            f"kakashi: warning: the studio on {args.host} has no login: anyone who can "
            "reach this address can upload songs and run models on this machine",
            file=sys.stderr,
        )
    settings = StudioSettings(
        models=args.models,
        work_dir=Path(args.work_dir),
        workers=workers,
        max_upload_mb=args.max_upload_mb,
        max_minutes=args.max_minutes,
    )
    app = create_app(settings)
    if not app.state.catalog.models:
        raise KakashiError(
            f"no checkpoints under {', '.join(args.models)}; train a model first "
            "(snakemake --cores 2) or name one with --models"
        )
    shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    log.info("Kakashi studio: http://%s:%d/ (API docs at /docs; Ctrl-C stops it)", shown, args.port)
    # A short graceful shutdown: open progress streams must not hold Ctrl-C up.
    uvicorn.run(app, host=args.host, port=args.port, timeout_graceful_shutdown=2)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``studio``."""
    studio = subparsers.add_parser(
        "studio", help="a local web page: drop a song, watch the dance, download BVH/MP4"
    )
    # Defaults from the schema's `studio` section (the one home of these values).
    studio.add_argument(
        "--models",
        nargs="+",
        default=default("studio.models"),
        metavar="DIR_OR_CKPT",
        help=help_text("studio.models"),
    )
    setting_flag(studio, "--host", "studio.host")
    setting_flag(studio, "--port", "studio.port", type=int)
    setting_flag(studio, "--workers", "studio.workers", type=int)
    setting_flag(studio, "--work-dir", "studio.work_dir")
    setting_flag(studio, "--max-upload-mb", "studio.max_upload_mb", type=float)
    setting_flag(studio, "--max-minutes", "studio.max_minutes", type=float)
    # The work folder is the one output; checkpoints are read-only inputs it never writes.
    studio.set_defaults(func=_cmd_studio, paths=declare(folders=["--work-dir"]))
