"""The studio's jobs: a pool of worker processes, their progress, and the result cache.

Generation and rendering are CPU-bound Python (librosa, torch, the motion graph's search),
so they run in worker processes (one per core by default), never in the server's event
loop or threads: the page and the API stay responsive while models run. Workers are
started with ``spawn`` (forking a process that holds uvicorn's threads and torch's thread
pool is unsafe) and load each checkpoint once.

A job's id is a hash of everything its result depends on (the song's content hash, the
model file, the seed and the start pose, or the dance for a render), so the same request
twice is one job, also when both arrive at once: :meth:`JobBoard.submit` decides under a
lock. Results live in ``WORK/dances/<id>/`` and are found again after a restart. Every
result file is written through :func:`kakashi.atomic.atomic_output`, so a job cut short
(Ctrl-C, a crash) leaves no file under a result name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from kakashi.errors import KakashiError

log = logging.getLogger("kakashi.studio")

# The files of a finished dance job, and of a render job.
DANCE_FILES = ("dance.npz", "dance.html", "dance.bvh")
RENDER_FILE = "dance.mp4"

# Set in each worker process by _worker_init: where progress reports go.
_progress_queue = None
_loaded_models: dict = {}


def _worker_init(queue) -> None:
    global _progress_queue
    _progress_queue = queue
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker: %(message)s")


def _report(job_id: str, stage: str, progress: float) -> None:
    if _progress_queue is not None:
        _progress_queue.put((job_id, stage, progress))


def _model(checkpoint: str):
    """The loaded model, once per worker and checkpoint version (retraining changes mtime)."""
    from kakashi.models.checkpoint import load_model

    key = (checkpoint, os.stat(checkpoint).st_mtime_ns)
    if key not in _loaded_models:
        _loaded_models.clear()  # one model in memory per worker is enough
        _loaded_models[key] = load_model(checkpoint)
    return _loaded_models[key]


def make_dance(
    job_id: str, song: str, checkpoint: str, seed: int, start: str, folder: str, style=None
) -> dict:
    """Worker: the dance for ``song``, its viewer page and its BVH, in ``folder``; ``style``:
    one the checkpoint knows, or None for auto (the style the song's music calls for)."""
    from kakashi.models.generate import dance_for_audio, song_features, start_pose
    from kakashi.models.styles import choose_style
    from kakashi.outputs.bvh import export_bvh
    from kakashi.outputs.viewer import write_viewer

    out = Path(folder)
    _report(job_id, "loading model", 0.02)
    model = _model(checkpoint)
    stats = model.stats
    _report(job_id, "features", 0.1)
    features = song_features(song, stats, Path(checkpoint).name)
    _report(job_id, "generation", 0.35)
    name = Path(checkpoint).name
    choice = choose_style(model.payload, style, features.values, name, Path(song).name)
    dance = dance_for_audio(model, features.values, start_pose(start, stats), seed, style=choice)
    dance.save(out / "dance.npz")
    _report(job_id, "page", 0.75)
    write_viewer(out / "dance.npz", song, out / "dance.html", title=f"{model.name} seed {seed}")
    _report(job_id, "bvh", 0.9)
    export_bvh(out / "dance.npz", out / "dance.bvh")
    styled = choice.meta() if choice else {}
    return {"frames": len(dance), "fps": stats.fps, "duration_s": features.duration_s, **styled}


def render_video(job_id: str, folder: str, song: str) -> dict:
    """Worker: the MP4 of a finished dance (on demand: it takes longer than the rest)."""
    from kakashi.outputs.render import render_dance

    _report(job_id, "rendering", 0.05)
    out = Path(folder)
    stats = render_dance(out / "dance.npz", song, out / RENDER_FILE)
    return {"frames": stats.frames}


@dataclass
class Job:
    """What the API reports about one job."""

    id: str
    kind: str  # "dance" or "render"
    folder: Path
    status: str = "queued"  # queued | running | done | failed
    progress: float = 0.0
    stage: str = "queued"
    error: str | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict = field(default_factory=dict)
    request: dict = field(default_factory=dict)

    def public(self) -> dict:
        now = self.finished or time.time()
        elapsed = now - (self.started or now)
        # A plain linear estimate from the progress so far: stages are roughly proportional
        # to the song's length, which is what sets the remaining time.
        remaining = None
        if self.status == "running" and self.progress > 0.05:
            remaining = round(elapsed * (1 - self.progress) / self.progress, 1)
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "progress": round(self.progress, 3),
            "stage": self.stage,
            "error": self.error,
            "elapsed_s": round(elapsed, 1),
            "remaining_s": remaining,
            "result": self.result,
            "request": self.request,
        }


