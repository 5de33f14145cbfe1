"""The studio's FastAPI application: the page at ``/`` and the JSON API under ``/api``.

FastAPI documents the API itself at ``/docs`` and ``/openapi.json``. Every error is a JSON
object ``{"error": "what is wrong and what to do"}`` with a 4xx status for what the client
can fix; the server keeps serving whatever a request did.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from kakashi.errors import CheckpointError, KakashiError, UnknownModelError
from kakashi.settings import default
from kakashi.studio.catalog import Catalog, find_models
from kakashi.studio.jobs import (
    DANCE_FILES,
    RENDER_FILE,
    Job,
    JobBoard,
    job_id,
    make_dance,
    render_video,
)
from kakashi.studio.uploads import LimitedReceive, UploadTooLarge, remove_partials, store_song

log = logging.getLogger("kakashi.studio")

# Room for the multipart headers and the small form fields around the song itself.
_FORM_OVERHEAD = 64 * 1024
_MEDIA_TYPES = {
    "dance.npz": "application/octet-stream",
    "dance.html": "text/html; charset=utf-8",
    "dance.bvh": "text/plain; charset=utf-8",
    "dance.mp4": "video/mp4",
}


@dataclass
class StudioSettings:
    """The studio's settings; defaults from the schema's ``studio`` section."""

    models: list[str] = field(default_factory=lambda: default("studio.models"))
    work_dir: Path = field(default_factory=lambda: Path(default("studio.work_dir")))
    workers: int = field(default_factory=lambda: default("studio.workers") or os.cpu_count() or 1)
    max_upload_mb: float = field(default_factory=lambda: default("studio.max_upload_mb"))
    max_minutes: float = field(default_factory=lambda: default("studio.max_minutes"))
    min_seconds: float = field(default_factory=lambda: default("studio.min_seconds"))

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


class StudioError(Exception):
    """An answer other than success: HTTP ``status`` and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _status_of(error: KakashiError) -> int:
    if isinstance(error, UploadTooLarge):
        return 413
    if isinstance(error, UnknownModelError):
        return 404
    if isinstance(error, CheckpointError):
        return 409
    return 422


