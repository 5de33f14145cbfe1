"""Shared fixtures: paths to the repository, its demo media and the shared test data."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data" / "demo"
DEMO_VIDEO = DEMO / "dancer.avi"
DEMO_SONG = DEMO / "music" / "Kevin_MacLeod_-_Vibe_Ace.hq.ogg"
SHARED = Path(os.environ.get("KAKASHI_SHARED_DATA", REPO.parent / "shared" / "data"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def headless_chromium(*flags: str, size: str = "1280,800"):
    """A real headless Chromium (Debian's, software WebGL, muted); skips without it."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("needs /usr/bin/chromium and /usr/bin/chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--use-angle=swiftshader",  # software WebGL: no GPU here
        "--enable-unsafe-swiftshader",
        f"--window-size={size}",
        "--mute-audio",
        *flags,
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def shared_file(relative: str) -> Path:
    """A file from the shared test data; skips the test (with the reason) when absent."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"shared test data {path} is absent (set KAKASHI_SHARED_DATA)")
    return path


# Settings that train the token models in seconds on the demo shards (tests only).
@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny networks (``pytestmark = usefixtures``):
    threads only add synchronisation, and a busy machine punishes it."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_TOKEN_MODELS = {
    "motif": dict(vq_steps=5, gpt_steps=5, log_every=5, vq_window=16, vq_batch=4,
                  gpt_batch=4, codebook=16, code_dim=8, vq_width=16, dim=16, heads=2,
                  layers=1, context=8),
    "maskdance": dict(vq_steps=5, mask_steps=5, log_every=5, vq_window=16, vq_batch=4,
                      mask_batch=4, codebook=16, code_dim=8, vq_width=16, dim=16, heads=2,
                      layers=1, window=12, overlap=4, residual_steps=5),
}  # fmt: skip
NOISE_FEATURES = 6


def noise_audio(frames: int, rng: np.random.Generator) -> np.ndarray:
    """Synthetic audio features (frames, NOISE_FEATURES): noise, the last column a beat
    every 15 frames."""
    audio = rng.standard_normal((frames, NOISE_FEATURES)).astype(np.float32)
    audio[:, -1] = (np.arange(frames) % 15 == 0).astype(np.float32)  # a beat column
    return audio


def mocap_sequences(audio_for=noise_audio, names: list[str] | None = None) -> list:
    """The first three CMU subject-131 mocap dances (shared data) at 30 fps as train
    ``Sequence``s with the audio features ``audio_for(frames, rng)`` (one generator seeded
    0 for the three; columns ``names``, default f0, f1, ...)."""
    from kakashi.models.data import Sequence
    from kakashi.motion import read_motion

    rng = np.random.default_rng(0)
    out = []
    for path in sorted(shared_file("mocap_cmu_131_bvh11").glob("*.bvh"))[:3]:
        dance = read_motion(path, 30)
        frames = len(dance)
        audio = audio_for(frames, rng)
        columns = names or [f"f{i}" for i in range(audio.shape[1])]
        ones = np.ones(frames, np.float32)
        out.append(Sequence(path.stem, audio, dance.pose, dance.root, ones, 30.0, columns, 512))
    return out


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory) -> tuple[Path, Path]:
    """The first 8 s of the demo video, cut to 30 fps: (clip.mp4, clip.wav)."""
    from kakashi.cut import cut_video

    folder = tmp_path_factory.mktemp("demo_clip")
    result = cut_video(DEMO_VIDEO, folder / "clip.mp4", folder / "clip.wav", 0, 8, fps=30)
    return result.video, result.audio


# The data half of the demo (sources to shards); the models and renders come after it.
DEMO_DATA_TARGET = "results/dataset_info.txt"


@pytest.fixture(scope="session")
def demo_workdir(tmp_path_factory) -> Path:
    """The README's demo job run once per test session: a folder holding ``results/``.

    Shards are in ``results/shards/split={train,val,test}/dancer-{a,b,c}.parquet``; tests
    that need real shards (models, evaluation, renderers) share this one run (~50 s).
    """
    workdir = tmp_path_factory.mktemp("demo_workflow")
    run_snakemake(
        workdir, "--cores", "2", DEMO_DATA_TARGET, config={"sources": DEMO / "sources.tsv"}
    )
    return workdir


@pytest.fixture(scope="session")
def demo_shards(demo_workdir: Path) -> Path:
    """The demo's shard folder (see ``demo_workdir``)."""
    return demo_workdir / "results" / "shards"


def run_snakemake(
    workdir: Path, *args: str, config: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run this repository's workflow in ``workdir``; output captured for assertions.

    ``config`` is written to a YAML file layered over config.yaml (nested keys merge).
    """
    configfiles = [str(REPO / "config.yaml")]
    if config:
        override = workdir / "test-config.yaml"
        override.write_text(yaml.safe_dump(_plain(config)))
        configfiles.append(str(override))
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        *configfiles,
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        )
    return result


def _plain(value):
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return str(value) if isinstance(value, Path) else value


def write_sheet(path: Path, rows: list[dict]) -> Path:
    """Write a sources sheet TSV with the union of the rows' keys as columns."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = ["\t".join(columns)]
    lines += ["\t".join(str(row.get(column, "")) for column in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def copy_demo_video(tmp_path):
    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copyfile(DEMO_VIDEO, target)
        return target

    return copy


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # yt-dlp's generic extractor reads only the first bytes of a response and
        # then hangs up, so the server sees connection resets: harmless here.
        pass


class Site:
    """A folder served over HTTP on 127.0.0.1."""

    def __init__(self, root: Path, base: str) -> None:
        self.root = root
        self.base = base

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """A real HTTP server on 127.0.0.1 serving three copies of the demo video."""
    root = tmp_path / "www"
    root.mkdir()
    for name in ("a.avi", "b.avi", "c.avi"):
        shutil.copyfile(DEMO_VIDEO, root / name)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Site(root, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_feed(site: Site, items: list[tuple[str, str, str | None]]) -> str:
    """Write an RSS 2.0 feed of (title, enclosure URL, guid) items; return its URL."""
    parts = []
    for title, url, guid in items:
        guid_xml = f"<guid>{escape(guid)}</guid>" if guid else ""
        parts.append(
            f"<item><title>{escape(title)}</title>"
            f'<enclosure url={quoteattr(url)} type="video/x-msvideo" length="2852574"/>'
            f"{guid_xml}</item>"
        )
    xml = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        "<title>Dances</title><link>http://127.0.0.1/</link><description>test</description>"
        + "".join(parts)
        + "</channel></rss>\n"
    )
    (site.root / "feed.xml").write_text(xml, encoding="utf-8")
    return site.url("feed.xml")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under KAKASHI_CI=1 (set by .ci/run) a skipped test fails.

    CI installs everything the tests drive for real (chromium, the mmpose stack, Slurm)
    and has the shared test data, so a skip there means a feature went untested.
    """
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("KAKASHI_CI") == "1" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {report.longrepr}"
