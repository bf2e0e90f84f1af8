"""Which connections are open on which worker: heartbeats with a TTL.

Each worker writes its connection snapshot every ``heartbeat_seconds`` with a
TTL of three heartbeats, and indexes itself in a sorted set. A worker that
dies stops heartbeating and drops out within three heartbeats; one that
closes cleanly removes itself at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import anyio
import orjson

from legalstream.bus.base import SnapshotSource
from legalstream.bus.redis.connection import (
    REDIS_ERRORS,
    BackgroundTasks,
    RedisConnections,
    raise_if_stopping,
)
from legalstream.bus.redis.keys import Keys

log = logging.getLogger("legalstream.bus.redis")


class RedisPresence:
    def __init__(
        self, conn: RedisConnections, keys: Keys, *, worker: str, heartbeat_seconds: float
    ) -> None:
        self._conn = conn
        self._keys = keys
        self.worker = worker
        self.period = heartbeat_seconds
        self._source: SnapshotSource | None = None
        self.tasks = BackgroundTasks()

    def attach(self, source: SnapshotSource) -> None:
        """The connection registry whose snapshot the heartbeat publishes."""
        self._source = source

    async def start(self) -> None:
        self.tasks.spawn(self._loop(), "heartbeat")

    async def close(self) -> None:
        await self.tasks.cancel_all()
        # A clean shutdown leaves the cluster view at once.
        with contextlib.suppress(*REDIS_ERRORS):
            with anyio.move_on_after(2.0):
                pipe = self._conn.commands.pipeline(transaction=False)
                pipe.delete(self._keys.worker(self.worker), self._keys.wake(self.worker))
                pipe.zrem(self._keys.workers, self.worker)
                await pipe.execute()

    async def _loop(self) -> None:
        failing = False
        while True:
            try:
                await self.heartbeat()
                if failing:
                    log.warning("heartbeat to redis works again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise_if_stopping(exc)
                if not failing:
                    log.error("heartbeat to redis failed: %s", exc)
                failing = True
            await asyncio.sleep(self.period)

    async def heartbeat(self) -> None:
        """Publish this worker's connections with a TTL of 3 heartbeats."""
        snapshot = self._source.snapshot() if self._source is not None else []
        ttl = 3 * self.period
        now = time.time()
        pipe = self._conn.commands.pipeline(transaction=False)
        pipe.set(self._keys.worker(self.worker), orjson.dumps(snapshot), px=max(1, int(ttl * 1000)))
        pipe.zadd(self._keys.workers, {self.worker: now + ttl})
        # The index only; liveness is the key's TTL. Generous for clock skew.
        pipe.zremrangebyscore(self._keys.workers, "-inf", now - 3600)
        pipe.expire(self._keys.workers, 3600)
        await pipe.execute()

    async def connections(self) -> list[dict[str, Any]]:
        """Connections of every live worker: ours live, the others' from their heartbeat."""
        local = self._source.snapshot() if self._source is not None else []
        r = self._conn.commands
        try:
            workers = [w.decode() for w in await r.zrange(self._keys.workers, 0, -1)]
            others = [w for w in workers if w != self.worker]
            if not others:
                return local
            raws = await r.mget([self._keys.worker(w) for w in others])
        except REDIS_ERRORS as exc:
            log.error("cluster status from redis failed (%s); reporting this worker only", exc)
            return local
        result = list(local)
        for raw in raws:
            if raw is not None:
                result.extend(orjson.loads(raw))
        return result

    async def live_workers(self) -> list[str]:
        r = self._conn.commands
        workers = [w.decode() for w in await r.zrange(self._keys.workers, 0, -1)]
        if not workers:
            return []
        alive = await r.mget([self._keys.worker(w) for w in workers])
        return [w for w, raw in zip(workers, alive, strict=True) if raw is not None]

    async def is_alive(self, worker: str) -> bool:
        return bool(await self._conn.commands.exists(self._keys.worker(worker)))
