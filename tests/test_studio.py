"""kakashi studio: a real uvicorn server on a free port with a real motiongraph checkpoint
trained on the demo shards, driven through its JSON API and by headless Chromium."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile

from conftest import DEMO, REPO, headless_chromium
from kakashi.cli import main
from kakashi.cli.studio import is_loopback
from kakashi.dance import Dance
from test_viewer import wait_for

SONG = DEMO / "music" / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"  # 61.5 s
OTHER_SONG = DEMO / "music" / "Karissa_Hobbs_-_Lets_Go_Fishin.hq.ogg"
MAX_UPLOAD_MB = 2.0  # small, so the oversize test needs only a 3-MB file


@pytest.fixture(scope="module")
def model_dir(demo_shards: Path, tmp_path_factory) -> Path:
    """motiongraph trained on the demo shards (seconds), a copy of it scored worse by a
    metrics.json one folder up (as results/eval is to results/models), a damaged one."""
    root = tmp_path_factory.mktemp("studio_models")
    models = root / "models"
    out = models / "motiongraph.pt"
    command = ["train", "--model", "motiongraph", "--shards", str(demo_shards)]
    assert main([*command, "--out", str(out), "--no-progress"]) == 0
    shutil.copy(out, models / "copy.pt")
    (models / "broken.pt").write_text("not a checkpoint")
    (root / "eval").mkdir()
    rows = [
        {"name": "ground_truth", "kind": "ground_truth", "fid_k": 0.5},
        {"name": "copy", "kind": "model", "fid_k": 9.0, "fid_g": 1.0},
        {"name": "motiongraph", "kind": "model", "fid_k": 3.0, "fid_g": 2.0, "bas": 0.25},
    ]
    (root / "eval" / "metrics.json").write_text(json.dumps({"rows": rows}))
    return models


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Studio:
    def __init__(self, url: str, app, work_dir: Path) -> None:
        self.url, self.app, self.work_dir = url, app, work_dir

    @property
    def board(self):
        return self.app.state.board

    def post(self, path: Path | bytes, name: str = "song.ogg", **fields) -> requests.Response:
        body = path if isinstance(path, bytes) else Path(path).read_bytes()
        files = {"song": (name, io.BytesIO(body), "application/octet-stream")}
        return requests.post(f"{self.url}/api/dances", files=files, data=fields, timeout=120)

    def wait(self, dance_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = requests.get(f"{self.url}/api/dances/{dance_id}", timeout=10).json()
            assert 0 <= status["progress"] <= 1
            if status["status"] in ("done", "failed"):
                return status
            time.sleep(0.2)
        raise AssertionError(f"dance {dance_id} not finished after {timeout} s: {status}")


@pytest.fixture(scope="module")
def studio(model_dir: Path, tmp_path_factory):
    """The studio's real app under a real uvicorn, in a thread, with 2 worker processes."""
    import uvicorn

    from kakashi.studio.app import StudioSettings, create_app

    work_dir = tmp_path_factory.mktemp("studio_work")
    settings = StudioSettings(
        models=[str(model_dir)], work_dir=work_dir, workers=2, max_upload_mb=MAX_UPLOAD_MB
    )
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield Studio(f"http://127.0.0.1:{port}", app, work_dir)
    server.should_exit = True
    thread.join(timeout=30)
    # Shutdown removes every temporary file: only finished results and songs remain.
    assert not list(work_dir.rglob(".*.part*"))


def clip(tmp_path: Path, seconds: float, start_s: float = 20.0, song: Path = SONG) -> Path:
    """A WAV of ``seconds`` of a demo song (mono, 22.05 kHz: small uploads)."""
    import librosa

    samples, sr = librosa.load(song, sr=22050, mono=True, offset=start_s, duration=seconds)
    path = tmp_path / f"clip-{song.stem}-{start_s:g}-{seconds:g}.wav"
    soundfile.write(path, samples, sr)
    return path


