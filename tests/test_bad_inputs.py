"""Careless and hostile inputs against every command, one parametrised test per class of
issue 16: each gives one line ``kakashi: error: ...`` naming the file (or a warning where
stated), a non-zero exit, inputs byte-identical afterwards (by hash) and no file under the
output's name or beside it.

1. an output that is also an input, protected, or a folder where a file goes (the guard);
2. numbers out of their documented range (fps, sizes), which used to hang or reach librosa;
3. ordinary mistakes that used to end in a traceback;
4. partial files: SIGTERM / SIGINT mid-write, a failing cut;
5. silent acceptance: truncated or random-bytes media, --end past the end, mixed fps,
   malformed sheets;
6. round 3 (issue 29): symbolic link loops, named pipes, devices and kernel files; absurd
   magnitudes and sizes in dance, BVH and checkpoint files, refused by declared size before
   decoding; a huge seed; the numba warm-up lock; misleading audio messages.

Every command runs as a real subprocess on real files (the demo's shards, clips and song, a
seed RNN trained for two epochs); a subprocess that times out fails the test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DEMO_VIDEO

TIMEOUT_S = 120  # a command that has not answered by then hangs: TimeoutExpired fails the test


@pytest.fixture(scope="module")
def base(demo_shards: Path, tmp_path_factory) -> Path:
    """One folder of real inputs, copied afresh into each test's folder (see ``work``)."""
    from kakashi.models.config import resolve
    from kakashi.models.distributed import train
    from kakashi.shards import read_dance

    folder = tmp_path_factory.mktemp("bad_inputs")
    clips = demo_shards.parent / "clips"
    read_dance(demo_shards / "split=test" / "dancer-c.parquet").save(folder / "dance.npz")
    shutil.copyfile(clips / "dancer-c.wav", folder / "song.wav")
    shutil.copyfile(clips / "dancer-c.mp4", folder / "clip.mp4")
    shutil.copyfile(demo_shards / "split=test" / "dancer-c.parquet", folder / "shard.parquet")
    shutil.copyfile(DEMO_VIDEO, folder / "source.avi")
    shutil.copyfile(demo_shards.parent / "features" / "dancer-c.npz", folder / "features.npz")
    settings = dict(hidden=16, layers=1, window_s=1.0, stride_s=1.0, batch_size=16, epochs=2)
    out = folder / "model.pt"
    train(resolve("rnn", {}, {**settings, "shards": str(demo_shards), "out": str(out)}), False)
    for extra in ("model.last.pt", "model.csv", "model.png"):
        (folder / extra).unlink()
    out.chmod(0o444)  # protected, as the workflow's protected() leaves a trained model
    return folder


