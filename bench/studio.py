"""Benchmark kakashi studio: a real server, songs uploaded through its API.

Run from the repository root after the demo (or name any checkpoint)::

    .venv/bin/python bench/studio.py [--checkpoint results/models/motiongraph.pt]
                                     [--workers 2] [--json results.json]

Measures, for 3-minute songs (the demo's two songs joined and cut, and shifted variants):

- upload to done and upload to viewer page downloaded (what the page shows as "playing"),
  cold (the first job: worker start, model load, numba's compile) and warm;
- 8 simultaneous requests (4 distinct songs, each sent twice): time until all are done, jobs
  actually run (4 expected: identical requests are one job), minutes of music per minute;
- the disk a 3-minute song's results take (the viewer page refers to the song instead of
  holding a copy), with and without its MP4.

Results and how to read them: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import soundfile

REPO = Path(__file__).resolve().parent.parent
MUSIC = REPO / "data" / "demo" / "music"
SONG_S = 180.0
SR = 22050


def three_minute_songs(count: int) -> list[bytes]:
    """``count`` distinct 3-minute WAVs: the demo songs joined, rotated by a few seconds."""
    import librosa

    joined = np.concatenate(
        [librosa.load(path, sr=SR, mono=True)[0] for path in sorted(MUSIC.glob("*.ogg"))]
    )
    songs = []
    for index in range(count):
        start = index * 7 * SR
        samples = np.roll(joined, -start)[: int(SONG_S * SR)]
        buffer = io.BytesIO()
        soundfile.write(buffer, samples, SR, format="WAV")
        songs.append(buffer.getvalue())
    return songs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, song: bytes, seed: int = 0) -> str:
    files = {"song": ("song.wav", io.BytesIO(song), "audio/wav")}
    answer = requests.post(f"{url}/api/dances", files=files, data={"seed": seed}, timeout=300)
    answer.raise_for_status()
    return answer.json()["id"]


def wait(url: str, dance_id: str) -> dict:
    while True:
        status = requests.get(f"{url}/api/dances/{dance_id}", timeout=30).json()
        if status["status"] == "done":
            return status
        if status["status"] == "failed":
            raise SystemExit(f"dance {dance_id} failed: {status['error']}")
        time.sleep(0.1)


def one_song(url: str, song: bytes) -> dict:
    start = time.perf_counter()
    dance_id = post(url, song)
    wait(url, dance_id)
    done = time.perf_counter() - start
    page = requests.get(f"{url}/api/dances/{dance_id}/dance.html", timeout=60)
    page.raise_for_status()
    return {"done_s": round(done, 2), "page_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="results/models/motiongraph.pt")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()

    songs = three_minute_songs(6)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}:{os.environ.get('PYTHONPATH', '')}"}
    with tempfile.TemporaryDirectory() as work:
        command = [sys.executable, "-m", "kakashi", "studio", "--models", args.checkpoint]
        command += ["--port", str(port), "--workers", str(args.workers), "--work-dir", work]
        server = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"{url}/api/models", timeout=2).raise_for_status()
                    break
                except requests.RequestException:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the studio did not start") from None
                    time.sleep(0.2)
            figures = {"cold": one_song(url, songs[0]), "warm": one_song(url, songs[1])}
            batch = songs[2:6] * 2
            start = time.perf_counter()
            with ThreadPoolExecutor(len(batch)) as pool:
                ids = list(pool.map(lambda song: post(url, song), batch))
                list(pool.map(lambda dance_id: wait(url, dance_id), ids))
            elapsed = time.perf_counter() - start
            folder = Path(work) / "dances" / ids[0]
            sizes = {p.name: round(p.stat().st_size / 1e6, 2) for p in folder.iterdir()}
            mp4 = requests.get(f"{url}/api/dances/{ids[0]}/dance.mp4", timeout=60)
            while mp4.status_code == 202:
                time.sleep(1)
                mp4 = requests.get(f"{url}/api/dances/{ids[0]}/dance.mp4", timeout=60)
            mp4.raise_for_status()
            figures["result_mb"] = {**sizes, "dance.mp4": round(len(mp4.content) / 1e6, 2)}
            figures["batch"] = {
                "requests": len(batch),
                "jobs": len(set(ids)),
                "all_done_s": round(elapsed, 2),
                "music_min_per_min": round(len(set(ids)) * SONG_S / elapsed, 2),
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
    figures["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    figures["load"] = os.getloadavg()
    figures["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
