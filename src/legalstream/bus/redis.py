"""The Redis bus: several workers (processes, machines) share runs and broadcasts.

Same :class:`~legalstream.bus.base.Bus` interface as the memory bus. Layout in
Redis (``P`` is ``settings.redis_prefix``)::

    P:run:<run_id>          Stream: one entry per event, entry ID ``<seq>-0``,
                            field ``e`` = Event.encoded; a final ``end`` entry
                            marks the closed topic. MAXLEN ~ history_per_run,
                            EXPIRE retention_seconds.
    P:record:<run_id>       String: the RunRecord as JSON (+ owner worker), TTL.
    P:runs                  ZSET run_id by started_at (trimmed to history_runs).
    P:runs:case:<case>      ZSET per case, same.
    P:worker:<worker>       String: the worker's connection snapshot, TTL 3×heartbeat.
    P:workers               ZSET worker -> expiry (an index; the key's TTL decides).
    P:wake:<worker>         Stream used only to wake this worker's blocked XREAD.
    P:broadcast             Pub/Sub channel: broadcast events.
    P:control               Pub/Sub channel: cross-worker attach/detach/cancel.

Why the seq is the entry ID (not only a field): ``XRANGE P:run:x <n+1>-0 +``
*is* "replay after seq n", and the first entry's ID is the first seq still in
history, so neither replay nor resume needs a scan.

Consumer-side fan-out: one reader task per process runs ``XREAD BLOCK`` over
the streams that have local subscribers, each from the oldest cursor any local
subscriber of it needs, and hands each event (decoded once) to every local
subscriber whose cursor is behind it. Replay and live tail are the same code
path, so there is no hand-over race between "replay" and "live" and no gap
detection. A new subscription wakes the blocked XREAD by adding to the
worker's ``wake`` stream (which is always part of the XREAD).

Failures: Redis errors become :class:`BusUnavailable` for the caller; run
subscriptions end with it (the session closes with 1013 and the client
resumes); the reader, the Pub/Sub listener and the heartbeat retry with
exponential backoff, so the process never dies with Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import anyio
import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError, ResponseError

from legalstream.bus.base import (
    BROADCAST,
    BusUnavailable,
    Follower,
    History,
    RunRecord,
    SubscriptionOverflow,
    UnknownTopic,
)
from legalstream.events import Event, decode_event
from legalstream.settings import BusSettings

log = logging.getLogger("legalstream.bus.redis")

#: Entries one XREAD returns per stream; a full batch means "more is waiting".
READ_BATCH = 512
#: Longest the reader blocks in XREAD before it looks around (ms).
BLOCK_MS = 5_000
#: Connections for commands (publish, history, records) per worker process.
POOL_SIZE = 64
#: Backoff of the background loops while Redis is unreachable (seconds).
BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0

_REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)

StreamId = tuple[int, int]

#: ``handler(op, run_id, reason)`` for control messages about runs of this worker.
ControlHandler = Callable[[str, str, str | None], None]


def _raise_if_stopping(exc: BaseException) -> None:
    """Re-raise as cancellation when this task was cancelled, whatever ``exc`` is.

    redis-py can turn a cancellation that lands mid-read into a connection
    error; a loop that retries on those would then run on after ``close()``
    cancelled it, and ``close()`` would wait for it forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling() > 0:
        raise asyncio.CancelledError from exc


def _parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _fmt_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"


#: ``XADD`` of a batch: KEYS[1] the stream; ARGV maxlen, ttl (0: leave it),
#: then (entry id, encoded event) pairs. A refused id (the stream's end
#: marker is newer; a seq reused) raises and stops the batch there.
XADD_MANY = """
local maxlen = ARGV[1]
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, ARGV[i], 'e', ARGV[i + 1])
end
if ARGV[2] ~= '0' then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return (#ARGV - 2) / 2
"""

#: Lua: save a run record and its two indexes (all runs, the run's case).
#: KEYS[k] the record, KEYS[k+1..k+2] the indexes; ARGV[a..a+5] record JSON,
#: ttl, run id, started_at, runs kept per index, cutoff time.
_SAVE_RECORD = """
local function save_record(k, a)
  redis.call('SET', KEYS[k], ARGV[a], 'EX', ARGV[a + 1])
  for i = k + 1, k + 2 do
    redis.call('ZADD', KEYS[i], ARGV[a + 3], ARGV[a + 2])
    redis.call('ZREMRANGEBYRANK', KEYS[i], 0, -(tonumber(ARGV[a + 4]) + 1))
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[a + 5])
    redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
  end
end
"""

