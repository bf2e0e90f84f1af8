"""Rate limits per user and per client IP, with the ``limits`` package.

Moving windows (exact, no burst at window edges) in memory, or in Redis when
the bus is Redis so that every worker counts together. What is limited
(docs/security.md, "Limits"):

* WebSocket handshakes per client IP (counted before authentication, so
  failed attempts count too) and per user: HTTP 429 with ``Retry-After``;
* open connections per user (this process): HTTP 429;
* queries per user and per client IP: an ``error`` frame with code
  ``rate_limited`` and ``metadata.retry_after`` (``POST /query``: HTTP 429);
* concurrent runs per user (this process): the same ``rate_limited`` frame;
* ticket requests per user: HTTP 429;
* replays and resumes per user, and the bytes of history they send: the
  same ``rate_limited`` answer (a stored run is cheap to ask for and can be
  megabytes to send; without a budget one token could saturate the server).

Limits are enforced when ``limits.enabled`` is true, or unset and auth mode is
``jwt``. Auth mode ``none`` only runs bound to loopback (one developer, many
test clients), where limiting one's own laptop only gets in the way.

A limiter storage failure (Redis down) lets the request through and logs:
rate limiting must never take the service down with it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from legalstream.server.auth import AuthError, Principal
from legalstream.settings import LimitSettings, Settings

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

    from legalstream.server.connections import ConnectionRegistry

log = logging.getLogger("legalstream.limits")


@dataclass(frozen=True, slots=True)
class RateLimited:
    """A refusal the client can act on: wait ``retry_after`` seconds."""

    message: str
    retry_after: float
    limit: str

    def metadata(self) -> dict[str, object]:
        return {"retry_after": self.retry_after, "limit": self.limit}


def client_ip(conn: HTTPConnection) -> str:
    """The peer address (uvicorn applies trusted ``X-Forwarded-For`` first)."""
    client = conn.client
    return client.host if client and client.host else "unknown"


class Limits:
    def __init__(
        self, settings: LimitSettings, storage: Storage | None = None, *, enabled: bool = True
    ) -> None:
        self.settings = settings
        self.enabled = enabled
        self.storage = storage or MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)
        self.connect_ip: RateLimitItem = parse(settings.connects_per_minute)
        self.connect_user: RateLimitItem = parse(settings.user_connects_per_minute)
        self.query: RateLimitItem = parse(settings.queries_per_minute)
        self.ticket: RateLimitItem = parse(settings.tickets_per_minute)
        self.replay: RateLimitItem = parse(settings.replays_per_minute)
        self.replay_bytes: RateLimitItem = parse(settings.replay_bytes_per_minute)
        self._last_storage_error = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        s = settings.limits
        enabled = s.enabled if s.enabled is not None else settings.auth.mode != "none"
        backend = s.storage
        if backend == "auto":
            backend = "redis" if settings.bus.backend == "redis" else "memory"
        storage: Storage
        if backend == "redis":
            from limits.aio.storage import RedisStorage

            url = settings.bus.redis_url
            storage = RedisStorage(
                "async+" + url,
                implementation="redispy",
                key_prefix=f"{settings.bus.redis_prefix}:limits",
            )
        else:
            storage = MemoryStorage()
        return cls(s, storage, enabled=enabled)

    async def aclose(self) -> None:
        bridge = getattr(self.storage, "bridge", None)
        client = getattr(bridge, "storage", None)
        close = getattr(client, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception:  # pragma: no cover - best effort
                pass

    # -- the checks ---------------------------------------------------------

    async def _hit(self, item: RateLimitItem, *key: str, cost: int = 1) -> RateLimited | None:
        try:
            if await self._limiter.hit(item, *key, cost=cost):
                return None
            stats = await self._limiter.get_window_stats(item, *key)
            reset = stats.reset_time
        except Exception:
            now = time.monotonic()
            if now - self._last_storage_error > 30:
                self._last_storage_error = now
                log.exception("rate limiter storage failed; letting requests through")
            return None
        retry = max(0.1, math.ceil((reset - time.time()) * 10) / 10)
        return RateLimited(f"rate limit exceeded: {item}", retry, str(item))

    async def connection_attempt(self, conn: HTTPConnection) -> None:
        """Before authentication: handshakes per client IP (429)."""
        if not self.enabled:
            return
        verdict = await self._hit(self.connect_ip, "connect-ip", client_ip(conn))
        if verdict is not None:
            raise AuthError(429, "too many connection attempts", retry_after=verdict.retry_after)

    async def admit_connection(self, principal: Principal, registry: ConnectionRegistry) -> None:
        """After authentication: handshakes per user and open connections per user (429)."""
        if not self.enabled:
            return
        cap = self.settings.max_connections_per_user
        if registry.count_for(principal.user) >= cap:
            raise AuthError(429, f"at most {cap} connections per user", retry_after=5.0)
        verdict = await self._hit(self.connect_user, "connect-user", principal.user)
        if verdict is not None:
            raise AuthError(429, "too many connection attempts", retry_after=verdict.retry_after)

    async def check_query(
        self, principal: Principal, ip: str | None, active_runs: int
    ) -> RateLimited | None:
        """Before a run starts: concurrent runs, then queries per user and per IP."""
        if not self.enabled:
            return None
        cap = self.settings.max_concurrent_runs_per_user
        if active_runs >= cap:
            return RateLimited(f"at most {cap} concurrent runs per user", 1.0, f"{cap} concurrent")
        verdict = await self._hit(self.query, "query-user", principal.user)
        if verdict is None and ip:
            verdict = await self._hit(self.query, "query-ip", ip)
        return verdict

    async def check_ticket(self, principal: Principal) -> None:
        if not self.enabled:
            return
        verdict = await self._hit(self.ticket, "ticket-user", principal.user)
        if verdict is not None:
            raise AuthError(429, "too many ticket requests", retry_after=verdict.retry_after)

    async def check_replay(self, principal: Principal) -> RateLimited | None:
        """Before a replay or resume reads history: requests per user."""
        if not self.enabled:
            return None
        return await self._hit(self.replay, "replay-user", principal.user)

    async def charge_replay(self, principal: Principal, nbytes: int) -> RateLimited | None:
        """Before history is sent: its bytes count against the user's budget."""
        if not self.enabled or nbytes <= 0:
            return None
        return await self._hit(self.replay_bytes, "replay-bytes-user", principal.user, cost=nbytes)
