"""The in-process bus: followers pushed to from publish, or anyio memory object streams.

Everything here runs on the event loop and never awaits inside ``publish``.
A follower (``follow``: how sessions stream runs) is handed each batch from
``publish`` itself and owns its own bound. A subscription (``subscribe``) owns
a bounded stream; publishing is ``send_nowait`` into it, and a subscriber whose
stream is full is cut off with :class:`SubscriptionOverflow` instead of slowing
the producer or the other subscribers down. Each run topic keeps a bounded
history (the last ``history_per_run`` events) for replay and resume; the
history of at most ``history_runs`` finished runs is kept, oldest dropped
first.

History holds each event's encoded bytes and seq, not the :class:`Event`:
bytes and ints are invisible to the garbage collector, whereas a thousand kept
runs of Event objects were tens of thousands of objects it kept scanning (at
the end of a 1,000-run bench round its young generation held 55,000 objects;
with bytes, 5,000). A replay decodes them back, reusing the bytes, so nothing
is encoded twice.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from legalstream.bus.base import (
    BROADCAST,
    Follower,
    History,
    RunRecord,
    SubscriptionOverflow,
    UnknownTopic,
)
from legalstream.events import Event, decode_event

log = logging.getLogger("legalstream.bus.memory")


class MemorySubscription:
    """One subscriber's bounded view of a topic.

    The stream carries the publisher's batches (one ``send_nowait`` per batch,
    not per event); the bound is on events, counted here.
    """

    def __init__(self, topic: _Topic | None, buffer: int) -> None:
        self._topic = topic
        self._buffer = buffer
        # A batch holds at least one event, so ``buffer`` batches always suffice.
        send, receive = anyio.create_memory_object_stream[list[Event]](buffer)
        self._send: MemoryObjectSendStream[list[Event]] = send
        self._receive: MemoryObjectReceiveStream[list[Event]] = receive
        self._queued = 0
        self._current: deque[Event] = deque()
        self.overflowed = False

    def deliver(self, events: list[Event]) -> None:
        """Hand over a batch without waiting; overflow ends the subscription."""
        if self.overflowed or not events:
            return
        if self._queued + len(events) > self._buffer:
            self.overflowed = True
            self.end()
            return
        try:
            self._send.send_nowait(events)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        self._queued += len(events)

    def end(self, error: Exception | None = None) -> None:
        """No more events: the consumer drains what is buffered, then stops."""
        self._send.close()
        if self._topic is not None:
            self._topic.subscribers.discard(self)

    async def next_batch(self) -> list[Event]:
        """The events that are ready (at least one); raises ``StopAsyncIteration`` at the end."""
        if self._current:
            batch = list(self._current)
            self._current.clear()
            return batch
        # receive() yields to the loop even when items are buffered; try the
        # buffer first so a burst costs one wake-up, not one per batch.
        try:
            batch = self._receive.receive_nowait()
        except anyio.WouldBlock:
            try:
                batch = await self._receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._ended()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self._ended()
        self._queued -= len(batch)
        return batch

    def _ended(self) -> NoReturn:
        if self.overflowed:
            raise SubscriptionOverflow("subscriber fell behind its buffer") from None
        raise StopAsyncIteration from None

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if not self._current:
            self._current.extend(await self.next_batch())
        return self._current.popleft()

    async def aclose(self) -> None:
        self.end()
        self._receive.close()


class _Topic:
    __slots__ = ("closed", "frames", "last_seq", "seqs", "subscribers")

    def __init__(self, history_size: int) -> None:
        # Parallel deques: ints and bytes, nothing the garbage collector tracks.
        self.seqs: deque[int] = deque(maxlen=history_size)
        self.frames: deque[bytes] = deque(maxlen=history_size)
        self.last_seq = 0
        self.closed = False
        #: Pull subscriptions and pushed-to followers alike (both are Followers).
        self.subscribers: set[Follower] = set()

    def keep(self, events: list[Event]) -> None:
        for event in events:
            if event.seq is None:  # run topics number every event; be safe anyway
                continue
            self.seqs.append(event.seq)
            self.frames.append(event.encoded)
            self.last_seq = event.seq

    def after(self, after_seq: int) -> list[Event]:
        """The kept events with ``seq > after_seq``, decoded (their bytes reused)."""
        seqs, frames = self.seqs, self.frames
        # seqs ascend: skip from the right end to the first one wanted.
        start = len(seqs)
        while start > 0 and seqs[start - 1] > after_seq:
            start -= 1
        return [decode_event(frames[i]) for i in range(start, len(frames))]

    @property
    def first_seq(self) -> int:
        """seq of the oldest kept event (``last_seq + 1`` when none is kept)."""
        return self.seqs[0] if self.seqs else self.last_seq + 1


class MemoryBus:
    """Single-process bus. See :class:`legalstream.bus.base.Bus`."""

    def __init__(
        self,
        *,
        history_per_run: int = 10_000,
        history_runs: int = 1_000,
        subscriber_buffer: int = 4096,
    ) -> None:
        self._history_per_run = history_per_run
        self._history_runs = history_runs
        self._buffer = subscriber_buffer
        self._topics: dict[str, _Topic] = {}
        # Finished topics in the order they finished, for bounded retention.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._broadcast: set[Follower] = set()
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        self.published = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for topic in list(self._topics.values()):
            for sub in list(topic.subscribers):
                sub.end()
        for sub in list(self._broadcast):
            sub.end()

    # -- publishing ---------------------------------------------------------

    async def publish(self, topic: str, event: Event) -> None:
        self.publish_now(topic, [event])

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        self.publish_now(topic, events)

    def publish_now(self, topic: str, events: list[Event]) -> None:
        """Publish without awaiting (``InlineBus``); never blocks."""
        self.published += len(events)
        if topic == BROADCAST:
            subscribers = list(self._broadcast)
        else:
            state = self._topic(topic)
            if state.closed:
                raise RuntimeError(f"publish to closed topic {topic}")
            state.keep(events)
            subscribers = list(state.subscribers)
        # Subscribers share the batch; they only read it. One that fails is cut
        # off rather than keeping the batch from the others.
        for sub in subscribers:
            try:
                sub.deliver(events)
            except Exception as exc:
                log.exception("bus follower failed on %s; cut off", topic)
                self.unfollow(topic, sub)
                sub.end(exc)

    async def close_topic(self, topic: str) -> None:
        self.close_topic_now(topic)

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self.save_run_now(record)
        self.publish_now(topic, events)

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self.publish_now(topic, events)
        self.close_topic_now(topic)
        self.save_run_now(record)

    def close_topic_now(self, topic: str) -> None:
        state = self._topic(topic)
        state.closed = True
        for sub in list(state.subscribers):
            sub.end()
        self._finished[topic] = None
        while len(self._finished) > self._history_runs:
            old, _ = self._finished.popitem(last=False)
            self._topics.pop(old, None)
            self._runs.pop(old.removeprefix("run:"), None)

    # -- subscribing --------------------------------------------------------

    def subscribe(self, topic: str, *, after_seq: int | None = None) -> MemorySubscription:
        if topic == BROADCAST:
            sub = MemorySubscription(None, self._buffer)
            self._broadcast.add(sub)
            return sub
        state = self._topic(topic)
        backlog = state.after(after_seq) if after_seq is not None else []
        # The replayed backlog must fit whole; live events then get the normal buffer.
        sub = MemorySubscription(state, self._buffer + len(backlog))
        sub.deliver(backlog)
        if state.closed:
            sub.end()
        else:
            state.subscribers.add(sub)
        return sub

    def follow(self, topic: str, follower: Follower, *, after_seq: int | None = None) -> None:
        """Push the topic's events into ``follower`` as they are published: no task, no buffer.

        The follower's own bound (a session's send queue) is the only one.
        With ``after_seq``, the history after it is delivered first, before
        this returns.
        """
        if topic == BROADCAST:
            self._broadcast.add(follower)
            return
        state = self._topic(topic)
        if not state.closed:
            # Added first: a follower that ends on the backlog's final event
            # unfollows, and must find itself here to be removed.
            state.subscribers.add(follower)
        if after_seq is not None:
            backlog = state.after(after_seq)
            if backlog:
                follower.deliver(backlog)
        if state.closed:
            follower.end()

    def unfollow(self, topic: str, follower: Follower) -> None:
        """Stop pushing to ``follower``; idempotent."""
        if topic == BROADCAST:
            self._broadcast.discard(follower)
            return
        state = self._topics.get(topic)
        if state is not None:
            state.subscribers.discard(follower)

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        state = self._topics.get(topic)
        if state is None:
            raise UnknownTopic(topic)
        return History(
            events=state.after(after_seq),
            first_seq=state.first_seq or 1,
            last_seq=state.last_seq,
            closed=state.closed,
        )

    def _topic(self, topic: str) -> _Topic:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic(self._history_per_run)
        return state

    # -- run records --------------------------------------------------------

    async def save_run(self, record: RunRecord) -> None:
        self.save_run_now(record)

    def save_run_now(self, record: RunRecord) -> None:
        self._runs[record.run_id] = record
        self._runs.move_to_end(record.run_id)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    async def list_runs(self, *, case_id: Any = None, limit: int = 100) -> list[RunRecord]:
        records = [
            r for r in reversed(self._runs.values()) if case_id is None or r.case_id == case_id
        ]
        return records[:limit]

    @property
    def subscriber_count(self) -> int:
        return len(self._broadcast) + sum(len(t.subscribers) for t in self._topics.values())