def create_app(settings: StudioSettings) -> FastAPI:
    songs_dir = settings.work_dir / "songs"
    dances_dir = settings.work_dir / "dances"
    catalog: Catalog = find_models(settings.models)
    board: JobBoard | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal board
        remove_partials(settings.work_dir)  # left by a run that was killed
        board = JobBoard(settings.work_dir, settings.workers)
        app.state.board = board
        try:
            yield
        finally:
            board.shutdown()
            remove_partials(settings.work_dir)

    app = FastAPI(
        title="Kakashi studio",
        summary="A song in, a dance out: generation, the 3-D viewer, BVH and MP4.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN: served below
        redoc_url=None,
    )
    # Swagger UI from the swagger-ui-bundle package, so /docs works offline like the page.
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="Kakashi studio API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.state.catalog = catalog
    app.state.settings = settings

    @app.exception_handler(StudioError)
    async def _studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(KakashiError)
    async def _kakashi_error(request: Request, exc: KakashiError) -> JSONResponse:
        return _error(_status_of(exc), str(exc))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "; ".join(str(e.get("msg")) for e in exc.errors()))

    def _job(dance_id: str) -> Job:
        job = board.get(dance_id)
        if job is None:
            raise StudioError(404, f"no dance {dance_id!r} on this server; POST a song first")
        return job

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        text = resources.files("kakashi").joinpath("assets", "studio.html").read_text()
        return HTMLResponse(text)

    @app.get("/api/models", summary="The checkpoints served, their metrics, the preselected one")
    async def models() -> dict:
        return catalog.public()

    @app.post(
        "/api/dances",
        status_code=202,
        summary="Dance to a song: multipart field 'song'; optional 'model', 'seed', 'start', "
        "'style' (one of the model's styles, or auto)",
        responses={202: {"description": '{"id": ...}: poll GET /api/dances/{id}'}},
    )
    async def create_dance(request: Request) -> JSONResponse:
        declared = request.headers.get("content-length", "")
        limit = settings.max_upload_bytes + _FORM_OVERHEAD
        receive = LimitedReceive(request.receive, limit)
        try:
            if declared.isdigit() and int(declared) > limit:
                raise UploadTooLarge(
                    f"the upload is larger than the limit of {settings.max_upload_mb:g} MB; "
                    "send a shorter or more compressed song"
                )
            form = await Request(request.scope, receive).form(max_files=1, max_fields=8)
        except UploadTooLarge:
            await receive.discard_rest(cap=4 * limit)
            raise
        try:
            song = form.get("song")
            if not isinstance(song, UploadFile):
                raise StudioError(422, "no song: send the audio file in the multipart field 'song'")
            model = catalog.get(str(form.get("model") or "") or None)
            seed_text = str(form.get("seed") or "0").strip()
            if not seed_text.isdigit() or int(seed_text) >= 2**31:
                raise StudioError(
                    422, f"seed must be a whole number below 2**31, not {seed_text!r}"
                )
            seed = int(seed_text)
            start = str(form.get("start") or "mean")
            style = _style(model, str(form.get("style") or "").strip())
            start_pose = _start_pose(start)
            stored = await run_in_threadpool(
                store_song,
                song.file,
                songs_dir,
                max_bytes=settings.max_upload_bytes,
                min_s=settings.min_seconds,
                max_s=settings.max_minutes * 60,
            )
        finally:
            await form.close()
        checkpoint = model.path
        version = checkpoint.stat().st_mtime_ns  # a retrained model is another model
        dance_id = job_id(
            stored.sha256, checkpoint, version, seed, start, *([style] if style else [])
        )
        job = Job(
            dance_id,
            "dance",
            dances_dir / dance_id,
            request={
                "model": model.id,
                "seed": seed,
                "start": start,
                "style": style or "auto",
                "song_sha256": stored.sha256,
                "duration_s": round(stored.duration_s, 3),
                "song": stored.path.name,
            },
        )
        job = board.submit(
            job,
            DANCE_FILES,
            make_dance,
            str(stored.path),
            str(checkpoint),
            seed,
            start_pose,
            str(job.folder),
            style,
        )
        return JSONResponse({"id": job.id, **job.public()}, status_code=202)

    @app.get("/api/dances/{dance_id}", summary="Status: queued|running|done|failed, progress")
    async def dance_status(dance_id: str) -> dict:
        return _job(dance_id).public()

    @app.get("/api/dances/{dance_id}/events", summary="Server-sent events of the status")
    async def dance_events(dance_id: str, request: Request) -> StreamingResponse:
        job = _job(dance_id)

        async def events():
            last = None
            while not await request.is_disconnected():
                state = job.public()
                text = json.dumps(state)
                if text != last:
                    yield f"data: {text}\n\n"
                    last = text
                if state["status"] in ("done", "failed"):
                    return
                await asyncio.sleep(0.25)

        return StreamingResponse(events(), media_type="text/event-stream")

    def _style(model, style: str) -> str | None:
        """The style asked for (lower case), None for auto or none; 422 for one the model
        does not know."""
        if not style or style.lower() == "auto":
            return None
        if style.lower() not in model.styles:
            known = ", ".join(model.styles)
            raise StudioError(
                422,
                f"unknown style {style!r}; model {model.id} knows {known} (or auto)"
                if known
                else f"model {model.id} was trained without style labels: leave style empty",
            )
        return style.lower()

    def _start_pose(start: str) -> str:
        """``mean`` (the training mean pose) or the id of a finished dance of this studio,
        whose first pose starts the new one; never a path, which would let a client read
        the server's files."""
        if start == "mean":
            return start
        source = board.get(start)
        if source is None or source.kind != "dance" or source.status != "done":
            raise StudioError(
                422,
                f"start pose {start!r}: give 'mean' or the id of a finished dance of this "
                "studio (its first pose starts the new dance)",
            )
        return str(source.folder / "dance.npz")

    def _finished(dance_id: str) -> Job:
        job = _job(dance_id)
        if job.status != "done":
            raise StudioError(409, f"dance {dance_id} is {job.status}; its files come when done")
        return job

    @app.get("/api/dances/{dance_id}/{name}", summary="dance.npz, dance.bvh, dance.html, dance.mp4")
    async def dance_file(dance_id: str, name: str):
        if name not in _MEDIA_TYPES:
            raise StudioError(404, f"no file {name!r}; ask for one of {', '.join(_MEDIA_TYPES)}")
        job = _finished(dance_id)
        if name == RENDER_FILE:
            render = board.submit(
                Job(job_id("render", dance_id), "render", job.folder),
                (RENDER_FILE,),
                render_video,
                str(job.folder),
                str(songs_dir / job.request["song"]),
                retry_failed=False,
            )
            if render.status == "failed":
                raise StudioError(500, f"the MP4 render failed: {render.error}")
            if render.status != "done":
                return JSONResponse(render.public(), status_code=202)
        # Only the fixed names above are ever served: no part of a path comes from the client.
        path = job.folder / name
        # The viewer page is shown inline (the studio embeds it); the rest are downloads.
        disposition = "inline" if name == "dance.html" else "attachment"
        return FileResponse(
            path, media_type=_MEDIA_TYPES[name], filename=name, content_disposition_type=disposition
        )

    return app