#: A run record and its indexes in one command: as a pipeline, redis-py packed
#: nine commands in Python, twice per run. KEYS and ARGV as ``_SAVE_RECORD``'s.
SAVE_RUN = (
    _SAVE_RECORD
    + """
save_record(1, 1)
return 1
"""
)

#: A run's batch stored with its record. KEYS the stream, then the record
#: keys; ARGV maxlen, then the record args (the ttl among them also bounds
#: the stream), then (entry id, encoded event) pairs.
_STORE_BATCH = """
local maxlen = ARGV[1]
for i = 8, #ARGV, 2 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, ARGV[i], 'e', ARGV[i + 1])
end
"""

#: A run's opening frames and its first record, in one command (save_run and
#: publish_many would be two round trips before the run can start).
OPEN_RUN = (
    _SAVE_RECORD
    + _STORE_BATCH
    + """
redis.call('EXPIRE', KEYS[1], ARGV[3])
save_record(2, 2)
return 1
"""
)

#: A run's last batch, its end marker and its final record, in one command
#: (publish_many, close_topic and save_run would be three round trips).
FINISH_RUN = (
    _SAVE_RECORD
    + _STORE_BATCH
    + """
redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', 'end', '1')
redis.call('EXPIRE', KEYS[1], ARGV[3])
save_record(2, 2)
return 1
"""
)


class RedisSubscription:
    """One local subscriber: a bounded queue filled by the bus's reader task.

    With a ``follower`` (``Bus.follow``) there is no queue: what the reader or
    a local publish hands over goes straight to the follower, in batches.
    """

    def __init__(
        self,
        bus: RedisBus | None,
        topic: str,
        buffer: int,
        cursor: StreamId | None,
        follower: Follower | None = None,
    ) -> None:
        self._bus = bus
        self.follower = follower
        self.topic = topic
        self._buffer = buffer
        #: Extra room granted for the replayed backlog (as memory.py does).
        self.backlog_room = 0
        #: ID of the last entry handed over; None until the tip is known (live-only).
        self.cursor = cursor
        #: True while the reader still delivers replayed history in full batches.
        self.catching_up = cursor is not None
        self._queue: deque[Event] = deque()
        self._waiter: anyio.Event | None = None
        self.done = False
        self.overflowed = False
        self.error: Exception | None = None

    def offer_many(self, events: list[Event], *, backlog: bool = False) -> None:
        if self.done or not events:
            return
        if self.follower is not None:
            self.follower.deliver(events)
            return
        for event in events:
            self.offer(event, backlog=backlog)

    def offer(self, event: Event, *, backlog: bool = False) -> None:
        if self.done:
            return
        if self.follower is not None:
            self.follower.deliver([event])
            return
        if backlog:
            self.backlog_room += 1
        if len(self._queue) >= self._buffer + self.backlog_room:
            self.overflowed = True
            self.finish()
            return
        self._queue.append(event)
        self._wake()

    def finish(self, error: Exception | None = None) -> None:
        """No more events: the consumer drains what is queued, then stops."""
        if self.done:
            return
        self.done = True
        if error is not None and self.error is None:
            self.error = error
        if self._bus is not None:
            self._bus._discard(self)
        if self.follower is not None:
            if self.overflowed and error is None:
                error = SubscriptionOverflow("subscriber fell behind its buffer")
            self.follower.end(error)
            return
        self._wake()

    def detach(self) -> None:
        """Stop without telling the follower (it asked: ``unfollow``)."""
        self.follower = None
        self.finish()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def _ready(self) -> None:
        while not self._queue:
            if self.done:
                if self.overflowed:
                    raise SubscriptionOverflow("subscriber fell behind its buffer")
                if self.error is not None:
                    raise self.error
                raise StopAsyncIteration
            self._waiter = anyio.Event()
            await self._waiter.wait()

    async def __anext__(self) -> Event:
        await self._ready()
        return self._queue.popleft()

    async def next_batch(self) -> list[Event]:
        """Everything queued (at least one event); ``StopAsyncIteration`` at the end."""
        await self._ready()
        batch = list(self._queue)
        self._queue.clear()
        return batch

    async def aclose(self) -> None:
        self.finish()
        self._queue.clear()


