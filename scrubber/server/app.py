"""The scrub server (FastAPI): scrub uploads, run batch jobs, work the review queue.

Endpoints (``submitter`` and ``reviewer`` are bearer-token roles, see
:class:`~scrubber.server.settings.TokenBook`):

=========================================  ==========  ===========================================
``POST /v1/scrub``                          submitter   body ``application/dicom``: 200 with the
                                                        scrubbed instance, or 202
                                                        ``{"quarantine_id": ...}`` when held
``POST /v1/jobs``, ``GET /v1/jobs/{id}``    submitter   a batch run over a server-side folder
                                                        under a configured root; poll it
``GET /v1/quarantine``, ``GET .../{id}``,   reviewer    the review queue, a frame with boxes,
``GET .../{id}/frames/{n}.png``,                        release with boxes, reject
``POST .../{id}/release``, ``.../reject``
``GET /review``                             reviewer    the review page (session cookie after
                                                        signing in with a token; CSRF-protected)
``GET /healthz``, ``/readyz``, ``/metrics`` none        liveness, models loaded, Prometheus
=========================================  ==========  ===========================================

Uploads beyond ``max_upload`` get 413; beyond ``queue_size`` uploads in work, 429 with
``Retry-After``; before the models are loaded, 503. An accepted upload is always answered. No
response, log line or metric carries a header value or OCR text; held uploads are kept in the
quarantine under ``api/<id>.dcm``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final

import numpy as np
from fastapi import Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from pydicom.dataset import Dataset

from scrubber import __version__
from scrubber.deid import Deidentifier, DeidResult, KeyStore
from scrubber.detect.ocr import OcrEngine, TextRegion
from scrubber.dicom_io import looks_like_dicom, read_instance, stage_instance
from scrubber.errors import ConfigError, ScrubberError, where
from scrubber.pipeline import InstanceResult, QuarantineReason, scrub_instance
from scrubber.review import ReviewError, ReviewQueue
from scrubber.server.page import REVIEW_PAGE, SIGN_IN_PAGE
from scrubber.server.settings import Role, ServerSettings

__all__ = ["create_app"]

_log = logging.getLogger(__name__)
_SESSION: Final = "scrubber_session"
_CSRF: Final = "scrubber_csrf"
_SESSION_SECONDS: Final = 8 * 3600
_RETRY_AFTER: Final = "2"


class _LockedEngine:
    """An OCR engine shared by worker threads, one read at a time."""

    def __init__(self, engine: OcrEngine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self.name = engine.name
        self.max_side = engine.max_side

    def read(self, view: np.ndarray) -> list[TextRegion]:
        with self._lock:
            return self._engine.read(view)


class _LockedDeidentifier(Deidentifier):
    """A de-identifier shared by worker threads: one instance at a time (the key store's rows)."""

    _lock = threading.Lock()

    def deidentify(self, ds: Dataset, *, pixels_cleaned: bool = False) -> DeidResult:
        with self._lock:
            return super().deidentify(ds, pixels_cleaned=pixels_cleaned)


@dataclass
class _Job:
    id: str
    input: str
    state: str = "queued"
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None


@dataclass
class _State:
    settings: ServerSettings
    registry: CollectorRegistry
    outcomes: Counter
    latency: Histogram
    ready: bool = False
    classifier: Any = None
    engine: Any = None
    deidentifier: Deidentifier | None = None
    store: KeyStore | None = None
    pool: ThreadPoolExecutor | None = None
    in_work: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: dict[str, tuple[set[Role], str, float]] = field(default_factory=dict)
    jobs: dict[str, _Job] = field(default_factory=dict)
    job_lock: threading.Lock = field(default_factory=threading.Lock)
    queue: ReviewQueue | None = None


class _Boxes(BaseModel):
    boxes: list[tuple[int, int, int, int, int]] | None = Field(
        default=None, description="(frame, x, y, width, height); frame -1 for every frame"
    )
    accept_residual: bool = False


class _JobRequest(BaseModel):
    input: str = Field(description="A folder under one of the server's roots.")


def _load_models(state: _State) -> None:
    from scrubber.detect import load_classifier
    from scrubber.detect.ocr import load_engine

    settings = state.settings
    try:
        state.classifier = load_classifier(settings.model_dir, device=settings.device, threads=1)
        state.engine = _LockedEngine(load_engine(settings.ocr, threads=max(1, settings.workers)))
        store = KeyStore(settings.key_path, settings.deid.project) if settings.key_path else None
        state.store = store
        state.deidentifier = _LockedDeidentifier(settings.deid, settings.secret, store)
        state.ready = True
    except ScrubberError as exc:  # the server stays up, /readyz says why not
        _log.error("models could not be loaded: %s", exc.reason)


def create_app(settings: ServerSettings) -> FastAPI:
    """Build the server application.

    Parameters
    ----------
    settings : ServerSettings
        Folders, tokens, limits and the project's de-identification.

    Returns
    -------
    fastapi.FastAPI
        The application (models load in the background at start-up; ``/readyz`` tells when).
    """
    for folder in (settings.spool, settings.quarantine):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    registry = CollectorRegistry()
    state = _State(
        settings=settings,
        registry=registry,
        outcomes=Counter(
            "scrubber_instances_total",
            "Instances scrubbed, by outcome and quarantine reason",
            ["outcome", "reason"],
            registry=registry,
        ),
        latency=Histogram(
            "scrubber_stage_seconds",
            "Seconds per pipeline stage per instance",
            ["stage"],
            registry=registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        ),
    )
    state.queue = ReviewQueue(settings.quarantine)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        state.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="scrubber-work")
        loader = threading.Thread(target=_load_models, args=(state,), daemon=True)
        loader.start()
        try:
            yield
        finally:
            state.pool.shutdown(wait=True)
            if state.store is not None:
                state.store.close()

    app = FastAPI(title="scrubber", version=__version__, lifespan=lifespan)
    app.state.scrubber = state
    _routes(app, state)
    return app