@pytest.fixture
def work(base: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    shutil.copytree(base, folder)  # copytree keeps the checkpoint's 0444
    return folder


def kakashi(folder: Path, *args: str, **options) -> subprocess.CompletedProcess:
    """``kakashi ARGS`` in ``folder``, as a user runs it; a hang fails (TimeoutExpired)."""
    return subprocess.run(
        [sys.executable, "-m", "kakashi", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=options.pop("timeout", TIMEOUT_S),
        **options,
    )


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` (hidden ones too): content hash and permission bits."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files[str(path.relative_to(folder))] = (digest, stat.S_IMODE(path.stat().st_mode))
        elif path.is_dir():
            files[str(path.relative_to(folder)) + "/"] = ("folder", 0)
    return files


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one error line: non-zero exit, no traceback, exactly one ``kakashi: error:``."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("kakashi: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def assert_refused(folder: Path, before: dict, result, *named: str) -> str:
    """One error line naming ``named``, and the folder exactly as it was: inputs byte-
    identical, nothing written under the output's name or beside it."""
    line = error_line(result)
    for text in named:
        assert text in line, line
    assert snapshot(folder) == before
    return line


# ------------------------------------------------------------------ 1. the output guard

# (command line, text the error names). Each writes onto one of its own inputs, onto a
# protected file, or two outputs onto one file.
OUTPUT_IS_INPUT = {
    "generate -o the checkpoint": (
        ["generate", "song.wav", "--checkpoint", "model.pt", "-o", "model.pt"], "model.pt"),
    "generate -o the song": (
        ["generate", "song.wav", "--checkpoint", "model.pt", "-o", "song.wav"], "song.wav"),
    "generate -o the start pose": (
        ["generate", "song.wav", "--checkpoint", "model.pt", "--start-pose", "dance.npz",
         "-o", "dance.npz"], "dance.npz"),
    "generate --shards -o the shard folder": (
        ["generate", "--shards", ".", "--checkpoint", "model.pt", "-o", "."], "-o ."),
    "viewer -o the song": (["viewer", "dance.npz", "--audio", "song.wav", "-o", "song.wav"],
                           "song.wav"),
    "viewer -o the dance": (["viewer", "dance.npz", "--audio", "song.wav", "-o", "dance.npz"],
                            "dance.npz"),
    "render -o the dance": (["render", "dance.npz", "--audio", "song.wav", "-o", "dance.npz"],
                            "dance.npz"),
    "render -o the --video": (["render", "dance.npz", "--audio", "song.wav", "--video",
                               "clip.mp4", "-o", "clip.mp4"], "clip.mp4"),
    "export-bvh -o the dance": (["export-bvh", "dance.npz", "-o", "dance.npz"], "dance.npz"),
    "export-dance -o the shard": (["export-dance", "shard.parquet", "-o", "shard.parquet"],
                                  "shard.parquet"),
    "train --out a protected checkpoint": (
        ["train", "--shards", "shards", "--out", "model.pt", "--epochs", "1"], "read-only"),
    "train --out its own --init": (
        ["train", "--model", "crnngan", "--shards", "shards", "--init", "model.pt", "--out",
         "model.pt"], "model.pt"),
    "cut -o and --audio-output one file": (
        ["cut", "source.avi", "-o", "x.mp4", "--audio-output", "x.mp4"], "x.mp4"),
    "cut -o the source": (["cut", "source.avi", "-o", "source.avi", "--audio-output", "a.wav"],
                          "source.avi"),
    "features -o the song": (["features", "song.wav", "-o", "song.wav"], "song.wav"),
    "shard -o its --features": (
        ["shard", "--pose", "dance.npz", "--features", "features.npz", "--seq", "s", "--split",
         "test", "-o", "features.npz"], "features.npz"),
    "motion -o its --audio": (
        ["motion", "dance.npz", "--audio", "song.wav", "-o", "song.wav", "--audio-output",
         "a.wav"], "song.wav"),
    "evaluate -o its --generated folder": (
        ["evaluate", "--reference", "shards", "--generated", "m=gen", "-o", "gen"], "gen"),
    "dataset info -o a protected file": (["dataset", "info", "shards", "-o", "model.pt"],
                                         "read-only"),
    "a symbolic link to the input": (
        ["viewer", "dance.npz", "--audio", "song.wav", "-o", "link.html"], "link.html"),
    "a hard link to the input": (
        ["export-bvh", "dance.npz", "-o", "hard.bvh"], "hard.bvh"),
}  # fmt: skip


@pytest.mark.parametrize("case", OUTPUT_IS_INPUT, ids=str)
def test_class1_an_output_never_replaces_an_input(case: str, work: Path, demo_shards: Path):
    argv, named = OUTPUT_IS_INPUT[case]
    (work / "shards").symlink_to(demo_shards)
    (work / "gen").mkdir()
    (work / "link.html").symlink_to("song.wav")
    os.link(work / "dance.npz", work / "hard.bvh")
    before = snapshot(work)
    result = kakashi(work, *argv)
    line = assert_refused(work, before, result, named)
    assert "choose another" in line or "delete it first" in line


def test_class1_train_refuses_before_the_first_epoch(work: Path, demo_shards: Path):
    # A folder as --out used to fail at the final rename, after the whole run.
    (work / "models").mkdir()
    before = snapshot(work)
    started = time.perf_counter()
    result = kakashi(work, "train", "--shards", str(demo_shards), "--out", "models",
                     "--epochs", "500")  # fmt: skip
    assert time.perf_counter() - started < 30  # far less than 500 epochs
    assert_refused(work, before, result, "models", "existing folder")


# ------------------------------------------------------------------ 2. documented ranges


def dance_with_fps(folder: Path, fps: float) -> Path:
    """The real dance with its fps field replaced (everything else as written)."""
    with np.load(folder / "dance.npz") as data:
        arrays = dict(data)
    arrays["fps"] = np.float64(fps)
    path = folder / f"fps_{fps}.npz"
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)
    return path


OUT_OF_RANGE = {
    "render a 1e6-fps dance": (["render", "{dance}", "--audio", "song.wav", "-o", "r.mp4"],
                               "fps is"),
    "viewer a 1e6-fps dance": (["viewer", "{dance}", "--audio", "song.wav", "-o", "v.html"],
                               "fps is"),
    "export-bvh a 1e6-fps dance": (["export-bvh", "{dance}", "-o", "d.bvh"], "fps is"),
    "generate from a 1e6-fps start pose": (
        ["generate", "song.wav", "--checkpoint", "model.pt", "--start-pose", "{dance}", "-o",
         "g.npz"], "fps is"),
    "evaluate a 1e6-fps dance": (["evaluate", "--reference", "{dance}", "--baselines", "none",
                                  "-o", "eval"], "fps is"),
    "features --fps 0": (["features", "song.wav", "--fps", "0", "-o", "f.npz"], "--fps"),
    "features --fps 100000": (["features", "song.wav", "--fps", "100000", "-o", "f.npz"],
                              "--fps"),
    "features --hop-length 0": (["features", "song.wav", "--hop-length", "0", "-o", "f.npz"],
                                "--hop-length"),
    "features --n-mfcc 0": (["features", "song.wav", "--n-mfcc", "0", "-o", "f.npz"],
                            "--n-mfcc"),
    "features --n-mfcc 100000": (["features", "song.wav", "--n-mfcc", "100000", "-o",
                                  "f.npz"], "--n-mfcc"),
    "features an unknown feature": (["features", "song.wav", "--set", "mfcc,tempo", "-o",
                                     "f.npz"], "tempo"),
    "cut --fps 0": (["cut", "source.avi", "--fps", "0", "-o", "c.mp4", "--audio-output",
                     "c.wav"], "--fps"),
    "cut --max-height 1": (["cut", "source.avi", "--max-height", "1", "-o", "c.mp4",
                            "--audio-output", "c.wav"], "--max-height"),
    "motion --fps 0": (["motion", "dance.npz", "--audio", "song.wav", "--fps", "0", "-o",
                        "p.npz", "--audio-output", "a.wav"], "--fps"),
    "pose --workers 0": (["pose", "clip.mp4", "--workers", "0", "-o", "p.npz"], "--workers"),
    "render a huge --size": (["render", "dance.npz", "--audio", "song.wav", "--size",
                              "100000x100000", "-o", "r.mp4"], "--size"),
    "render an odd --size": (["render", "dance.npz", "--audio", "song.wav", "--size",
                              "641x360", "-o", "r.mp4"], "--size"),
    "render a --size of nothing": (["render", "dance.npz", "--audio", "song.wav", "--size",
                                    "0x0", "-o", "r.mp4"], "--size"),
    "evaluate --clip-s 0": (["evaluate", "--reference", "shards", "--clip-s", "0", "-o",
                             "eval"], "--clip-s"),
    "generate --seed -1": (["generate", "song.wav", "--checkpoint", "model.pt", "--seed", "-1",
                            "-o", "g.npz"], "--seed"),
    "train --seed -1": (["train", "--shards", "shards", "--out", "n.pt", "--seed", "-1"],
                        "seed=-1"),
    "evaluate --seed -5": (["evaluate", "--reference", "shards", "--seed", "-5", "-o", "eval"],
                           "--seed"),
}  # fmt: skip


@pytest.mark.parametrize("case", OUT_OF_RANGE, ids=str)
def test_class2_numbers_out_of_range_fail_at_once(case: str, work: Path, demo_shards: Path):
    argv, named = OUT_OF_RANGE[case]
    (work / "shards").symlink_to(demo_shards)
    dance = dance_with_fps(work, 1e6)
    argv = [arg.replace("{dance}", dance.name) for arg in argv]
    before = snapshot(work)
    result = kakashi(work, *argv, timeout=90)
    assert_refused(work, before, result, named)


@pytest.mark.parametrize("fps", [0.0, -30.0, float("nan"), float("inf"), 1e-9, 241.0])
def test_class2_every_reader_of_dances_refuses_an_absurd_fps(fps: float, work: Path):
    dance = dance_with_fps(work, fps)
    before = snapshot(work)
    result = kakashi(work, "export-bvh", dance.name, "-o", "d.bvh", timeout=60)
    assert_refused(work, before, result, dance.name, "fps is")


# ------------------------------------------------------------------ 3. no tracebacks

ORDINARY_MISTAKES = {
    "train -o an existing folder": (["train", "--shards", "shards", "--out", "dir"], "dir"),
    "generate -o an existing folder": (
        ["generate", "song.wav", "--checkpoint", "model.pt", "-o", "dir"], "dir"),
    "render -o an existing folder": (["render", "dance.npz", "--audio", "song.wav", "-o",
                                      "dir"], "dir"),
    "viewer -o an existing folder": (["viewer", "dance.npz", "--audio", "song.wav", "-o",
                                      "dir"], "dir"),
    "export-bvh -o an existing folder": (["export-bvh", "dance.npz", "-o", "dir"], "dir"),
    "export-dance -o an existing folder": (["export-dance", "shard.parquet", "-o", "dir"],
                                           "dir"),
    "features -o an existing folder": (["features", "song.wav", "-o", "dir"], "dir"),
    "cut -o an existing folder": (["cut", "source.avi", "-o", "dir", "--audio-output",
                                   "c.wav"], "dir"),
    "shard -o an existing folder": (
        ["shard", "--pose", "dance.npz", "--features", "features.npz", "--seq", "s", "--split",
         "test", "-o", "dir"], "dir"),
    "evaluate -o an existing file": (["evaluate", "--reference", "shards", "-o", "dance.npz"],
                                     "dance.npz"),
    "generate --shards -o an existing file": (
        ["generate", "--shards", "shards", "--checkpoint", "model.pt", "-o", "dance.npz"],
        "dance.npz"),
    "-o inside a file": (["export-bvh", "dance.npz", "-o", "song.wav/d.bvh"], "song.wav"),
    "generate a song shorter than one frame": (
        ["generate", "blip.wav", "--checkpoint", "model.pt", "-o", "g.npz"], "blip.wav"),
    "features a song shorter than one frame": (["features", "blip.wav", "-o", "f.npz"],
                                               "blip.wav"),
    "render a song of random bytes": (["render", "dance.npz", "--audio", "random.avi", "-o",
                                       "r.mp4"], "random.avi"),
    "generate from a song of random bytes": (
        ["generate", "random.avi", "--checkpoint", "model.pt", "-o", "g.npz"], "random.avi"),
    "generate from a checkpoint of random bytes": (
        ["generate", "song.wav", "--checkpoint", "random.avi", "-o", "g.npz"], "random.avi"),
    "shard from features of random bytes": (
        ["shard", "--pose", "dance.npz", "--features", "random.avi", "--seq", "s", "--split",
         "test", "-o", "s.parquet"], "random.avi"),
    "export-dance a shard of random bytes": (["export-dance", "random.avi", "-o", "d.npz"],
                                             "random.avi"),
    "a flag that is not a number": (["features", "song.wav", "--fps", "thirty", "-o",
                                     "f.npz"], "thirty"),
}  # fmt: skip


@pytest.mark.parametrize("case", ORDINARY_MISTAKES, ids=str)
def test_class3_ordinary_mistakes_are_one_line(case: str, work: Path, demo_shards: Path):
    import soundfile

    argv, named = ORDINARY_MISTAKES[case]
    (work / "shards").symlink_to(demo_shards)
    (work / "dir").mkdir()
    samples, rate = soundfile.read(work / "song.wav")
    soundfile.write(work / "blip.wav", samples[: rate // 100], rate)  # 10 ms of the song
    (work / "random.avi").write_bytes(np.random.default_rng(16).bytes(200_000))
    before = snapshot(work)
    result = kakashi(work, *argv)
    assert_refused(work, before, result, named)


# ------------------------------------------------------------------ 4. no partial files


def wait_for_partial(folder: Path, process: subprocess.Popen, timeout_s: float = 90) -> None:
    """Until the command has begun writing its hidden temporary output."""
    deadline = time.monotonic() + timeout_s
    while not list(folder.glob(".*.part.*")):
        assert process.poll() is None, process.communicate()
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no temporary output appeared within {timeout_s} s")
        time.sleep(0.05)


STOPPABLE = {
    "render": ["render", "dance.npz", "--audio", "song.wav", "--size", "1280x720",
               "--preset", "medium", "-o", "out.mp4"],
    "cut": ["cut", "source.avi", "-o", "out.mp4", "--audio-output", "out.wav"],
}  # fmt: skip


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("command", STOPPABLE)
def test_class4_a_stopped_command_leaves_nothing(command: str, signum, work: Path):
    # An existing output stays untouched until the new one is complete.
    (work / "out.mp4").write_bytes(b"the previous output")
    before = snapshot(work)
    process = subprocess.Popen(
        [sys.executable, "-m", "kakashi", *STOPPABLE[command]],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A test run started in the background (`pytest &`) inherits SIGINT ignored, and
        # Python then keeps ignoring it, as a background job should; Ctrl-C is what is tested.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_partial(work, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, stderr
    result = subprocess.CompletedProcess(process.args, process.returncode, "", stderr)
    assert_refused(work, before, result, signum.name)


def test_class4_a_failing_cut_leaves_no_moviepy_file(work: Path):
    # Half of the demo video, cut across the point where it stops decoding: ffmpeg's guess
    # of its length lets the cut start, and it fails only after moviepy wrote its own audio
    # file and both outputs' temporaries.
    data = (work / "source.avi").read_bytes()
    (work / "half.avi").write_bytes(data[: len(data) // 2])
    before = snapshot(work)
    result = kakashi(work, "cut", "half.avi", "--start", "25", "--end", "31", "-o", "c.mp4",
                     "--audio-output", "c.wav")  # fmt: skip
    assert_refused(work, before, result, "half.avi", "truncated", "only 29.")


def test_class4_tool_failures_always_say_why() -> None:
    from kakashi.errors import tool_reason

    assert tool_reason("", -9) == "stopped by SIGKILL, with no message"
    assert tool_reason("  \n", 1) == "exit status 1, with no message"
    assert tool_reason("a\nb\nc\nd") == "a b c"


# ------------------------------------------------------------------ 5. silent acceptance


def test_class5_a_truncated_video_fails_with_both_durations(work: Path):
    data = (work / "source.avi").read_bytes()
    (work / "half.avi").write_bytes(data[: len(data) // 2])
    before = snapshot(work)
    result = kakashi(work, "cut", "half.avi", "-o", "c.mp4", "--audio-output", "c.wav")
    line = assert_refused(work, before, result, "half.avi", "truncated", "62.88 s")
    assert "download or copy the file again" in line


def test_class5_a_span_inside_a_truncated_video_is_cut_with_a_warning(work: Path):
    data = (work / "source.avi").read_bytes()
    (work / "half.avi").write_bytes(data[: len(data) // 2])
    result = kakashi(work, "cut", "half.avi", "--end", "5", "-o", "c.mp4", "--audio-output",
                     "c.wav")  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warning) == 1 and "62.88 s" in warning[0] and "half.avi" in warning[0]
    assert (work / "c.mp4").is_file() and not list(work.glob(".*"))


def test_class5_end_past_the_end_warns(work: Path):
    result = kakashi(work, "cut", "source.avi", "--start", "61", "--end", "100", "-o", "c.mp4",
                     "--audio-output", "c.wav")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--end 100 s is past the end of source.avi (62.90 s)" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["cut", "random.avi", "-o", "c.mp4", "--audio-output", "c.wav"],
        ["features", "random.avi", "-o", "f.npz"],
        ["pose", "random.avi", "-o", "p.npz"],
        ["render", "dance.npz", "--audio", "song.wav", "--video", "random.avi", "-o", "r.mp4"],
        ["viewer", "dance.npz", "--audio", "random.avi", "-o", "v.html"],
    ],
    ids=lambda argv: argv[0] + (" --video" if "--video" in argv else ""),
)
def test_class5_random_bytes_named_avi_are_refused(argv: list[str], work: Path):
    (work / "random.avi").write_bytes(np.random.default_rng(5).bytes(300_000))
    before = snapshot(work)
    result = kakashi(work, *argv)
    assert_refused(work, before, result, "random.avi")


def test_class5_evaluate_refuses_mixed_frame_rates(work: Path, demo_shards: Path):
    (work / "gen").mkdir()
    shutil.copyfile(work / "dance.npz", work / "gen" / "dancer-c.npz")
    dance_with_fps(work, 25).rename(work / "gen" / "dancer-c__25fps.npz")
    before = snapshot(work)
    result = kakashi(work, "evaluate", "--reference", str(demo_shards), "--generated",
                     "m=gen", "-o", "eval")  # fmt: skip
    assert_refused(work, before, result, "different frame rates", "25 fps", "30 fps")


SHEETS = {
    "no header": ("a\tsource.avi\n", "is not a header"),
    "comma-separated": ("id,source\na,source.avi\n", "separated by commas"),
    "semicolon-separated": ("id;source\na;source.avi\n", "separated by semicolons"),
    "extra fields": ("id\tsource\na\tsource.avi\t12\n", "line 2: 3 fields but the header"),
    "ids equal but for case": ("id\tsource\nSalsa\tsource.avi\nsalsa\tsource.avi\n",
                               "only in case"),
    "empty": ("\n\n", "is empty"),
}  # fmt: skip


@pytest.mark.parametrize("case", SHEETS, ids=str)
def test_class5_sheet_messages_say_what_is_wrong(case: str, work: Path, demo_shards: Path):
    text, named = SHEETS[case]
    (work / "sheet.tsv").write_text(text)
    (work / "shards").symlink_to(demo_shards)
    before = snapshot(work)
    result = kakashi(work, "dataset", "info", "shards", "--sheet", "sheet.tsv")
    assert_refused(work, before, result, "sheet.tsv", named)


def test_class5_trailing_tabs_are_not_extra_fields(work: Path):
    from kakashi.sources import read_sheet

    (work / "sheet.tsv").write_text("id\tsource\na\tsource.avi\t\t\n")
    assert list(read_sheet(work / "sheet.tsv").index) == ["a"]


# ------------------------------------------------------------------ 6. round 3 (issue 29)


def save_dance(folder: Path, name: str, **changes) -> None:
    """The real dance with some arrays replaced, written as a user's tool would."""
    with np.load(folder / "dance.npz") as data:
        arrays = dict(data)
    arrays.update(changes)
    np.savez(folder / name, **arrays)


def write_zip_of_zeros(path: Path, members: dict[str, tuple[bytes, int]]) -> None:
    """A deflated zip whose members are ``header`` then ``size`` zero bytes: megabytes on
    disk, gigabytes inflated (written in chunks: the test never holds them)."""
    import zipfile

    chunk = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, (header, size) in members.items():
            with archive.open(name, "w", force_zip64=True) as member:
                member.write(header)
                for start in range(0, size, len(chunk)):
                    member.write(chunk[: min(len(chunk), size - start)])


def npy_header(shape: tuple[int, ...]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": "<f4", "fortran_order": False, "shape": shape}
    )
    return buffer.getvalue()


def make_round3(folder: Path) -> None:
    """Issue 29's hostile inputs, beside the real ones."""
    from kakashi.outputs.bvh import export_bvh

    for name in ("loop.npz", "loop.wav", "loop.pt"):
        (folder / name).symlink_to(name)
    (folder / "loop-a.npz").symlink_to("loop-b.npz")
    (folder / "loop-b.npz").symlink_to("loop-a.npz")
    os.mkfifo(folder / "fifo.bvh")
    os.mkfifo(folder / "fifo.wav")
    (folder / "folder.avi").mkdir()
    with np.load(folder / "dance.npz") as data:
        pose, root = data["pose"], data["root"]
    frames = len(pose)

    def at(array, frame, value):
        array = array.copy()
        array[frame:] = value
        return array

    save_dance(folder, "root1e30.npz", root=at(root, 5, 1e30))
    save_dance(folder, "root3e38.npz", root=at(root, 5, 3e38))
    save_dance(folder, "pose1e30.npz", pose=at(pose, 7, 1e30))
    save_dance(folder, "jump1e6.npz", root=root + at(np.zeros_like(root), 100, 1e6))
    save_dance(folder, "jump50.npz", root=root + at(np.zeros_like(root), 100, 50.0))
    save_dance(folder, "millimetres.npz", pose=(pose * 1000).astype(np.int64))
    save_dance(folder, "nanroot.npz", root=at(root, frames - 3, np.nan))
    save_dance(folder, "oneframe.npz", pose=pose[:1], root=root[:1], conf=np.ones(1))
    # 10 million frames: 9.4 MB compressed, 2.2 GB decoded.
    huge = 10_000_000
    write_zip_of_zeros(
        folder / "huge.npz",
        {
            "pose.npy": (npy_header((huge, 17, 3)), huge * 17 * 3 * 4),
            "root.npy": (npy_header((huge, 3)), huge * 3 * 4),
        },
    )
    import zipfile

    with zipfile.ZipFile(folder / "huge.npz", "a") as archive, archive.open("fps.npy", "w") as fps:
        np.lib.format.write_array(fps, np.float64(30))
    # A 2-MB "checkpoint" that inflates to 2.3 GB.
    write_zip_of_zeros(folder / "bomb.pt", {"archive/data.pkl": (b"", 2_300_000_000)})
    export_bvh(folder / "dance.npz", folder / "good.bvh")
    text = (folder / "good.bvh").read_text()
    frame_time = next(line for line in text.splitlines() if line.startswith("Frame Time"))
    for name, value in (("nan", "nan"), ("tiny", "1e-300")):
        (folder / f"frametime-{name}.bvh").write_text(
            text.replace(frame_time, f"Frame Time: {value}")
        )
    joints = "".join(f"JOINT j{i}\n{{\nOFFSET 0 1 0\nCHANNELS 0\n}}\n" for i in range(10_000))
    (folder / "joints.bvh").write_text(
        "HIERARCHY\nROOT hips\n{\nOFFSET 0 0 0\nCHANNELS 3 Xposition Yposition Zposition\n"
        f"{joints}}}\nMOTION\nFrames: 2\nFrame Time: 0.0333333\n0 0 0\n0 0 0\n"
    )
    (folder / "random.mp3").write_bytes(np.random.default_rng(29).bytes(100_000))
    # An ID3 tag declaring 200 MB, in a 5-KB file.
    size = 200_000_000
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    (folder / "id3.mp3").write_bytes(b"ID3\x03\x00\x00" + syncsafe + bytes(5000))
    (folder / "sheet-proc.tsv").write_text("id\tsource\nenv\t/proc/self/environ\n")
    (folder / "sheet-nul.tsv").write_text("id\tsource\na\x00b\tsource.avi\n")
    (folder / "sheet-fifo.tsv").write_text("id\tsource\npipe\tfifo.bvh\n")


GEN = ["generate", "song.wav", "--checkpoint", "model.pt"]
MOTION = ["--audio", "song.wav", "-o", "p.npz", "--audio-output", "a.wav"]
ROUND3 = {
    # symbolic link loops: input, output, song, checkpoint
    "a dance that is a link loop": (["export-bvh", "loop.npz", "-o", "d.bvh"],
                                    "symbolic link loop"),
    "a two-link loop": (["viewer", "loop-a.npz", "--audio", "song.wav", "-o", "v.html"],
                        "symbolic link loop"),
    "-o a link loop": (["export-bvh", "dance.npz", "-o", "loop.npz"], "symbolic link loop"),
    "a song that is a link loop": (["generate", "loop.wav", "--checkpoint", "model.pt", "-o",
                                    "g.npz"], "loop.wav"),
    "a checkpoint that is a link loop": (["generate", "song.wav", "--checkpoint", "loop.pt",
                                          "-o", "g.npz"], "loop.pt"),
    # pipes, devices, folders, kernel files: told before anything opens them
    "motion from a named pipe": (["motion", "fifo.bvh", *MOTION], "named pipe"),
    "features from a named pipe": (["features", "fifo.wav", "-o", "f.npz"], "named pipe"),
    "features from /dev/zero": (["features", "/dev/zero", "-o", "f.npz"], "is a device"),
    "render with /proc/self/environ": (["render", "dance.npz", "--audio", "/proc/self/environ",
                                        "-o", "r.mp4"], "kernel file"),
    "-o /dev/null": (["export-bvh", "dance.npz", "-o", "/dev/null"], "/dev"),
    "cut a folder named .avi": (["cut", "folder.avi", "-o", "c.mp4", "--audio-output",
                                 "c.wav"], "is a folder, not a file"),
    "pose a folder named .avi": (["pose", "folder.avi", "-o", "p.npz"],
                                 "is a folder, not a file"),
    "render --video a folder named .avi": (["render", "dance.npz", "--audio", "song.wav",
                                            "--video", "folder.avi", "-o", "r.mp4"],
                                           "is a folder, not a file"),
    "a sheet row of /proc/self/environ": (["dataset", "info", "shards", "--sheet",
                                           "sheet-proc.tsv"], "kernel file under /proc"),
    "a sheet row of a named pipe": (["dataset", "info", "shards", "--sheet",
                                     "sheet-fifo.tsv"], "named pipe"),
    "a sheet with a NUL byte": (["dataset", "info", "shards", "--sheet", "sheet-nul.tsv"],
                                "line 2: holds a NUL byte"),
    # absurd magnitudes: every reader of dances goes through Dance.load
    "render a root of 1e30 m": (["render", "root1e30.npz", "--audio", "song.wav", "-o",
                                 "r.mp4"], "10000 m bound"),
    "viewer a root of 3e38 m": (["viewer", "root3e38.npz", "--audio", "song.wav", "-o",
                                 "v.html"], "10000 m bound"),
    "export-bvh a pose of 1e30 m": (["export-bvh", "pose1e30.npz", "-o", "d.bvh"],
                                    "5 m bound"),
    "export-bvh a 1e6-m root jump": (["export-bvh", "jump1e6.npz", "-o", "d.bvh"],
                                     "at frame 100"),
    "render a 50-m root jump in one frame": (["render", "jump50.npz", "--audio", "song.wav",
                                              "-o", "r.mp4"], "moves 50 m in one frame"),
    "viewer an int64 pose in millimetres": (["viewer", "millimetres.npz", "--audio",
                                             "song.wav", "-o", "v.html"], "int64"),
    "export-bvh a NaN root": (["export-bvh", "nanroot.npz", "-o", "d.bvh"], "3 frame(s)"),
    "render a 1-frame dance with a longer song": (["render", "oneframe.npz", "--audio",
                                                   "song.wav", "-o", "r.mp4"], "lasts 0.03 s"),
    "viewer a 1-frame dance with a longer song": (["viewer", "oneframe.npz", "--audio",
                                                   "song.wav", "-o", "v.html"], "lasts 0.03 s"),
    # BVH timing and size
    "motion a BVH of Frame Time nan": (["motion", "frametime-nan.bvh", *MOTION],
                                       "Frame Time is nan"),
    "motion a BVH of Frame Time 1e-300": (["motion", "frametime-tiny.bvh", *MOTION],
                                          "Frame Time is 1e-300"),
    "motion a BVH of 10,000 joints": (["motion", "joints.bvh", *MOTION], "more than 1000"),
    # memory: refused by declared size, before decoding
    "export-bvh a 10-million-frame dance": (["export-bvh", "huge.npz", "-o", "d.bvh"],
                                            "10000000 frames"),
    "--start-pose a 10-million-frame dance": ([*GEN, "--start-pose", "huge.npz", "-o",
                                               "g.npz"], "10000000 frames"),
    "a zip-bomb checkpoint": (["generate", "song.wav", "--checkpoint", "bomb.pt", "-o",
                               "g.npz"], "declares 2300 MB"),
    # numbers
    "a seed past 2**32": ([*GEN, "--seed", "1180591620717411303424", "-o", "g.npz"],
                          "--seed"),
    # audio messages that say what is wrong
    "random bytes named .mp3": (["features", "random.mp3", "-o", "f.npz"],
                                "no audio stream found"),
    "an MP3 whose ID3 tag runs past its end": (["generate", "id3.mp3", "--checkpoint",
                                                "model.pt", "-o", "g.npz"], "ID3 tag declares"),
}  # fmt: skip


@pytest.fixture(scope="module")
def round3(base: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("round3")
    for path in base.iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    make_round3(folder)
    return folder


@pytest.mark.parametrize("case", ROUND3, ids=str)
def test_class6_round3_inputs_are_one_line(case: str, round3: Path, demo_shards: Path):
    import resource

    argv, named = ROUND3[case]
    if not (round3 / "shards").exists():
        (round3 / "shards").symlink_to(demo_shards)
    before = snapshot(round3)
    result = kakashi(round3, *argv, timeout=60)  # a pipe opened would block: it times out
    line = assert_refused(round3, before, result, named)
    assert len(line) < 400, line  # short: no list of 10,000 joints
    # Bounded memory: no command ever held the 2.2-GB dance or the 2.3-GB bomb.
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss < 1_500_000  # KB


def test_class6_a_seed_past_2_32_fails_before_the_model_loads(round3: Path):
    # bomb.pt is refused when loaded: the seed's error coming instead shows it came first.
    result = kakashi(round3, "generate", "song.wav", "--checkpoint", "bomb.pt", "--seed",
                     str(2**70), "-o", "g.npz")  # fmt: skip
    assert "maximum of 4294967295" in error_line(result)


def test_class6_start_pose_reads_one_pose(round3: Path):
    from kakashi.dance import Dance

    whole = Dance.load(round3 / "dance.npz")
    first = Dance.load(round3 / "dance.npz", frames=1)
    assert len(first) == 1 and len(whole) > 1
    np.testing.assert_array_equal(first.pose[0], whole.pose[0])
    np.testing.assert_array_equal(first.root[0], whole.root[0])


def test_class6_a_dance_shorter_than_its_song_by_a_few_frames_still_renders(
    round3: Path, tmp_path: Path
):
    # The shard stage trims up to align.tolerance_frames: those dances are the songs' own.
    with np.load(round3 / "dance.npz") as data:
        arrays = dict(data)
    for key in ("pose", "root", "conf"):
        arrays[key] = arrays[key][:-3]
    np.savez(tmp_path / "short.npz", **arrays)
    shutil.copyfile(round3 / "song.wav", tmp_path / "song.wav")
    result = kakashi(tmp_path, "viewer", "short.npz", "--audio", "song.wav", "-o", "v.html")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "v.html").is_file()


def test_class6_the_numba_lock_wait_says_what_it_waits_for(round3: Path, tmp_path: Path):
    """Another process holds the warm-up lock: `features` says so within seconds, in the
    user's own cache folder (not a predictable name in /tmp), and gives up after a bound."""
    import fcntl

    from kakashi import features

    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    lock_path = tmp_path / "cache" / "kakashi" / "numba-warm-up.lock"
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        process = subprocess.Popen(
            [sys.executable, "-m", "kakashi", "features", "song.wav", "-o", "f.npz"],
            cwd=round3, env=env, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(8)
        process.kill()
        _, stderr = process.communicate(timeout=30)
    assert "waiting for the numba warm-up lock" in stderr and str(lock_path) in stderr
    assert "giving up after 600 s" in stderr
    # The bound, in-process (600 s would be a long test): the error names the lock.
    with open(lock_path, "a") as held, open(lock_path, "a") as mine:
        fcntl.flock(held, fcntl.LOCK_EX)
        original, features.WARM_UP_WAIT_S = features.WARM_UP_WAIT_S, 0.5
        try:
            with pytest.raises(features.MediaError, match="fuser"):
                features._lock(mine, lock_path)
        finally:
            features.WARM_UP_WAIT_S = original


def test_class6_a_folder_at_the_numba_lock_is_one_line(round3: Path, tmp_path: Path):
    (tmp_path / "cache" / "kakashi" / "numba-warm-up.lock").mkdir(parents=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    before = snapshot(round3)
    result = kakashi(round3, "features", "song.wav", "-o", "f.npz", env=env)
    assert_refused(round3, before, result, "numba-warm-up.lock", "XDG_CACHE_HOME")


# ------------------------------------------------------------------ every command is guarded


def test_every_command_declares_what_it_reads_and_writes():
    from kakashi.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        for leaf in nested[0].choices.values() if nested else [sub]:
            assert callable(leaf.get_default("paths")), name