class _ScriptBatch:
    """Script calls made in one turn of the event loop go to Redis as one pipeline.

    Every run publishes a few script calls (record, batches, finish); with many
    runs at once, redis-py's per-command work (pool checkout, retry wrapper,
    timeout, a write and a read) was a fifth of a worker's time. Calls queue
    here and a callback at the end of the loop's turn sends them together;
    each caller still gets its own result or error.
    """

    def __init__(self, bus: RedisBus) -> None:
        self._bus = bus
        self._pending: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]] = []

    def call(self, script: Any, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((script, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self._bus._spawn(self._send(batch), "scripts")

    async def _send(
        self, batch: list[tuple[Any, list[Any], list[Any], asyncio.Future[Any]]]
    ) -> None:
        try:
            pipe = self._bus.redis.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                await script(keys=keys, args=args, client=pipe)  # queues; loads if needed
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RedisError(str(exc))
                    )
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


class _Follow:
    """A run topic with local subscribers."""

    __slots__ = ("key", "last_activity", "subs")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.subs: set[RedisSubscription] = set()
        self.last_activity = time.monotonic()


class RedisBus:
    """Multi-process bus on Redis Streams + Pub/Sub. See the module docstring."""

    def __init__(self, settings: BusSettings, *, worker: str) -> None:
        self.settings = settings
        self.worker = worker
        p = settings.redis_prefix
        self._prefix = p
        self._broadcast_channel = f"{p}:broadcast"
        self._control_channel = f"{p}:control"
        self._workers_key = f"{p}:workers"
        self._wake_key = f"{p}:wake:{worker}".encode()
        self._r: aioredis.Redis | None = None
        self._xadd_many: Any = None
        self._save_run: Any = None
        self._open_run: Any = None
        self._finish_run: Any = None
        self._scripts = _ScriptBatch(self)
        self._reader_r: aioredis.Redis | None = None
        self._pubsub_r: aioredis.Redis | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Followers (Bus.follow) and the subscription that pushes to each one.
        self._feeds: dict[Follower, RedisSubscription] = {}
        # run topics with local subscribers, and live-only broadcast subscribers
        self._follows: dict[str, _Follow] = {}
        self._broadcast: set[RedisSubscription] = set()
        # publisher side: last seq per open topic (IDs of seq-less events)
        self._open: dict[str, int] = {}
        # streams of the XREAD in flight (empty when none is)
        self._xread_keys: set[bytes] = set()
        self._changed = asyncio.Event()
        self._in_xread = False
        self._wake_pending = False
        self._down = False
        self._registry: Any = None
        self._control_handler: ControlHandler | None = None
        self._control_queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._remote_follows: dict[str, int] = {}
        self._started = False
        # XREAD blocks at most this long; also the period of the dead-owner check.
        self._block_ms = int(min(BLOCK_MS, max(500, 3000 * settings.heartbeat_seconds)))
        self._pubsub_ready = asyncio.Event()
        self.published = 0

    # -- keys ---------------------------------------------------------------

    def _stream_key(self, topic: str) -> str:
        return f"{self._prefix}:{topic}"

    def _record_key(self, run_id: str) -> str:
        return f"{self._prefix}:record:{run_id}"

    def _index_key(self, case_id: Any = None) -> str:
        if case_id is None:
            return f"{self._prefix}:runs"
        return f"{self._prefix}:runs:case:{orjson.dumps(case_id).decode()}"

    def _worker_key(self, worker: str) -> str:
        return f"{self._prefix}:worker:{worker}"

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        url = self.settings.redis_url
        retry = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), retries=2)
        common = {"socket_connect_timeout": 2.0, "socket_keepalive": True}
        # A blocking pool: a burst of publishers waits for a connection instead
        # of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=5.0, socket_timeout=5.0, **common
        )
        self._r = aioredis.Redis(connection_pool=pool, retry=retry)
        self._r.auto_close_connection_pool = True  # aclose() also closes our pool
        # One EVALSHA per published batch instead of one XADD per event: redis-py
        # packs and parses each pipelined command in Python, which profiling put
        # at a third of a worker's time under streaming load.
        self._xadd_many = self._r.register_script(XADD_MANY)
        self._save_run = self._r.register_script(SAVE_RUN)
        self._open_run = self._r.register_script(OPEN_RUN)
        self._finish_run = self._r.register_script(FINISH_RUN)
        # One connection each for the blocking XREAD and for Pub/Sub; no
        # internal retries there, the loops below reconnect with backoff.
        self._reader_r = aioredis.from_url(
            url,
            socket_timeout=self._block_ms / 1000 + 5.0,
            retry=Retry(ExponentialWithJitterBackoff(), 0),
            **common,
        )
        self._pubsub_r = aioredis.from_url(
            url,
            socket_timeout=None,
            health_check_interval=15,
            retry=Retry(ExponentialWithJitterBackoff(), 0),
            **common,
        )
        reachable = True
        try:
            await self._r.ping()
        except _REDIS_ERRORS as exc:
            # Start anyway: the loops keep retrying and callers get errors meanwhile.
            log.error("redis at %s is not reachable (%s); retrying in the background", url, exc)
            reachable = False
        self._started = True
        self._spawn(self._reader_loop(), "reader")
        self._spawn(self._pubsub_loop(), "pubsub")
        self._spawn(self._heartbeat_loop(), "heartbeat")
        self._spawn(self._control_sender(), "control")
        # Broadcasts published after start() returns reach this worker too.
        if reachable:
            with anyio.move_on_after(2.0):
                await self._pubsub_ready.wait()

    async def close(self) -> None:
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
        for follow in list(self._follows.values()):
            for sub in list(follow.subs):
                sub.finish()
        for sub in list(self._broadcast):
            sub.finish()
        if self._r is not None and self._started:
            # A clean shutdown leaves the cluster view at once.
            with contextlib.suppress(*_REDIS_ERRORS):
                with anyio.move_on_after(2.0):
                    pipe = self._r.pipeline(transaction=False)
                    pipe.delete(self._worker_key(self.worker), self._wake_key)
                    pipe.zrem(self._workers_key, self.worker)
                    await pipe.execute()
        for client in (self._r, self._reader_r, self._pubsub_r):
            if client is not None:
                with contextlib.suppress(*_REDIS_ERRORS):
                    await client.aclose()
        self._started = False

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"redisbus-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _script(self) -> Any:
        if self._xadd_many is None:
            raise RuntimeError("RedisBus.start() was not called")
        return self._xadd_many

    @property
    def redis(self) -> aioredis.Redis:
        if self._r is None:
            raise RuntimeError("RedisBus.start() was not called")
        return self._r

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            yield
        except ResponseError:
            raise
        except _REDIS_ERRORS as exc:
            raise BusUnavailable(f"redis {what} failed: {exc}") from exc

    # -- publishing ---------------------------------------------------------

    async def publish(self, topic: str, event: Event) -> None:
        if topic == BROADCAST:
            self.published += 1
            with self._guard("publish"):
                await self.redis.publish(self._broadcast_channel, event.encoded)
            return
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        """Append a run's events in one command (a server-side script), in order."""
        if not events:
            return
        self.published += len(events)
        key = self._stream_key(topic)
        # Also bounds the life of a run whose worker died before closing it.
        ttl = self.settings.retention_seconds if topic not in self._open else 0
        args: list[Any] = [self.settings.history_per_run, ttl, *self._entries(topic, events)]
        try:
            with self._guard("publish"):
                await self._scripts.call(self._script(), [key], args)
        except ResponseError as exc:
            raise RuntimeError(
                f"publish to {topic} refused (closed topic or seq reused): {exc}"
            ) from exc
        self._deliver_local(topic, events)

    def _entries(self, topic: str, events: list[Event]) -> list[Any]:
        """(entry id, encoded event) pairs, flattened: a run's seq is its entry's id."""
        out: list[Any] = []
        for event in events:
            if event.seq is not None:
                out.append(f"{event.seq}-0")
                self._open[topic] = event.seq
            else:
                out.append(f"{self._open.get(topic, 0)}-*")
                self._open.setdefault(topic, 0)
            out.append(event.encoded)
        return out

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """The run's first record and opening frames: one script call."""
        await self._store_batch(self._open_run, "open_run", topic, events, record)
        self._deliver_local(topic, events)

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """The run's last batch, end marker and final record: one script call."""
        await self._store_batch(self._finish_run, "finish_run", topic, events, record)
        self._deliver_local(topic, events)
        self._end_local(topic, self._open.pop(topic, None))

    async def _store_batch(
        self, script: Any, what: str, topic: str, events: list[Event], record: RunRecord
    ) -> None:
        """Call ``OPEN_RUN`` or ``FINISH_RUN``: they take the same KEYS and ARGV."""
        if script is None:
            raise RuntimeError("RedisBus.start() was not called")
        self.published += len(events)
        keys, args = self._record_keys_args(record)
        keys.insert(0, self._stream_key(topic))
        args = [self.settings.history_per_run, *args, *self._entries(topic, events)]
        try:
            with self._guard(what):
                await self._scripts.call(script, keys, args)
        except ResponseError as exc:
            raise RuntimeError(f"{what} on {topic} refused (closed or seq reused): {exc}") from exc

    def _deliver_local(self, topic: str, events: list[Event]) -> None:
        """Hand just-stored events to this worker's subscribers that are caught up.

        A run's entries carry their gapless seq as ID, so a subscriber whose
        cursor is the entry just before misses nothing by taking them now,
        without reading them back from Redis and decoding them again. Any other
        subscriber (replaying a backlog, not yet positioned) is left to the
        reader, which reads from its cursor. Both paths advance the cursor and
        skip what it already covers: nothing is delivered twice.
        """
        follow = self._follows.get(topic)
        if follow is None:
            return
        behind = False
        for sub in list(follow.subs):
            taken: list[Event] = []
            for event in events:
                seq = event.seq
                if sub.done or seq is None or sub.cursor is None:
                    behind = behind or not sub.done
                    break
                sid = (seq, 0)
                if sub.cursor >= sid:
                    continue
                if sub.cursor != (seq - 1, 0):
                    behind = True
                    break
                sub.cursor = sid
                taken.append(event)
            sub.offer_many(taken)
        if behind and follow.key not in self._xread_keys:
            self._kick()  # the reader skips caught-up local topics: include this one

    async def close_topic(self, topic: str) -> None:
        """Append the end marker; subscribers on every worker stop after it."""
        last = self._open.pop(topic, None)
        key = self._stream_key(topic)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(
            key, {"end": b"1"}, id="*", maxlen=self.settings.history_per_run, approximate=True
        )
        pipe.expire(key, self.settings.retention_seconds)
        with self._guard("close_topic"):
            await pipe.execute()
        self._end_local(topic, last)

    def _end_local(self, topic: str, last: int | None) -> None:
        follow = self._follows.get(topic)
        if follow is not None and last is not None:
            # Local subscribers that have everything end here, as the reader
            # would end them on the marker; the others still read up to it.
            for sub in list(follow.subs):
                if sub.cursor == (last, 0):
                    sub.finish()
            if follow.subs and follow.key not in self._xread_keys:
                self._kick()

    # -- subscribing --------------------------------------------------------

    def subscribe(
        self, topic: str, *, after_seq: int | None = None, follower: Follower | None = None
    ) -> RedisSubscription:
        buffer = self.settings.subscriber_buffer
        if topic == BROADCAST:
            sub = RedisSubscription(self, topic, buffer, None)
            sub.catching_up = False
            self._broadcast.add(sub)
            return sub
        follow = self._follows.get(topic)
        cursor: StreamId | None
        if after_seq is not None:
            cursor = (after_seq, 0)
        elif follow is not None and follow.subs:
            # Live only: start behind everything not yet dispatched here.
            known = [s.cursor for s in follow.subs if s.cursor is not None]
            cursor = min(known) if known else None
        else:
            cursor = None
        sub = RedisSubscription(self, topic, buffer, cursor, follower)
        if self._down:
            sub.finish(BusUnavailable("redis is unreachable"))
            return sub
        if follow is None:
            follow = self._follows[topic] = _Follow(self._stream_key(topic).encode())
        follow.subs.add(sub)
        self._kick()
        return sub

    def follow(self, topic: str, follower: Follower, *, after_seq: int | None = None) -> None:
        """Push what the reader and local publishes hand over into ``follower`` (Bus.follow)."""
        sub = self.subscribe(topic, after_seq=after_seq, follower=follower)
        if not sub.done:  # a bus that is down ended it already
            self._feeds[follower] = sub

    def unfollow(self, topic: str, follower: Follower) -> None:
        sub = self._feeds.pop(follower, None)
        if sub is not None:
            sub.detach()

    def _discard(self, sub: RedisSubscription) -> None:
        if sub.topic == BROADCAST:
            self._broadcast.discard(sub)
            return
        follow = self._follows.get(sub.topic)
        if follow is not None:
            follow.subs.discard(sub)
            if not follow.subs:
                del self._follows[sub.topic]

    def _kick(self) -> None:
        """The set of followed streams or cursors changed: re-issue XREAD."""
        self._changed.set()
        if self._in_xread and not self._wake_pending and self._started:
            self._wake_pending = True
            self._spawn(self._wake(), "wake")

    async def _wake(self) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {"w": b"1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, 3600)
            await pipe.execute()
        except _REDIS_ERRORS as exc:
            log.debug("wake failed: %s", exc)
        finally:
            self._wake_pending = False

    # -- the reader ---------------------------------------------------------

    async def _reader_loop(self) -> None:
        assert self._reader_r is not None
        backoff = BACKOFF_MIN
        wake_cursor = "0-0"
        last_liveness_check = time.monotonic()
        while True:
            try:
                if self._down:
                    await self._reader_r.ping()
                    self._down = False
                    log.warning("redis is reachable again; run subscriptions resume")
                if not self._follows:
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                await self._resolve_tips()
                streams: dict[bytes, str] = {self._wake_key: wake_cursor}
                for topic, follow in self._follows.items():
                    cursors = [s.cursor for s in follow.subs if s.cursor is not None]
                    if not cursors:
                        continue
                    low = min(cursors)
                    published = self._open.get(topic)
                    if published is not None and low == (published, 0):
                        continue  # ours, and every follower has it: publish delivers
                    streams[follow.key] = _fmt_id(low)
                self._xread_keys = set(streams)
                self._in_xread = True
                try:
                    reply = await self._reader_r.xread(
                        streams, count=READ_BATCH, block=self._block_ms
                    )
                finally:
                    self._in_xread = False
                    self._xread_keys = set()
                backoff = BACKOFF_MIN
                for key, entries in _stream_items(reply):
                    if key == self._wake_key:
                        if entries:
                            wake_cursor = _fmt_id(_parse_id(entries[-1][0]))
                        continue
                    self._dispatch(key, _parse_id(streams[key]), entries)
                now = time.monotonic()
                if now - last_liveness_check > self._block_ms / 1000:
                    last_liveness_check = now
                    await self._check_owners()
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                _raise_if_stopping(exc)
                if not self._down:
                    log.error("redis reader failed (%s): ending run subscriptions, retrying", exc)
                self._down = True
                self._fail_all(BusUnavailable(f"redis connection lost: {exc}"))
                await asyncio.sleep(backoff * (1 + random.random() / 2))
                backoff = min(BACKOFF_MAX, backoff * 2)
            except Exception as exc:
                _raise_if_stopping(exc)
                log.exception("redis reader crashed; restarting")
                self._fail_all(BusUnavailable("redis reader failed"))
                await asyncio.sleep(backoff)

    async def _resolve_tips(self) -> None:
        """Live-only subscriptions start after the stream's current last entry."""
        assert self._reader_r is not None
        pending = [
            (topic, follow)
            for topic, follow in self._follows.items()
            if any(s.cursor is None for s in follow.subs)
        ]
        if not pending:
            return
        pipe = self._reader_r.pipeline(transaction=False)
        for _, follow in pending:
            pipe.xrevrange(follow.key, "+", "-", count=1)
        tips = await pipe.execute()
        for (_, follow), tip in zip(pending, tips, strict=True):
            closed = bool(tip) and b"end" in tip[0][1]
            cursor = _parse_id(tip[0][0]) if tip else (0, 0)
            for sub in list(follow.subs):
                if sub.cursor is None:
                    if closed:
                        sub.finish()
                    else:
                        sub.cursor = cursor
                        sub.catching_up = False

    def _dispatch(self, key: bytes, read_from: StreamId, entries: list[Any]) -> None:
        """Hand entries read after ``read_from`` to the subscribers they continue.

        A subscriber that joined behind ``read_from`` while XREAD was in flight
        waits for the next read (which starts from its cursor): no gaps.
        """
        topic = key.decode()[len(self._prefix) + 1 :]
        follow = self._follows.get(topic)
        if follow is None:
            return
        follow.last_activity = time.monotonic()
        full = len(entries) >= READ_BATCH
        subs = [s for s in follow.subs if s.cursor is not None and s.cursor >= read_from]
        # Each subscription's events of this read, handed over as one batch.
        taken: dict[RedisSubscription, list[Event]] = {sub: [] for sub in subs}

        def hand_over(sub: RedisSubscription) -> None:
            batch = taken[sub]
            if batch:
                taken[sub] = []
                sub.offer_many(batch, backlog=sub.catching_up)

        for raw_id, fields in entries:
            sid = _parse_id(raw_id)
            if b"end" in fields:
                for sub in subs:
                    if sub.cursor < sid:  # type: ignore[operator]
                        hand_over(sub)
                        sub.finish()
                continue
            event: Event | None = None
            for sub in subs:
                if sub.done or sub.cursor >= sid:  # type: ignore[operator]
                    continue
                if event is None:
                    raw = fields[b"e"]
                    event = decode_event(raw)
                    event._encoded = raw
                sub.cursor = sid
                taken[sub].append(event)
        for sub in subs:
            hand_over(sub)
        for sub in subs:
            # A full batch means more history is waiting: still replaying.
            sub.catching_up = sub.catching_up and full

    def _fail_all(self, error: Exception) -> None:
        for follow in list(self._follows.values()):
            for sub in list(follow.subs):
                sub.finish(error)
        self._follows.clear()

    async def _check_owners(self) -> None:
        """End subscriptions of runs whose owning worker died (no end marker will come)."""
        idle = 3 * self.settings.heartbeat_seconds
        now = time.monotonic()
        stale = [(t, f) for t, f in self._follows.items() if now - f.last_activity > idle]
        if not stale:
            return
        r = self.redis
        records = await r.mget([self._record_key(t.removeprefix("run:")) for t, _ in stale])
        for (_topic, follow), raw in zip(stale, records, strict=True):
            if raw is None:
                continue
            data = orjson.loads(raw)
            owner = data.get("worker")
            if data.get("status") != "running" or not owner or owner == self.worker:
                continue
            if not await r.exists(self._worker_key(owner)):
                log.warning(
                    "worker %s running %s is gone; ending its subscriptions", owner, data["run_id"]
                )
                for sub in list(follow.subs):
                    sub.finish(BusUnavailable(f"worker {owner} running this run is gone"))

    # -- history ------------------------------------------------------------

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        key = self._stream_key(topic)
        pipe = self.redis.pipeline(transaction=False)
        pipe.xrange(key, f"{after_seq + 1}-0", "+")
        pipe.xrange(key, "-", "+", count=1)
        pipe.xrevrange(key, "+", "-", count=2)
        with self._guard("history"):
            entries, head, tail = await pipe.execute()
        if not head:
            raise UnknownTopic(topic)
        closed = b"end" in tail[0][1]
        last_seq = 0
        for raw_id, fields in tail:
            if b"end" not in fields:
                last_seq = _parse_id(raw_id)[0]
                break
        first_seq = last_seq + 1 if b"end" in head[0][1] else _parse_id(head[0][0])[0]
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

    # -- run records --------------------------------------------------------

    def _record_json(self, record: RunRecord) -> bytes:
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

    def _record_keys_args(self, record: RunRecord) -> tuple[list[Any], list[Any]]:
        """KEYS and ARGV of the ``_SAVE_RECORD`` Lua function for ``record``."""
        ttl = self.settings.retention_seconds
        keys: list[Any] = [
            self._record_key(record.run_id),
            self._index_key(),
            self._index_key(record.case_id),
        ]
        args: list[Any] = [
            self._record_json(record),
            ttl,
            record.run_id,
            repr(record.started_at),
            max(1, self.settings.history_runs),
            repr(time.time() - ttl),
        ]
        return keys, args

    async def save_run(self, record: RunRecord) -> None:
        if self._save_run is None:
            raise RuntimeError("RedisBus.start() was not called")
        keys, args = self._record_keys_args(record)
        with self._guard("save_run"):
            await self._scripts.call(self._save_run, keys, args)

    async def get_run(self, run_id: str) -> RunRecord | None:
        with self._guard("get_run"):
            raw = await self.redis.get(self._record_key(run_id))
        return _record(raw) if raw is not None else None

    async def list_runs(self, *, case_id: Any = None, limit: int = 100) -> list[RunRecord]:
        if limit <= 0:
            return []
        index = self._index_key(case_id)
        r = self.redis
        with self._guard("list_runs"):
            ids = await r.zrevrange(index, 0, limit - 1)
            if not ids:
                return []
            raws = await r.mget([self._record_key(i.decode()) for i in ids])
            gone = [i for i, raw in zip(ids, raws, strict=True) if raw is None]
            if gone:
                await r.zrem(index, *gone)
        return [_record(raw) for raw in raws if raw is not None]

    # -- broadcast and control (Pub/Sub) -----------------------------------

    async def _pubsub_loop(self) -> None:
        assert self._pubsub_r is not None
        backoff = BACKOFF_MIN
        while True:
            pubsub = self._pubsub_r.pubsub()
            try:
                await pubsub.subscribe(self._broadcast_channel, self._control_channel)
                # Wait for the confirmation so "ready" means messages do arrive.
                while await pubsub.get_message(timeout=2.0) is None:
                    pass
                self._pubsub_ready.set()
                backoff = BACKOFF_MIN
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is None:
                        continue
                    channel = msg["channel"].decode()
                    if channel == self._broadcast_channel:
                        self._on_broadcast(msg["data"])
                    elif channel == self._control_channel:
                        self._on_control(msg["data"])
            except asyncio.CancelledError:
                raise
            except _REDIS_ERRORS as exc:
                _raise_if_stopping(exc)
                log.error("redis pub/sub failed (%s); broadcasts are lost until it is back", exc)
                await asyncio.sleep(backoff * (1 + random.random() / 2))
                backoff = min(BACKOFF_MAX, backoff * 2)
            except Exception as exc:
                _raise_if_stopping(exc)
                log.exception("redis pub/sub listener crashed; restarting")
                await asyncio.sleep(backoff)
            finally:
                with contextlib.suppress(BaseException):
                    await pubsub.aclose()

    def _on_broadcast(self, raw: bytes) -> None:
        event = decode_event(raw)
        event._encoded = raw
        for sub in list(self._broadcast):
            sub.offer(event)

    # Cross-worker run control. A resumed client may attach on worker B to a
    # run that lives on worker A: B publishes "attach", A's RunManager counts
    # the follower (cancelling its resume-grace timer); "detach" reverses it.

    def on_remote_control(self, handler: ControlHandler) -> None:
        """Register the RunManager's handler for control messages of other workers."""
        self._control_handler = handler

    def send_control(self, op: str, run_id: str, reason: str | None = None) -> bool:
        """Tell the worker that owns ``run_id``: ``attach``, ``detach`` or ``cancel``.

        Sent in order by one task. A ``detach`` is only sent for runs this
        worker attached to remotely. Returns whether a message was queued.
        """
        if not self._started:
            return False
        if op == "attach":
            self._remote_follows[run_id] = self._remote_follows.get(run_id, 0) + 1
        elif op == "detach":
            count = self._remote_follows.get(run_id, 0)
            if count <= 0:
                return False
            if count == 1:
                del self._remote_follows[run_id]
            else:
                self._remote_follows[run_id] = count - 1
        payload = {"op": op, "run_id": run_id, "reason": reason, "from": self.worker}
        self._control_queue.put_nowait(orjson.dumps(payload))
        return True

    async def _control_sender(self) -> None:
        while True:
            payload = await self._control_queue.get()
            try:
                await self.redis.publish(self._control_channel, payload)
            except _REDIS_ERRORS as exc:
                _raise_if_stopping(exc)
                log.error("control message lost (%s): %s", exc, payload)

    def _on_control(self, raw: bytes) -> None:
        msg = orjson.loads(raw)
        if msg.get("from") == self.worker or self._control_handler is None:
            return
        try:
            self._control_handler(msg["op"], msg["run_id"], msg.get("reason"))
        except Exception:
            log.exception("control handler failed for %s", msg)

    # -- cluster view -------------------------------------------------------

    def attach_registry(self, registry: Any) -> None:
        """The connection registry whose snapshot the heartbeat publishes."""
        self._registry = registry

    async def _heartbeat_loop(self) -> None:
        period = self.settings.heartbeat_seconds
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
                _raise_if_stopping(exc)
                if not failing:
                    log.error("heartbeat to redis failed: %s", exc)
                failing = True
            await asyncio.sleep(period)

    async def heartbeat(self) -> None:
        """Publish this worker's connections with a TTL of 3 heartbeats."""
        snapshot = self._registry.snapshot() if self._registry is not None else []
        ttl = 3 * self.settings.heartbeat_seconds
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(self._worker_key(self.worker), orjson.dumps(snapshot), px=max(1, int(ttl * 1000)))
        pipe.zadd(self._workers_key, {self.worker: now + ttl})
        # The index only; liveness is the key's TTL. Generous for clock skew.
        pipe.zremrangebyscore(self._workers_key, "-inf", now - 3600)
        pipe.expire(self._workers_key, 3600)
        await pipe.execute()

    async def cluster_connections(self, registry: Any = None) -> list[dict[str, Any]]:
        """Connections of every live worker: ours live, the others' from their heartbeat."""
        registry = registry if registry is not None else self._registry
        local = registry.snapshot() if registry is not None else []
        r = self.redis
        try:
            workers = [w.decode() for w in await r.zrange(self._workers_key, 0, -1)]
            others = [w for w in workers if w != self.worker]
            if not others:
                return local
            raws = await r.mget([self._worker_key(w) for w in others])
        except _REDIS_ERRORS as exc:
            log.error("cluster status from redis failed (%s); reporting this worker only", exc)
            return local
        result = list(local)
        for raw in raws:
            if raw is not None:
                result.extend(orjson.loads(raw))
        return result

    async def live_workers(self) -> list[str]:
        workers = [w.decode() for w in await self.redis.zrange(self._workers_key, 0, -1)]
        if not workers:
            return []
        alive = await self.redis.mget([self._worker_key(w) for w in workers])
        return [w for w, raw in zip(workers, alive, strict=True) if raw is not None]

    @property
    def subscriber_count(self) -> int:
        return len(self._broadcast) + sum(len(f.subs) for f in self._follows.values())


def _stream_items(reply: Any) -> list[tuple[bytes, list[Any]]]:
    if not reply:
        return []
    if isinstance(reply, dict):  # RESP3
        return [(k, v[0] if v and isinstance(v[0], list) else v) for k, v in reply.items()]
    return [(k, v) for k, v in reply]


def _record(raw: bytes) -> RunRecord:
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
