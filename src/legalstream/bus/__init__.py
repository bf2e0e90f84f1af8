"""The bus: a hub of followers over a transport, run records, presence and control.

``open_bus`` builds the in-process bus or the Redis one from settings
(docs/deploy.md); bus/base.py says what each part is.
"""

from __future__ import annotations

from legalstream.bus.base import Bus
from legalstream.bus.hub import Hub
from legalstream.settings import BusSettings

__all__ = ["Bus", "open_bus"]


def open_bus(settings: BusSettings, *, worker: str) -> Bus:
    """A bus for ``settings.backend`` (not started: ``await bus.start()``)."""
    if settings.backend == "redis":
        from legalstream.bus.redis import open_redis_bus

        return open_redis_bus(settings, worker=worker)
    from legalstream.bus.memory import (
        LocalControl,
        LocalLeases,
        LocalPresence,
        MemoryRunRecords,
        MemoryTransport,
    )

    records = MemoryRunRecords()
    transport = MemoryTransport(
        records,
        history_per_run=settings.history_per_run,
        history_runs=settings.history_runs,
    )
    hub = Hub(transport, subscriber_buffer=settings.subscriber_buffer)
    return Bus(
        hub=hub,
        records=records,
        presence=LocalPresence(worker),
        control=LocalControl(),
        leases=LocalLeases(),
        worker=worker,
        parts=(hub,),
    )