def test_models_listed_with_metrics_best_preselected(studio: Studio) -> None:
    listing = requests.get(f"{studio.url}/api/models", timeout=10).json()
    models = {model["id"]: model for model in listing["models"]}
    assert set(models) == {"motiongraph", "copy", "broken"}  # *.last.pt files are not models
    assert listing["best"] == "motiongraph" and models["motiongraph"]["best"]
    assert models["motiongraph"]["metrics"] == {"fid_k": 3.0, "fid_g": 2.0, "bas": 0.25}
    assert not models["broken"]["usable"] and "damaged" in models["broken"]["problem"]
    # The framework documents the API.
    schema = requests.get(f"{studio.url}/openapi.json", timeout=10).json()
    assert {"/api/models", "/api/dances", "/api/dances/{dance_id}"} <= set(schema["paths"])
    docs = requests.get(f"{studio.url}/docs", timeout=10).text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs  # offline
    asset = requests.get(f"{studio.url}/docs-assets/swagger-ui-bundle.js", timeout=10)
    assert asset.status_code == 200 and len(asset.content) > 100_000


def test_a_song_becomes_a_dance_as_long_as_the_song(studio: Studio, tmp_path: Path) -> None:
    answer = studio.post(SONG, name=SONG.name)
    assert answer.status_code == 202, answer.text
    dance_id = answer.json()["id"]
    status = studio.wait(dance_id)
    assert status["status"] == "done", status
    assert status["progress"] == 1 and status["request"]["model"] == "motiongraph"

    files = {}
    for name in ("dance.npz", "dance.bvh", "dance.glb", "dance.html"):
        got = requests.get(f"{studio.url}/api/dances/{dance_id}/{name}", timeout=60)
        assert got.status_code == 200, (name, got.text[:200])
        files[name] = got.content
    (tmp_path / "dance.npz").write_bytes(files["dance.npz"])
    dance = Dance.load(tmp_path / "dance.npz")
    assert len(dance) == round(soundfile.info(SONG).duration * dance.fps)
    assert dance.meta["model"] == "motiongraph" and dance.meta["seed"] == 0
    assert files["dance.bvh"].startswith(b"HIERARCHY")
    assert files["dance.glb"][:4] == b"glTF"  # the character, as the studio's download
    assert b"data:audio/ogg;base64," in files["dance.html"]

    # The same request again is the same job, answered from the cache.
    runs = studio.board.runs
    again = studio.post(SONG, name="renamed.ogg")
    assert again.json()["id"] == dance_id and again.json()["status"] == "done"
    assert studio.board.runs == runs