# ---------------------------------------------------------------------------------------------
# authentication


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _caller(state: _State, request: Request) -> tuple[set[Role], str]:
    """Roles and a name for the audit trail, from a bearer token or a review-page session."""
    token = _bearer(request)
    if token is not None:
        roles = state.settings.tokens.roles(token)
        if roles:
            return roles, f"token-{_token_id(token)}"
        raise HTTPException(401, "The bearer token is not valid.", {"WWW-Authenticate": "Bearer"})
    session = request.cookies.get(_SESSION)
    if session:
        with state.lock:
            entry = state.sessions.get(session)
        if entry is not None and entry[2] > time.time():
            if request.method not in ("GET", "HEAD"):
                sent = request.headers.get("x-csrf-token", "")
                if not secrets.compare_digest(sent, entry[1]):
                    raise HTTPException(403, "Missing or wrong CSRF token; reload the page.")
            return entry[0], f"session-{session[:8]}"
    raise HTTPException(
        401, "Sign in: send Authorization: Bearer TOKEN.", {"WWW-Authenticate": "Bearer"}
    )


def _token_id(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:8]


def _needs(role: Role) -> Callable[[Request], str]:
    def check(request: Request) -> str:
        state: _State = request.app.state.scrubber
        roles, who = _caller(state, request)
        if role not in roles:
            raise HTTPException(403, f"This needs the {role} role.")
        return who

    return check


# module level: FastAPI resolves these (string) annotations in the module's namespace
Submitter = Annotated[str, Depends(_needs("submitter"))]
Reviewer = Annotated[str, Depends(_needs("reviewer"))]


def _inside_roots(path: Path, roots: tuple[Path, ...]) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


# ---------------------------------------------------------------------------------------------
# work


def _scrub_upload(state: _State, data: bytes) -> tuple[InstanceResult, bytes | None, str | None]:
    """Scrub one uploaded instance (in a worker thread); returns result, output or held id."""
    settings = state.settings
    fd, name = tempfile.mkstemp(prefix=".upload.", suffix=".tmp", dir=settings.spool)
    spooled = Path(name)
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
        if not looks_like_dicom(spooled):
            raise ConfigError("The body is not a DICOM instance (no DICM preamble, no element).")
        try:
            dataset = read_instance(spooled)
        except ScrubberError as exc:
            raise ConfigError(f"The instance cannot be read ({exc.reason}).") from None
        assert state.deidentifier is not None
        result = scrub_instance(
            dataset,
            classifier=state.classifier,
            engine=state.engine,
            deidentifier=state.deidentifier,
        )
        for stage, seconds in result.seconds.items():
            state.latency.labels(stage).observe(seconds)
        reason = result.reason.value if result.reason else ""
        state.outcomes.labels(result.outcome.value, reason).inc()
        if result.released and result.dataset is not None:
            staged = stage_instance(result.dataset, settings.spool / f"{uuid.uuid4().hex}.dcm")
            try:
                return result, staged.read_bytes(), None
            finally:
                staged.unlink()
        from scrubber.runner.quarantine import commit_staged, stage_quarantine

        held = uuid.uuid4().hex
        staged_files = stage_quarantine(
            spooled, settings.quarantine, Path("api") / f"{held}.dcm", result
        )
        commit_staged(staged_files)
        assert state.queue is not None
        return result, None, state.queue.id_of(staged_files[0][1])
    finally:
        with contextlib.suppress(FileNotFoundError):
            spooled.unlink()


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"The upload is larger than the limit of {limit} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"The upload is larger than the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _run_job(state: _State, job: _Job, source: Path) -> None:
    settings = state.settings
    with state.job_lock:  # one batch job at a time: the in-process runner holds one worker state
        job.state = "running"
        _run_job_locked(state, job, source, settings)


