"""Data commands: fetch, playlist, cut, features, pose, motion, shard, dataset, sheet."""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

from kakashi.cli import schema_checked, setting_flag
from kakashi.cli.guard import CommandPaths, declare, given
from kakashi.errors import KakashiError
from kakashi.settings import default, flag_type, node

log = logging.getLogger("kakashi")


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
        feature_set=args.set,
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
    from kakashi.pose import estimate_pose

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
    sequence = estimate_pose(
        Path(args.video),
        args.name or args.video,
        args.backend,
        options,
        args.max_people,
        args.multi_person,
        args.min_person_fraction,
        {
            key.removeprefix("smoothing_"): value
            for key, value in vars(args).items()
            if key.startswith("smoothing_")
        },
        args.root,
        args.root_fov_deg,
    )
    sequence.save(args.output)


def _cmd_motion(args: argparse.Namespace) -> None:
    from kakashi.motion.stage import prepare_motion

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
    from kakashi.shards import build_shard

    source = {
        "source_kind": args.source_kind,
        "source_uri": args.source_uri,
        "config_hash": args.config_hash,
        **({"style": args.style.lower()} if args.style else {}),
    }
    frames = build_shard(
        args.pose, args.features, args.seq, args.split, args.output, args.tolerance_frames, source
    )
    log.info("%s: wrote %d frames to %s", args.seq, frames, args.output)


def _cmd_dataset_info(args: argparse.Namespace) -> None:
    from kakashi.shards import dataset_info, format_info, write_manifest

    if args.sheet:
        from kakashi.sources import sheet_sequences

        playlists = Path(args.playlists or Path(args.shards).parent / "playlists")
        sequences = sheet_sequences(args.sheet, args.val, args.test, playlists)
        manifest = write_manifest(args.shards, sequences)
        log.info("%s: the %d shards of %s", manifest, len(sequences), args.sheet)
    summary = dataset_info(args.shards)
    if summary["sequences"] == 0:
        raise KakashiError(f"no shards under {args.shards} (expected split=*/SEQ.parquet)")
    text = json.dumps(summary, indent=2) if args.json else format_info(summary, args.shards)
    if args.output:
        from kakashi.atomic import atomic_write_text

        atomic_write_text(args.output, text + "\n")
    print(text)


def _dataset_info_paths(args: argparse.Namespace) -> CommandPaths:
    """-o, and with --sheet the manifest it writes into the shard folder."""
    files = given(args, ["-o"])
    if args.sheet:
        files.append(("--sheet (the manifest)", Path(args.shards) / "_manifest.tsv"))
    return CommandPaths(files, [], given(args, ["shards", "--sheet", "--playlists"]))


def _cmd_sheet_m2d(args: argparse.Namespace) -> None:
    from kakashi.datasets import m2d_sheet

    rows = m2d_sheet(args.data_dir, args.output)
    log.info("wrote %d Dance-with-Melody sequences to %s", rows, args.output)


def _comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",")]