def bad_inputs(tmp_path: Path) -> dict[str, tuple[dict, int, str]]:
    """name -> (request, expected status, words the message must contain)."""
    sr = 22050
    half_second = tmp_path / "half.wav"
    soundfile.write(half_second, 0.3 * np.sin(np.arange(sr // 2) * 0.1), sr)
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(3 * sr), sr)
    oversize = tmp_path / "oversize.wav"  # 3 MB of real audio, above the 2-MB limit
    soundfile.write(oversize, np.random.default_rng(0).uniform(-0.3, 0.3, 1_500_000), sr)
    damaged = tmp_path / "damaged.ogg"  # a real OGG header, then garbage
    damaged.write_bytes(SONG.read_bytes()[:8000] + os.urandom(200_000))
    text = b"this is not a song\n" * 100
    song = clip(tmp_path, 4.0)
    return {
        "text named .mp3": ({"path": text, "name": "song.mp3"}, 422, "cannot be decoded as audio"),
        "0.5-s clip": ({"path": half_second}, 422, "at least 1 s"),
        "silence": ({"path": silence}, 422, "silent"),
        "damaged ogg": ({"path": damaged}, 422, "cannot be decoded as audio"),
        "oversize": ({"path": oversize}, 413, "larger than the limit of 2 MB"),
        "path traversal name, text": (
            {"path": text, "name": "../../../../tmp/evil.mp3"}, 422, "cannot be decoded as audio"
        ),
        "unknown model": ({"path": song, "model": "nope"}, 404, "unknown model 'nope'"),
        "damaged checkpoint": ({"path": song, "model": "broken"}, 409, "damaged"),
        "bad seed": ({"path": song, "seed": "-1"}, 422, "seed"),
        "start pose path": ({"path": song, "start": "/etc/passwd"}, 422, "start pose"),
    }  # fmt: skip


def test_bad_inputs_get_clear_4xx_json_and_the_server_keeps_serving(
    studio: Studio, tmp_path: Path
) -> None:
    songs_before = sorted(p.name for p in (studio.work_dir / "songs").iterdir())
    failures = []
    for name, (request, status, words) in bad_inputs(tmp_path).items():
        answer = studio.post(**request)
        body = answer.json()
        if answer.status_code != status or words not in body.get("error", ""):
            failures.append((name, answer.status_code, body))
        alive = requests.get(f"{studio.url}/api/models", timeout=10)
        assert alive.status_code == 200, f"after {name}"
    assert not failures, failures
    # Nothing refused was stored, and no temporary file stays behind.
    assert sorted(p.name for p in (studio.work_dir / "songs").iterdir()) == songs_before
    assert not list(studio.work_dir.rglob(".*.part*"))
    assert not Path("/tmp/evil.mp3").exists()

    missing = requests.post(f"{studio.url}/api/dances", data={"seed": "1"}, timeout=10)
    assert missing.status_code == 422 and "field 'song'" in missing.json()["error"]
    unknown = requests.get(f"{studio.url}/api/dances/0123456789abcdef0123", timeout=10)
    assert unknown.status_code == 404 and "POST a song" in unknown.json()["error"]


def test_a_path_traversal_file_name_is_never_a_path(studio: Studio, tmp_path: Path) -> None:
    song = clip(tmp_path, 3.0, start_s=5.0)
    answer = studio.post(song, name="../../../../tmp/evil.wav", seed="5")
    assert answer.status_code == 202, answer.text
    stored = answer.json()["request"]["song"]
    assert stored == f"{answer.json()['request']['song_sha256']}.wav"
    assert (studio.work_dir / "songs" / stored).is_file()
    assert not Path("/tmp/evil.wav").exists()
    assert studio.wait(answer.json()["id"])["status"] == "done"


def test_a_finished_dance_gives_the_start_pose(studio: Studio, tmp_path: Path) -> None:
    first = studio.post(clip(tmp_path, 3.0, start_s=12.0), seed="8").json()["id"]
    assert studio.wait(first)["status"] == "done"
    answer = studio.post(clip(tmp_path, 3.0, start_s=44.0), seed="8", start=first)
    assert answer.status_code == 202, answer.text
    second = answer.json()["id"]
    assert studio.wait(second)["status"] == "done"
    poses = []
    for dance_id in (first, second):
        path = tmp_path / f"{dance_id}.npz"
        path.write_bytes(requests.get(f"{studio.url}/api/dances/{dance_id}/dance.npz").content)
        poses.append(Dance.load(path).pose[0])
    np.testing.assert_allclose(poses[1], poses[0], atol=1e-3)


def test_simultaneous_requests_identical_pairs_run_once(studio: Studio, tmp_path: Path) -> None:
    """8 requests at once, 4 distinct songs in identical pairs, on 2 workers: all complete,
    each pair is one job, none is lost."""
    songs = [clip(tmp_path, 5.0, start_s) for start_s in (1.0, 11.0, 31.0)]
    songs.append(clip(tmp_path, 5.0, 40.0, OTHER_SONG))
    runs = studio.board.runs
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda song: studio.post(song, seed="11"), songs * 2))
    assert all(answer.status_code == 202 for answer in answers), [a.text for a in answers]
    ids = [answer.json()["id"] for answer in answers]
    assert ids[:4] == ids[4:] and len(set(ids)) == 4
    assert studio.board.runs == runs + 4
    for dance_id in set(ids):
        status = studio.wait(dance_id)
        assert status["status"] == "done", status
        assert status["result"]["frames"] == round(5.0 * status["result"]["fps"])


def test_an_oversize_upload_without_a_length_is_cut_while_streaming(studio: Studio) -> None:
    boundary = "kakashi-test-boundary"

    def body():  # no Content-Length: requests sends it chunked, as it comes
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="song"; filename="a.wav"'
        yield f"{head}\r\nContent-Type: audio/wav\r\n\r\n".encode()
        for _ in range(40):  # 4 MB, twice the limit
            yield bytes(100_000)
        yield f"\r\n--{boundary}--\r\n".encode()

    answer = requests.post(
        f"{studio.url}/api/dances",
        data=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=60,
    )
    assert answer.status_code == 413 and "larger than the limit" in answer.json()["error"]
    assert requests.get(f"{studio.url}/api/models", timeout=10).status_code == 200


