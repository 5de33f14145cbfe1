"""The studio's jobs: worker processes, the progress of each job, and the bounded result cache.

Generation and rendering are CPU-bound Python (librosa, torch, the motion graph's search),
so they run in worker processes (one per core by default), never in the server's event
loop or threads: the page and the API stay responsive while models run. Workers are
started with ``spawn`` (forking a process that holds uvicorn's threads and torch's thread
pool is unsafe) and load each checkpoint once.

Each worker has its own pipe (tasks in; progress and the outcome out) and runs one job at a
time, so the death of one (``kill -9``, the out-of-memory killer) fails exactly the job it
held: a new worker takes its place and the other workers go on. (``ProcessPoolExecutor``
breaks the whole pool when one worker dies, failing every job in it; a shared
``multiprocessing.Queue`` can deadlock when a writer dies holding its lock.)

A job's id is a hash of everything its result depends on (the song's content hash, the
model file, the seed and the start pose, or the dance for a render), so the same request
twice is one job, also when both arrive at once: :meth:`JobBoard.submit` decides under a
lock. Results live in ``WORK/dances/<id>/`` with a ``job.json`` (the request and the
result), so finished jobs are found again, with their status, after a restart. Every
result file is written through :func:`kakashi.atomic.atomic_output`; a failed dance leaves
no folder and a failed render no partial file. The work folder is kept under
``studio.max_work_mb`` by deleting the least recently used results and songs.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from kakashi.errors import KakashiError
from kakashi.studio.uploads import remove_partials

log = logging.getLogger("kakashi.studio")

# The files of a finished dance job, and of a render job.
DANCE_FILES = ("dance.npz", "dance.html", "dance.bvh", "dance.glb")
RENDER_FILE = "dance.mp4"
JOB_FILE = "job.json"
# The viewer page refers to the song by this URL, relative to the page's own
# (/api/dances/<id>/dance.html -> /api/dances/<id>/song): no copy of it in every result.
SONG_URL = "song"
GLB_URL = "dance.glb"  # the character's animation, served beside the page too
# An orphan song (no result refers to it) younger than this is being danced to right now.
_SONG_GRACE_S = 120.0

# Set in each worker process: the pipe to the server (progress reports go there).
_connection = None
_loaded_models: dict = {}


def _report(job_id: str, stage: str, progress: float) -> None:
    if _connection is not None:
        _connection.send(("progress", job_id, stage, progress))


def _worker_main(connection) -> None:
    """A worker process: run each task received, send its outcome back, until told to stop."""
    global _connection
    _connection = connection
    # Ctrl-C reaches the whole process group: the server decides what stops, not the signal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker: %(message)s")
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        job_id, function, args = task
        try:
            outcome = ("done", function(job_id, *args))
        except KakashiError as exc:
            outcome = ("error", True, str(exc))
        except Exception as exc:
            outcome = ("error", False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        connection.send(outcome)


def _model(checkpoint: str):
    """The loaded model, once per worker and checkpoint version (retraining changes mtime)."""
    from kakashi.models.checkpoint import load_model

    key = (checkpoint, os.stat(checkpoint).st_mtime_ns)
    if key not in _loaded_models:
        _loaded_models.clear()  # one model in memory per worker is enough
        _loaded_models[key] = load_model(checkpoint)
    return _loaded_models[key]


def make_dance(
    job_id: str, song: str, checkpoint: str, seed: int, start: str, folder: str, style=None,
    edit=None,
) -> dict:  # fmt: skip
    """Worker: the dance for ``song``, its viewer page, BVH and GLB, in ``folder``; ``style``:
    one the checkpoint knows, or None for auto (the style the song's music calls for);
    ``edit``: a :class:`kakashi.models.editing.EditRequest` (its dance a finished one's
    file), and the result says what was edited (``edit``)."""
    from kakashi.models.generate import dance_for_audio, song_features, start_pose
    from kakashi.models.styles import choose_style
    from kakashi.outputs.bvh import export_bvh
    from kakashi.outputs.glb import export_glb
    from kakashi.outputs.viewer import write_viewer

    out = Path(folder)
    _report(job_id, "loading model", 0.02)
    model = _model(checkpoint)
    stats = model.stats
    _report(job_id, "features", 0.1)
    features = song_features(song, stats, Path(checkpoint).name)
    constraints, edited = None, None
    if edit is not None:
        constraints, edited = edit.plan(len(features.values), stats.fps)
        edited.pop("of", None)  # the work folder's file name: the request says which dance
    _report(job_id, "generation", 0.35)
    name = Path(checkpoint).name
    choice = choose_style(model.payload, style, features.values, name, Path(song).name)
    first = start_pose(start, stats)
    dance = dance_for_audio(model, features.values, first, seed, style=choice,
                            constraints=constraints)  # fmt: skip
    if edited is not None:
        dance.meta["edit"] = edited
    dance.save(out / "dance.npz")
    _report(job_id, "page", 0.75)
    write_viewer(
        out / "dance.npz", song, out / "dance.html", title=f"{model.name} seed {seed}",
        audio_url=SONG_URL, glb_url=GLB_URL,
    )  # fmt: skip
    _report(job_id, "bvh", 0.9)
    export_bvh(out / "dance.npz", out / "dance.bvh")
    export_glb(out / "dance.npz", out / "dance.glb", music=Path(song).name)
    styled = choice.meta() if choice else {}
    beats = []
    if "beat" in features.names:  # the beat tracker's frames, for the page's beat marker
        column = features.values[:, features.names.index("beat")]
        beats = [round(int(i) / stats.fps, 3) for i in (column > 0.5).nonzero()[0]]
    return {
        "frames": len(dance),
        "fps": stats.fps,
        "duration_s": features.duration_s,
        "beats": beats,
        **styled,
        **({"edit": edited} if edited is not None else {}),
    }


def render_video(job_id: str, folder: str, song: str) -> dict:
    """Worker: the MP4 of a finished dance (on demand: it takes longer than the rest)."""
    from kakashi.outputs.render import render_dance

    _report(job_id, "rendering", 0.05)
    out = Path(folder)
    stats = render_dance(out / "dance.npz", song, out / RENDER_FILE)
    return {"frames": stats.frames}


# An absolute path in a message: the server's folders are nobody else's business.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:/[^\s/:'\"(),;]+)+/([^\s/:'\"(),;]+)")


def public_message(text: str) -> str:
    """``text`` fit to show a client: absolute paths cut to their file names, and torch's
    advice to load an untrusted checkpoint with ``weights_only=False`` (which would run the
    code in it) replaced by what it means."""
    if "weights_only" in text or "Unsupported global" in text:
        return (
            "the checkpoint holds objects a safe load refuses (it may carry code): not a "
            "Kakashi checkpoint, never load it; retrain with `kakashi train`"
        )
    return _ABSOLUTE_PATH.sub(r"\1", text)


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
    used: float = field(default_factory=time.time)  # last request for it (eviction order)
    worker_pid: int | None = None  # the process running it

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def needs_song(self) -> bool:
        """Whether its song must stay: it runs, or it is a dance whose page plays it."""
        return self.active or (self.kind == "dance" and self.status == "done")

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

    def save(self) -> None:
        """The finished job's record beside its files (read back after a restart)."""
        from kakashi.atomic import atomic_output

        record = {"id": self.id, "kind": self.kind, "request": self.request}
        record |= {"result": self.result, "created": self.created, "finished": self.finished}
        with atomic_output(self.folder / JOB_FILE) as temporary:
            temporary.write_text(json.dumps(record))


def job_id(*parts: object) -> str:
    """A stable id for everything a result depends on."""
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:20]


