"""Every run ends with one final frame, even when the worker running it dies.

Each worker heartbeats (bus presence). The :class:`LeaseKeeper` of every
worker looks, once a heartbeat period, for runs still "running" whose owner
has stopped heartbeating; one seen so twice in a row (a Redis hiccup must
not end a live worker's run) gets ``agent_execution_error`` with code
``worker_lost``, appended to its history by the bus in one atomic step —
so live followers on any worker get it, a resume ends properly, replay works
and ``GET /runs`` shows the end. Of several survivors racing, exactly one
appends it.

With the default 2 s heartbeat a dead worker's key expires after 6 s, and
its runs end within about 10 s of its death.
"""

from __future__ import annotations

import logging
import time

import anyio

from legalstream.audit import audit_line
from legalstream.bus.base import BusUnavailable, Leases, RunRecord
from legalstream.events import ErrorCode, Event, EventType, RunFailure
from legalstream.runs.manager import AGENT_NAME, TASK_NAME

log = logging.getLogger("legalstream.runs")


def worker_lost_event(record: RunRecord) -> Event:
    """The final frame of a run whose worker died."""
    return Event(
        type=EventType.AGENT_EXECUTION_ERROR,
        agent_name=AGENT_NAME,
        task=TASK_NAME,
        error="the worker running this run stopped; ask again",
        metadata=RunFailure(record.query, record.case_id, str(ErrorCode.WORKER_LOST)).to_payload(),
        run_id=record.run_id,
        code=str(ErrorCode.WORKER_LOST),
    )


class LeaseKeeper:
    """Finds runs whose worker died and ends them (one per worker; see the module docstring)."""

    def __init__(self, leases: Leases, *, period: float) -> None:
        self._leases = leases
        self.period = period
        #: Orphans seen in the last scan, by run id (ended on their second sighting).
        self._suspects: set[str] = set()
        self.finalized = 0

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.period)
            try:
                await self.scan()
            except BusUnavailable as exc:
                log.warning("lease scan skipped: %s", exc)
            except Exception:
                log.exception("lease scan failed")

    async def scan(self) -> None:
        orphans = await self._leases.orphans()
        seen = {record.run_id for record in orphans}
        for record in orphans:
            if record.run_id not in self._suspects:
                continue
            final = worker_lost_event(record)
            seq = await self._leases.finalize(record, final)
            if seq:
                self.finalized += 1
                log.warning("run %s: its worker is gone; ended it (worker_lost)", record.run_id)
                audit_line(
                    "query",
                    {
                        "user": record.user,
                        "client_ip": None,
                        "run_id": record.run_id,
                        "case_id": record.case_id,
                        "outcome": str(ErrorCode.WORKER_LOST),
                        "duration_s": round(time.time() - record.started_at, 4),
                        "cited_doc_ids": [],
                        "connection_id": None,
                        "published": True,
                        "followers": None,  # on other workers: not known here
                    },
                )
        self._suspects = seen