def _workers(pid: int) -> list[int]:
    """The studio's worker processes among ``pid``'s children."""
    return [
        child
        for child in _children(pid)
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


def test_a_killed_worker_fails_its_job_and_the_next_one_runs(
    studio: Studio, tmp_path: Path
) -> None:
    import signal

    dance_id = studio.post(SONG, seed="77").json()["id"]
    while requests.get(f"{studio.url}/api/dances/{dance_id}", timeout=10).json()["status"] != (
        "running"
    ):
        time.sleep(0.05)
    for pid in _workers(os.getpid()):  # as the kernel's out-of-memory killer would
        os.kill(pid, signal.SIGKILL)
    status = studio.wait(dance_id)
    assert status["status"] == "failed" and "worker process died" in status["error"]
    again = studio.post(clip(tmp_path, 3.0, start_s=33.0), seed="77").json()["id"]
    assert studio.wait(again)["status"] == "done"


def test_mp4_is_rendered_on_demand(studio: Studio, tmp_path: Path) -> None:
    answer = studio.post(clip(tmp_path, 3.0, start_s=50.0), seed="2")
    dance_id = answer.json()["id"]
    assert studio.wait(dance_id)["status"] == "done"
    url = f"{studio.url}/api/dances/{dance_id}/dance.mp4"
    first = requests.get(url, timeout=30)
    assert first.status_code == 202 and first.json()["kind"] == "render"
    deadline = time.monotonic() + 300
    while (got := requests.get(url, timeout=30)).status_code == 202:
        assert time.monotonic() < deadline, "the MP4 did not render"
        time.sleep(0.5)
    assert got.status_code == 200 and got.content[4:8] == b"ftyp"


def test_non_loopback_hosts_are_warned_about(tmp_path: Path, capsys) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    # Through the command: the warning first, then no checkpoints is a one-line error.
    command = ["studio", "--host", "0.0.0.0", "--models", str(tmp_path)]
    assert main([*command, "--work-dir", str(tmp_path / "work")]) == 1
    err = capsys.readouterr().err
    assert "warning: the studio on 0.0.0.0 has no login" in err
    assert f"kakashi: error: no checkpoints under {tmp_path}" in err


@pytest.fixture
def chromium():
    driver = headless_chromium(size="1200,700")
    try:
        yield driver
    finally:
        driver.quit()


def test_page_uploads_a_song_and_plays_the_dance(studio: Studio, chromium, tmp_path: Path) -> None:
    page = requests.get(studio.url, timeout=10).text
    assert "http://" not in page and "https://" not in page  # offline: nothing external

    chromium.get(studio.url)
    wait_for(chromium, "return window.kakashiStudio.models !== null")
    assert chromium.execute_script("return document.getElementById('model').value") == (
        "motiongraph"
    )
    assert "fid_k 3.00" in chromium.find_element("id", "metrics").text
    # A bad file: the server's message in the page, and the page still works after it.
    bad = tmp_path / "bad.mp3"
    bad.write_text("not a song\n" * 50)
    chromium.find_element("id", "song").send_keys(str(bad))
    chromium.find_element("id", "dance").click()
    wait_for(chromium, "return window.kakashiStudio.error", 60)
    message = chromium.find_element("id", "message")
    assert "cannot be decoded as audio" in message.text
    assert "error" in message.get_attribute("class")

    song = clip(tmp_path, 12.0, start_s=25.0)
    chromium.find_element("id", "song").clear()
    chromium.find_element("id", "song").send_keys(str(song))
    seed = chromium.find_element("id", "seed")
    seed.clear()
    seed.send_keys("3")
    chromium.find_element("id", "dance").click()
    status = wait_for(
        chromium,
        "const s = window.kakashiStudio.status; "
        "return s && (s.status === 'done' || s.status === 'failed') && s",
        timeout=300,
    )
    assert status["status"] == "done" and status["progress"] == 1, status
    assert chromium.execute_script("return document.getElementById('progress').value") == 1
    assert "100 %" in chromium.find_element("id", "stage").text

    # The viewer plays in the iframe.
    frame = chromium.find_element("id", "viewer")
    chromium.switch_to.frame(frame)
    wait_for(chromium, "return window.kakashiViewer && window.kakashiViewer.renders > 2", 60)
    chromium.find_element("id", "play").click()
    wait_for(chromium, "return window.kakashiViewer.time > 0.5", 30)
    assert chromium.execute_script("return window.kakashiViewer.drawnJoints") == 17
    chromium.switch_to.default_content()

    # Another take: a new seed, listed beside the first.
    chromium.find_element("id", "another").click()
    wait_for(chromium, "return document.querySelectorAll('.take').length === 2", 30)
    wait_for(
        chromium,
        "const s = window.kakashiStudio.status; return s && s.status === 'done' && "
        "window.kakashiStudio.takes.length === 2 && s.id === window.kakashiStudio.takes[1].id",
        timeout=300,
    )
    links = chromium.find_elements("css selector", ".take a")
    assert {link.text for link in links} == {"npz", "bvh", "glb", "html", "mp4"}
    assert len(links) == 10

    # The MP4 of the first take: rendered on demand, its progress shown in the take.
    mp4 = chromium.find_elements("css selector", ".take a")[-1]
    assert mp4.text == "mp4"
    mp4.click()
    note = "return document.querySelectorAll('.take .render')[1].textContent"
    wait_for(chromium, note + ".includes('MP4 ready')", 300)

    shot = tmp_path / "studio.png"
    chromium.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # The README's screenshot is refreshed on request only: tests do not write the repo.
    if os.environ.get("KAKASHI_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "studio.png")


def _children(pid: int) -> set[int]:
    """Direct child processes of ``pid`` (the studio's workers), from /proc."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def test_ctrl_c_stops_running_jobs_and_leaves_no_partial_file(
    model_dir: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys

    port = free_port()
    work = tmp_path / "work"
    command = [sys.executable, "-m", "kakashi", "studio", "--models", str(model_dir)]
    command += ["--port", str(port), "--workers", "1", "--work-dir", str(work)]
    # This checkout's kakashi, as the in-process tests use, whatever the venv has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *sys.path])}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"{url}/api/models", timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, "no server"
                time.sleep(0.2)
        studio = Studio(url, None, work)
        dance_id = studio.post(SONG, seed="99").json()["id"]
        while requests.get(f"{url}/api/dances/{dance_id}", timeout=10).json()["status"] != (
            "running"
        ):
            time.sleep(0.05)
        workers = _children(server.pid)
        assert workers
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    # The workers (and multiprocessing's resource tracker) end with the server.
    deadline = time.monotonic() + 10
    while alive := [pid for pid in workers if Path(f"/proc/{pid}").exists()]:
        assert time.monotonic() < deadline, f"processes left behind: {alive}"
        time.sleep(0.1)
    assert not list(work.rglob(".*.part*"))
    # Whatever was written before Ctrl-C is whole (atomic writes): here the dance, if any.
    dance_file = work / "dances" / dance_id / "dance.npz"
    if dance_file.exists():
        assert len(Dance.load(dance_file)) == round(soundfile.info(SONG).duration * 30)


def test_preselection_skips_a_model_that_does_not_dance(tmp_path: Path) -> None:
    """Lowest FID_k wins only among lively, unfrozen models (FID can prefer a frozen one)."""
    import torch

    from kakashi.studio.catalog import find_models

    models = tmp_path / "models"
    models.mkdir()
    for name in ("frozen", "dancer", "jerky"):
        torch.save({"format": "not needed here"}, models / f"{name}.pt")
    rows = [
        {"name": "frozen", "kind": "model", "fid_k": 90.0, "liveliness": 0.45, "freeze_max_s": 2.5},
        {"name": "dancer", "kind": "model", "fid_k": 95.0, "liveliness": 1.01, "freeze_max_s": 0.4},
        {"name": "jerky", "kind": "model", "fid_k": 80.0, "liveliness": 1.9, "freeze_max_s": 0.2},
    ]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"rows": rows}))
    assert find_models([models]).best == "dancer"
    # nobody dances: the lowest FID_k after all
    rows[1]["liveliness"] = 0.3
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"rows": rows}))
    assert find_models([models]).best == "jerky"
