"""kakashi studio: a real uvicorn server on a free port with a real motiongraph checkpoint
trained on the demo shards, driven through its JSON API and by headless Chromium."""

from __future__ import annotations

import contextlib
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
from kakashi.studio.jobs import job_id
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
    write_malicious_checkpoints(models)
    (root / "eval").mkdir()
    rows = [
        {"name": "ground_truth", "kind": "ground_truth", "fid_k": 0.5},
        {"name": "copy", "kind": "model", "fid_k": 9.0, "fid_g": 1.0},
        {"name": "motiongraph", "kind": "model", "fid_k": 3.0, "fid_g": 2.0, "bas": 0.25},
    ]
    (root / "eval" / "metrics.json").write_text(json.dumps({"rows": rows}))
    return models


class _RunsCode:
    """What a hostile checkpoint pickles: unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, (f"touch {PWNED}",))


PWNED = Path("/tmp/kakashi-studio-pwned")


def write_malicious_checkpoints(models: Path) -> None:
    """evil.pt: a real torch.save archive whose pickle calls os.system; bomb.pt: a zip
    whose member unpacks to 60 MB from a few kB."""
    import zipfile

    import torch

    torch.save({"format": "kakashi-dance-model", "payload": _RunsCode()}, models / "evil.pt")
    with zipfile.ZipFile(models / "bomb.pt", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("bomb/data/0", bytes(60_000_000))


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
            assert 0 <= status.get("progress", -1) <= 1, (dance_id, status)
            if status["status"] in ("done", "failed"):
                return status
            time.sleep(0.2)
        raise AssertionError(f"dance {dance_id} not finished after {timeout} s: {status}")


HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 4.0


@contextlib.contextmanager
def serve(model_dir: Path, work_dir: Path, **options):
    """The studio's real app under a real uvicorn (the command's configuration: timeouts,
    no proxy headers), in a thread, with 2 worker processes."""
    import uvicorn

    from kakashi.studio.app import StudioSettings, create_app
    from kakashi.studio.server import server_config

    settings = StudioSettings(
        models=[str(model_dir)],
        work_dir=work_dir,
        workers=2,
        max_upload_mb=MAX_UPLOAD_MB,
        body_timeout_s=BODY_TIMEOUT_S,
        **options,
    )
    app = create_app(settings)
    port = free_port()
    config = server_config(
        app, "127.0.0.1", port, header_timeout_s=HEADER_TIMEOUT_S, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield Studio(f"http://127.0.0.1:{port}", app, work_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    # Shutdown removes every temporary file: only finished results and songs remain.
    assert not list(work_dir.rglob(".*.part*"))


@pytest.fixture(scope="module")
def studio(model_dir: Path, tmp_path_factory):
    with serve(model_dir, tmp_path_factory.mktemp("studio_work")) as running:
        yield running


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
    # *.last.pt files are not models
    assert set(models) == {"motiongraph", "copy", "broken", "evil", "bomb"}
    assert listing["best"] == "motiongraph" and models["motiongraph"]["best"]
    assert models["motiongraph"]["metrics"] == {"fid_k": 3.0, "fid_g": 2.0, "bas": 0.25}
    assert models["motiongraph"]["quality"] == "in style, close to real dancing, on the beat"
    assert models["motiongraph"]["usable"] and models["copy"]["usable"]
    assert not models["broken"]["usable"] and "damaged" in models["broken"]["problem"]
    # Read as data, never loaded: code in a pickle and a zip bomb are refused, unrun.
    assert not models["evil"]["usable"] and "posix.system" in models["evil"]["problem"]
    assert not models["bomb"]["usable"] and "zip bomb" in models["bomb"]["problem"]
    assert not PWNED.exists()
    # No message shows where the server keeps its files.
    assert str(Path.home()) not in json.dumps(listing) and "/tmp/" not in json.dumps(listing)
    # The framework documents the API.
    schema = requests.get(f"{studio.url}/openapi.json", timeout=10).json()
    assert {"/api/models", "/api/dances", "/api/dances/{dance_id}"} <= set(schema["paths"])
    docs = requests.get(f"{studio.url}/docs", timeout=10).text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs  # offline
    asset = requests.get(f"{studio.url}/docs-assets/swagger-ui-bundle.js", timeout=10)
    assert asset.status_code == 200 and len(asset.content) > 100_000
    # Swagger UI 5 reads the OpenAPI 3.1 FastAPI writes (4.x showed a blank page).
    assert schema["openapi"].startswith("3.1") and b"OpenAPI31" in asset.content


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
    # The viewer refers to the song instead of holding a copy of it; the page's download
    # of it has the song inside (it plays from disk).
    assert b"data:audio/" not in files["dance.html"] and b'src="song"' in files["dance.html"]
    song = requests.get(f"{studio.url}/api/dances/{dance_id}/song", timeout=60)
    assert song.status_code == 200 and song.content == SONG.read_bytes()
    assert song.headers["content-type"] == "audio/ogg"
    standalone = requests.get(f"{studio.url}/api/dances/{dance_id}/dance.html?download=1")
    assert b"data:audio/ogg;base64," in standalone.content
    # Downloads are named after the song, the model and the seed.
    for name in ("dance.npz", "dance.bvh"):
        got = requests.get(f"{studio.url}/api/dances/{dance_id}/{name}", timeout=60)
        expected = f"Kevin_MacLeod_-_Vibe_Ace.hq-motiongraph-seed0{Path(name).suffix}"
        assert f'filename="{expected}"' in got.headers["content-disposition"]
    assert "seed0.html" in standalone.headers["content-disposition"]
    # HEAD answers like GET, without the body.
    head = requests.head(f"{studio.url}/api/dances/{dance_id}/dance.npz", timeout=10)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(
        files["dance.npz"]
    )
    head = requests.head(f"{studio.url}/api/dances/{dance_id}/dance.mp4", timeout=10)
    assert head.status_code == 409 and studio.board.get(job_id("render", dance_id)) is None
    # The page lists the takes again after a reload.
    listed = requests.get(f"{studio.url}/api/dances", timeout=10).json()["dances"]
    assert dance_id in [status["id"] for status in listed]

    # The same request again is the same job, answered from the cache.
    runs = studio.board.runs
    again = studio.post(SONG, name="renamed.ogg")
    assert again.json()["id"] == dance_id and again.json()["status"] == "done"
    assert studio.board.runs == runs


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


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
        "superscript seed": ({"path": song, "seed": "²"}, 422, "seed must be a whole number"),
        "Arabic-Indic seed": ({"path": song, "seed": "٣٤"}, 422, "digits 0-9"),
        "5000-digit seed": ({"path": song, "seed": "9" * 5000}, 422, "seed must be"),
        "seed 2**31": ({"path": song, "seed": str(2**31)}, 422, "2147483647"),
        "code in checkpoint": ({"path": song, "model": "evil"}, 409, "holds code"),
        "zip bomb checkpoint": ({"path": song, "model": "bomb"}, 409, "zip bomb"),
        "start pose path": ({"path": song, "start": "/etc/passwd"}, 422, "start pose"),
    }  # fmt: skip


def test_bad_inputs_get_clear_4xx_json_and_the_server_keeps_serving(
    studio: Studio, tmp_path: Path
) -> None:
    songs_before = _names(studio.work_dir / "songs")
    failures = []
    for name, (request, status, words) in bad_inputs(tmp_path).items():
        answer = studio.post(**request)
        body = answer.json()
        error = body.get("error", "")
        if answer.status_code != status or words not in error:
            failures.append((name, answer.status_code, body))
        # Never the server's folders, never torch's advice to load with weights_only=False.
        assert "/tmp/" not in error and "weights_only" not in error, (name, error)
        alive = requests.get(f"{studio.url}/api/models", timeout=10)
        assert alive.status_code == 200, f"after {name}"
    assert not failures, failures
    # Nothing refused was stored, and no temporary file stays behind.
    assert _names(studio.work_dir / "songs") == songs_before
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


def _running_on_a_worker(studio: Studio, dance_id: str) -> int:
    """The pid of the worker running ``dance_id``, once it runs."""
    deadline = time.monotonic() + 120
    while True:
        job = studio.board.get(dance_id)
        if job.status == "running" and job.worker_pid:
            return job.worker_pid
        assert time.monotonic() < deadline and job.active, job.public()
        time.sleep(0.05)


def test_a_killed_worker_fails_only_its_own_job(studio: Studio, tmp_path: Path) -> None:
    """kill -9 of one of two workers running a job each: exactly that job fails, the other
    finishes, a new worker replaces the dead one, and the failed job left nothing."""
    import signal

    first = studio.post(SONG, seed="77").json()["id"]
    second = studio.post(SONG, seed="78").json()["id"]
    victim = _running_on_a_worker(studio, first)
    assert _running_on_a_worker(studio, second) != victim
    os.kill(victim, signal.SIGKILL)  # as the kernel's out-of-memory killer would
    status = studio.wait(first)
    assert status["status"] == "failed" and "worker process died" in status["error"]
    assert studio.wait(second)["status"] == "done"
    assert not (studio.work_dir / "dances" / first).exists()  # a failed job leaves nothing
    assert victim not in studio.board.worker_pids()
    # The failed request runs again when asked again.
    again = studio.post(SONG, seed="77").json()
    assert again["id"] == first and studio.wait(first)["status"] == "done"


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
    assert 'seed2.mp4"' in got.headers["content-disposition"]


def test_a_failed_render_leaves_no_part_file_and_runs_on_the_next_request(
    studio: Studio, tmp_path: Path
) -> None:
    import signal

    dance_id = studio.post(clip(tmp_path, 20.0, start_s=30.0), seed="4").json()["id"]
    assert studio.wait(dance_id)["status"] == "done"
    url = f"{studio.url}/api/dances/{dance_id}/dance.mp4"
    render = requests.get(url, timeout=30).json()["id"]
    folder = studio.work_dir / "dances" / dance_id
    pid = _running_on_a_worker(studio, render)
    deadline = time.monotonic() + 120  # kill it while it writes the video
    while not list(folder.glob(".dance.*.part.mp4")):
        assert time.monotonic() < deadline, "the render wrote no partial file"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    status = studio.wait(render)
    assert status["status"] == "failed" and "worker process died" in status["error"]
    assert not list(folder.glob(".*.part*")) and not (folder / "dance.mp4").exists()
    # The next request renders it.
    assert requests.get(url, timeout=30).status_code == 202
    assert studio.wait(render)["status"] == "done"
    got = requests.get(url, timeout=30)
    assert got.status_code == 200 and got.content[4:8] == b"ftyp"


def _multipart(song: Path, **fields: str) -> tuple[bytes, str]:
    """A multipart body as a browser's form would send it, and its Content-Type."""
    prepared = requests.Request(
        "POST", "http://x/", files={"song": ("a.wav", song.read_bytes())}, data=fields
    ).prepare()
    return prepared.body, prepared.headers["Content-Type"]


