"""The studio's FastAPI application: the page at ``/`` and the JSON API under ``/api``.

FastAPI documents the API itself at ``/docs`` and ``/openapi.json``. Every error is a JSON
object ``{"error": "what is wrong and what to do"}`` with a 4xx status for what the client
can fix; the server keeps serving whatever a request did.

Only the studio's own page may drive it (:class:`OwnPageOnly`): a request whose ``Host`` is
not the studio's is refused (DNS rebinding: a foreign page whose name resolves to
127.0.0.1), and so is a state-changing request from another site (a plain HTML form or a
``no-cors`` fetch is a CORS "simple" request: the browser sends it without asking).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
    StreamingResponse,
)
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from kakashi.errors import CheckpointError, KakashiError, UnknownModelError
from kakashi.settings import default
from kakashi.studio.catalog import Catalog, find_models
from kakashi.studio.edits import edit_job
from kakashi.studio.jobs import (
    DANCE_FILES,
    RENDER_FILE,
    Job,
    JobBoard,
    job_id,
    make_dance,
    public_message,
    render_video,
)
from kakashi.studio.uploads import (
    LimitedReceive,
    SlowUpload,
    UploadTooLarge,
    remove_partials,
    store_song,
)

log = logging.getLogger("kakashi.studio")

# Room for the multipart headers and the small form fields around the song itself.
_FORM_OVERHEAD = 64 * 1024
_MEDIA_TYPES = {
    "dance.npz": "application/octet-stream",
    "dance.html": "text/html; charset=utf-8",
    "dance.bvh": "text/plain; charset=utf-8",
    "dance.glb": "model/gltf-binary",
    "dance.mp4": "video/mp4",
}
_SONG_TYPES = {
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".flac": "audio/flac",
    ".mp3": "audio/mpeg",
}
SEED_MAX = 2**31 - 1  # torch and numpy take any seed up to this on every platform
_SEED = re.compile(r"[0-9]{1,10}")  # ASCII digits only: int() also takes '٣' and '²' fails
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass
class StudioSettings:
    """The studio's settings; defaults from the schema's ``studio`` section."""

    models: list[str] = field(default_factory=lambda: default("studio.models"))
    work_dir: Path = field(default_factory=lambda: Path(default("studio.work_dir")))
    workers: int = field(default_factory=lambda: default("studio.workers") or os.cpu_count() or 1)
    max_upload_mb: float = field(default_factory=lambda: default("studio.max_upload_mb"))
    max_minutes: float = field(default_factory=lambda: default("studio.max_minutes"))
    max_work_mb: float = field(default_factory=lambda: default("studio.max_work_mb"))
    body_timeout_s: float = field(default_factory=lambda: default("studio.body_timeout_s"))
    min_seconds: float = field(default_factory=lambda: default("studio.min_seconds"))
    host: str = field(default_factory=lambda: default("studio.host"))  # a Host it answers to
    allowed_hosts: list[str] = field(default_factory=list)  # more names (--allow-host)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)


class StudioError(Exception):
    """An answer other than success: HTTP ``status`` and a message for the person."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _status_of(error: KakashiError) -> int:
    if isinstance(error, UploadTooLarge):
        return 413
    if isinstance(error, SlowUpload):
        return 408
    if isinstance(error, UnknownModelError):
        return 404
    if isinstance(error, CheckpointError):
        return 409
    return 422


def host_name(host: str) -> str:
    """The name in a ``Host`` header or an origin's netloc: no port, no brackets, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class OwnPageOnly:
    """ASGI middleware: answer only requests for this studio from its own page (or from a
    non-browser client such as curl, which sends neither ``Origin`` nor ``Sec-Fetch-*``).

    - ``Host`` must be the bound address, localhost or a name given with ``--allow-host``
      (bound to a wildcard address, any IP address too: only names can be rebound);
    - an ``/api`` request a browser marks ``Sec-Fetch-Site: cross-site`` or ``same-site``
      is refused (another site, or another port of this machine);
    - a state-changing request (POST, ...) with an ``Origin`` must come from the page's own
      origin (older browsers send no ``Sec-Fetch-Site``, all send ``Origin``).
    """

    def __init__(self, app, host: str, allowed_hosts: list[str]) -> None:
        self.app = app
        self.names = _LOOPBACK_NAMES | {host_name(name) for name in allowed_hosts}
        self.any_ip = host_name(host) in _WILDCARDS
        if not self.any_ip:
            self.names.add(host_name(host))

    def _host_ok(self, name: str) -> bool:
        return name in self.names or (self.any_ip and _is_ip(name))

    def refusal(self, scope) -> str | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self._host_ok(host_name(host)):
            return (
                f"this studio does not answer to the host {host[:80]!r}; open it at "
                "http://localhost:PORT/ (or start it with --allow-host NAME)"
            )
        site = headers.get("sec-fetch-site", "")
        if scope["path"].startswith("/api") and site in ("cross-site", "same-site"):
            return "refused: a request from another site; use the studio's own page"
        if scope.get("method", "GET") not in _SAFE_METHODS and "origin" in headers:
            origin = headers["origin"]
            if origin == "null" or urlsplit(origin).netloc.lower() != host.strip().lower():
                return f"refused: a request from another origin ({origin[:80]!r})"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.refusal(scope)
            if refusal is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                log.warning("%s %s: %s", scope.get("method"), scope["path"], refusal)
                response = _error(403, refusal, connection="close")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _file_name_part(text: str, fallback: str) -> str:
    """``text`` as a piece of a download's name: letters, digits, ``._-`` only."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:60]
    return cleaned or fallback


