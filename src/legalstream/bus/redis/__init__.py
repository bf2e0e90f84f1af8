"""The Redis bus: several workers (processes, machines) share runs and broadcasts.

One module per concept: ``keys`` (the layout in Redis), ``scripts`` (Lua and
their shared pipeline), ``connection`` (clients, tasks, errors), ``streams``
(the transport: run streams and broadcast channels), ``records``,
``presence``, ``control``, ``leases`` (runs whose worker died), and
``pubsub`` (the listener that channels and control share).
"""

from __future__ import annotations

from legalstream.bus.base import Bus
from legalstream.bus.hub import Hub
from legalstream.bus.redis.connection import RedisConnections
from legalstream.bus.redis.control import RedisControl
from legalstream.bus.redis.keys import Keys
from legalstream.bus.redis.leases import RedisLeases
from legalstream.bus.redis.presence import RedisPresence
from legalstream.bus.redis.pubsub import PubSubListener
from legalstream.bus.redis.records import RedisRunRecords
from legalstream.bus.redis.scripts import Scripts
from legalstream.bus.redis.streams import RedisTransport, read_block_ms
from legalstream.settings import BusSettings

__all__ = ["open_redis_bus"]


def open_redis_bus(settings: BusSettings, *, worker: str) -> Bus:
    """The parts of one worker's Redis bus, wired together (not started)."""
    keys = Keys(settings.redis_prefix)
    # The reader's socket waits a little longer than its longest XREAD.
    conn = RedisConnections(settings.redis_url, read_timeout=read_block_ms(settings) / 1000 + 5.0)
    pubsub = PubSubListener(conn)
    scripts = Scripts(lambda: conn.commands)
    records = RedisRunRecords(conn, keys, scripts, settings, worker=worker)
    transport = RedisTransport(conn, keys, scripts, records, pubsub, settings, worker=worker)
    hub = Hub(transport, subscriber_buffer=settings.subscriber_buffer)
    presence = RedisPresence(
        conn, keys, worker=worker, heartbeat_seconds=settings.heartbeat_seconds
    )
    control = RedisControl(conn, keys, pubsub, worker=worker)
    leases = RedisLeases(conn, keys, scripts, records, settings, worker=worker)
    return Bus(
        hub=hub,
        records=records,
        presence=presence,
        control=control,
        leases=leases,
        worker=worker,
        parts=(conn, pubsub, hub, presence, control),
    )
