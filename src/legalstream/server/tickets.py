"""Short-lived, single-use WebSocket tickets (``POST /ws/ticket``).

A browser cannot set ``Authorization`` on a WebSocket handshake. Instead of
putting a long-lived JWT in a URL, it trades the JWT for a ticket over an
authenticated ``fetch`` and offers the ticket on the handshake
(``Sec-WebSocket-Protocol: legalstream.v1, ticket.<ticket>`` or ``?ticket=``).

A ticket is 32 random bytes (URL-safe base64), valid for
``auth.ticket_ttl_seconds`` and redeemable once. With the Redis bus it is
stored in Redis (``SET NX EX`` to issue, ``GETDEL`` to redeem) so it works on
whichever worker the handshake lands on; otherwise it lives in this process.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Protocol

import orjson

TICKET_BYTES = 32


class TicketStore(Protocol):
    async def issue(self, claims: dict[str, Any], ttl: float) -> str: ...
    async def redeem(self, ticket: str) -> dict[str, Any] | None: ...
    async def aclose(self) -> None: ...


def new_ticket() -> str:
    return secrets.token_urlsafe(TICKET_BYTES)


def plausible(ticket: str) -> bool:
    """Cheap shape check before any lookup (no Redis round trip for junk)."""
    return 20 <= len(ticket) <= 64 and all(c.isalnum() or c in "-_" for c in ticket)


class MemoryTicketStore:
    """Tickets of this process; expired ones are swept on every issue."""

    def __init__(self, max_tickets: int = 100_000) -> None:
        self._tickets: dict[str, tuple[float, dict[str, Any]]] = {}
        self._max = max_tickets

    async def issue(self, claims: dict[str, Any], ttl: float) -> str:
        now = time.monotonic()
        if len(self._tickets) >= self._max // 2:
            for key, (deadline, _) in list(self._tickets.items()):
                if deadline < now:
                    del self._tickets[key]
        if len(self._tickets) >= self._max:
            raise OverflowError("too many outstanding tickets")
        ticket = new_ticket()
        self._tickets[ticket] = (now + ttl, claims)
        return ticket

    async def redeem(self, ticket: str) -> dict[str, Any] | None:
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def __len__(self) -> int:
        return len(self._tickets)

    async def aclose(self) -> None:
        self._tickets.clear()


class RedisTicketStore:
    """Tickets shared by every worker through Redis."""

    def __init__(self, url: str, prefix: str) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url)
        self._prefix = f"{prefix}:ticket:"

    async def issue(self, claims: dict[str, Any], ttl: float) -> str:
        while True:
            ticket = new_ticket()
            ok = await self._redis.set(
                self._prefix + ticket, orjson.dumps(claims), nx=True, px=max(1, int(ttl * 1000))
            )
            if ok:
                return ticket

    async def redeem(self, ticket: str) -> dict[str, Any] | None:
        raw = await self._redis.getdel(self._prefix + ticket)
        return None if raw is None else orjson.loads(raw)

    async def aclose(self) -> None:
        await self._redis.aclose()
