"""The Snakemake workflow end to end, on real media, as a user runs it.

Each test runs `snakemake` in its own temporary working directory with this
repository's Snakefile and config.yaml, on short cuts of the demo video, so the
whole chain (fetch, cut, features, pose, shard) runs for real.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import soundfile

from conftest import (
    DEMO,
    DEMO_DATA_TARGET,
    DEMO_SONG,
    DEMO_VIDEO,
    closed_port,
    run_snakemake,
    shared_file,
    write_feed,
    write_sheet,
)
from kakashi import skeleton
from kakashi.dance import Dance
from kakashi.shards import read_metadata

pytestmark = pytest.mark.slow


def _read_shard(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {
        "audio": np.stack(table.column("audio").to_numpy(zero_copy_only=False)),
        "pose": np.stack(table.column("pose").to_numpy(zero_copy_only=False)).reshape(-1, 17, 3),
        "conf": table.column("conf").to_numpy(),
        "frame": table.column("frame").to_numpy(),
    }


def test_demo_runs_to_shards(demo_workdir) -> None:
    """The README's demo job: config.yaml on data/demo, to shards and a dataset summary."""
    tmp_path = demo_workdir
    shards = sorted((tmp_path / "results" / "shards").glob("split=*/*.parquet"))
    assert [p.relative_to(tmp_path / "results" / "shards").as_posix() for p in shards] == [
        "split=test/dancer-c.parquet",
        "split=train/dancer-a.parquet",
        "split=val/dancer-b.parquet",
    ]
    frames = 0
    for path in shards:
        shard = _read_shard(path)
        frames += len(shard["pose"])
        assert len(shard["audio"]) == len(shard["pose"]) and shard["audio"].shape[1] == 35
        np.testing.assert_array_equal(shard["frame"], np.arange(len(shard["pose"])))
        assert (shard["conf"] > 0).mean() > 0.95
        assert 1.3 < skeleton.standing_height(shard["pose"]) < 2.1
    # 0-40 s, 40-51 s and 51 s to the end (62.9 s) at 30 fps: every frame, none trimmed.
    assert frames == 1200 + 330 + 357
    dataset = ds.dataset(tmp_path / "results" / "shards", format="parquet", partitioning="hive")
    assert dataset.count_rows() == frames
    info = (tmp_path / "results" / "dataset_info.txt").read_text()
    assert "total" in info and str(frames) in info
    # Downloads are temp(); local videos are read in place, so nothing is copied.
    assert not (tmp_path / "results" / "raw").exists()
    # A second run has nothing to do.
    again = run_snakemake(
        tmp_path, "--cores", "2", "-n", DEMO_DATA_TARGET, config={"sources": DEMO / "sources.tsv"}
    )
    assert "Nothing to be done" in again.stdout + again.stderr


def _no_person_video(folder: Path) -> Path:
    """A real encoded video with music and an empty room (a plain backdrop): no dancer."""
    from moviepy import AudioFileClip, ColorClip

    audio = AudioFileClip(str(DEMO_SONG)).subclipped(0, 3)
    clip = ColorClip((320, 240), color=(40, 90, 200), duration=3).with_audio(audio)
    path = folder / "empty_room.mp4"
    clip.write_videofile(str(path), fps=25, codec="libx264", audio_codec="aac", logger=None)
    return path


