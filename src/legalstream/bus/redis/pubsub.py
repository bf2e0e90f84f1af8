"""One Pub/Sub connection per worker, for the channels every worker listens to.

Handlers are registered by channel before ``start`` (broadcasts by the
stream transport, the control channel by control). The listener reconnects
with backoff; what is published while it is disconnected is lost (Pub/Sub
keeps nothing), which is why nothing that must arrive goes through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import anyio

from legalstream.bus.redis.connection import (
    BACKOFF_MIN,
    REDIS_ERRORS,
    BackgroundTasks,
    RedisConnections,
    backoff_sleep,
    raise_if_stopping,
)

log = logging.getLogger("legalstream.bus.redis")


class PubSubListener:
    def __init__(self, conn: RedisConnections) -> None:
        self._conn = conn
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        self._ready = asyncio.Event()
        self.tasks = BackgroundTasks()

    def on(self, channel: str, handler: Callable[[bytes], None]) -> None:
        """Call ``handler(data)`` for each message on ``channel`` (register before start)."""
        self._handlers[channel] = handler

    async def start(self) -> None:
        self.tasks.spawn(self._loop(), "pubsub")
        # Messages published after start() returns reach this worker too.
        if self._conn.reachable:
            with anyio.move_on_after(2.0):
                await self._ready.wait()

    async def close(self) -> None:
        await self.tasks.cancel_all()

    async def _loop(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            pubsub = self._conn.pubsub.pubsub()
            try:
                await pubsub.subscribe(*self._handlers)
                # Wait for the confirmation so "ready" means messages do arrive.
                while await pubsub.get_message(timeout=2.0) is None:
                    pass
                self._ready.set()
                backoff = BACKOFF_MIN
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    handler = self._handlers.get(msg["channel"].decode())
                    if handler is not None:
                        try:
                            handler(msg["data"])
                        except Exception:
                            log.exception("pub/sub handler failed on %s", msg["channel"])
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                raise_if_stopping(exc)
                log.error("redis pub/sub failed (%s); broadcasts are lost until it is back", exc)
                backoff = await backoff_sleep(backoff)
            except Exception as exc:
                raise_if_stopping(exc)
                log.exception("redis pub/sub listener crashed; restarting")
                await asyncio.sleep(backoff)
            finally:
                with contextlib.suppress(BaseException):
                    await pubsub.aclose()
