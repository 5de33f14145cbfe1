"""``kakashi evaluate`` end to end on the demo shards, and its errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO
from kakashi.cli import main
from kakashi.dance import Dance
from kakashi.evaluate import quality
from kakashi.evaluate.baselines import random_retrieval
from kakashi.evaluate.harness import load_split
from kakashi.evaluate.run import evaluate
from kakashi.shards import read_dance

SONG = "Kevin_MacLeod_-_Vibe_Ace.hq"
METRIC_KEYS = ("fid_k", "fid_g", "div_k", "div_g", "bas", "pfc")
QUALITY_KEYS = (*quality.RAW_KEYS, *quality.RATIO_KEYS)


@pytest.fixture(scope="module")
def generated(demo_shards: Path, tmp_path_factory) -> dict[str, Path]:
    """Two 'models' made of real dances: the test dance itself, and a val dance on a song."""
    folder = tmp_path_factory.mktemp("generated")
    copy, song = folder / "copy", folder / "song"
    read_dance(demo_shards / "split=test" / "dancer-c.parquet").save(copy / "dancer-c.npz")
    read_dance(demo_shards / "split=val" / "dancer-b.parquet").save(song / f"{SONG}__take1.npz")
    return {"copy": copy, "song": song}


def test_evaluate_cli_writes_table_json_and_plots(demo_shards, generated, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--reference", str(demo_shards), "-o", str(out), "--clip-s", "2"]
    argv += ["--timeline", "dancer-c", f"--generated=copy={generated['copy']}"]
    assert main(argv) == 0

    result = json.loads((out / "metrics.json").read_text())
    rows = {row["name"]: row for row in result["rows"]}
    assert list(rows) == ["ground_truth", "random_retrieval", "mean_pose", "real_val", "copy"]
    assert result["test_split"] == ["dancer-c"]
    # The test dance submitted as a model scores exactly like the ground truth row.
    for key in METRIC_KEYS:
        assert rows["copy"][key] == pytest.approx(rows["ground_truth"][key]), key
    assert rows["ground_truth"]["clips"] == len(read_dance(
        demo_shards / "split=test" / "dancer-c.parquet")) // 60  # fmt: skip
    assert rows["random_retrieval"]["clips"] == rows["ground_truth"]["clips"]
    # A motionless mean pose has no diversity, no motion beats and no foot contact.
    assert rows["mean_pose"]["div_k"] == 0.0 and rows["mean_pose"]["bas"] == 0.0
    assert rows["mean_pose"]["fid_k"] > rows["random_retrieval"]["fid_k"]
    assert all(0.0 <= rows[name]["bas"] <= 1.0 for name in rows)

    # Motion quality: the copy is exactly as lively, jittery, sliding as the ground truth;
    # the mean pose is frozen for the whole song (the test dance's length).
    assert result["quality_reference"] == "ground_truth"
    for key in QUALITY_KEYS:
        assert rows["copy"][key] == rows["ground_truth"][key], key
    assert {rows[n][k] for n in ("copy", "ground_truth") for k in ("liveliness", "jitter")} == {1.0}
    frames = len(read_dance(demo_shards / "split=test" / "dancer-c.parquet"))
    mean = rows["mean_pose"]
    assert mean["liveliness"] == 0.0 and mean["jitter"] == 0.0 and mean["skate_rate"] == 0.0
    assert mean["freeze_share"] == 1.0 and mean["freeze_max_s"] == pytest.approx(frames / 30)
    truth = rows["ground_truth"]
    assert 0.1 < truth["speed_m_s"] < 2.0 and truth["freeze_share"] < 0.5
    # The demo's root is estimated from the video (pose.root): ground truth travels (9.1
    # m/min measured, 2026-11-26), so travel is a ratio and PFC sees the root accelerate.
    assert truth["travel_m_min"] > quality.TRAVEL_MIN_M_MIN and truth["travel_ratio"] == 1.0
    assert not any("root is not measured" in note for note in result["notes"])
    assert truth["pfc"] > 0
    assert result["better"]["liveliness"] == "one" and result["better"]["jitter"] == "lower"

    # The held-out columns: the test dance submitted as a model is the reference itself
    # (FID 0) and copies like it; the real line (the val dance) is 1 x itself.
    assert rows["copy"]["fid_k_heldout"] == pytest.approx(0.0, abs=1e-6)
    assert rows["ground_truth"]["fid_k_heldout"] is None  # the reference: "ref"
    assert rows["real_val"]["fid_k_heldout_ratio"] == pytest.approx(1.0)
    assert rows["copy"]["copy_share"] == rows["ground_truth"]["copy_share"]
    assert rows["random_retrieval"]["copy_share"] > 0.9  # train clips: a replay
    # C_T needs more than 20 of a row's windows in a cell: the demo's 12-s test dance has 23.
    assert rows["random_retrieval"]["c_t"] is None
    assert rows["mean_pose"]["copy_share"] == 0.0 and rows["copy"]["variety"] is None
    assert any("fewer than two styles" in note for note in result["notes"])  # no style column
    assert any("held-out FID rests on 3 reference clips" in note for note in result["notes"])
    assert result["heldout"]["clip_s"] == 5 and result["heldout"]["hop_s"] == 2.5

    table = (out / "metrics.md").read_text()
    assert "**ground truth**" in table and "FID_k ↓" in table and "BAS ↑" in table
    assert "FID_k train-ref ↓" in table and "copy % ↓" in table and "| ref |" in table
    head = table.splitlines()[0]
    assert head.index("PFC ↓") < head.index("clips") < head.index("liveliness ≈1")
    # Ground truth travels (a video root), so travel is shown as a ratio to it.
    assert "jitter ↓" in head and "skate ×GT ↓" in head and "travel ≈1" in head
    assert table in capsys.readouterr().out
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert plots == sorted(
        [f"bar_{k}.png" for k in METRIC_KEYS] + ["beat_timeline.png", "quality.png"]
    )
    for plot in plots:
        assert (out / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result["timeline"] == "dancer-c"


def test_without_ground_truth_the_table_shows_raw_quality(demo_shards, generated, tmp_path):
    result = evaluate(demo_shards, {"copy": generated["copy"]}, tmp_path / "eval", clip_s=2,
                      baseline_names=[])  # fmt: skip
    (row,) = result["rows"]
    assert result["quality_reference"] is None
    assert all(row[key] is None for key in quality.RATIO_KEYS)
    assert row["speed_m_s"] > 0 and row["jerk_m_s3"] > 0
    head = (tmp_path / "eval" / "metrics.md").read_text().splitlines()[0]
    assert "speed m/s" in head and "jerk m/s³" in head and "travel m/min" in head
    assert "liveliness" not in head and "×GT" not in head
    assert (tmp_path / "eval" / "plots" / "quality.png").stat().st_size > 0


@pytest.mark.slow  # librosa's first beat tracking waits for the numba lock: 10-40 s
def test_generated_dance_finds_its_song_file_by_stem(demo_shards, generated, tmp_path):
    result = evaluate(
        demo_shards,
        {"song": generated["song"]},
        tmp_path / "eval",
        clip_s=2,
        music=DEMO / "music",
        baseline_names=[],
    )
    (row,) = result["rows"]
    # NAME__take1.npz dances to DEMO/music/NAME.ogg: every 2 s clip of this ~104 BPM song
    # has beats, so every clip is scored.
    assert row["clips_with_beats"] == row["clips"] > 0
    assert 0.0 < row["bas"] <= 1.0


def test_random_retrieval_is_seeded_and_draws_other_sequences(demo_shards):
    train, test = load_split(demo_shards, "train"), load_split(demo_shards, "test")
    first, again, other = (random_retrieval(train, test, 2.0, seed) for seed in (3, 3, 4))
    assert [d.name for d in first] == [d.name for d in again]
    assert all(np.array_equal(a.world, b.world) for a, b in zip(first, again, strict=True))
    assert [d.name for d in first] != [d.name for d in other]
    assert len(first) == len(test[0].world) // 60
    assert all(d.name.startswith("dancer-a[") for d in first)  # the only train sequence
    # Each segment carries the beats of its part of the test song, from the clip's start.
    assert all(d.music_beats is not None and (d.music_beats < 2.0).all() for d in first)


def run_error(argv: list[str], capsys) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("kakashi: error: ") and "Traceback" not in err
    return err


def test_missing_generated_path_is_a_clear_error(demo_shards, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    err = run_error(
        ["evaluate", "--reference", str(demo_shards), "-o", str(tmp_path / "o"),
         "--generated", f"rnn={missing}"], capsys)  # fmt: skip
    assert str(missing) in err and "dance .npz" in err


def test_dance_without_a_song_is_a_clear_error(demo_shards, tmp_path, capsys):
    folder = tmp_path / "gen"
    dance = read_dance(demo_shards / "split=test" / "dancer-c.parquet")
    dance.save(folder / "unknown_song.npz")
    err = run_error(
        ["evaluate", "--reference", str(demo_shards), "-o", str(tmp_path / "o"),
         "--generated", f"rnn={folder}", "--baselines", "none"], capsys)  # fmt: skip
    assert "unknown_song.npz" in err and "--music" in err


def test_bad_reference_and_corrupt_dance_are_clear_errors(demo_shards, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    err = run_error(["evaluate", "--reference", str(empty), "-o", str(tmp_path / "o")], capsys)
    assert str(empty) in err
    corrupt = tmp_path / "bad" / "dancer-c.npz"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"not a zip file")
    err = run_error(
        ["evaluate", "--reference", str(demo_shards), "-o", str(tmp_path / "o"),
         "--generated", f"rnn={corrupt.parent}"], capsys)  # fmt: skip
    assert str(corrupt) in err
    short = Dance(np.zeros((2, 17, 3)), np.zeros((2, 3)), 30.0)
    short.save(tmp_path / "short" / "dancer-c.npz")
    err = run_error(
        ["evaluate", "--reference", str(demo_shards), "-o", str(tmp_path / "o"),
         "--generated", f"rnn={tmp_path / 'short'}", "--baselines", "none"], capsys)  # fmt: skip
    assert "rnn" in err and "frames" in err


def test_a_folder_of_dances_as_reference_scores_like_its_shards(demo_shards, tmp_path):
    folder = tmp_path / "reference"
    read_dance(demo_shards / "split=train" / "dancer-a.parquet").save(folder / "a.npz")
    by_shards, by_files = (
        evaluate(ref, {}, tmp_path / name, 2, music=demo_shards, baseline_names=["ground_truth"])
        for name, ref in (("shards", demo_shards), ("files", folder))
    )
    assert by_files["rows"] == by_shards["rows"]
    assert by_files["reference"]["clips"] == by_shards["reference"]["clips"] == 20


def test_stale_shards_outside_the_manifest_do_not_count(demo_shards, tmp_path):
    """A shard left by an earlier sheet sits in the folder; the manifest keeps it out."""
    import shutil

    from kakashi.shards import MANIFEST

    shards = tmp_path / "shards"
    shutil.copytree(demo_shards, shards)
    test_shard = shards / "split=test" / "dancer-c.parquet"
    shutil.copy(test_shard, shards / "split=test" / "old-take.parquet")
    assert [d.name for d in load_split(shards, "test")] == ["dancer-c"]  # the demo's manifest
    (shards / MANIFEST).unlink()  # no manifest: every shard in the folder counts
    assert [d.name for d in load_split(shards, "test")] == ["dancer-c", "old-take"]