def test_bad_sources_fail_clearly_while_the_others_finish(tmp_path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    corrupt = media / "corrupt.avi"
    corrupt.write_bytes(DEMO_VIDEO.read_bytes()[:4000] + bytes(200_000))
    # A file name full of shell metacharacters must reach the tools intact, never a shell.
    odd = media / "dance $(touch PWNED) `touch PWNED2`; 'q' \"dq\" & x.avi"
    shutil.copyfile(DEMO_VIDEO, odd)
    rows = [
        {"id": "good", "source": str(DEMO_VIDEO), "start": 5, "end": 8, "split": "train"},
        {"id": "odd-name", "source": odd.name, "start": 20, "end": 23, "split": "val"},
        {"id": "corrupt", "source": corrupt.name, "split": "train"},
        {"id": "no-person", "source": str(_no_person_video(media)), "split": "train"},
        {
            "id": "no-audio",
            "source": str(shared_file("video_footskate_dance/dance.mp4")),
            "split": "train",
        },
        {
            "id": "unreachable",
            "source": f"http://127.0.0.1:{closed_port()}/dance.mp4",
            "split": "train",
        },
    ]
    sheet = write_sheet(media / "sources.tsv", rows)
    result = run_snakemake(
        tmp_path,
        "--cores",
        "2",
        "--keep-going",
        DEMO_DATA_TARGET,
        config={"sources": sheet, "fetch": {"retries": 0}},
        check=False,
    )
    assert result.returncode != 0
    shards = tmp_path / "results" / "shards"
    assert (shards / "split=train" / "good.parquet").is_file(), result.stderr[-5000:]
    assert (shards / "split=val" / "odd-name.parquet").is_file()
    assert not list(tmp_path.rglob("PWNED*")) and not list(Path.cwd().glob("PWNED*"))
    logs = tmp_path / "results" / "logs"
    expected = {
        "cut/corrupt.log": "cannot decode video",
        "cut/no-audio.log": "has no audio track",
        "pose/no-person.log": "no person found in",
        "fetch/unreachable.log": "/dance.mp4",
    }
    for log, message in expected.items():
        text = (logs / log).read_text()
        assert "kakashi: error:" in text and message in text, text
        assert "Traceback" not in text
    assert "corrupt.avi" in (logs / "cut/corrupt.log").read_text()
    assert "dance.mp4" in (logs / "cut/no-audio.log").read_text()
    # Snakemake names each failed job's log, so a user finds the message.
    assert "results/logs/cut/corrupt.log" in result.stderr


def test_youtube_style_sources_via_ytdlp_and_a_playlist(tmp_path, site) -> None:
    """URL rows go through real yt-dlp; a playlist expands through the checkpoint."""
    feed = write_feed(
        site,
        [("first", site.url("a.avi"), None), ("second", site.url("b.avi"), None)],
    )
    rows = [
        {"id": "web", "source": site.url("c.avi"), "start": 2, "end": 4, "split": "train"},
        {"id": "pl", "source": feed, "kind": "playlist", "start": 30, "end": 32, "split": "val"},
    ]
    sheet = write_sheet(tmp_path / "sources.tsv", rows)
    run_snakemake(tmp_path, "--cores", "2", DEMO_DATA_TARGET, config={"sources": sheet})
    shards = tmp_path / "results" / "shards"
    for path in ("split=train/web.parquet", "split=val/pl-001.parquet", "split=val/pl-002.parquet"):
        assert (shards / path).is_file(), path
        table = pq.read_table(shards / path)
        assert table.num_rows == 60
    meta = read_metadata(shards / "split=val/pl-002.parquet")
    assert meta["source_uri"] == site.url("b.avi") and meta["split"] == "val"
    playlist = (tmp_path / "results" / "playlists" / "pl.tsv").read_text().splitlines()
    assert playlist[0] == "seq\tindex\turl\ttitle" and len(playlist) == 3
    # Raw downloads are temp(): gone once their clips exist.
    assert not list((tmp_path / "results" / "raw").glob("*.video"))


def test_lint_dry_run_and_partial_rerun(tmp_path) -> None:
    rows = [
        {"id": "one", "source": str(DEMO_VIDEO), "start": 0, "end": 2, "split": "train"},
        {"id": "two", "source": str(DEMO_VIDEO), "start": 2, "end": 4, "split": "test"},
    ]
    config = {"sources": write_sheet(tmp_path / "sources.tsv", rows)}
    lint = run_snakemake(tmp_path, "--lint", config=config, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dry = run_snakemake(tmp_path, "-n", config=config)
    assert "shard" in dry.stdout and "pose" in dry.stdout
    target = "results/shards/split=test/two.parquet"
    run_snakemake(tmp_path, "--cores", "2", target, config=config)
    assert (tmp_path / target).is_file()
    # Only source "two"'s chain ran.
    assert not (tmp_path / "results" / "clips" / "one.mp4").exists()
    assert not (tmp_path / "results" / "pose" / "one.npz").exists()
    # Asking for a shard under the wrong split is refused, with the right path named.
    wrong = run_snakemake(
        tmp_path, "-n", "results/shards/split=val/two.parquet", config=config, check=False
    )
    assert wrong.returncode != 0
    assert "two belongs to split 'test'" in wrong.stdout + wrong.stderr


def test_bad_sheet_fails_before_any_job(tmp_path) -> None:
    rows = [
        {"id": "fine", "source": str(DEMO_VIDEO)},
        {"id": "x;rm -rf ~", "source": str(DEMO_VIDEO)},
    ]
    sheet = write_sheet(tmp_path / "sources.tsv", rows)
    result = run_snakemake(tmp_path, "--cores", "1", config={"sources": sheet}, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "line 3 (id 'x;rm -rf ~'): id 'x;rm -rf ~' is not a safe file name" in output
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_demo_trains_generates_renders_and_evaluates(demo_workdir) -> None:
    """The model half of the demo on its real shards: train the three models, dance to a song,
    render it three ways, score the test split, and build the Snakemake report."""
    config = {
        "sources": DEMO / "sources.tsv",
        "songs": {"vibe-ace": DEMO_SONG},
        # Small and quick; the demo's own settings are in config.yaml.
        "train": {
            "epochs": 3,
            "crnngan": {"epochs": 1},
            "motif": {"vq_steps": 30, "gpt_steps": 30, "codebook": 64},
        },
        "render": {"size": "320x240"},
        "eval": {"clip_s": 5},
    }
    run_snakemake(demo_workdir, "--cores", "2", config=config)
    results = demo_workdir / "results"
    for model in ("rnn", "crnngan", "motif", "motiongraph"):
        checkpoint = results / "models" / f"{model}.pt"
        # protected(): a later run cannot overwrite a trained model by accident.
        assert checkpoint.is_file() and checkpoint.stat().st_mode & 0o222 == 0
        losses = (results / "models" / f"{model}.csv").read_text().splitlines()
        assert len(losses) >= 2 and (results / "models" / f"{model}.png").stat().st_size > 0
        dance = Dance.load(results / "dances" / model / "vibe-ace.npz")
        assert len(dance) == round(soundfile.info(str(DEMO_SONG)).duration * 30)
        assert (results / "renders" / model / "vibe-ace.mp4").stat().st_size > 10_000
        assert "<html" in (results / "viewer" / model / "vibe-ace.html").read_text()[:500].lower()
        assert (results / "bvh" / model / "vibe-ace.bvh").read_text().startswith("HIERARCHY")
        assert (results / "glb" / model / "vibe-ace.glb").read_bytes()[:4] == b"glTF"
        # One generate_test job per model danced every test shard, each as long as its truth.
        test_shards = sorted((results / "shards" / "split=test").glob("*.parquet"))
        assert test_shards
        for shard in test_shards:
            test_dance = Dance.load(results / "eval" / "dances" / model / f"{shard.stem}.npz")
            assert len(test_dance) == pq.read_metadata(shard).num_rows
    metrics = json.loads((results / "eval" / "metrics.json").read_text())
    rows = {row["name"]: row for row in metrics["rows"]}
    models = {"rnn", "crnngan", "motif", "motiongraph"}
    assert {"ground_truth", "random_retrieval", "mean_pose"} | models <= set(rows)
    assert rows["mean_pose"]["div_k"] == 0 and rows["rnn"]["fid_k"] > 0
    plots = {p.name for p in (results / "eval" / "plots").glob("*.png")}
    metrics_plots = {f"bar_{key}.png" for key in ("fid_k", "fid_g", "div_k", "div_g", "bas", "pfc")}
    assert metrics_plots | {"beat_timeline.png"} <= plots
    report = demo_workdir / "report.html"
    run_snakemake(demo_workdir, "--report", str(report), config=config)
    assert report.stat().st_size > 10_000