def _optional_seconds(text: str) -> float | None:
    value = float(text) if text not in ("", "nan", "None") else math.nan
    return None if math.isnan(value) else value


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register the data commands on the ``kakashi`` parser."""
    fetch = commands.add_parser("fetch", help="download one video with yt-dlp")
    fetch.add_argument("url")
    fetch.add_argument("-o", "--output", required=True)
    setting_flag(fetch, "--max-height", "fetch.max_height", type=int)
    fetch.set_defaults(func=_cmd_fetch, paths=declare(files=["-o"]))

    playlist = commands.add_parser("playlist", help="list a playlist's videos (no download)")
    playlist.add_argument("url")
    playlist.add_argument("--prefix", required=True, help="sheet id; entries become ID-001, ...")
    playlist.add_argument("-o", "--output", required=True, help="TSV of the entries")
    playlist.set_defaults(func=_cmd_playlist, paths=declare(files=["-o"]))

    cut = commands.add_parser("cut", help="trim a video, resample to fps, write clip + WAV")
    cut.add_argument("source")
    cut.add_argument("-o", "--output", required=True, help="clip (.mp4)")
    cut.add_argument("--audio-output", required=True, help="mono WAV of the clip")
    cut.add_argument("--start", type=float, default=0.0)
    cut.add_argument("--end", type=_optional_seconds, default=None)
    setting_flag(cut, "--fps", "fps", type=int)
    setting_flag(cut, "--max-height", "cut.max_height", type=int)
    setting_flag(cut, "--audio-sr", "cut.audio_sr", type=int)
    cut.set_defaults(
        func=_cmd_cut, paths=declare(files=["-o", "--audio-output"], inputs=["source"])
    )

    features = commands.add_parser("features", help="audio features, one vector per frame")
    features.add_argument("audio")
    features.add_argument("-o", "--output", required=True, help="features (.npz)")
    setting_flag(features, "--fps", "fps", type=int)
    setting_flag(features, "--hop-length", "features.hop_length", type=int)
    features.add_argument(
        "--set",
        type=schema_checked("features.set", _comma_list),
        default=default("features.set"),
        help=f"comma-separated feature kinds (default: {','.join(default('features.set'))})",
    )
    features.add_argument(
        "--n-mfcc",
        type=schema_checked("features.n_mfcc", int),
        default=default("features.n_mfcc"),
        help="MFCC coefficients",
    )
    features.set_defaults(func=_cmd_features, paths=declare(files=["-o"], inputs=["audio"]))

    pose = commands.add_parser("pose", help="3-D pose per frame of a clip")
    pose.add_argument("video")
    pose.add_argument("-o", "--output", required=True, help="pose (.npz)")
    setting_flag(pose, "--backend", "pose.backend")
    setting_flag(pose, "--workers", "pose.workers", type=int)
    setting_flag(pose, "--min-person-fraction", "pose.min_person_fraction", type=float)
    setting_flag(pose, "--max-people", "pose.max_people", type=int)
    multi_person = node("pose.multi_person")["enum"]
    setting_flag(pose, "--multi-person", "pose.multi_person", choices=multi_person)
    setting_flag(pose, "--root", "pose.root", choices=node("pose.root")["enum"])
    setting_flag(pose, "--root-fov-deg", "pose.root_fov_deg", type=float)
    for key, entry in node("pose.smoothing")["properties"].items():
        setting_flag(
            pose,
            f"--smoothing-{key.replace('_', '-')}",
            f"pose.smoothing.{key}",
            type=flag_type(entry),
            **({"choices": entry["enum"]} if "enum" in entry else {}),
        )
    for key in ("det", "pose2d", "lifter"):
        pose.add_argument(f"--mmpose-{key}-config", help=f"mmpose backend: {key} config")
        pose.add_argument(f"--mmpose-{key}-checkpoint", help=f"mmpose backend: {key} weights")
    pose.add_argument("--mmpose-device", help="mmpose backend: auto, cpu or cuda[:N]")
    pose.add_argument("--mmpose-batch-size", type=int, help="mmpose backend: frames per batch")
    pose.add_argument("--mmpose-bbox-threshold", type=float, help="mmpose: min person-box score")
    pose.add_argument("--name", help="source name for messages")
    pose_inputs = ["video"] + [
        f"--mmpose-{key}-{part}"
        for key in ("det", "pose2d", "lifter")
        for part in ("config", "checkpoint")
    ]
    pose.set_defaults(func=_cmd_pose, paths=declare(files=["-o"], inputs=pose_inputs))

    motion = commands.add_parser("motion", help="a motion file + its music, on the skeleton")
    motion.add_argument("source", help="BVH, AIST++ .pkl, Dance-with-Melody JSON, .npy/.npz")
    motion.add_argument("--audio", required=True, help="the music of the motion")
    motion.add_argument("-o", "--output", required=True, help="pose (.npz)")
    motion.add_argument("--audio-output", required=True, help="WAV of the motion's span")
    setting_flag(motion, "--fps", "fps", type=int)
    motion.add_argument("--start", type=float, default=0.0)
    motion.add_argument("--end", type=_optional_seconds, default=None)
    motion.add_argument("--audio-offset", type=_optional_seconds, default=None)
    motion.add_argument("--source-fps", type=_optional_seconds, default=None)
    motion.add_argument("--skeleton", default="", help="joint layout, e.g. tang23")
    motion.set_defaults(
        func=_cmd_motion,
        paths=declare(files=["-o", "--audio-output"], inputs=["source", "--audio"]),
    )

    shard = commands.add_parser("shard", help="align pose with audio, write a Parquet shard")
    shard.add_argument("--pose", required=True)
    shard.add_argument("--features", required=True)
    shard.add_argument("--seq", required=True)
    shard.add_argument("--split", required=True, choices=["train", "val", "test"])
    shard.add_argument("--source-kind", default="video")
    shard.add_argument("--source-uri", default="")
    shard.add_argument("--style", default="", help="the sheet's style of the source, if any")
    shard.add_argument("--config-hash", default="")
    shard.add_argument(
        "--tolerance-frames",
        type=int,
        default=default("align.tolerance_frames"),
        help="pose/audio frame-count difference trimmed silently",
    )
    shard.add_argument("-o", "--output", required=True)
    shard.set_defaults(
        func=_cmd_shard, paths=declare(files=["-o"], inputs=["--pose", "--features"])
    )

    dataset = commands.add_parser("dataset", help="inspect a shard folder")
    dataset_commands = dataset.add_subparsers(dest="dataset_command", required=True)
    info = dataset_commands.add_parser("info", help="sequences, frames, hours per split")
    info.add_argument("shards", nargs="?", default="results/shards")
    info.add_argument("--json", action="store_true")
    info.add_argument("-o", "--output", help="also write the summary here")
    info.add_argument(
        "--sheet",
        help="the sources sheet: write the manifest SHARDS/_manifest.tsv of its shards first "
        "(readers then ignore shards of other sheets)",
    )
    info.add_argument(
        "--playlists",
        help="with --sheet: folder of the playlist listings (default: SHARDS/../playlists)",
    )
    setting_flag(info, "--val", "split.val", type=float)
    setting_flag(info, "--test", "split.test", type=float)
    info.set_defaults(func=_cmd_dataset_info, paths=_dataset_info_paths)
    sheet = commands.add_parser("sheet", help="write the sources sheet of a public dataset")
    sheet_commands = sheet.add_subparsers(dest="sheet_command", required=True)
    m2d = sheet_commands.add_parser("m2d", help="Dance with Melody (Tang et al. 2018)")
    m2d.add_argument("data_dir", help="folder with manifest.json, joints/ and audio/")
    m2d.add_argument("-o", "--output", required=True, help="the sheet (.tsv)")
    m2d.set_defaults(func=_cmd_sheet_m2d, paths=declare(files=["-o"], inputs=["data_dir"]))
