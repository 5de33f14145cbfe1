"""The ``kakashi`` command line: one subcommand per pipeline stage.

Snakemake rules call these; each is also a plain function in its module, so tests and
notebooks can call the stages directly. Errors a user can cause print one clear line
(``kakashi: error: ...``) and exit 1; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import sys
from pathlib import Path

from kakashi import __version__
from kakashi.errors import KakashiError

log = logging.getLogger("kakashi")


# Modules that add their own subcommands (``add_commands(subparsers)``); each imports its
# heavy dependencies (torch, OpenCV, ...) inside the command, so ``kakashi --help`` is fast.
COMMAND_MODULES = (
    "kakashi.models.cli",  # train, generate
    "kakashi.output_cli",  # render, viewer, export-bvh
    "kakashi.evaluate.cli",  # evaluate
)


def _cmd_fetch(args: argparse.Namespace) -> None:
    from kakashi.fetch import download_video

    download_video(args.url, Path(args.output), max_height=args.max_height)


def _cmd_playlist(args: argparse.Namespace) -> None:
    from kakashi.fetch import list_playlist, write_playlist_tsv

    entries = list_playlist(args.url)
    write_playlist_tsv(entries, Path(args.output), prefix=args.prefix)
    log.info("playlist %s: %d entries", args.url, len(entries))


def _cmd_cut(args: argparse.Namespace) -> None:
    from kakashi.cut import cut_video

    cut_video(
        args.source,
        args.output,
        args.audio_output,
        start=args.start,
        end=args.end,
        fps=args.fps,
        max_height=args.max_height,
        audio_sr=args.audio_sr,
    )


def _cmd_features(args: argparse.Namespace) -> None:
    from kakashi.features import audio_features

    features = audio_features(
        args.audio,
        fps=args.fps,
        hop_length=args.hop_length,
        feature_set=args.set.split(","),
        n_mfcc=args.n_mfcc,
    )
    features.save(args.output)
    log.info(
        "%s: %d frames x %d features (%.2f s)",
        args.audio,
        *features.values.shape,
        features.duration_s,
    )


def _cmd_pose(args: argparse.Namespace) -> None:
    from kakashi.pose import apply_people_policy, fill_missing, get_backend

    options: dict = {"workers": args.workers}
    if args.backend == "mmpose":
        # Only the flags given: the backend's defaults are the schema's defaults.
        options.update(
            {
                key.removeprefix("mmpose_"): value
                for key, value in vars(args).items()
                if key.startswith("mmpose_") and value is not None
            }
        )
    source = args.name or args.video
    backend = get_backend(args.backend, **options)
    sequence = backend.estimate(Path(args.video))
    sequence = apply_people_policy(sequence, source, args.max_people, args.multi_person)
    sequence = fill_missing(sequence, source, args.min_person_fraction)
    sequence.save(args.output)


def _cmd_motion(args: argparse.Namespace) -> None:
    from kakashi.motion_source import prepare_motion

    prepare_motion(
        args.source,
        args.audio,
        args.output,
        args.audio_output,
        fps=args.fps,
        start=args.start,
        end=args.end,
        audio_offset_s=args.audio_offset,
        source_fps=args.source_fps,
        skeleton=args.skeleton or None,
    )


def _cmd_shard(args: argparse.Namespace) -> None:
    from kakashi.features import AudioFeatures
    from kakashi.pose import PoseSequence
    from kakashi.shards import align, write_shard

    pose = PoseSequence.load(args.pose)
    features = AudioFeatures.load(args.features)
    aligned = align(pose, features, args.tolerance_frames, args.seq)
    metadata = {
        "source_kind": args.source_kind,
        "source_uri": args.source_uri,
        "config_hash": args.config_hash,
        "split": args.split,
        "pose_backend": pose.meta.get("backend", "unknown"),
        "root_measured": pose.meta.get("root_measured", False),
    }
    write_shard(args.output, args.seq, aligned, features.fps, features.names, metadata)
    log.info("%s: wrote %d frames to %s", args.seq, len(aligned.pose), args.output)


def _cmd_dataset_info(args: argparse.Namespace) -> None:
    from kakashi.shards import dataset_info, format_info

    summary = dataset_info(args.shards)
    if summary["sequences"] == 0:
        raise KakashiError(f"no shards under {args.shards} (expected split=*/SEQ.parquet)")
    text = json.dumps(summary, indent=2) if args.json else format_info(summary, args.shards)
    if args.output:
        from kakashi.atomic import atomic_write_text

        atomic_write_text(args.output, text + "\n")
    print(text)


def _cmd_sheet_m2d(args: argparse.Namespace) -> None:
    from kakashi.datasets import m2d_sheet

    rows = m2d_sheet(args.data_dir, args.output)
    log.info("wrote %d Dance-with-Melody sequences to %s", rows, args.output)


def _cmd_export_dance(args: argparse.Namespace) -> None:
    from kakashi.dance import dance_from_shard

    dance = dance_from_shard(args.shard)
    dance.save(args.output)
    log.info("%s: %d frames at %g fps -> %s", args.shard, len(dance), dance.fps, args.output)


def _optional_seconds(text: str) -> float | None:
    value = float(text) if text not in ("", "nan", "None") else math.nan
    return None if math.isnan(value) else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kakashi", description="Learn dance choreography from music: pipeline stages."
    )
    parser.add_argument("--version", action="version", version=f"kakashi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser("fetch", help="download one video with yt-dlp")
    fetch.add_argument("url")
    fetch.add_argument("-o", "--output", required=True)
    fetch.add_argument("--max-height", type=int, default=720)
    fetch.set_defaults(func=_cmd_fetch)

    playlist = commands.add_parser("playlist", help="list a playlist's videos (no download)")
    playlist.add_argument("url")
    playlist.add_argument("--prefix", required=True, help="sheet id; entries become ID-001, ...")
    playlist.add_argument("-o", "--output", required=True, help="TSV of the entries")
    playlist.set_defaults(func=_cmd_playlist)

    cut = commands.add_parser("cut", help="trim a video, resample to fps, write clip + WAV")
    cut.add_argument("source")
    cut.add_argument("-o", "--output", required=True, help="clip (.mp4)")
    cut.add_argument("--audio-output", required=True, help="mono WAV of the clip")
    cut.add_argument("--start", type=float, default=0.0)
    cut.add_argument("--end", type=_optional_seconds, default=None)
    cut.add_argument("--fps", type=int, default=30)
    cut.add_argument("--max-height", type=int, default=720)
    cut.add_argument("--audio-sr", type=int, default=44100)
    cut.set_defaults(func=_cmd_cut)

    features = commands.add_parser("features", help="audio features, one vector per frame")
    features.add_argument("audio")
    features.add_argument("-o", "--output", required=True, help="features (.npz)")
    features.add_argument("--fps", type=int, default=30)
    features.add_argument("--hop-length", type=int, default=512)
    features.add_argument("--set", default="mfcc,chroma,onset,beat,peak")
    features.add_argument("--n-mfcc", type=int, default=20)
    features.set_defaults(func=_cmd_features)

    pose = commands.add_parser("pose", help="3-D pose per frame of a clip")
    pose.add_argument("video")
    pose.add_argument("-o", "--output", required=True, help="pose (.npz)")
    pose.add_argument("--backend", default="mediapipe")
    pose.add_argument("--workers", type=int, default=1)
    pose.add_argument("--min-person-fraction", type=float, default=0.5)
    pose.add_argument("--max-people", type=int, default=1, help="people per frame allowed")
    pose.add_argument(
        "--multi-person",
        choices=["keep", "drop", "fail"],
        default="keep",
        help="frames with more than --max-people people: keep the main dancer, drop, or fail",
    )
    for key in ("det", "pose2d", "lifter"):
        pose.add_argument(f"--mmpose-{key}-config", help=f"mmpose backend: {key} config")
        pose.add_argument(f"--mmpose-{key}-checkpoint", help=f"mmpose backend: {key} weights")
    pose.add_argument("--mmpose-device", help="mmpose backend: auto, cpu or cuda[:N]")
    pose.add_argument("--mmpose-batch-size", type=int, help="mmpose backend: frames per batch")
    pose.add_argument("--mmpose-bbox-threshold", type=float, help="mmpose: min person-box score")
    pose.add_argument("--name", help="source name for messages")
    pose.set_defaults(func=_cmd_pose)

    motion = commands.add_parser("motion", help="a motion file + its music, on the skeleton")
    motion.add_argument("source", help="BVH, AIST++ .pkl, Dance-with-Melody JSON, .npy/.npz")
    motion.add_argument("--audio", required=True, help="the music of the motion")
    motion.add_argument("-o", "--output", required=True, help="pose (.npz)")
    motion.add_argument("--audio-output", required=True, help="WAV of the motion's span")
    motion.add_argument("--fps", type=int, default=30)
    motion.add_argument("--start", type=float, default=0.0)
    motion.add_argument("--end", type=_optional_seconds, default=None)
    motion.add_argument("--audio-offset", type=_optional_seconds, default=None)
    motion.add_argument("--source-fps", type=_optional_seconds, default=None)
    motion.add_argument("--skeleton", default="", help="joint layout, e.g. tang23")
    motion.set_defaults(func=_cmd_motion)

    shard = commands.add_parser("shard", help="align pose with audio, write a Parquet shard")
    shard.add_argument("--pose", required=True)
    shard.add_argument("--features", required=True)
    shard.add_argument("--seq", required=True)
    shard.add_argument("--split", required=True, choices=["train", "val", "test"])
    shard.add_argument("--source-kind", default="video")
    shard.add_argument("--source-uri", default="")
    shard.add_argument("--config-hash", default="")
    shard.add_argument("--tolerance-frames", type=int, default=2)
    shard.add_argument("-o", "--output", required=True)
    shard.set_defaults(func=_cmd_shard)

    dataset = commands.add_parser("dataset", help="inspect a shard folder")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True)
    info = dataset_commands.add_parser("info", help="sequences, frames, hours per split")
    info.add_argument("shards", nargs="?", default="results/shards")
    info.add_argument("--json", action="store_true")
    info.add_argument("-o", "--output", help="also write the summary here")
    info.set_defaults(func=_cmd_dataset_info)
    sheet = commands.add_parser("sheet", help="write the sources sheet of a public dataset")
    sheet_commands = sheet.add_subparsers(dest="sheet_command", required=True)
    m2d = sheet_commands.add_parser("m2d", help="Dance with Melody (Tang et al. 2018)")
    m2d.add_argument("data_dir", help="folder with manifest.json, joints/ and audio/")
    m2d.add_argument("-o", "--output", required=True, help="the sheet (.tsv)")
    m2d.set_defaults(func=_cmd_sheet_m2d)

    export = commands.add_parser("export-dance", help="a shard's ground truth as a dance file")
    export.add_argument("shard", help="a Parquet shard (results/shards/split=*/SEQ.parquet)")
    export.add_argument("-o", "--output", required=True, help="dance (.npz)")
    export.set_defaults(func=_cmd_export_dance)

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
