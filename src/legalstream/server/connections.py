"""The registry of live WebSocket connections behind ``GET /ws/status``.

A connection is registered after the handshake is accepted and removed in the
session's ``finally`` block, so the registry is exact at all times: a closed,
dropped or timed-out connection is gone the moment its session ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


@dataclass(slots=True)
class ConnectionInfo:
    connection_id: str
    user: str
    client: str | None
    connected_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    messages_sent: int = 0
    messages_received: int = 0
    queue_depth: int = 0
    dropped: int = 0
    runs: set[str] = field(default_factory=set)
    worker: str | None = None
    #: When the last frame was written to the socket (None: nothing yet).
    last_sent: float | None = None
    #: Frames the send queue holds before the client counts as a slow consumer.
    queue_capacity: int = 0
    #: The server's keepalive record (ws_protocol's ``keepalive``): when the
    #: client last answered a ping, and the round trip. None on other servers.
    keepalive: Callable[[], tuple[float | None, float | None]] | None = None

    def touch(self) -> None:
        self.last_activity = time.time()

    def health(self, now: float | None = None) -> dict[str, Any]:
        """What is knowable about this connection's health (docs/operations.md).

        ``last_pong`` is when the client last answered one of the server's
        keepalive pings (``server.ping_interval``), with that ping's round trip;
        null before the first answer, or when the server is not ours (uvicorn
        tells the app nothing of pongs: ws_protocol reports them).
        ``last_inbound_s`` is the age of the last client *message*.
        """
        now = time.time() if now is None else now
        pong_at, rtt = self.keepalive() if self.keepalive is not None else (None, None)
        fill = self.queue_depth / self.queue_capacity if self.queue_capacity else 0.0
        stalled = self.queue_depth > 0 and now - (self.last_sent or self.connected_at) > 5.0
        state = "stalled" if stalled else "backlogged" if fill >= 0.5 else "ok"
        return {
            "state": state,
            "queue_fill": round(fill, 4),
            "last_inbound_s": round(now - self.last_activity, 3),
            "last_sent_s": round(now - self.last_sent, 3) if self.last_sent else None,
            "last_pong": iso(pong_at),
            "ping_rtt_ms": round(rtt * 1000, 3) if rtt is not None else None,
        }

    def to_status(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "metadata": {
                "connected_at": iso(self.connected_at),
                "last_activity": iso(self.last_activity),
                "user": self.user,
                "client": self.client,
                "worker": self.worker,
                "active_runs": sorted(self.runs),
                "messages_sent": self.messages_sent,
                "messages_received": self.messages_received,
                "queue_depth": self.queue_depth,
                "queue_capacity": self.queue_capacity,
                "dropped": self.dropped,
                "last_sent": iso(self.last_sent),
                "health": self.health(),
            },
        }


class ConnectionRegistry:
    """This process's connections; the Redis bus publishes it for other workers."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._connections: dict[str, ConnectionInfo] = {}

    def add(self, info: ConnectionInfo) -> None:
        info.worker = self.worker
        self._connections[info.connection_id] = info

    def remove(self, connection_id: str) -> None:
        self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> ConnectionInfo | None:
        return self._connections.get(connection_id)

    def __len__(self) -> int:
        return len(self._connections)

    def count_for(self, user: str) -> int:
        return sum(1 for c in self._connections.values() if c.user == user)

    def snapshot(self) -> list[dict[str, Any]]:
        return [c.to_status() for c in list(self._connections.values())]
