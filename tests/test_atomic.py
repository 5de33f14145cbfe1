"""kakashi.atomic: every writer's output appears whole under its name, or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from kakashi.atomic import atomic_output, atomic_savez, atomic_write_text
from kakashi.errors import OutputError


def test_success_renames_a_hidden_temporary_with_the_same_suffix(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "clip.mp4"
    with atomic_output(target) as temporary:
        # Hidden (kept out of globs like split=*/*.parquet), same folder, same suffix.
        assert temporary.parent == target.parent and temporary.name.startswith(".")
        assert temporary.suffix == ".mp4" and not target.exists()
        temporary.write_bytes(b"video")
    assert target.read_bytes() == b"video"
    assert os.listdir(target.parent) == ["clip.mp4"]


def test_a_failing_writer_leaves_neither_file_nor_temporary(tmp_path: Path) -> None:
    target = tmp_path / "shard.parquet"
    target.write_bytes(b"the previous, complete version")
    with pytest.raises(ValueError, match="decoder died"), atomic_output(target) as temporary:
        temporary.write_bytes(b"half of it")
        raise ValueError("decoder died")
    assert target.read_bytes() == b"the previous, complete version"
    assert os.listdir(tmp_path) == ["shard.parquet"]


def test_savez_and_text_go_through_it(tmp_path: Path) -> None:
    atomic_savez(tmp_path / "features.npz", values=np.arange(3))
    with np.load(tmp_path / "features.npz") as data:
        np.testing.assert_array_equal(data["values"], np.arange(3))
    atomic_write_text(tmp_path / "metrics.md", "| a |\n")
    assert (tmp_path / "metrics.md").read_text() == "| a |\n"
    assert sorted(os.listdir(tmp_path)) == ["features.npz", "metrics.md"]
    # A name without .npz (kakashi generate -o dance) is kept as given.
    atomic_savez(tmp_path / "dance", values=np.arange(2))
    with np.load(tmp_path / "dance") as data:
        np.testing.assert_array_equal(data["values"], np.arange(2))
    assert sorted(os.listdir(tmp_path)) == ["dance", "features.npz", "metrics.md"]


def test_a_folder_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match="cannot create the folder"):
        atomic_write_text(blocker / "x.txt", "x")
