"""What the endpoints share: one :class:`Services` per app, made by the lifespan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from starlette.requests import HTTPConnection

from legalstream.bus.base import Bus
from legalstream.events import Event
from legalstream.runs import RunManager
from legalstream.server.auth import Authenticator, Principal
from legalstream.server.connections import ConnectionInfo, ConnectionRegistry
from legalstream.settings import Settings


class LiveSession(Protocol):
    """A served WebSocket connection, as the app's housekeeping sees it."""

    principal: Principal
    info: ConnectionInfo
    closing: bool

    def send_event(self, event: Event) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(slots=True)
class Services:
    settings: Settings
    bus: Bus
    runs: RunManager
    registry: ConnectionRegistry
    auth: Authenticator
    sessions: dict[str, LiveSession] = field(default_factory=dict)
    #: The retrieval engine, once loaded (None until ready or when not used).
    engine: Any = None
    ready: bool = False
    startup_error: str | None = None
    shutting_down: bool = False
    #: legalstream.metrics.Metrics of this app (None when metrics are off).
    metrics: Any = None
    #: legalstream.server.limits.Limits: rate limits (None: no limits).
    limits: Any = None
    #: legalstream.server.ingest_jobs.IngestWorker: upload jobs (None until the engine loads).
    ingest: Any = None


def services(conn: HTTPConnection) -> Services:
    svc: Services | None = getattr(conn.app.state, "services", None)
    if svc is None:
        raise RuntimeError(
            "legalstream services are not running: when mounting the app, run its "
            "lifespan from the parent's (see docs/embedding.md)"
        )
    return svc
