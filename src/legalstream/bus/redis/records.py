"""Run records in Redis: one JSON string per run and two indexes (all runs, per case).

A record carries the worker that owns the run, so that other workers can
tell when the run's owner is gone.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from legalstream.bus.base import RunRecord
from legalstream.bus.redis.connection import RedisConnections, guard
from legalstream.bus.redis.keys import Keys
from legalstream.bus.redis.scripts import Scripts
from legalstream.settings import BusSettings


class RedisRunRecords:
    def __init__(
        self,
        conn: RedisConnections,
        keys: Keys,
        scripts: Scripts,
        settings: BusSettings,
        *,
        worker: str,
    ) -> None:
        self._conn = conn
        self._keys = keys
        self._scripts = scripts
        self._settings = settings
        self.worker = worker

    def encode(self, record: RunRecord) -> bytes:
        data = {
            "run_id": record.run_id,
            "query": record.query,
            "case_id": record.case_id,
            "user": record.user,
            "status": record.status,
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "event_count": record.event_count,
            "final": record.final,
            "worker": self.worker,
        }
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)

    def keys_args(self, record: RunRecord) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV of the scripts' ``save_record`` function for ``record``."""
        ttl = self._settings.retention_seconds
        keys: list[Any] = [
            self._keys.record(record.run_id),
            self._keys.index(),
            self._keys.index(record.case_id),
            self._keys.running,
        ]
        args: list[Any] = [
            self.encode(record),
            ttl,
            record.run_id,
            repr(record.started_at),
            max(1, self._settings.history_runs),
            repr(time.time() - ttl),
            "1" if record.status == "running" else "0",
        ]
        return keys, args

    async def save(self, record: RunRecord) -> None:
        keys, args = self.keys_args(record)
        with guard("save_run"):
            await self._scripts.call(self._scripts.save_run, keys, args)

    async def get(self, run_id: str) -> RunRecord | None:
        with guard("get_run"):
            raw = await self._conn.commands.get(self._keys.record(run_id))
        return decode_record(raw) if raw is not None else None

    async def list_runs(self, *, case_id: Any = None, limit: int = 100) -> list[RunRecord]:
        if limit <= 0:
            return []
        index = self._keys.index(case_id)
        r = self._conn.commands
        with guard("list_runs"):
            ids = await r.zrevrange(index, 0, limit - 1)
            if not ids:
                return []
            raws = await r.mget([self._keys.record(i.decode()) for i in ids])
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:
                await r.zrem(index, *gone)
        return [decode_record(raw) for raw in raws if raw is not None]


def decode_record(raw: bytes) -> RunRecord:
    data = orjson.loads(raw)
    return RunRecord(
        run_id=data["run_id"],
        query=data["query"],
        case_id=data["case_id"],
        user=data["user"],
        status=data["status"],
        started_at=data["started_at"],
        ended_at=data.get("ended_at"),
        event_count=data.get("event_count", 0),
        final=data.get("final"),
    )
