"""``create_app(settings)``: the Starlette application and the lifespan that owns
the bus, the run manager, the retrieval engine and the agent.

Mounting inside another Starlette/FastAPI app: Starlette does not run a mounted
app's lifespan, so the parent runs it (docs/embedding.md)::

    legal = create_app(settings)
    parent = Starlette(routes=[Mount("/legal", legal)], lifespan=lambda app: legal.lifespan(legal))
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from legalstream import discovery
from legalstream.agent import env as agent_env
from legalstream.agent.api import AgentCounters, AgentRunner, CountingRunner
from legalstream.audit import configure_audit
from legalstream.bus import open_bus
from legalstream.bus.base import BROADCAST, BusUnavailable
from legalstream.metrics import Metrics
from legalstream.runs import RunManager
from legalstream.runs.ids import RunIds, deployment_secret
from legalstream.runs.leases import LeaseKeeper
from legalstream.server import agui, asyncapi, casefiles, openapi, rest
from legalstream.server.auth import Authenticator, AuthError
from legalstream.server.connections import ConnectionRegistry
from legalstream.server.ingest_jobs import IngestWorker
from legalstream.server.limits import Limits
from legalstream.server.protocol import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_TOKEN_EXPIRED,
    ProtocolError,
)
from legalstream.server.runner import (
    InsecureBinding,
    PortUnavailable,
    bind_socket,
    check_binding,
    run_server,
    uvicorn_config,
)
from legalstream.server.state import Services
from legalstream.server.ws import QueryEndpoint
from legalstream.settings import Settings

log = logging.getLogger("legalstream.app")

WEB_DIR = Path(__file__).parent / "web"

RunnerFactory = Callable[[Services], AgentRunner]


class LegalStreamApp(Starlette):
    """A Starlette app whose lifespan a parent app can run when mounting it."""

    lifespan: Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]

    async def graceful_shutdown(self) -> None:
        """Refuse new work, finish or cancel runs, close clients with 1001.

        ``legalstream.server.runner.Server`` calls this before uvicorn closes
        every WebSocket with 1012; the lifespan's shutdown calls it again (a no-op
        by then). Idempotent.
        """
        svc = getattr(self.state, "services", None)
        if svc is not None:
            await _stop_services(svc)


def create_app(
    settings: Settings | None = None,
    *,
    runner_factory: RunnerFactory | None = None,
    load_engine: bool | None = None,
) -> LegalStreamApp:
    """Build the app. ``runner_factory`` replaces the CrewAI agent (tests, embedding)."""
    settings = settings or Settings()
    _configure_process(settings)
    audit = configure_audit(settings.audit)
    if load_engine is None:
        load_engine = runner_factory is None
    factory = runner_factory or _crew_runner
    # One registry per app (never prometheus_client's global one).
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = await _start_services(settings, factory, metrics)
        app.state.services = svc
        try:
            async with anyio.create_task_group() as tg:
                svc.runs.bind(tg)
                tg.start_soon(_broadcast_relay, svc)
                tg.start_soon(_reaper, svc)
                leases = LeaseKeeper(svc.bus.leases, period=settings.bus.heartbeat_seconds)
                tg.start_soon(leases.run)
                tg.start_soon(svc.ingest.run)
                if load_engine:
                    await anyio.to_thread.run_sync(_load_engine, svc)
                    # Import CrewAI and build the agent now, not on the first query.
                    await anyio.to_thread.run_sync(svc.runs.runner)
                svc.ready = True
                # `legalstream serve` names its URL: the CLI goes through this server.
                url = getattr(app.state, "server_url", None)
                data_dir = settings.rag.data_dir
                if url:
                    await anyio.to_thread.run_sync(discovery.write, data_dir, url)
                try:
                    yield
                finally:
                    if url:
                        await anyio.to_thread.run_sync(discovery.remove, data_dir)
                    await _stop_services(svc)
                    tg.cancel_scope.cancel()
        finally:
            await svc.auth.aclose()
            await svc.limits.aclose()
            await svc.bus.close()
            if svc.engine is not None:
                await anyio.to_thread.run_sync(svc.engine.close)
            if audit is not None:
                # Every run has ended: its audit line is queued; see it written.
                await anyio.to_thread.run_sync(audit.flush)

    routes = [
        WebSocketRoute("/ws/query", QueryEndpoint()),
        Route("/ws/status", rest.status, methods=["GET"]),
        Route("/ws/broadcast", rest.broadcast, methods=["POST"]),
        Route("/ws/ticket", rest.ticket, methods=["POST"]),
        Route("/health", rest.health, methods=["GET"]),
        Route("/ready", rest.ready, methods=["GET"]),
        Route("/query", rest.query, methods=["POST"]),
        Route("/runs", rest.list_runs, methods=["GET"]),
        Route("/runs/{run_id}/events", rest.run_events, methods=["GET"]),
        Route("/cases", rest.cases, methods=["GET"]),
        *casefiles.routes(),
        Route("/metrics", rest.metrics_endpoint, methods=["GET"]),
        *agui.routes(settings.agui),
        Route("/asyncapi.json", asyncapi.endpoint, methods=["GET"]),
        Route("/openapi.json", openapi.endpoint, methods=["GET"]),
    ]
    if WEB_DIR.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=WEB_DIR), name="static"))
        if (WEB_DIR / "index.html").exists():
            routes.append(Route("/", _index, methods=["GET"]))
    app = LegalStreamApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            AuthError: _auth_error,
            ProtocolError: _protocol_error,
            BusUnavailable: _bus_error,
        },
    )
    app.lifespan = lifespan
    app.state.settings = settings
    app.state.metrics = metrics
    return app


async def _index(request: Request) -> Response:
    return FileResponse(WEB_DIR / "index.html")


async def _auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    code = {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}.get(exc.status, "refused")
    response = rest.error(exc.status, code, exc.message)
    response.headers.update(exc.headers)
    return response


async def _protocol_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProtocolError)
    extra = {"metadata": exc.metadata} if exc.metadata else {}
    response = rest.error(exc.status, exc.code, exc.message, **extra)
    retry_after = (exc.metadata or {}).get("retry_after")
    if retry_after is not None:
        response.headers["Retry-After"] = str(max(1, round(retry_after + 0.5)))
    return response


async def _bus_error(request: Request, exc: Exception) -> Response:
    response = rest.error(503, "bus_unavailable", f"event bus unavailable: {exc}")
    response.headers["Retry-After"] = "2"
    return response


def _configure_process(settings: Settings) -> None:
    """Process-wide switches that must be set before CrewAI is imported."""
    agent_env.configure(
        storage_dir=settings.rag.data_dir / "crewai", telemetry=settings.crewai_telemetry
    )


def _worker_id() -> str:
    # Unique per app instance, not just per process: two apps in one process
    # (tests, an app mounted twice) are two workers to the Redis bus.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


async def _start_services(
    settings: Settings, factory: RunnerFactory, metrics: Metrics | None = None
) -> Services:
    worker = _worker_id()
    bus = open_bus(settings.bus, worker=worker)
    await bus.start()
    registry = ConnectionRegistry(worker)
    holder: dict[str, Services] = {}
    secret = await anyio.to_thread.run_sync(
        deployment_secret, settings.runs.id_secret, settings.auth.secret, settings.rag.data_dir
    )
    ids = RunIds(secret)
    runs = RunManager(
        bus,
        lambda: factory(holder["svc"]),
        settings.runs,
        on_finish=metrics.run_finished if metrics else None,
        on_events=metrics.events_published if metrics else None,
        ids=ids,
    )
    svc = Services(
        settings=settings,
        bus=bus,
        runs=runs,
        registry=registry,
        auth=Authenticator.from_settings(settings),
        limits=Limits.from_settings(settings),
        metrics=metrics,
    )
    holder["svc"] = svc
    svc.ingest = IngestWorker(
        bus.hub,
        lambda: svc.engine,
        queue_size=settings.casefiles.queue_size,
        job_timeout=settings.casefiles.job_timeout_seconds,
    )
    if metrics is not None:
        metrics.bind(svc)
        metrics.bind_agent_counters(lambda: _agent_counters(runs))
    bus.presence.attach(registry)
    return svc


def _agent_counters(runs: RunManager) -> AgentCounters:
    """The agent's counters for /metrics; none while the agent is not built."""
    runner = runs.built_runner
    return runner.counters() if isinstance(runner, CountingRunner) else {}


