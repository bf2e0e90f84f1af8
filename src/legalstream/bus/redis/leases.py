"""Runs whose worker died: found from the index of running runs, ended by a survivor.

Every run is in ``P:running`` from its first frames until its end (the
scripts keep it there). A run whose owner's heartbeat key has expired is an
orphan: no final event will ever come from its owner. ``finalize`` gives it
one in a single script — check the owner is still gone and the run still
open, append the final event after the stream's last seq, end the stream,
save the record — so of two survivors racing, exactly one does it.
"""

from __future__ import annotations

import orjson

from legalstream.bus.base import RunRecord
from legalstream.bus.redis.connection import RedisConnections, guard
from legalstream.bus.redis.keys import Keys
from legalstream.bus.redis.records import RedisRunRecords, decode_record
from legalstream.bus.redis.scripts import Scripts
from legalstream.events import Event
from legalstream.settings import BusSettings

#: Orphans looked at per scan, at most (the rest wait for the next one).
SCAN_LIMIT = 1000


class RedisLeases:
    def __init__(
        self,
        conn: RedisConnections,
        keys: Keys,
        scripts: Scripts,
        records: RedisRunRecords,
        settings: BusSettings,
        *,
        worker: str,
    ) -> None:
        self._conn = conn
        self._keys = keys
        self._scripts = scripts
        self._records = records
        self._settings = settings
        self.worker = worker

    async def orphans(self) -> list[RunRecord]:
        r = self._conn.commands
        with guard("orphans"):
            ids = await r.zrange(self._keys.running, 0, SCAN_LIMIT - 1)
            if not ids:
                return []
            raws = await r.mget([self._keys.record(i.decode()) for i in ids])
            owners: dict[str, list[tuple[RunRecord, str]]] = {}
            for raw in raws:
                if raw is None:
                    continue
                owner = orjson.loads(raw).get("worker")
                record = decode_record(raw)
                if record.status == "running" and owner and owner != self.worker:
                    owners.setdefault(owner, []).append((record, owner))
            if not owners:
                return []
            names = list(owners)
            alive = await r.mget([self._keys.worker(w) for w in names])
        return [
            record
            for name, beat in zip(names, alive, strict=True)
            if beat is None
            for record, _ in owners[name]
        ]

    async def finalize(self, record: RunRecord, final: Event) -> int:
        owner = await self._owner(record.run_id)
        if owner is None:
            return 0
        final.seq = -1  # the script puts the seq it finds in its place
        final._encoded = None
        ended = RunRecord(
            run_id=record.run_id,
            query=record.query,
            case_id=record.case_id,
            user=record.user,
            status="error",
            started_at=record.started_at,
            ended_at=final.timestamp,
            event_count=-1,
            final=final.to_dict(),
        )
        ttl = self._settings.retention_seconds
        keys = [
            self._keys.stream(f"run:{record.run_id}"),
            self._keys.record(record.run_id),
            self._keys.running,
            self._keys.worker(owner),
        ]
        args = [
            owner,
            final.encoded,
            self._records.encode(ended),
            ttl,
            self._settings.history_per_run,
            record.run_id,
        ]
        with guard("finalize"):
            seq = int(await self._scripts.call(self._scripts.finalize_orphan, keys, args))
        if seq:
            final.seq = seq
            final._encoded = None
        return seq

    async def _owner(self, run_id: str) -> str | None:
        with guard("finalize"):
            raw = await self._conn.commands.get(self._keys.record(run_id))
        if raw is None:
            return None
        owner = orjson.loads(raw).get("worker")
        return owner if isinstance(owner, str) else None
