"""The Redis connections of one worker, background tasks, and Redis errors as values.

Three clients: a pool for commands (publishing, history, records, presence,
control), one connection for the blocking ``XREAD`` of the stream reader and
one for Pub/Sub. The loops that hold a connection (reader, Pub/Sub,
heartbeat) retry with exponential backoff, so the process never dies with
Redis; callers of commands get :class:`~legalstream.bus.base.BusUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Iterator
from typing import Any

import anyio
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError, ResponseError

from legalstream.bus.base import BusUnavailable

log = logging.getLogger("legalstream.bus.redis")

#: Connections for commands per worker process.
POOL_SIZE = 64
#: Backoff of the background loops while Redis is unreachable (seconds).
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


def raise_if_stopping(exc: BaseException) -> None:
    """Re-raise as cancellation when this task was cancelled, whatever ``exc`` is.

    redis-py can turn a cancellation that lands mid-read into a connection
    error; a loop that retries on those would then run on after ``close()``
    cancelled it, and ``close()`` would wait for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError from exc


@contextlib.contextmanager
def guard(what: str) -> Iterator[None]:
    """Redis connection failures become :class:`BusUnavailable`; script errors pass."""
    try:
        yield
    except ResponseError:
        raise
    except REDIS_ERRORS as exc:
        raise BusUnavailable(f"redis {what} failed: {exc}") from exc


async def backoff_sleep(delay: float) -> float:
    """Sleep ``delay`` with jitter; returns the next delay."""
    await asyncio.sleep(delay * (1 + random.random() / 2))
    return min(BACKOFF_MAX, delay * 2)


class BackgroundTasks:
    """The asyncio tasks of one part of a worker's bus, cancelled together on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"redisbus-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def cancel_all(self) -> None:
        """Cancel every task and wait for them (at most 5 s: a stuck one is logged)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            done, stuck = await asyncio.wait(tasks, timeout=5.0)
            for task in done:  # retrieve, so asyncio does not report them
                if not task.cancelled():
                    task.exception()
            if stuck:
                log.error("redis bus tasks did not stop: %s", [t.get_name() for t in stuck])
        self._tasks.clear()


class RedisConnections:
    """One worker's three Redis clients."""

    def __init__(self, url: str, *, read_timeout: float) -> None:
        self.url = url
        self._read_timeout = read_timeout
        self._commands: aioredis.Redis | None = None
        self._reader: aioredis.Redis | None = None
        self._pubsub: aioredis.Redis | None = None
        #: Whether Redis answered when the bus started.
        self.reachable = False

    @property
    def commands(self) -> aioredis.Redis:
        if self._commands is None:
            raise RuntimeError("the Redis bus was not started")
        return self._commands

    @property
    def reader(self) -> aioredis.Redis:
        if self._reader is None:
            raise RuntimeError("the Redis bus was not started")
        return self._reader

    @property
    def pubsub(self) -> aioredis.Redis:
        if self._pubsub is None:
            raise RuntimeError("the Redis bus was not started")
        return self._pubsub

    async def start(self) -> None:
        retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=2)
        common: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_keepalive": True}
        # A blocking pool: a burst of publishers waits for a connection instead
        # of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=5.0, socket_timeout=5.0, **common
        )
        self._commands = aioredis.Redis(connection_pool=pool, retry=retry)
        self._commands.auto_close_connection_pool = True  # aclose() also closes our pool
        # No internal retries on the long-lived connections: their loops
        # reconnect with backoff.
        self._reader = aioredis.from_url(
            self.url,
            socket_timeout=self._read_timeout,
            retry=Retry(ExponentialWithJitterBackoff(), 0),
            **common,
        )
        self._pubsub = aioredis.from_url(
            self.url,
            socket_timeout=None,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(), 0),
            **common,
        )
        try:
            await self._commands.ping()
            self.reachable = True
        except REDIS_ERRORS as exc:
            # Start anyway: the loops keep retrying and callers get errors meanwhile.
            log.error(
                "redis at %s is not reachable (%s); retrying in the background", self.url, exc
            )

    async def close(self) -> None:
        for client in (self._commands, self._reader, self._pubsub):
            if client is not None:
                with contextlib.suppress(*REDIS_ERRORS):
                    with anyio.move_on_after(2.0):
                        await client.aclose()