def _run_job_locked(state: _State, job: _Job, source: Path, settings: ServerSettings) -> None:
    from scrubber.detect.classifier import Manifest, default_model_dir
    from scrubber.runner.batch import BatchRun, RunSettings, versions

    try:
        name = source.name or "input"
        run = RunSettings(
            source=source,
            out=settings.out / name,
            quarantine=settings.quarantine / "jobs" / name,
            layout="mirror",
            deid=settings.deid,
            secret=settings.secret,
            key_path=settings.key_path,
            ocr=settings.ocr,
            model_dir=settings.model_dir,
            device=settings.device,
        )
        manifest = Manifest.read(settings.model_dir or default_model_dir())
        ledger = settings.spool / "ledgers" / f"{name}.sqlite"  # paths stay out of OUT
        with BatchRun(run, ledger, versions(manifest, run), 1) as batch:
            batch.recover()
            tasks, _done = batch.plan()
            summary = batch.run(tasks)
            job.counts = dict(summary.ledger_counts)
        job.state = "done"
    except ScrubberError as exc:
        job.state, job.error = "failed", str(exc)
    except Exception as exc:  # a job failure must not take the server down
        job.state, job.error = "failed", f"unexpected {type(exc).__name__}"
        _log.error("batch job failed (%s)", where(exc))  # where, not what: no PHI in logs
    job.finished = time.time()


# ---------------------------------------------------------------------------------------------
# routes


