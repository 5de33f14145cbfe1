"""One parser and one validator for every setting: command-line flags, training settings
and the workflow's config all go through kakashi.settings and the config schema."""

from __future__ import annotations

import os

import pytest

from kakashi.cli import build_parser
from kakashi.errors import ModelError
from kakashi.models.config import resolve
from kakashi.settings import check_value, default, node, parse_value


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("False", False), ("yes", True), ("off", False), ("1", True), ("0", False)],
)
def test_booleans_parse_one_way_for_flags_and_training(text: str, value: bool) -> None:
    entry = node("train.mirror")
    assert parse_value(entry, text) is value
    assert resolve("rnn", {}, {"mirror": text}).mirror is value  # training settings
    flag = f"--smoothing-project-bones={text}"
    args = build_parser().parse_args(["pose", "c.mp4", "-o", "p.npz", flag])
    assert args.smoothing_project_bones is value  # a data command's flag


def test_numbers_parse_and_whole_numbers_stay_whole() -> None:
    assert parse_value(node("train.lr"), "1e-3") == 0.001
    assert parse_value(node("train.epochs"), 3.0) == 3
    with pytest.raises(ValueError, match="expected a whole number"):
        parse_value(node("train.epochs"), 2.5)
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        parse_value(node("train.mirror"), "maybe")


def test_ranges_and_choices_are_the_schemas_for_training_and_flags() -> None:
    assert check_value(node("train.lr"), 0.001, "train.lr") is None
    problem = check_value(node("train.lr"), 0.0, "train.lr")
    assert problem == (
        "0.0 is less than or equal to the minimum of 0 (see train.lr in schemas/config.schema.yaml)"
    )
    with pytest.raises(ModelError) as error:
        resolve("rnn", {}, {"lr": 0.0})
    assert str(error.value) == f"training setting lr=0.0: {problem}"
    with pytest.raises(ModelError, match=r"'rmsprop' is not one of \['adam', 'sgd'\]"):
        resolve("motif", {"optimizer": "rmsprop"})
    with pytest.raises(SystemExit):  # the same schema entry refuses a data command's flag
        build_parser().parse_args(["pose", "c.mp4", "-o", "p.npz", "--root-fov-deg=0"])


def test_studio_defaults_are_the_schemas() -> None:
    """The studio had its defaults twice, disagreeing (workers: one per core on the command
    line, 1 in the app); both read the schema's studio section now."""
    from kakashi.studio.app import StudioSettings

    args = build_parser().parse_args(["studio"])
    settings = StudioSettings()
    for key in ("models", "max_upload_mb", "max_minutes"):
        assert getattr(args, key) == getattr(settings, key) == default(f"studio.{key}"), key
    assert str(settings.work_dir) == args.work_dir == default("studio.work_dir")
    assert (args.host, args.port) == (default("studio.host"), default("studio.port"))
    assert settings.min_seconds == default("studio.min_seconds")
    assert args.workers == default("studio.workers") == 0  # 0: one per core
    assert settings.workers == (os.cpu_count() or 1)
    from kakashi.cli.studio import check_args
    from kakashi.errors import KakashiError

    with pytest.raises(KakashiError, match="--workers must be a whole number from 0 to 256"):
        check_args(build_parser().parse_args(["studio", "--workers", "-1"]))
