"""The ``studio`` command: a local web page and JSON API over generate, viewer, BVH, MP4.

Only parsing and starting the server here; the application is :mod:`kakashi.studio.app`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import math
import os
import socket
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


def _number(flag: str, value: float, *, integer: bool = False, low: float = 0.0,
            high: float = math.inf) -> None:  # fmt: skip
    """A one-line error unless ``value`` is a finite number in (``low``, ``high``]."""
    finite = isinstance(value, int) or math.isfinite(value)
    if not finite or not low < value <= high or (integer and value != int(value)):
        shown = (
            f"a whole number from {low + 1:g} to {high:g}"
            if integer
            else (
                f"a number above {low:g}" + ("" if high == math.inf else f" and at most {high:g}")
            )
        )
        raise KakashiError(f"{flag} must be {shown}, not {value!r}")


def check_args(args: argparse.Namespace) -> None:
    """Every flag checked before the server starts: a server that can never work (no
    upload fits, no model loads, the port is taken) is an error now, not later."""
    _number("--port", args.port, integer=True, low=0, high=65535)
    _number("--workers", args.workers, integer=True, low=-1, high=256)  # 0: one per core
    _number("--max-upload-mb", args.max_upload_mb)
    _number("--max-minutes", args.max_minutes)
    _number("--max-work-mb", args.max_work_mb)
    _number("--header-timeout-s", args.header_timeout_s)
    _number("--body-timeout-s", args.body_timeout_s)
    for spec in args.models:
        if not Path(spec).exists():
            raise KakashiError(
                f"--models {spec}: no such file or folder; train a model first "
                "(snakemake --cores 2) or name a checkpoint or a folder of them"
            )
    for name in args.allow_host:
        if not name or any(c in name for c in "/ @?#"):
            raise KakashiError(f"--allow-host {name!r}: give a host name such as studio.lan")


def _port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise KakashiError(
                f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host"
            ) from None


def _cmd_studio(args: argparse.Namespace) -> None:
    import uvicorn

    from kakashi.studio.app import StudioSettings, create_app
    from kakashi.studio.server import server_config

    check_args(args)
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
        max_work_mb=args.max_work_mb,
        body_timeout_s=args.body_timeout_s,
        host=args.host,
        allowed_hosts=args.allow_host,
    )
    app = create_app(settings)
    catalog = app.state.catalog
    if not catalog.models:
        raise KakashiError(
            f"no checkpoints under {', '.join(args.models)}; train a model first "
            "(snakemake --cores 2) or name one with --models"
        )
    if catalog.best is None:
        problems = "; ".join(m.problem for m in catalog.models.values())
        raise KakashiError(f"no usable checkpoint under {', '.join(args.models)}: {problems}")
    _port_free(args.host, args.port)
    shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    log.info("Kakashi studio: http://%s:%d/ (API docs at /docs; Ctrl-C stops it)", shown, args.port)
    config = server_config(
        app,
        args.host,
        args.port,
        header_timeout_s=args.header_timeout_s,
        behind_proxy=args.behind_proxy is not None,
        forwarded_allow_ips=args.behind_proxy or "127.0.0.1",
    )
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        server.run()
    if not server.started:
        raise KakashiError("the studio did not start; see the messages above")


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
    # Defaults and help from the schema; the values are checked by check_args (one line
    # each, e.g. "--port must be a whole number from 1 to 65535, not 99999").
    studio.add_argument("--port", type=int, default=default("studio.port"),
                        help=help_text("studio.port"))  # fmt: skip
    studio.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name the page may be opened at (repeatable; the bound address "
        "and localhost always are): requests for any other Host are refused",
    )
    studio.add_argument(
        "--behind-proxy",
        nargs="?",
        const="127.0.0.1",
        metavar="PROXY_IPS",
        help="trust X-Forwarded-For/-Proto from these proxy addresses (default when given: "
        "127.0.0.1); without it they are ignored",
    )
    studio.add_argument("--workers", type=int, default=default("studio.workers"),
                        help=help_text("studio.workers"))  # fmt: skip
    setting_flag(studio, "--work-dir", "studio.work_dir")
    for key in ("max_upload_mb", "max_minutes", "max_work_mb", "header_timeout_s",
                "body_timeout_s"):  # fmt: skip
        flag, name = "--" + key.replace("_", "-"), f"studio.{key}"
        studio.add_argument(flag, type=float, default=default(name), help=help_text(name))
    # The work folder is the one output; checkpoints are read-only inputs it never writes.
    studio.set_defaults(func=_cmd_studio, paths=declare(folders=["--work-dir"]))