def _load_engine(svc: Services) -> None:
    from legalstream.rag.engine import RetrievalEngine, ensure_sample_corpus

    rag = svc.settings.rag
    svc.engine = RetrievalEngine.from_settings(rag)
    if rag.ingest_sample_on_start and rag.sample_corpus.exists():
        log.info("loading the sample cases (%s); a first start embeds them", rag.sample_corpus)
        report = ensure_sample_corpus(
            svc.engine, rag.sample_corpus, on_progress=_log_sample_progress
        )
        if report is not None:
            failed = f", {len(report.failed)} failed" if report.failed else ""
            log.info(
                "sample cases: %d documents embedded (%d chunks), %d unchanged%s, in %.1f s",
                report.documents,
                report.chunks,
                report.skipped,
                failed,
                report.seconds,
            )


def _log_sample_progress(progress: Any) -> None:
    """One line per sample document embedded (a first start takes a while)."""
    if progress.phase == "done" and progress.status in ("ingested", "replaced"):
        log.info(
            "  case %s: %s (%d chunks; %d of %d files)",
            progress.case_id,
            progress.name,
            progress.chunks_total,
            progress.file_index,
            progress.files_total,
        )


def _crew_runner(svc: Services) -> AgentRunner:
    from legalstream.agent import build_runner

    if svc.engine is None:
        _load_engine(svc)
    return build_runner(svc.settings, svc.engine)