def download_name(job: Job, name: str) -> str:
    """``SONG-MODEL-seedN.ext`` for the file ``name`` of the dance ``job``."""
    request = job.request
    song = _file_name_part(Path(request.get("song_name", "")).stem, "song")
    model = _file_name_part(str(request.get("model", "")), "model")
    return f"{song}-{model}-seed{request.get('seed', 0)}{Path(name).suffix}"


def _text_field(form, name: str, fallback: str, longest: int) -> str:
    value = form.get(name)
    if value is None or value == "":
        return fallback
    if not isinstance(value, str) or len(value) > longest:
        raise StudioError(422, f"field {name!r} must be text of at most {longest} characters")
    return value.strip()


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


def create_app(settings: StudioSettings) -> FastAPI:
    songs_dir = settings.work_dir / "songs"
    dances_dir = settings.work_dir / "dances"
    catalog: Catalog = find_models(settings.models)
    board: JobBoard | None = None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal board
        remove_partials(settings.work_dir)  # left by a run that was killed
        board = JobBoard(settings.work_dir, settings.workers, int(settings.max_work_mb * 1e6))
        board.enforce_limit()  # a smaller limit than last time
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
        # A redirect to the URL with(out) a trailing slash would be built from the client's
        # Host header: no redirects at all, a wrong URL is a 404.
        redirect_slashes=False,
    )
    app.add_middleware(OwnPageOnly, host=settings.host, allowed_hosts=settings.allowed_hosts)
    # Swagger UI 5 (it reads the OpenAPI 3.1 FastAPI writes) from the swagger-ui-bundle-v2
    # package, so /docs works offline like the page.
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
        return _error(_status_of(exc), public_message(str(exc)))

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "; ".join(str(e.get("msg")) for e in exc.errors()))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug: JSON like every other answer, the details in the server's log only.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, f"internal error ({type(exc).__name__}); see the server's log")

    def _job(dance_id: str) -> Job:
        job = board.get(dance_id)
        if job is None:
            raise StudioError(404, f"no dance {dance_id[:40]!r} on this server; POST a song first")
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
        "'style' (one of the model's styles, or auto). Or edit a finished dance: 'edit_of' "
        "(its id) with 'from_s' and 'to_s' (the span made anew), 'keep' (upper|lower), "
        "'keyframes_s' (times whose poses the new take passes through: 1.5,6) or 'song' "
        "(an upload or a stored song's name: the dance continued to that longer song)",
        responses={202: {"description": '{"id": ...}: poll GET /api/dances/{id}'}},
    )
    async def create_dance(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        limit = settings.max_upload_bytes + _FORM_OVERHEAD
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            # Answered at once, without reading a byte of the body, and the connection
            # closed: a client that declares 10 GB does not get to send them.
            message = (
                f"the upload is larger than the limit of {settings.max_upload_mb:g} MB; "
                "send a shorter or more compressed song"
            )
            return _error(413, message, connection="close")
        receive = LimitedReceive(request.receive, limit, settings.body_timeout_s)
        try:
            form = await Request(request.scope, receive).form(max_files=1, max_fields=8)
        except UploadTooLarge as exc:
            await receive.discard_rest(cap=4 * limit)
            return _error(413, str(exc), connection="close")
        except SlowUpload as exc:
            log.info("a slow upload was cut after %d bytes", receive.received)
            return _error(408, str(exc), connection="close")
        except ClientDisconnect:
            log.info("a client went away during its upload (%d bytes received)", receive.received)
            return Response(status_code=400)  # nobody reads it
        try:
            if form.get("edit_of") is not None:  # a new take made from a finished dance
                # In a thread: a continuation's uploaded song is decoded (store_song).
                job, arguments = await run_in_threadpool(
                    edit_job, form, board, catalog, _style, _store
                )
                job = board.submit(job, DANCE_FILES, make_dance, *arguments)
                await run_in_threadpool(board.enforce_limit)  # a new song counts too
                return JSONResponse({"id": job.id, **job.public()}, status_code=202)
            song = form.get("song")
            if not isinstance(song, UploadFile):
                raise StudioError(422, "no song: send the audio file in the multipart field 'song'")
            model = catalog.get(_text_field(form, "model", "", 200) or None)
            seed_text = _text_field(form, "seed", "0", 1 << 20)
            if not _SEED.fullmatch(seed_text) or int(seed_text) > SEED_MAX:
                shown = seed_text if len(seed_text) <= 20 else seed_text[:20] + "..."
                raise StudioError(
                    422,
                    f"seed must be a whole number from 0 to {SEED_MAX} in digits 0-9, "
                    f"not {shown!r}",
                )
            seed = int(seed_text)
            start = _text_field(form, "start", "mean", 100)
            style = _style(model, _text_field(form, "style", "", 100))
            start_pose = _start_pose(start)
            stored = await run_in_threadpool(_store, song)
            song_fields = stored.request_fields(song.filename)
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
                **song_fields,
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
        await run_in_threadpool(board.enforce_limit)  # the new song counts too
        return JSONResponse({"id": job.id, **job.public()}, status_code=202)

    @app.get("/api/dances", summary="Every dance of this studio, newest first (the takes)")
    async def dance_list() -> dict:
        return {"dances": [job.public() for job in board.dances()[:200]]}

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

    def _store(song: UploadFile):
        """The uploaded song, checked and stored under its content hash (blocking)."""
        return store_song(
            song.file,
            songs_dir,
            max_bytes=settings.max_upload_bytes,
            min_s=settings.min_seconds,
            max_s=settings.max_minutes * 60,
        )

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
                f"start pose {start[:40]!r}: give 'mean' or the id of a finished dance of "
                "this studio (its first pose starts the new dance)",
            )
        return str(source.folder / "dance.npz")

    def _finished(dance_id: str) -> Job:
        job = _job(dance_id)
        if job.status != "done":
            raise StudioError(409, f"dance {dance_id} is {job.status}; its files come when done")
        return job

    def _standalone_page(job: Job, song: Path) -> bytes:
        """The viewer page with the song inside it: the download works from disk, offline
        (the page kept in the work folder refers to the song instead of holding a copy)."""
        from kakashi.dance import Dance
        from kakashi.outputs.stage import song_frames
        from kakashi.outputs.viewer import viewer_html

        dance = Dance.load(job.folder / "dance.npz")
        frames = song_frames(song, dance, "dance.npz")
        title = f"{job.request.get('model')} seed {job.request.get('seed')}"
        return viewer_html(
            dance, song.read_bytes(), _SONG_TYPES[song.suffix], frames, title
        ).encode()

    @app.head("/api/dances/{dance_id}/{name}", include_in_schema=False)
    @app.get(
        "/api/dances/{dance_id}/{name}",
        summary="dance.npz, dance.bvh, dance.glb, dance.html (?download=1: with the song inside), "
        "dance.mp4 (rendered on the first GET), song; HEAD too",
    )
    async def dance_file(dance_id: str, name: str, request: Request):
        if name not in _MEDIA_TYPES and name != "song":
            names = ", ".join([*_MEDIA_TYPES, "song"])
            raise StudioError(404, f"no file {name[:40]!r}; ask for one of {names}")
        job = _finished(dance_id)
        board.touch(job)
        song = songs_dir / job.request["song"]
        if name == "song":
            return FileResponse(song, media_type=_SONG_TYPES.get(song.suffix, "audio/ogg"))
        if name == RENDER_FILE and not (job.folder / RENDER_FILE).is_file():
            if request.method == "HEAD":  # HEAD asks, it never starts a render
                raise StudioError(409, "the MP4 is not rendered yet; GET it to render it")
            # A failed render is tried again: its failure stays visible in its status.
            render = board.submit(
                Job(job_id("render", dance_id), "render", job.folder),
                (RENDER_FILE,),
                render_video,
                str(job.folder),
                str(song),
            )
            if render.status != "done":
                return JSONResponse(render.public(), status_code=202)
        filename = download_name(job, name)
        if name == "dance.html" and request.query_params.get("download"):
            page = await run_in_threadpool(_standalone_page, job, song)
            disposition = f'attachment; filename="{filename}"'
            return Response(page, media_type=_MEDIA_TYPES[name], headers={
                "content-disposition": disposition})  # fmt: skip
        # Only the fixed names above are ever served: no part of a path comes from the client.
        # The viewer page is shown inline (the studio embeds it); the rest are downloads.
        disposition = "inline" if name == "dance.html" else "attachment"
        return FileResponse(
            job.folder / name,
            media_type=_MEDIA_TYPES[name],
            filename=filename,
            content_disposition_type=disposition,
        )

    return app
