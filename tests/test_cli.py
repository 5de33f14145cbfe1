"""The command line parses: every subcommand's --help renders (schema texts included)."""

from __future__ import annotations

import pytest

from kakashi.cli import build_parser, main

COMMANDS = [
    ["fetch"], ["playlist"], ["cut"], ["features"], ["pose"], ["motion"], ["shard"],
    ["dataset", "info"], ["sheet", "m2d"], ["train"], ["generate"], ["render"], ["viewer"],
    ["export-bvh"], ["export-dance"], ["evaluate"], ["studio"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_renders(command: list[str], capsys) -> None:
    # argparse %-formats help strings: a schema description with a bare % used to crash.
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: kakashi " + " ".join(command))


def test_flag_defaults_are_the_schemas() -> None:
    from kakashi.settings import default

    args = build_parser().parse_args(["features", "song.wav", "-o", "f.npz"])
    assert (args.fps, args.hop_length) == (default("fps"), default("features.hop_length"))
    args = build_parser().parse_args(["train", "--shards", "s", "--out", "m.pt", "--mirror", "no"])
    assert args.mirror is False and args.epochs is None  # unset: resolved from the schema


def test_pose_smoothing_flags_are_the_schemas() -> None:
    from kakashi.settings import defaults

    args = build_parser().parse_args(["pose", "clip.mp4", "-o", "p.npz"])
    given = {k.removeprefix("smoothing_"): v for k, v in vars(args).items() if "smoothing_" in k}
    assert given == defaults("pose.smoothing")
    # The workflow writes booleans as Python prints them.
    args = build_parser().parse_args(
        ["pose", "c.mp4", "-o", "p.npz", "--smoothing-project-bones=False"]
    )
    assert args.smoothing_project_bones is False
    with pytest.raises(SystemExit):
        build_parser().parse_args(["pose", "c.mp4", "-o", "p.npz", "--smoothing-method=kalman"])


def test_pose_root_flags_are_the_schemas() -> None:
    from kakashi.settings import default

    args = build_parser().parse_args(["pose", "clip.mp4", "-o", "p.npz"])
    assert args.root == default("pose.root") == "estimate"
    assert args.root_fov_deg == default("pose.root_fov_deg") == 60
    args = build_parser().parse_args(["pose", "c.mp4", "-o", "p.npz", "--root=none"])
    assert args.root == "none"
    for bad in ("--root=guess", "--root-fov-deg=180", "--root-fov-deg=0"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["pose", "c.mp4", "-o", "p.npz", bad])