def test_only_the_studios_own_page_drives_it(studio: Studio, tmp_path: Path) -> None:
    """CSRF and DNS rebinding: a cross-site form or fetch and a foreign Host get 403 JSON
    and create nothing; the page's own requests (same origin) and curl pass."""
    song = clip(tmp_path, 2.0, start_s=3.0)
    body, content_type = _multipart(song, seed="123")
    url = f"{studio.url}/api/dances"
    runs, songs = studio.board.runs, _names(studio.work_dir / "songs")
    port = studio.url.rsplit(":", 1)[1]
    hostile = {
        "cross-site form": {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
        "no-cors fetch, old browser": {"Origin": "http://evil.example"},
        "sandboxed page": {"Origin": "null"},
        "another port of this machine": {
            "Origin": "http://127.0.0.1:9", "Sec-Fetch-Site": "same-site"},
        "DNS rebinding": {"Host": f"evil.example:{port}"},
        "rebinding, same origin": {"Host": "evil.example", "Origin": "http://evil.example"},
    }  # fmt: skip
    for name, headers in hostile.items():
        answer = requests.post(
            url, data=body, headers={"Content-Type": content_type, **headers}, timeout=30
        )
        assert answer.status_code == 403, (name, answer.status_code, answer.text)
        assert "error" in answer.json(), name
    assert studio.board.runs == runs  # nothing was created
    assert _names(studio.work_dir / "songs") == songs
    foreign = requests.get(f"{studio.url}/api/models", headers={"Host": "evil.example"})
    assert foreign.status_code == 403 and "does not answer to the host" in foreign.json()["error"]
    assert requests.get(studio.url, headers={"Host": "evil.example"}).status_code == 403
    # The page's own requests pass (a browser sends these), and so do scripts (curl).
    own = {
        "Origin": studio.url, "Sec-Fetch-Site": "same-origin", "Host": f"localhost:{port}"
    }  # fmt: skip
    own["Origin"] = f"http://localhost:{port}"
    answer = requests.post(url, data=body, headers={"Content-Type": content_type, **own})
    assert answer.status_code == 202, answer.text
    assert studio.board.runs == runs + 1
    # No redirect is built from the client's Host: a wrong URL is a 404, not a 307.
    slash = requests.get(f"{studio.url}/api/models/", allow_redirects=False, timeout=10)
    assert slash.status_code == 404 and "location" not in slash.headers
    assert studio.wait(answer.json()["id"])["status"] == "done"


def test_forwarded_headers_are_ignored_unless_behind_a_proxy() -> None:
    from kakashi.studio.server import server_config

    plain = server_config(None, "127.0.0.1", 8000, header_timeout_s=10)
    assert plain.proxy_headers is False
    proxied = server_config(
        None, "127.0.0.1", 8000, header_timeout_s=10, behind_proxy=True,
        forwarded_allow_ips="10.0.0.2",
    )  # fmt: skip
    assert proxied.proxy_headers is True and proxied.forwarded_allow_ips == "10.0.0.2"


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def _closed_after(sock: socket.socket, trickle: bytes, every_s: float, limit_s: float) -> float:
    """Send ``trickle`` one byte every ``every_s``; the seconds until the server closes
    the connection (what it answered, if anything, is read and dropped)."""
    started = time.monotonic()
    sock.settimeout(every_s)
    for byte in trickle:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - started
        assert time.monotonic() - started < limit_s, "the server kept the connection open"
    raise AssertionError("the trickle ended before the server closed the connection")


def test_slow_clients_are_cut_and_huge_bodies_refused_unread(studio: Studio, caplog) -> None:
    caplog.set_level("INFO", logger="kakashi.studio")
    # Slow headers (slow-loris): one byte every 0.3 s.
    head = b"GET /api/models HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Padding: " + b"a" * 500
    with _connect(studio.url) as sock:
        took = _closed_after(sock, head, 0.3, HEADER_TIMEOUT_S + 5)
    assert HEADER_TIMEOUT_S - 0.5 <= took <= HEADER_TIMEOUT_S + 2, took
    # A slow body: the headers at once, then 1 byte every 0.3 s.
    with _connect(studio.url) as sock:
        sock.sendall(
            b"POST /api/dances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        took = _closed_after(sock, b"--b\r\n" + b"x" * 5000, 0.3, BODY_TIMEOUT_S + 5)
    assert took <= BODY_TIMEOUT_S + 2, took
    # 10 GB declared, nothing sent: 413 at once.
    with _connect(studio.url) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /api/dances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10000000000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):  # the server closes the connection after it
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 413") and b"larger than the limit" in answer
        assert time.monotonic() - started < 2
    # A client that goes away mid-upload: one line in the log, no traceback.
    with _connect(studio.url) as sock:
        sock.sendall(
            b"POST /api/dances HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n" + b"x" * 1000
        )
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while not any("went away during its upload" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
        time.sleep(0.1)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert requests.get(f"{studio.url}/api/models", timeout=10).status_code == 200


def test_an_m4a_song_round_trips_through_the_bundled_ffmpeg(studio: Studio, tmp_path: Path) -> None:
    import subprocess

    import imageio_ffmpeg

    wav = clip(tmp_path, 4.0, start_s=15.0)
    m4a = tmp_path / "phone song.m4a"
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i"]
    subprocess.run([*command, str(wav), "-c:a", "aac", "-b:a", "96k", str(m4a)], check=True)
    assert m4a.read_bytes()[4:8] == b"ftyp"  # an MPEG-4 file: libsndfile cannot read it
    answer = studio.post(m4a, name=m4a.name, seed="6")
    assert answer.status_code == 202, answer.text
    request = answer.json()["request"]
    assert request["song"].endswith(".ogg") and abs(request["duration_s"] - 4.0) < 0.1
    status = studio.wait(answer.json()["id"])
    assert status["status"] == "done", status
    assert status["result"]["frames"] == round(4.0 * status["result"]["fps"])
    song = requests.get(f"{studio.url}/api/dances/{status['id']}/song", timeout=30)
    (tmp_path / "back.ogg").write_bytes(song.content)
    assert abs(soundfile.info(tmp_path / "back.ogg").duration - 4.0) < 0.1
    npz = requests.get(f"{studio.url}/api/dances/{status['id']}/dance.npz", timeout=30)
    assert 'filename="phone_song-motiongraph-seed6.npz"' in npz.headers["content-disposition"]
    # The same M4A again is the same song and the same dance.
    assert studio.post(m4a, name="again.m4a", seed="6").json()["id"] == status["id"]


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def test_the_work_dir_stays_under_its_limit_and_statuses_survive_a_restart(
    model_dir: Path, tmp_path: Path
) -> None:
    """60 requests with distinct seeds under an 8-MB limit (a 2-s song's results are
    ~1.7 MB: the viewer's three.js and the character's GLB): the least recently used go."""
    limit_mb = 8.0
    work = tmp_path / "work"
    song = clip(tmp_path, 2.0, start_s=8.0)
    largest = 0.0
    with serve(model_dir, work, max_work_mb=limit_mb) as studio:
        ids = []
        for batch in range(0, 60, 2):  # two at a time, one per worker
            with ThreadPoolExecutor(2) as pool:
                answers = list(
                    pool.map(lambda seed: studio.post(song, seed=str(seed)), (batch, batch + 1))
                )
            assert all(answer.status_code == 202 for answer in answers)
            ids += [answer.json()["id"] for answer in answers]
            for dance_id in ids[-2:]:
                assert studio.wait(dance_id)["status"] == "done"
            largest = max(largest, _folder_mb(work))
        assert len(set(ids)) == 60
        assert studio.board.evicted >= 50
        kept = [i for i in ids if (work / "dances" / i).is_dir()]
        assert ids[-1] in kept and len(kept) >= 2
        last = studio.wait(ids[-1])
    assert largest <= limit_mb, largest
    assert _folder_mb(work) <= limit_mb
    # After a restart the finished dances answer with their status and their results.
    with serve(model_dir, work, max_work_mb=limit_mb) as studio:
        again = requests.get(f"{studio.url}/api/dances/{ids[-1]}", timeout=10).json()
        assert again["status"] == "done" and again["result"] == last["result"]
        assert again["request"] == last["request"]
        npz = requests.get(f"{studio.url}/api/dances/{ids[-1]}/dance.npz", timeout=10)
        assert npz.status_code == 200
        evicted = requests.get(f"{studio.url}/api/dances/{ids[0]}", timeout=10)
        assert evicted.status_code == 404


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--port", "99999"], "--port must be a whole number from 1 to 65535, not 99999"),
        (["--max-upload-mb", "-1"], "--max-upload-mb must be a number above 0, not -1.0"),
        (["--max-upload-mb", "nan"], "--max-upload-mb must be a number above 0, not nan"),
        (["--max-minutes", "0"], "--max-minutes must be a number above 0, not 0.0"),
        (["--max-work-mb", "inf"], "--max-work-mb must be a number above 0, not inf"),
        (["--models", "/nonexistent"], "--models /nonexistent: no such file or folder"),
        (["--allow-host", "evil.example/x"], "--allow-host 'evil.example/x': give a host"),
    ],
)
def test_bad_flags_are_one_line_errors(
    flags: list[str], words: str, model_dir: Path, tmp_path: Path, capsys
) -> None:
    command = ["studio", "--models", str(model_dir), "--work-dir", str(tmp_path / "w")]
    assert main([*command, *flags]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"kakashi: error: {err.removeprefix('kakashi: error: ')}" and "\n" not in err
    assert words in err, err


def test_a_port_in_use_is_a_one_line_error(model_dir: Path, tmp_path: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = ["studio", "--models", str(model_dir), "--port", str(port)]
        assert main([*command, "--work-dir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kakashi: error: cannot listen on 127.0.0.1:{port}") and "\n" not in err


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


def test_page_uploads_a_song_and_plays_the_dance(model_dir: Path, chromium, tmp_path: Path) -> None:
    """On a studio of its own (an empty work folder: the page starts with its hint)."""
    with serve(model_dir, tmp_path / "work") as studio:
        _page_flow(studio, chromium, tmp_path)


def _page_flow(studio: Studio, chromium, tmp_path: Path) -> None:
    page = requests.get(studio.url, timeout=10).text
    assert "http://" not in page and "https://" not in page  # offline: nothing external

    chromium.get(studio.url)
    wait_for(chromium, "return window.kakashiStudio.models !== null")
    assert chromium.execute_script("return document.getElementById('model').value") == (
        "motiongraph"
    )
    # The model's quality in words, its numbers on hover.
    metrics = chromium.find_element("id", "metrics")
    assert metrics.text == "in style, close to real dancing, on the beat"
    assert "fid_k 3.00" in metrics.get_attribute("title")
    # A hint where the dance will play, until there is one.
    wait_for(chromium, "return window.kakashiStudio.loaded")
    assert chromium.find_element("id", "empty").is_displayed()
    # The header keeps its height whatever model is chosen.
    height = "return document.querySelector('header').getBoundingClientRect().height"
    before = chromium.execute_script(height)
    chromium.execute_script(
        "const s = document.getElementById('model'); s.value = 'copy';"
        "s.dispatchEvent(new Event('change'))"
    )
    assert chromium.execute_script(height) == before
    chromium.execute_script(
        "const s = document.getElementById('model'); s.value = 'motiongraph';"
        "s.dispatchEvent(new Event('change'))"
    )
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

    assert not chromium.find_element("id", "empty").is_displayed()
    # The dance starts by itself with its music (the click on Dance allows sound).
    assert wait_for(chromium, "return window.kakashiStudio.autoplay", 60) == "playing"
    frame = chromium.find_element("id", "viewer")
    chromium.switch_to.frame(frame)
    wait_for(chromium, "return window.kakashiViewer.playing && window.kakashiViewer.time > 0.5")
    assert chromium.execute_script("return window.kakashiViewer.clock") == "audio"
    assert chromium.execute_script("return window.kakashiViewer.drawnJoints") == 17
    chromium.switch_to.default_content()
    # The beat marker pulses as the dance plays.
    assert chromium.execute_script("return window.kakashiStudio.beats.length") > 5
    wait_for(chromium, "return window.kakashiStudio.pulses >= 2", 30)

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

    # A reload lists the takes again (the server keeps them).
    chromium.refresh()
    wait_for(chromium, "return document.querySelectorAll('.take').length === 2", 30)
    wait_for(chromium, "return document.querySelectorAll('.take a').length === 10", 30)
    assert not chromium.find_element("id", "empty").is_displayed()
    chromium.switch_to.frame(chromium.find_element("id", "viewer"))  # the newest take shown
    wait_for(chromium, "return window.kakashiViewer && window.kakashiViewer.renders > 2", 60)
    chromium.switch_to.default_content()

    shot = tmp_path / "studio.png"
    chromium.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # The README's screenshot is refreshed on request only: tests do not write the repo.
    if os.environ.get("KAKASHI_UPDATE_SCREENSHOT"):
        shutil.copy(shot, REPO / "docs" / "studio.png")


def test_docs_list_the_operations_in_a_browser(studio: Studio, chromium, tmp_path: Path) -> None:
    """/docs in headless Chromium: Swagger UI renders the OpenAPI 3.1 schema (offline)."""
    chromium.get(f"{studio.url}/docs")
    wait_for(chromium, "return document.querySelectorAll('.opblock').length >= 5", 60)
    paths = chromium.execute_script(
        "return [...document.querySelectorAll('.opblock-summary-path')]"
        ".map((e) => e.textContent.replace(/\\u200b/g, ''))"
    )
    assert {"/api/models", "/api/dances", "/api/dances/{dance_id}"} <= set(paths), paths
    chromium.save_screenshot(str(tmp_path / "docs.png"))
    assert (tmp_path / "docs.png").stat().st_size > 10_000


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


def test_the_preselection_ranks_by_the_held_out_fid(tmp_path) -> None:
    """A replay of the train set wins the train-referenced FID; the studio preselects by the
    FID against the real held-out dances where the evaluation measured it."""
    import torch

    from kakashi.studio.catalog import find_models

    models = tmp_path / "models"
    models.mkdir()
    for name in ("replay", "graph"):
        torch.save({"format": "not needed here"}, models / f"{name}.pt")
    rows = [
        {"name": "replay", "kind": "model", "fid_k": 9.5, "fid_k_heldout": 25.8},
        {"name": "graph", "kind": "model", "fid_k": 23.8, "fid_k_heldout": 24.0},
    ]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"rows": rows}))
    catalog = find_models([models])
    assert catalog.best == "graph"
    assert catalog.models["graph"].metrics["fid_k_heldout"] == 24.0  # shown beside the model
