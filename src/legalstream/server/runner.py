"""Running the app under uvicorn with the settings' WebSocket limits.

``uvicorn_config`` is the one place that maps :class:`Settings` onto uvicorn
options, so ``legalstream serve``, the tests and the benchmarks run the server
the same way.
"""

from __future__ import annotations

import errno
import functools
import gc
import ipaddress
import socket
from typing import Any

import uvicorn

from legalstream.audit import install_redaction
from legalstream.server.uvicorn_ext import (
    HTTP_PROTOCOL,
    WS_PROTOCOLS,
    HeadLimits,
    Server,
    log_to_console,
    run_workers,
)
from legalstream.settings import Settings


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


class PortUnavailable(Exception):
    """The server's address cannot be bound; the message says how to choose another port."""


def bind_socket(host: str, port: int) -> socket.socket:
    """The server's socket, bound now; it listens once the app has started.

    ``legalstream serve`` binds before it loads anything, so a busy port fails
    in a second rather than after the sample cases and the agent have loaded.
    Bound but not yet listening, the port refuses connections until the app is
    ready, as it did when uvicorn bound it after start-up.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    # As uvicorn binds: a port left in TIME_WAIT by a server that just stopped is free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortUnavailable(_bind_failure(host, port, exc)) from exc
    sock.set_inheritable(True)  # worker processes get it (uvicorn does the same)
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        what = f"port {port} on {host} is already in use (another legalstream, or another program)"
    elif exc.errno == errno.EACCES:
        what = f"no permission to bind port {port} on {host} (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot bind {host}: not an address of this machine. Choose another host: "
            "legalstream serve --host 127.0.0.1, or LEGALSTREAM_SERVER__HOST"
        )
    else:
        what = f"cannot bind {host}:{port}: {exc.strerror or exc}"
    other = _free_port_near(host, port)
    return (
        f"{what}. Choose another port: make run PORT={other}, "
        f"legalstream serve --port {other}, or the setting server.port "
        f"(LEGALSTREAM_SERVER__PORT={other})"
    )


def _free_port_near(host: str, port: int) -> int:
    """The first port after ``port`` that can be bound now (a suggestion, not a reservation)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in range(max(port, 1023) + 1, min(max(port, 1023) + 50, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return port + 1


def uvicorn_config(settings: Settings, app: Any, **overrides: Any) -> uvicorn.Config:
    server = settings.server
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "http": HTTP_PROTOCOL,
        "backlog": server.backlog,
        "ws": WS_PROTOCOLS.get(server.ws_impl, server.ws_impl),
        "ws_max_size": server.max_frame_bytes,
        "ws_ping_interval": server.ping_interval or None,
        "ws_ping_timeout": server.ping_timeout or None,
        "ws_per_message_deflate": server.per_message_deflate,
        "log_level": settings.log_level,
        "lifespan": "on",
        "timeout_graceful_shutdown": server.shutdown_grace + 5,
        # Forwarded headers only from configured proxies (uvicorn's own default
        # believes 127.0.0.1, so anyone on the host could claim any address).
        "proxy_headers": bool(server.forwarded_allow_ips),
        "forwarded_allow_ips": ",".join(server.forwarded_allow_ips) or "127.0.0.1",
    }
    options.update(overrides)
    config = uvicorn.Config(app, **options)
    log_to_console(config.log_level)
    # Read by GuardedHttpProtocol (picklable: worker processes get the config).
    config.head_limits = HeadLimits(  # type: ignore[attr-defined]
        timeout=server.request_head_timeout,
        max_bytes=server.max_request_head_bytes,
        max_unfinished_per_ip=server.max_unfinished_requests_per_ip,
        max_unfinished=server.max_unfinished_requests,
    )
    # After Config configured logging: keep ?token=/?ticket= out of the access log.
    install_redaction()
    return config


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


def run_server(
    config: uvicorn.Config,
    settings: Settings,
    workers: int = 1,
    sock: socket.socket | None = None,
) -> None:
    """Run ``config`` as ``legalstream serve`` does: graceful shutdown, GC tuning, workers.

    ``sock`` is the socket from :func:`bind_socket` (else uvicorn binds the
    configured address once the app has started). Returns when the server has
    stopped, also after SIGINT or SIGTERM.
    """
    # A picklable hook: worker processes get the config, and run it there too.
    config.on_started = functools.partial(  # type: ignore[attr-defined]
        tune_gc, settings.server.gc_threshold, settings.server.gc_freeze
    )
    if workers <= 1:
        Server(config).run(sockets=[sock] if sock is not None else None)
    else:
        run_workers(config, sock)
