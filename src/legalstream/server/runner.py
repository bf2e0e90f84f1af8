"""Running the app under uvicorn with the settings' WebSocket limits.

``uvicorn_config`` is the one place that maps :class:`Settings` onto uvicorn
options, so ``legalstream serve``, the tests and the benchmarks run the server
the same way.
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors.multiprocess import Process as UvicornWorker

from legalstream.audit import install_redaction
from legalstream.settings import Settings

log = logging.getLogger("legalstream.server")


class InsecureBinding(SystemExit):
    pass


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(settings: Settings, host: str) -> None:
    """Auth mode ``none`` is for a laptop: refuse to expose it to a network."""
    if settings.auth.mode == "none" and not is_loopback(host):
        raise InsecureBinding(
            f"refusing to bind {host!r} with auth mode 'none': configure [auth] "
            "(LEGALSTREAM_AUTH__MODE=jwt and a secret or public key) or bind 127.0.0.1"
        )


#: What ``server.ws_impl`` names, when it is not one of uvicorn's own choices: the
#: default is uvicorn's websockets-sansio with batched sends (server/ws_protocol.py).
WS_PROTOCOLS = {
    "websockets-sansio": "legalstream.server.ws_protocol:BatchingSansIOProtocol",
}


def uvicorn_config(settings: Settings, app: Any, **overrides: Any) -> uvicorn.Config:
    server = settings.server
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "ws": WS_PROTOCOLS.get(server.ws_impl, server.ws_impl),
        "ws_max_size": server.max_frame_bytes,
        "ws_ping_interval": server.ping_interval or None,
        "ws_ping_timeout": server.ping_timeout or None,
        "ws_per_message_deflate": server.per_message_deflate,
        "log_level": settings.log_level,
        "lifespan": "on",
        "timeout_graceful_shutdown": server.shutdown_grace + 5,
    }
    options.update(overrides)
    config = uvicorn.Config(app, **options)
    # After Config configured logging: keep ?token=/?ticket= out of the access log.
    install_redaction()
    return config


def _graceful_hook(app: Any) -> Any:
    """The app's ``graceful_shutdown`` coroutine function, through uvicorn's wrappers."""
    for _ in range(16):
        if app is None:
            return None
        hook = getattr(app, "graceful_shutdown", None)
        if callable(hook):
            return hook
        app = getattr(app, "app", None)
    return None


class Server(uvicorn.Server):
    """uvicorn's server, but shutdown tells WebSocket clients properly.

    ``uvicorn.Server.shutdown`` closes every WebSocket with 1012 *before* the
    lifespan shutdown runs, so the app's own graceful stop (finish or cancel
    runs, deliver their final frames, close with 1001) would come too late.
    This subclass stops listening, runs the app's ``graceful_shutdown`` first,
    then lets uvicorn finish as usual.
    """

    async def startup(self, sockets: Any = None) -> None:
        install_redaction()  # worker processes configure logging afresh
        await super().startup(sockets)  # runs the app's lifespan: all is loaded now
        # Set by run_server on the config, so that it reaches worker processes too.
        tune_gc(*getattr(self.config, "gc_tuning", (0, False)))

    async def shutdown(self, sockets: Any = None) -> None:
        for listener in getattr(self, "servers", []):
            listener.close()
        hook = _graceful_hook(self.config.loaded_app) if self.config.loaded else None
        if hook is not None and not self.force_exit:
            timeout = (
                2 * self.config.timeout_graceful_shutdown
                if self.config.timeout_graceful_shutdown
                else None
            )
            try:
                await asyncio.wait_for(hook(), timeout)
            except Exception:
                log.exception("graceful shutdown of the app failed")
        await super().shutdown(sockets)


class _WorkerProcess(UvicornWorker):
    """A uvicorn worker process whose server is :class:`Server` (module level:
    spawned workers unpickle their target by name)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(self.config)
        return self._server


def tune_gc(threshold: int, freeze: bool) -> None:
    """Garbage-collector settings for a process this server owns.

    Streaming allocates many short-lived containers (events, frames, tasks),
    so with Python's default threshold the collector ran every few hundred
    frames and re-scanned the long-lived heap (CrewAI alone is ~200 MB of
    objects) each time it reached the older generations. Freezing moves what
    startup made out of the collector's sight; a larger threshold collects
    the young generation less often (memory is still bounded by it).
    """
    if threshold > 0:
        _, gen1, gen2 = gc.get_threshold()
        gc.set_threshold(threshold, gen1, gen2)
    if freeze:
        gc.collect()
        gc.freeze()


def run_server(config: uvicorn.Config, settings: Settings, workers: int = 1) -> None:
    """Run ``config`` as ``legalstream serve`` does: graceful shutdown, GC tuning, workers."""
    config.gc_tuning = (settings.server.gc_threshold, settings.server.gc_freeze)  # type: ignore[attr-defined]
    if workers <= 1:
        Server(config).run()
        return
    from uvicorn.supervisors import multiprocess

    # uvicorn's supervisor builds each worker's server from the module-level
    # ``Process`` class; ours makes it this module's Server. Patched in the
    # supervisor only, which `legalstream serve` owns.
    multiprocess.Process = _WorkerProcess  # type: ignore[misc]
    sock = config.bind_socket()
    multiprocess.Multiprocess(config, sockets=[sock]).run()


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> int:
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
    if workers > 1:
        config = uvicorn_config(
            settings,
            "legalstream.app:app_from_env",
            host=host,
            port=port,
            workers=workers,
            factory=True,
        )
        run_server(config, settings, workers)
        return 0
    from legalstream.app import create_app

    config = uvicorn_config(settings, create_app(settings), host=host, port=port)
    run_server(config, settings)
    return 0