async def _broadcast_relay(svc: Services) -> None:
    """Fan broadcast events out to this process's sessions."""
    sub = svc.bus.hub.subscribe(BROADCAST)
    try:
        async for event in sub:
            for session in list(svc.sessions.values()):
                session.send_event(event)
    finally:
        await sub.aclose()


async def _reaper(svc: Services) -> None:
    """Close idle connections and those whose token expired (one task for all)."""
    idle = svc.settings.server.idle_timeout
    while True:
        await anyio.sleep(1.0)
        wall = time.time()
        for session in list(svc.sessions.values()):
            expires = session.principal.expires_at
            if expires is not None and wall > expires:
                session.close(CLOSE_TOKEN_EXPIRED, "token expired")
            elif idle > 0 and not session.info.runs and wall - session.info.last_activity > idle:
                session.close(CLOSE_NORMAL, "idle timeout")


async def _stop_services(svc: Services) -> None:
    """Graceful shutdown: refuse new work, let runs finish, tell clients (1001)."""
    svc.shutting_down = True
    # Uploads: no new jobs, the running one stops at its next progress report, the
    # queued ones end (each with its ingest_job_done), the progress streams close.
    await svc.ingest.close()
    await svc.runs.shutdown(svc.settings.server.shutdown_grace)
    with anyio.move_on_after(svc.settings.server.shutdown_grace):
        await svc.ingest.stopped.wait()
    # The jobs' last events are out (a subscriber here has them buffered): end the streams.
    svc.ingest.end_streams()
    # Give writers and pacing tasks a moment to deliver the runs' final frames (closing
    # drops what is still queued).
    with anyio.move_on_after(1.0):
        while any(s.info.runs or s.info.queue_depth for s in svc.sessions.values()):  # noqa: ASYNC110
            await anyio.sleep(0.02)
    for session in list(svc.sessions.values()):
        session.close(CLOSE_GOING_AWAY, "server shutting down")
    with anyio.move_on_after(3.0):
        while svc.sessions:  # noqa: ASYNC110 - shutdown only
            await anyio.sleep(0.02)


def app_from_env() -> LegalStreamApp:
    """Factory for ``uvicorn --factory legalstream.app:app_from_env`` (multi-worker)."""
    return create_app(Settings())


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> int:
    """``legalstream serve``: run the app under uvicorn; returns the exit status.

    0 when it stopped as asked (Ctrl-C, SIGTERM); 2 when it could not start:
    an insecure binding, ``--workers`` on the embedded store, or an address
    that cannot be bound (checked before anything heavy loads).
    """
    try:
        check_binding(settings, host)
    except InsecureBinding as exc:
        print(f"legalstream: {exc}", file=sys.stderr)
        return 2
    if workers > 1 and settings.rag.store == "edge":
        # Qdrant Edge is an embedded engine: one process owns its directory.
        print(
            "legalstream: --workers > 1 needs a vector store the workers can share: "
            "set rag.store = 'qdrant' (LEGALSTREAM_RAG__STORE=qdrant and "
            "LEGALSTREAM_RAG__QDRANT_URL), or run one `legalstream serve` per "
            "rag.data_dir behind nginx (docs/deploy.md)",
            file=sys.stderr,
        )
        return 2
    problem = _data_dir_taken(settings)
    if problem is not None:
        print(f"legalstream: {problem}", file=sys.stderr)
        return 2
    try:
        sock = bind_socket(host, port)
    except PortUnavailable as exc:
        print(f"legalstream: {exc}", file=sys.stderr)
        return 2
    with sock:
        if workers > 1:
            config = uvicorn_config(
                settings,
                "legalstream.app:app_from_env",
                host=host,
                port=port,
                workers=workers,
                factory=True,
            )
        else:
            app = create_app(settings)
            app.state.server_url = discovery.http_url(host, port)
            config = uvicorn_config(settings, app, host=host, port=port)
        run_server(config, settings, workers, sock)
    return 0


def _data_dir_taken(settings: Settings) -> str | None:
    """Why another server owns this data directory (its embedded store), or None."""
    data_dir = settings.rag.data_dir
    url = discovery.running_server(data_dir)
    if url is not None:
        return (
            f"a server ({url}) already serves the data directory {data_dir}: stop it first, "
            "or give this one another (LEGALSTREAM_RAG__DATA_DIR)"
        )
    if settings.rag.store == "edge":
        from legalstream.rag.edge_store import store_in_use

        if store_in_use(data_dir / "qdrant-edge" / settings.rag.collection):
            return (
                f"the store in {data_dir} is open in another process (a `legalstream serve` "
                "or a CLI command): stop it first, or give this server another data directory "
                "(LEGALSTREAM_RAG__DATA_DIR)"
            )
    return None


__all__ = ["LegalStreamApp", "create_app", "serve"]
