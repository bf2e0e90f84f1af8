"""The Redis transport: streams of runs in Redis Streams, channels over Pub/Sub.

Writes are script calls (bus/redis/scripts.py), pipelined per loop turn. A
publishing worker's own followers get its events from the hub as they are
published; every other follower is served by the reader.

The reader is one task per worker running ``XREAD BLOCK`` over the streams
the hub wants (those with a follower here that is behind), each from the
lowest cursor any of their followers has, and hands what it reads to the hub.
A follow that needs events the XREAD in flight does not cover wakes it by
adding to this worker's ``wake`` stream (always part of the XREAD).

Failures: Redis errors become :class:`~legalstream.bus.base.BusUnavailable`
for callers; when the reader loses Redis, every stream followed here fails
with it (the session closes with 1013 and its client resumes) and the reader
retries with backoff. A stream whose owning worker died gets its final event
from a surviving worker (bus/redis/leases.py, runs/leases.py) and ends as
any other.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.exceptions import ResponseError

from legalstream.bus.base import (
    BROADCAST,
    CASE_PREFIX,
    BusUnavailable,
    History,
    RunRecord,
    TransportSink,
    UnknownTopic,
)
from legalstream.bus.redis.connection import (
    BACKOFF_MIN,
    REDIS_ERRORS,
    BackgroundTasks,
    RedisConnections,
    backoff_sleep,
    guard,
    raise_if_stopping,
)
from legalstream.bus.redis.keys import Keys, format_id, parse_id
from legalstream.bus.redis.pubsub import PubSubListener
from legalstream.bus.redis.records import RedisRunRecords
from legalstream.bus.redis.scripts import Scripts
from legalstream.events import Event, decode_event
from legalstream.settings import BusSettings

#: The one Pub/Sub channel of every case channel (``case:<id>`` topics).
CASES_CHANNEL = "cases"

log = logging.getLogger("legalstream.bus.redis")

#: Entries one XREAD returns per stream.
READ_BATCH = 512
#: Longest the reader blocks in XREAD before it looks around (ms).
BLOCK_MS = 5_000


def read_block_ms(settings: BusSettings) -> int:
    """How long one XREAD blocks before the reader looks around."""
    return int(min(BLOCK_MS, max(500, 3000 * settings.heartbeat_seconds)))


class RedisTransport:
    """Streams and channels across workers (see the module docstring)."""

    inline = False

    def __init__(
        self,
        conn: RedisConnections,
        keys: Keys,
        scripts: Scripts,
        records: RedisRunRecords,
        pubsub: PubSubListener,
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
        self._wake_key = keys.wake(worker)
        self._sink: TransportSink | None = None
        self.tasks = BackgroundTasks()
        self.block_ms = read_block_ms(settings)
        #: Streams this worker publishes and has not ended: their last seq.
        self._open: dict[str, int] = {}
        #: The streams of the XREAD in flight and the seq each is read after.
        self._reading: dict[str, int] = {}
        self._in_xread = False
        self._wake_pending = False
        self._changed = asyncio.Event()
        self._down = False
        self._started = False
        pubsub.on(keys.channel(BROADCAST), self._on_channel)
        # Every case channel shares one Pub/Sub channel (handlers are fixed before
        # start): each message is "<topic>\n<event>", and the hub fans out by topic.
        pubsub.on(keys.channel(CASES_CHANNEL), self._on_case_channel)

    def bind(self, sink: TransportSink) -> None:
        self._sink = sink

    def _hub(self) -> TransportSink:
        if self._sink is None:
            raise RuntimeError("the transport is not bound to a hub")
        return self._sink

    async def start(self) -> None:
        if self._started:
            return
        self._scripts.register()
        self._started = True
        self.tasks.spawn(self._reader_loop(), "reader")

    async def close(self) -> None:
        self._started = False
        await self.tasks.cancel_all()
        await self._scripts.tasks.cancel_all()

    # -- writes ---------------------------------------------------------------------

    async def append(self, topic: str, events: list[Event]) -> None:
        """A stream's batch in one script call (its first also sets the stream's TTL)."""
        # The TTL also bounds the life of a run whose worker died before ending it.
        ttl = self._settings.retention_seconds if topic not in self._open else 0
        args: list[Any] = [self._settings.history_per_run, ttl, *self._entries(topic, events)]
        try:
            with guard("publish"):
                await self._scripts.call(self._scripts.xadd_many, [self._keys.stream(topic)], args)
        except ResponseError as exc:
            raise RuntimeError(
                f"publish to {topic} refused (closed topic or seq reused): {exc}"
            ) from exc

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        await self._store_batch(self._scripts.open_run, "open_run", topic, events, record)

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        await self._store_batch(self._scripts.finish_run, "finish_run", topic, events, record)
        self._open.pop(topic, None)

    async def _store_batch(
        self, script: Any, what: str, topic: str, events: list[Event], record: RunRecord
    ) -> None:
        """Call ``OPEN_RUN`` or ``FINISH_RUN``: they take the same KEYS and ARGV."""
        keys, args = self._records.keys_args(record)
        keys.insert(0, self._keys.stream(topic))
        args = [self._settings.history_per_run, *args, *self._entries(topic, events)]
        try:
            with guard(what):
                await self._scripts.call(script, keys, args)
        except ResponseError as exc:
            raise RuntimeError(f"{what} on {topic} refused (closed or seq reused): {exc}") from exc

    def _entries(self, topic: str, events: list[Event]) -> list[Any]:
        """(entry id, encoded event) pairs, flattened: an event's seq is its entry's id."""
        out: list[Any] = []
        for event in events:
            if event.seq is None:
                raise ValueError(f"events of stream {topic} must carry their seq")
            out.append(f"{event.seq}-0")
            out.append(event.encoded)
        self._open[topic] = events[-1].seq if events else self._open.get(topic, 0)  # type: ignore[assignment]
        return out

    async def end(self, topic: str) -> int:
        """Append the end marker; followers on every worker stop after it."""
        last = self._open.pop(topic, None)
        key = self._keys.stream(topic)
        pipe = self._conn.commands.pipeline(transaction=False)
        pipe.xadd(
            key, {"end": b"1"}, id="*", maxlen=self._settings.history_per_run, approximate=True
        )
        pipe.expire(key, self._settings.retention_seconds)
        pipe.xrevrange(key, "+", "-", count=2)
        with guard("close_topic"):
            _, _, tail = await pipe.execute()
        if last is None:
            last = next((parse_id(i)[0] for i, f in tail if b"end" not in f), 0)
        return last

    async def publish_channel(self, topic: str, event: Event) -> None:
        if topic.startswith(CASE_PREFIX):
            channel, data = (
                self._keys.channel(CASES_CHANNEL),
                topic.encode() + b"\n" + event.encoded,
            )
        else:
            channel, data = self._keys.channel(topic), event.encoded
        with guard("publish"):
            await self._conn.commands.publish(channel, data)

    def _on_channel(self, raw: bytes) -> None:
        event = decode_event(raw)
        event._encoded = raw
        self._hub().deliver(BROADCAST, [event])

    def _on_case_channel(self, raw: bytes) -> None:
        topic, _, encoded = raw.partition(b"\n")
        event = decode_event(encoded)
        event._encoded = encoded
        self._hub().deliver(topic.decode(), [event])

    # -- reads ----------------------------------------------------------------------

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        key = self._keys.stream(topic)
        pipe = self._conn.commands.pipeline(transaction=False)
        pipe.xrange(key, f"{after_seq + 1}-0", "+")
        pipe.xrange(key, "-", "+", count=1)
        pipe.xrevrange(key, "+", "-", count=2)
        with guard("history"):
            entries, head, tail = await pipe.execute()
        if not head:
            raise UnknownTopic(topic)
        closed = b"end" in tail[0][1]
        last_seq = 0
        for raw_id, fields in tail:
            if b"end" not in fields:
                last_seq = parse_id(raw_id)[0]
                break
        first_seq = last_seq + 1 if b"end" in head[0][1] else parse_id(head[0][0])[0]
        events = []
        for _raw_id, fields in entries:
            raw = fields.get(b"e")
            if raw is None:
                continue
            event = decode_event(raw)
            if event.seq is None or event.seq <= after_seq:
                continue
            event._encoded = raw
            events.append(event)
        return History(events=events, first_seq=first_seq or 1, last_seq=last_seq, closed=closed)

    def replay(self, topic: str, after_seq: int) -> None:
        """Have the reader read ``topic`` after ``after_seq`` (the hub's ``wanted`` says so)."""
        if self._down:
            self._hub().fail(topic, BusUnavailable("redis is unreachable"))
            return
        reading = self._reading.get(topic)
        if reading is not None and reading <= after_seq:
            return  # the XREAD in flight covers it
        self._kick()

    def _kick(self) -> None:
        """What must be read changed: re-issue XREAD."""
        self._changed.set()
        if self._in_xread and not self._wake_pending and self._started:
            self._wake_pending = True
            self.tasks.spawn(self._wake(), "wake")

    async def _wake(self) -> None:
        try:
            pipe = self._conn.commands.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"w": b"1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, 3600)
            await pipe.execute()
        except REDIS_ERRORS as exc:
            log.debug("wake failed: %s", exc)
        finally:
            self._wake_pending = False

    async def _reader_loop(self) -> None:
        hub = self._hub()
        reader = self._conn.reader
        backoff = BACKOFF_MIN
        wake_cursor = "0-0"
        while True:
            try:
                if self._down:
                    await reader.ping()
                    self._down = False
                    log.warning("redis is reachable again; run streams resume")
                self._changed.clear()
                wanted = hub.wanted()
                if not wanted and not hub.following():
                    await self._changed.wait()
                    continue
                # With followers but nothing to read (their streams are ours and
                # they have everything), XREAD still blocks on the wake stream:
                # that is how a lost connection to Redis is noticed and they hear.
                streams: dict[Any, str] = {self._wake_key: wake_cursor}
                for topic, after in wanted.items():
                    streams[self._keys.stream(topic)] = format_id((after, 0))
                self._reading = wanted
                self._in_xread = True
                try:
                    reply = await reader.xread(streams, count=READ_BATCH, block=self.block_ms)
                finally:
                    self._in_xread = False
                    self._reading = {}
                backoff = BACKOFF_MIN
                for key, entries in _stream_items(reply):
                    if key == self._wake_key:
                        if entries:
                            wake_cursor = format_id(parse_id(entries[-1][0]))
                        continue
                    topic = self._keys.topic_of(key)
                    self._dispatch(topic, wanted[topic], entries)
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                raise_if_stopping(exc)
                if not self._down:
                    log.error("redis reader failed (%s): ending run streams, retrying", exc)
                self._down = True
                hub.fail(None, BusUnavailable(f"redis connection lost: {exc}"))
                backoff = await backoff_sleep(backoff)
            except Exception as exc:
                raise_if_stopping(exc)
                log.exception("redis reader crashed; restarting")
                hub.fail(None, BusUnavailable("redis reader failed"))
                await asyncio.sleep(backoff)

    def _dispatch(self, topic: str, after_seq: int, entries: list[Any]) -> None:
        """Hand one stream's entries, read after ``after_seq``, to the hub."""
        events: list[Event] = []
        ended = False
        for _raw_id, fields in entries:
            if b"end" in fields:
                ended = True
                break
            raw = fields[b"e"]
            event = decode_event(raw)
            event._encoded = raw
            events.append(event)
        hub = self._hub()
        if events:
            hub.deliver(topic, events, after_seq=after_seq)
        if ended:
            hub.ended(topic, events[-1].seq if events else after_seq)  # type: ignore[arg-type]


def _stream_items(reply: Any) -> list[tuple[bytes, list[Any]]]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(k, v) for k, v in reply]