def job_id(*parts: object) -> str:
    """A stable id for everything a result depends on."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


class JobBoard:
    """The worker pool and every job of this server, by id."""

    def __init__(self, work_dir: Path, workers: int) -> None:
        self.work_dir = work_dir
        self._context = multiprocessing.get_context("spawn")
        self._workers = workers
        self._queue = self._context.Queue()
        self._pool = self._new_pool()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.runs = 0  # jobs actually handed to a worker (the tests count them)
        self._closing = False
        self._reader = threading.Thread(target=self._read_progress, daemon=True)
        self._reader.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=self._context,
            initializer=_worker_init,
            initargs=(self._queue,),
        )

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def submit(
        self, job: Job, outputs: tuple[str, ...], function, *args, retry_failed: bool = True
    ) -> Job:
        """Start ``job`` unless the same job exists or its outputs do. A failed job runs
        again only with ``retry_failed`` (renders do not: their failure must stay visible
        to the client polling for them)."""
        with self._lock:
            known = self._jobs.get(job.id)
            if known is not None and (known.status != "failed" or not retry_failed):
                return known
            self._jobs[job.id] = job
            if all((job.folder / name).is_file() for name in outputs):
                job.status, job.progress, job.stage = "done", 1.0, "done (cached)"
                job.finished = job.started = time.time()
                return job
            job.folder.mkdir(parents=True, exist_ok=True)
            self.runs += 1
            try:
                future = self._pool.submit(function, job.id, *args)
            except BrokenProcessPool:
                # A worker was killed from outside (e.g. out of memory): the jobs it held
                # failed with that reason; later ones get a new pool.
                log.warning("the worker pool broke; starting a new one")
                self._pool = self._new_pool()
                future = self._pool.submit(function, job.id, *args)
        future.add_done_callback(lambda done: self._finish(job, done))
        return job

    def _finish(self, job: Job, future: Future) -> None:
        with self._lock:
            job.finished = time.time()
            job.started = job.started or job.finished
            if future.cancelled() or self._closing:
                job.status, job.error = "failed", "cancelled: the studio is shutting down"
                return
            error = future.exception()
            if error is None:
                job.status, job.progress, job.stage = "done", 1.0, "done"
                job.result = future.result()
            elif isinstance(error, KakashiError):
                job.status, job.error = "failed", str(error)
            elif isinstance(error, BrokenProcessPool):
                job.status = "failed"
                job.error = "its worker process died (out of memory?); try again"
            else:
                log.error("job %s failed", job.id, exc_info=error)
                job.status = "failed"
                job.error = f"internal error ({type(error).__name__}: {error}); see the log"

    def _read_progress(self) -> None:
        while True:
            try:
                message = self._queue.get()
            except (EOFError, OSError, ValueError):  # the queue was closed at shutdown
                return
            if message is None:
                return
            job_id, stage, progress = message
            with self._lock:
                job = self._jobs.get(job_id)
                if job is not None and job.status in ("queued", "running"):
                    job.status, job.stage, job.progress = "running", stage, progress
                    job.started = job.started or time.time()

    def shutdown(self) -> None:
        """Cancel queued jobs and stop running ones now (Ctrl-C must not wait for them)."""
        # ProcessPoolExecutor cannot cancel a running call: terminate its processes. Their
        # results were being written to hidden temporary names, removed by the caller.
        self._closing = True
        processes = list((self._pool._processes or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=5)
        self._queue.put(None)
        self._reader.join(timeout=2)