def _routes(app: FastAPI, state: _State) -> None:
    settings = state.settings
    queue = state.queue
    assert queue is not None

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        if state.ready:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "loading models"}, 503, {"Retry-After": _RETRY_AFTER})

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/scrub", responses={200: {"content": {"application/dicom": {}}}})
    async def scrub(request: Request, _who: Submitter) -> Response:
        if not state.ready or state.pool is None:
            raise HTTPException(503, "The models are still loading.", {"Retry-After": _RETRY_AFTER})
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media not in ("application/dicom", "application/octet-stream"):
            raise HTTPException(415, "Send the instance as application/dicom.")
        with state.lock:
            if state.in_work >= settings.queue_size:
                raise HTTPException(
                    429, "The server is busy; retry later.", {"Retry-After": _RETRY_AFTER}
                )
            state.in_work += 1
        try:
            body = await _read_body(request, settings.max_upload)
            loop = asyncio.get_running_loop()
            result, output, held = await loop.run_in_executor(
                state.pool, _scrub_upload, state, body
            )
        except ConfigError as exc:
            raise HTTPException(400, str(exc)) from None
        finally:
            with state.lock:
                state.in_work -= 1
        if output is not None:
            return Response(
                output,
                media_type="application/dicom",
                headers={"X-Scrubber-Outcome": result.outcome.value},
            )
        reason = (result.reason or QuarantineReason.INTERNAL_ERROR).value
        return JSONResponse({"quarantine_id": held, "reason": reason}, 202)

    @app.post("/v1/jobs", status_code=202)
    def submit_job(body: _JobRequest, _who: Submitter) -> dict[str, str]:
        source = Path(body.input)
        if not source.is_absolute() or not _inside_roots(source, settings.roots):
            raise HTTPException(403, "The input is outside the server's configured roots.")
        if not source.is_dir():
            raise HTTPException(404, "The input folder does not exist.")
        job = _Job(id=uuid.uuid4().hex[:12], input=source.name)
        state.jobs[job.id] = job
        threading.Thread(target=_run_job, args=(state, job, source), daemon=True).start()
        return {"job_id": job.id}

    @app.get("/v1/jobs/{job_id}")
    def job_status(job_id: str, _who: Submitter) -> dict[str, Any]:
        job = state.jobs.get(job_id)
        if job is None:
            raise HTTPException(404, "No such job.")
        return {
            "job_id": job.id,
            "state": job.state,
            "counts": job.counts,
            "error": job.error,
        }

    @app.get("/v1/quarantine")
    def quarantine_list(_who: Reviewer, reason: str | None = None) -> list[dict[str, Any]]:
        return [item.summary() for item in queue.items(reason)]

    @app.get("/v1/quarantine/{item_id}")
    def quarantine_item(item_id: str, _who: Reviewer) -> dict[str, Any]:
        try:
            item = queue.get(item_id)
        except ReviewError as exc:
            raise HTTPException(404, str(exc)) from None
        try:  # the page maps preview pixels to frame pixels
            header = read_instance(item.path, stop_before_pixels=True)
            rows, columns = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
        except ScrubberError:
            rows = columns = 0
        return {
            **item.summary(),
            "boxes": item.boxes,
            "scores": item.scores,
            "rows": rows,
            "columns": columns,
        }

    @app.get("/v1/quarantine/{item_id}/frames/{frame}.png")
    def quarantine_frame(item_id: str, frame: int, _who: Reviewer) -> Response:
        try:
            png = queue.preview(item_id, frame, boxes=[])
        except ReviewError as exc:
            raise HTTPException(404, str(exc)) from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @app.post("/v1/quarantine/{item_id}/release")
    async def quarantine_release(item_id: str, body: _Boxes, who: Reviewer) -> dict[str, Any]:
        from scrubber.pipeline import ResidualTextError

        if not state.ready or state.deidentifier is None:
            raise HTTPException(503, "The models are still loading.", {"Retry-After": _RETRY_AFTER})

        def work() -> dict[str, Any]:
            _target, result = queue.release(
                item_id,
                settings.out / "reviewed",
                engine=state.engine,
                deidentifier=state.deidentifier,  # type: ignore[arg-type]
                reviewer=who,
                boxes=body.boxes,
                accept_residual=body.accept_residual,
            )
            return {"outcome": result.outcome.value, "boxes": len(result.boxes)}

        try:
            return await asyncio.get_running_loop().run_in_executor(state.pool, work)
        except ResidualTextError as exc:
            raise HTTPException(409, {"message": str(exc), "residual": exc.regions}) from None
        except ReviewError as exc:
            raise HTTPException(404 if "No held" in str(exc) else 400, str(exc)) from None
        except ScrubberError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/v1/quarantine/{item_id}/reject")
    def quarantine_reject(item_id: str, who: Reviewer) -> dict[str, str]:
        try:
            item = queue.reject(item_id, reviewer=who)
        except ReviewError as exc:
            raise HTTPException(404, str(exc)) from None
        return {"rejected": item.id}

    @app.get("/v1/audit")
    def audit(_who: Reviewer) -> list[dict[str, Any]]:
        return queue.audit()

    # -- the review page -----------------------------------------------------------------

    @app.get("/review/sign-in", response_class=HTMLResponse)
    def sign_in_page() -> str:
        return SIGN_IN_PAGE

    @app.post("/review/sign-in")
    def sign_in(token: Annotated[str, Form()]) -> Response:
        roles = settings.tokens.roles(token)
        if "reviewer" not in roles:
            return HTMLResponse(SIGN_IN_PAGE.replace("<!--error-->", "Not a reviewer token."), 401)
        session, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with state.lock:
            now = time.time()
            for key in [k for k, v in state.sessions.items() if v[2] < now]:
                del state.sessions[key]
            state.sessions[session] = (roles, csrf, now + _SESSION_SECONDS)
        response = RedirectResponse("/review", 303)
        response.set_cookie(
            _SESSION, session, httponly=True, samesite="strict", max_age=_SESSION_SECONDS
        )
        response.set_cookie(
            _CSRF, csrf, httponly=False, samesite="strict", max_age=_SESSION_SECONDS
        )
        return response

    @app.get("/review", response_class=HTMLResponse)
    def review_page(request: Request) -> Response:
        try:
            roles, _who = _caller(state, request)
        except HTTPException:
            return RedirectResponse("/review/sign-in", 303)
        if "reviewer" not in roles:
            return RedirectResponse("/review/sign-in", 303)
        return HTMLResponse(REVIEW_PAGE, headers={"Cache-Control": "no-store"})