class _Worker:
    def __init__(self, context) -> None:
        self.connection, child = context.Pipe(duplex=True)
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.task = None  # (job_id, function, args, callbacks) while busy


class WorkerPool:
    """``size`` worker processes, one job each at a time; a dead one is replaced.

    ``on_event(job_id, kind, *payload)`` is called from the pool's thread with ``started``
    (pid), ``progress`` (stage, fraction), ``done`` (result), ``error`` (is_kakashi, text),
    ``died`` (exit code) or ``cancelled``.
    """

    def __init__(self, size: int, context, on_event) -> None:
        self._size, self._context, self._on_event = size, context, on_event
        self._tasks: collections.deque = collections.deque()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._closing = False
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._loop, name="studio-pool", daemon=True)
        self._thread.start()

    def submit(self, job_id: str, function, *args) -> None:
        with self._lock:
            self._tasks.append((job_id, function, args))
        os.write(self._wake_write, b".")

    def pids(self) -> list[int]:
        with self._lock:
            return [worker.process.pid for worker in self._workers]

    def _assign(self, events: list) -> None:
        """Hand queued tasks to idle workers, starting workers up to the pool's size."""
        while self._tasks:
            idle = next((w for w in self._workers if w.task is None), None)
            if idle is None:
                if len(self._workers) >= self._size:
                    return
                idle = _Worker(self._context)
                self._workers.append(idle)
            task = self._tasks.popleft()
            try:
                idle.connection.send(task)
            except (OSError, ValueError):  # it died while idle: drop it, try another
                self._tasks.appendleft(task)
                self._drop(idle)
                continue
            idle.task = task
            events.append((task[0], "started", idle.process.pid))

    def _drop(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        worker.connection.close()
        worker.process.join(timeout=1)

    def _loop(self) -> None:
        while True:
            events: list = []
            with self._lock:
                if self._closing:
                    return
                self._assign(events)
                waiting = {self._wake_read: None}
                for worker in self._workers:
                    waiting[worker.connection] = worker
                    waiting[worker.process.sentinel] = worker
            self._emit(events)
            ready = wait(list(waiting))
            events = []
            with self._lock:
                if self._closing:
                    return
                for item in ready:
                    if item == self._wake_read:
                        os.read(self._wake_read, 4096)
                        continue
                    worker = waiting[item]
                    if worker not in self._workers:
                        continue  # handled through its other handle
                    self._serve(worker, events)
            self._emit(events)

    def _serve(self, worker: _Worker, events: list) -> None:
        """Read what ``worker`` sent; if it died, fail its job alone and let it be replaced."""
        try:
            while worker.connection.poll():
                message = worker.connection.recv()
                if message[0] == "progress":
                    events.append((message[1], "progress", *message[2:]))
                    continue
                job = worker.task[0]
                worker.task = None
                events.append((job, *message))
            if worker.process.is_alive():
                return
        except (EOFError, OSError):
            pass
        exitcode = worker.process.exitcode
        self._drop(worker)
        if worker.task is not None:
            log.warning("worker %d died (exit %s) running job %s; starting another",
                        worker.process.pid, exitcode, worker.task[0])  # fmt: skip
            events.append((worker.task[0], "died", exitcode))

    def _emit(self, events: list) -> None:
        for job, kind, *payload in events:
            try:
                self._on_event(job, kind, *payload)
            except Exception:  # a bug in a handler must not stop the pool
                log.exception("studio pool: handling %s of job %s", kind, job)

    def shutdown(self) -> None:
        """Cancel queued tasks and stop running ones now (Ctrl-C must not wait for them)."""
        with self._lock:
            self._closing = True
            cancelled = [(task[0], "cancelled") for task in self._tasks]
            cancelled += [(w.task[0], "cancelled") for w in self._workers if w.task is not None]
            self._tasks.clear()
            workers = list(self._workers)
        os.write(self._wake_write, b".")
        self._thread.join(timeout=5)
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            worker.process.join(timeout=5)
            worker.connection.close()
        self._emit(cancelled)
        os.close(self._wake_read)
        os.close(self._wake_write)


def _size(path: Path) -> int:
    """Bytes under ``path``. A file or folder that goes meanwhile (an upload's ``.part``
    renamed into place, a result evicted by another request) counts as 0: ``stat`` of it
    raised FileNotFoundError, a 500 for a request that had done nothing wrong."""
    if path.is_file():
        with contextlib.suppress(FileNotFoundError):
            return path.stat().st_size
        return 0
    total = 0
    for folder, _, names in os.walk(path):  # os.walk skips a folder that vanished
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


class JobBoard:
    """The worker pool and every job of this server, by id; the work folder's size limit."""

    def __init__(self, work_dir: Path, workers: int, max_work_bytes: int | None = None) -> None:
        self.work_dir = work_dir
        self.dances_dir = work_dir / "dances"
        self.songs_dir = work_dir / "songs"
        self.max_work_bytes = max_work_bytes
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()
        self.runs = 0  # jobs actually handed to a worker (the tests count them)
        self.evicted = 0  # results deleted for the size limit
        self._closing = False
        self._load()
        context = multiprocessing.get_context("spawn")
        self._pool = WorkerPool(workers, context, self._event)

    def _load(self) -> None:
        """The finished dances of earlier runs, with their status; anything else in the
        dances folder is what a killed run left half-done, and goes."""
        if not self.dances_dir.is_dir():
            return
        for folder in self.dances_dir.iterdir():
            record = folder / JOB_FILE
            try:
                saved = json.loads(record.read_text())
                complete = all((folder / name).is_file() for name in DANCE_FILES)
                song = self.songs_dir / saved["request"]["song"]
                if saved["id"] != folder.name or not complete or not song.is_file():
                    raise ValueError("incomplete")
            except (OSError, ValueError, KeyError, TypeError):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            job = Job(saved["id"], "dance", folder, request=saved["request"])
            job.status, job.progress, job.stage = "done", 1.0, "done"
            job.result = saved.get("result", {})
            job.created = saved.get("created", job.created)
            job.started = job.finished = saved.get("finished", job.created)
            job.used = record.stat().st_mtime
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def dances(self) -> list[Job]:
        """The dance jobs, newest first (the page lists them as takes)."""
        with self._lock:
            jobs = [job for job in self._jobs.values() if job.kind == "dance"]
        return sorted(jobs, key=lambda job: job.created, reverse=True)

    def worker_pids(self) -> list[int]:
        return self._pool.pids()

    def touch(self, job: Job) -> None:
        """Note a use of ``job``'s results (and its song): the eviction order."""
        job.used = time.time()
        with self._lock:
            for path in (job.folder / JOB_FILE, self.songs_dir / job.request.get("song", "")):
                if path.is_file():
                    os.utime(path)

    def submit(
        self, job: Job, outputs: tuple[str, ...], function, *args, retry_failed: bool = True
    ) -> Job:
        """Start ``job`` unless the same job exists or its outputs do. A failed job runs
        again only with ``retry_failed``."""
        with self._lock:
            known = self._jobs.get(job.id)
            if known is not None and (known.status != "failed" or not retry_failed):
                if known.status == "done":
                    self.touch(known)
                return known
            self._jobs[job.id] = job
            if all((job.folder / name).is_file() for name in outputs):
                job.status, job.progress, job.stage = "done", 1.0, "done (cached)"
                job.finished = job.started = time.time()
                return job
            job.folder.mkdir(parents=True, exist_ok=True)
            self.runs += 1
        self._pool.submit(job.id, function, *args)
        return job

    def _event(self, job_id: str, kind: str, *payload) -> None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or not job.active:
                return
            if kind == "started":
                job.worker_pid = payload[0]
            elif kind == "progress":
                job.status, job.stage, job.progress = "running", payload[0], payload[1]
                job.started = job.started or time.time()
            else:
                self._finish(job, kind, payload)

    def _finish(self, job: Job, kind: str, payload: tuple) -> None:
        job.finished = time.time()
        job.started = job.started or job.finished
        if kind == "done":
            job.status, job.progress, job.stage = "done", 1.0, "done"
            job.result = payload[0]
            job.used = job.finished
            if job.kind == "dance":
                job.save()
            self.enforce_limit()
            return
        job.status = "failed"
        if kind == "cancelled" or self._closing:
            job.error = "cancelled: the studio is shutting down"
        elif kind == "died":
            job.error = "its worker process died (out of memory?); try again"
        elif payload[0]:  # a KakashiError: its message is for the person
            job.error = public_message(payload[1])
        else:
            log.error("job %s failed: %s", job.id, payload[1])
            first = payload[1].splitlines()[0]
            job.error = f"internal error ({public_message(first)}); see the server's log"
        # A failed job leaves nothing: a dance its folder, a render its partial MP4.
        if job.kind == "dance":
            shutil.rmtree(job.folder, ignore_errors=True)
        else:
            remove_partials(job.folder)

    def enforce_limit(self) -> None:
        """Delete the least recently used results and songs until the work folder fits in
        ``max_work_bytes`` (what running jobs use stays)."""
        if self.max_work_bytes is None:
            return
        with self._lock:
            total = _size(self.work_dir) if self.work_dir.is_dir() else 0
            if total <= self.max_work_bytes:
                return
            busy_folders = {job.folder for job in self._jobs.values() if job.active}
            busy_songs = {job.request.get("song") for job in self._jobs.values() if job.needs_song}
            items = []  # (last use, folder or song, jobs to forget)
            for job in self._jobs.values():
                if job.kind == "dance" and job.status == "done" and job.folder not in busy_folders:
                    items.append((job.used, job.folder, job))
            now = time.time()
            if self.songs_dir.is_dir():
                for song in self.songs_dir.iterdir():
                    used = song.stat().st_mtime
                    if song.name not in busy_songs and now - used > _SONG_GRACE_S:
                        items.append((used, song, None))
            for _, path, job in sorted(items, key=lambda item: item[0]):
                if total <= self.max_work_bytes:
                    break
                total -= _size(path)
                if job is None:
                    path.unlink(missing_ok=True)
                    continue
                shutil.rmtree(path, ignore_errors=True)
                self.evicted += 1
                for other in [j for j in self._jobs.values() if j.folder == path]:
                    del self._jobs[other.id]
                # Its song goes with its last result.
                song = self.songs_dir / job.request.get("song", "")
                still_used = any(
                    j.request.get("song") == song.name for j in self._jobs.values() if j.needs_song
                )
                if song.is_file() and not still_used:
                    total -= song.stat().st_size
                    song.unlink()
            if total > self.max_work_bytes:
                log.warning("work folder %.1f MB over its limit of %.1f MB: all of it is in use",
                            total / 1e6, self.max_work_bytes / 1e6)  # fmt: skip

    def shutdown(self) -> None:
        """Cancel queued jobs and stop running ones now (Ctrl-C must not wait for them)."""
        self._closing = True
        self._pool.shutdown()
