"""Output commands: render, viewer, export-bvh, export-glb (a dance file into something to
watch or use) and export-dance (a shard's ground truth as a dance file).

This module stays light (no OpenCV, no ffmpeg at import time) so ``kakashi --help`` is fast;
each command imports its module when it runs. Outputs are written through
:mod:`kakashi.atomic`.
"""

from __future__ import annotations

import argparse
import logging

from kakashi.cli import setting_flag
from kakashi.cli.guard import declare
from kakashi.errors import OutputError

log = logging.getLogger("kakashi")


# H.264 level 5.1, the highest common players decode: 36,864 macroblocks (4096x2304) a
# frame. Beyond it a 100000x100000 frame would first need 28 GiB of memory.
MAX_SIDE, MAX_PIXELS = 4096, 4096 * 2304


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> (1280, 720); both even (yuv420p needs even sizes), at least 64, at
    most 4096, and at most 4096x2304 pixels in all."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise OutputError(f"--size must look like 1280x720, got {text!r}") from None
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise OutputError(f"--size {text}: width and height must be even and at least 64")
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        raise OutputError(
            f"--size {text}: at most {MAX_SIDE} a side and 4096x2304 pixels in all (H.264 "
            "level 5.1); give a smaller size"
        )
    return width, height


def _cmd_export_dance(args: argparse.Namespace) -> None:
    from kakashi.shards import read_dance

    dance = read_dance(args.shard)
    dance.save(args.output)
    log.info("%s: %d frames at %g fps -> %s", args.shard, len(dance), dance.fps, args.output)


def _cmd_render(args: argparse.Namespace) -> None:
    from kakashi.outputs.render import render_dance

    stats = render_dance(
        args.dance,
        args.audio,
        args.output,
        size=parse_size(args.size),
        video=args.video,
        compare=args.compare,
        preset=args.preset,
        style=args.style,
    )
    log.info(
        "%s: %d frames, %.2f s, rendered %.1fx realtime",
        args.output,
        stats.frames,
        stats.duration_s,
        stats.realtime_factor,
    )


def _cmd_viewer(args: argparse.Namespace) -> None:
    from kakashi.outputs.viewer import write_viewer

    size = write_viewer(args.dance, args.audio, args.output, title=args.title)
    log.info("%s: %.1f MB self-contained viewer", args.output, size / 1e6)


def _cmd_export_bvh(args: argparse.Namespace) -> None:
    from kakashi.outputs.bvh import export_bvh

    report = export_bvh(args.dance, args.output, units=args.units, stretch=args.stretch)
    log.info(
        "%s: %d frames; joint position error vs the dance: mean %.1f mm, max %.1f mm",
        args.output,
        report.frames,
        report.mean_error_m * 1000,
        report.max_error_m * 1000,
    )


def _cmd_export_glb(args: argparse.Namespace) -> None:
    from kakashi.outputs.glb import export_glb

    size = export_glb(args.dance, args.output, music=args.music)
    log.info("%s: %.2f MB GLB (skinned character, one animation)", args.output, size / 1e6)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``render``, ``viewer``, ``export-bvh``, ``export-glb`` and ``export-dance``."""
    render = subparsers.add_parser(
        "render", help="an MP4 of the dance (the character or the skeleton) with the music"
    )
    render.add_argument("dance", help="dance file (.npz with pose, root, fps)")
    render.add_argument("--audio", required=True, help="the song; the MP4 is as long as it")
    render.add_argument("-o", "--output", required=True, help="output .mp4")
    setting_flag(render, "--size", "render.size")
    setting_flag(render, "--style", "render.style")
    render.add_argument(
        "--preset",
        default="superfast",
        choices=("ultrafast", "superfast", "veryfast", "faster", "fast", "medium"),
        help="x264 speed/size trade-off (default superfast; ultrafast is ~25%% faster and "
        "makes files ~2x larger, slower presets make smaller files)",
    )
    render.add_argument("--video", help="source video shown beside the skeleton (ground truth)")
    render.add_argument("--compare", help="a second dance file drawn beside the first")
    render.set_defaults(
        func=_cmd_render,
        paths=declare(files=["-o"], inputs=["dance", "--audio", "--video", "--compare"]),
    )

    viewer = subparsers.add_parser(
        "viewer", help="a self-contained HTML page with a 3-D viewer and the music"
    )
    viewer.add_argument("dance", help="dance file (.npz with pose, root, fps)")
    viewer.add_argument("--audio", required=True, help="the song, embedded in the page")
    viewer.add_argument("-o", "--output", required=True, help="output .html")
    viewer.add_argument("--title", default=None, help="page title (default: the dance's name)")
    viewer.set_defaults(func=_cmd_viewer, paths=declare(files=["-o"], inputs=["dance", "--audio"]))

    bvh = subparsers.add_parser("export-bvh", help="the dance as a BVH motion file")
    bvh.add_argument("dance", help="dance file (.npz with pose, root, fps)")
    bvh.add_argument("-o", "--output", required=True, help="output .bvh")
    bvh.add_argument(
        "--units", choices=("cm", "m"), default="cm", help="length unit in the file (default cm)"
    )
    bvh.add_argument(
        "--stretch",
        action="store_true",
        help="give every joint position channels so positions match exactly "
        "(default: a rigid skeleton with the mean bone lengths)",
    )
    bvh.set_defaults(func=_cmd_export_bvh, paths=declare(files=["-o"], inputs=["dance"]))

    glb = subparsers.add_parser(
        "export-glb", help="the dance on a rigged character, as a GLB (glTF 2.0) file"
    )
    glb.add_argument("dance", help="dance file (.npz with pose, root, fps)")
    glb.add_argument("-o", "--output", required=True, help="output .glb")
    glb.add_argument("--music", help="the song's name, recorded in the file's extras")
    glb.set_defaults(func=_cmd_export_glb, paths=declare(files=["-o"], inputs=["dance"]))

    export = subparsers.add_parser("export-dance", help="a shard's ground truth as a dance file")
    export.add_argument("shard", help="a Parquet shard (results/shards/split=*/SEQ.parquet)")
    export.add_argument("-o", "--output", required=True, help="dance (.npz)")
    export.set_defaults(func=_cmd_export_dance, paths=declare(files=["-o"], inputs=["shard"]))
