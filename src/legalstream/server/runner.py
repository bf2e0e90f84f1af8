"""Running the app under uvicorn with the settings' WebSocket limits.

``uvicorn_config`` is the one place that maps :class:`Settings` onto uvicorn
options, so ``legalstream serve``, the tests and the benchmarks run the server
the same way.
"""

from __future__ import annotations

import ipaddress
import logging
import sys
from typing import Any

import uvicorn

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


def uvicorn_config(settings: Settings, app: Any, **overrides: Any) -> uvicorn.Config:
    server = settings.server
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "ws": server.ws_impl,
        "ws_max_size": server.max_frame_bytes,
        "ws_ping_interval": server.ping_interval or None,
        "ws_ping_timeout": server.ping_timeout or None,
        "ws_per_message_deflate": server.per_message_deflate,
        "log_level": settings.log_level,
        "lifespan": "on",
        "timeout_graceful_shutdown": server.shutdown_grace + 5,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> int:
    try:
        check_binding(settings, host)
    except InsecureBinding as exc:
        print(f"legalstream: {exc}", file=sys.stderr)
        return 2
    if workers > 1:
        config = uvicorn_config(
            settings, "legalstream.app:app_from_env", host=host, port=port, workers=workers, factory=True
        )
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        Multiprocess(config, target=uvicorn.Server(config).run, sockets=[sock]).run()
        return 0
    from legalstream.app import create_app

    config = uvicorn_config(settings, create_app(settings), host=host, port=port)
    uvicorn.Server(config).run()
    return 0
