"""The hub: every follower of every topic in this process, and fan-out, written once.

Transports only move events (bus/base.py): they store a stream's events, read
them back, and hand whatever arrives here. The hub decides who gets what.

Each follower of a stream has a *cursor*, the seq of the last event it has.
An arriving batch says which seq it follows (``after_seq``); a follower whose
cursor the batch covers gets the events after its cursor — every event once,
in order — and a follower the batch does not reach waits for the transport
to read from its cursor (``Transport.replay``; ``wanted`` tells a reading
transport which streams to read and from where). A batch that starts past a
follower's cursor means the events between were evicted: that follower is
cut off with :class:`HistoryLost`. When a stream ends, its followers end as
they reach its last seq.

Overflow policy: a follower's ``deliver`` raises
:class:`SubscriptionOverflow` when it cannot take more, and is cut off
(``end`` with the error); one that raises anything else is cut off too,
rather than keep a batch from the others. Nothing here awaits: ``deliver``
runs inside a transport's publish or read, on the event loop.

Channels (broadcasts) have no cursors: each event goes to every follower.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn

import anyio

from legalstream.bus.base import (
    BusUnavailable,
    Follower,
    History,
    HistoryLost,
    InlineTransport,
    RunRecord,
    SubscriptionOverflow,
    Transport,
    is_channel,
)
from legalstream.events import Event

log = logging.getLogger("legalstream.bus.hub")


class _Stream:
    """The followers of one stream in this process."""

    __slots__ = ("cursors", "end_seq")

    def __init__(self) -> None:
        #: follower -> seq of the last event it has.
        self.cursors: dict[Follower, int] = {}
        #: The stream's last seq once it ended (known here).
        self.end_seq: int | None = None


class Hub:
    """Followers, cursors and fan-out of one process, over one transport."""

    def __init__(self, transport: Transport, *, subscriber_buffer: int = 4096) -> None:
        self.transport = transport
        self._buffer = subscriber_buffer
        self._streams: dict[str, _Stream] = {}
        self._channels: dict[str, set[Follower]] = {}
        #: Streams this process publishes and has not ended, with their last seq:
        #: its followers get those events from the publish itself, no read needed.
        self._owned: dict[str, int] = {}
        self.published = 0
        transport.bind(self)

    @property
    def inline(self) -> bool:
        """Publishing completes without awaiting (the ``*_now`` methods work)."""
        return self.transport.inline

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()
        for topic, stream in list(self._streams.items()):
            for follower in list(stream.cursors):
                self._cut(topic, follower, None)
        for followers in self._channels.values():
            for follower in list(followers):
                follower.end()
        self._channels.clear()

    # -- publishing ---------------------------------------------------------------

    async def publish(self, topic: str, event: Event) -> None:
        if is_channel(topic):
            self.published += 1
            await self.transport.publish_channel(topic, event)
            return
        await self.publish_many(topic, [event])

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        """Append a stream's batch (numbered, in order) and fan it out here."""
        if events:
            with self._failing(topic):
                await self.transport.append(topic, events)
            self._published(topic, events)

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """A run's record and its opening frames: one round trip on Redis."""
        await self.transport.open_run(topic, events, record)
        self._published(topic, events)

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """A run's last batch, the end of its stream and its final record: one round trip."""
        with self._failing(topic):
            await self.transport.finish_run(topic, events, record)
        self._published(topic, events)
        self._finished(topic)

    @contextlib.contextmanager
    def _failing(self, topic: str) -> Iterator[None]:
        """A batch that could not be stored is a hole in the stream: its followers
        here are cut off (they resume later) rather than wait for it."""
        try:
            yield
        except BusUnavailable as exc:
            self._owned.pop(topic, None)
            self.fail(topic, exc)
            raise

    async def close_topic(self, topic: str) -> None:
        """End a stream: its followers end once they have its last event."""
        last = await self.transport.end(topic)
        self._owned.pop(topic, None)
        self.ended(topic, last)

    def publish_now(self, topic: str, events: list[Event]) -> None:
        """``publish_many`` on an inline transport, without awaiting."""
        if events:
            self._inline().append_now(topic, events)
            self._published(topic, events)

    def open_run_now(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self._inline().open_run_now(topic, events, record)
        self._published(topic, events)

    def finish_run_now(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self._inline().finish_run_now(topic, events, record)
        self._published(topic, events)
        self._finished(topic)

    def _inline(self) -> InlineTransport:
        if not self.transport.inline:
            raise RuntimeError("this bus's transport must be awaited (use the async methods)")
        return self.transport  # type: ignore[return-value]

    def _published(self, topic: str, events: list[Event]) -> None:
        self.published += len(events)
        last = events[-1].seq
        if last is None:
            raise ValueError(f"events of stream {topic} must carry their seq")
        self._owned[topic] = last
        stream = self._streams.get(topic)
        if stream is not None:
            first = events[0].seq
            assert first is not None
            self._fan_out(topic, stream, events, first - 1)

    def _finished(self, topic: str) -> None:
        last = self._owned.pop(topic, None)
        if last is not None:
            self.ended(topic, last)

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        """What the transport still holds of a stream (raises ``UnknownTopic``)."""
        return await self.transport.history(topic, after_seq=after_seq)

    # -- following ----------------------------------------------------------------

    def follow(self, topic: str, follower: Follower, *, after_seq: int | None = None) -> None:
        """Push the topic's events into ``follower``; a stream's from after ``after_seq``.

        A stream's history after ``after_seq`` comes first (on the in-process
        transport, before this returns), then its live events, then ``end``.
        """
        if is_channel(topic):
            self._channels.setdefault(topic, set()).add(follower)
            return
        if after_seq is None:
            raise ValueError("a stream is followed from a seq (0: from its start)")
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = _Stream()
        stream.cursors[follower] = after_seq
        if stream.end_seq is not None and after_seq >= stream.end_seq:
            self._cut(topic, follower, None)
            return
        tip = self._owned.get(topic)
        if tip is None or after_seq < tip:
            self.transport.replay(topic, after_seq)

    def unfollow(self, topic: str, follower: Follower) -> None:
        """Stop pushing to ``follower`` (it is not told); idempotent."""
        if is_channel(topic):
            self._channels.get(topic, set()).discard(follower)
            return
        stream = self._streams.get(topic)
        if stream is not None:
            stream.cursors.pop(follower, None)
            if not stream.cursors:
                del self._streams[topic]

    def subscribe(self, topic: str, *, after_seq: int | None = None) -> Subscription:
        """A pull view of the topic (an async iterator with a bounded buffer)."""
        sub = Subscription(self, topic, self._buffer)
        self.follow(topic, sub, after_seq=after_seq)
        return sub

    @property
    def follower_count(self) -> int:
        return sum(len(s.cursors) for s in self._streams.values()) + sum(
            len(c) for c in self._channels.values()
        )

    # -- what transports call (TransportSink) ----------------------------------

    def deliver(self, topic: str, events: list[Event], *, after_seq: int | None = None) -> None:
        if not events:
            return
        if is_channel(topic):
            for follower in list(self._channels.get(topic, ())):
                self._hand(topic, follower, events)
            return
        stream = self._streams.get(topic)
        if stream is None:
            return
        if after_seq is None:
            first = events[0].seq
            assert first is not None
            after_seq = first - 1
        self._fan_out(topic, stream, events, after_seq)

    def ended(self, topic: str, last_seq: int) -> None:
        self._owned.pop(topic, None)
        stream = self._streams.get(topic)
        if stream is None:
            return
        stream.end_seq = last_seq
        self._end_caught_up(topic, stream)

    def fail(self, topic: str | None, error: Exception) -> None:
        topics = list(self._streams) if topic is None else [topic]
        for name in topics:
            stream = self._streams.get(name)
            if stream is not None:
                for follower in list(stream.cursors):
                    self._cut(name, follower, error)

    def following(self) -> bool:
        return bool(self._streams)

    def wanted(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for topic, stream in self._streams.items():
            if not stream.cursors:
                continue
            low = min(stream.cursors.values())
            tip = self._owned.get(topic)
            if tip is not None and low >= tip:
                continue  # ours, and every follower has it: publishing delivers
            out[topic] = low
        return out

    # -- fan-out --------------------------------------------------------------------

    def _fan_out(self, topic: str, stream: _Stream, events: list[Event], after_seq: int) -> None:
        start = events[0].seq
        last = events[-1].seq
        assert start is not None and last is not None
        behind = False
        cursors = stream.cursors
        for follower, cursor in list(cursors.items()):
            if follower not in cursors or cursor >= last:
                continue
            if cursor < after_seq:
                behind = True  # this batch does not reach it: the transport reads for it
                continue
            if cursor < start - 1:
                self._cut(topic, follower, HistoryLost(f"events {cursor + 1}-{start - 1} are gone"))
                continue
            batch = events if cursor == start - 1 else [e for e in events if e.seq > cursor]  # type: ignore[operator]
            cursors[follower] = last
            self._hand(topic, follower, batch)
        if stream.end_seq is not None:
            self._end_caught_up(topic, stream)
        if behind and stream.cursors:
            self.transport.replay(topic, min(stream.cursors.values()))

    def _end_caught_up(self, topic: str, stream: _Stream) -> None:
        end_seq = stream.end_seq
        assert end_seq is not None
        for follower, cursor in list(stream.cursors.items()):
            if cursor >= end_seq:
                self._cut(topic, follower, None)

    def _hand(self, topic: str, follower: Follower, events: list[Event]) -> None:
        try:
            follower.deliver(events)
        except SubscriptionOverflow as exc:
            self._cut(topic, follower, exc)
        except Exception as exc:
            log.exception("follower of %s failed; cut off", topic)
            self._cut(topic, follower, exc)

    def _cut(self, topic: str, follower: Follower, error: Exception | None) -> None:
        """Stop delivering to ``follower`` and tell it why (``None``: its stream ended)."""
        self.unfollow(topic, follower)
        try:
            follower.end(error)
        except Exception:
            log.exception("follower of %s failed to end", topic)


class Subscription:
    """A pull follower: an async iterator of events with a bounded buffer.

    When more than ``buffer`` events wait unread, the hub cuts it off: the
    consumer still reads what is buffered, then gets
    :class:`SubscriptionOverflow`. A subscription that ends with an error
    (an unreachable bus) raises it the same way; a stream that ends stops the
    iteration.
    """

    def __init__(self, hub: Hub, topic: str, buffer: int) -> None:
        self._hub = hub
        self.topic = topic
        self._buffer = buffer
        self._queue: deque[Event] = deque()
        self._waiter: anyio.Event | None = None
        self._done = False
        self._error: Exception | None = None

    # -- Follower ---------------------------------------------------------------------

    def deliver(self, events: list[Event]) -> None:
        if len(self._queue) + len(events) > self._buffer:
            raise SubscriptionOverflow("subscriber fell behind its buffer")
        self._queue.extend(events)
        self._wake()

    def end(self, error: Exception | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None

    # -- consumer -----------------------------------------------------------------------

    async def _ready(self) -> None:
        while not self._queue:
            if self._done:
                self._raise_end()
            self._waiter = anyio.Event()
            await self._waiter.wait()

    def _raise_end(self) -> NoReturn:
        if self._error is not None:
            raise self._error
        raise StopAsyncIteration

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        await self._ready()
        return self._queue.popleft()

    async def next_batch(self) -> list[Event]:
        """Everything buffered (at least one event); ``StopAsyncIteration`` at the end."""
        await self._ready()
        batch = list(self._queue)
        self._queue.clear()
        return batch

    async def aclose(self) -> None:
        self._hub.unfollow(self.topic, self)
        self.end()
        self._queue.clear()
