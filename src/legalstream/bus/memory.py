"""The in-process bus: anyio memory object streams, one per subscriber.

Everything here runs on the event loop and never awaits inside ``publish``:
each subscriber owns a bounded stream, publishing is ``send_nowait`` into each
of them, and a subscriber whose stream is full is cut off with
:class:`SubscriptionOverflow` instead of slowing the producer or the other
subscribers down. Each run topic keeps a bounded history (the last
``history_per_run`` events) for replay and resume; the history of at most
``history_runs`` finished runs is kept, oldest dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from legalstream.bus.base import (
    BROADCAST,
    History,
    RunRecord,
    SubscriptionOverflow,
    UnknownTopic,
)
from legalstream.events import Event


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

    def offer(self, event: Event) -> None:
        self.offer_many([event])

    def offer_many(self, events: list[Event]) -> None:
        """Hand over a batch without waiting; overflow ends the subscription."""
        if self.overflowed or not events:
            return
        if self._queued + len(events) > self._buffer:
            self.overflowed = True
            self.finish()
            return
        try:
            self._send.send_nowait(events)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return
        self._queued += len(events)

    def finish(self) -> None:
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
        self.finish()
        self._receive.close()


class _Topic:
    __slots__ = ("closed", "history", "last_seq", "subscribers")

    def __init__(self, history_size: int) -> None:
        self.history: deque[Event] = deque(maxlen=history_size)
        self.last_seq = 0
        self.closed = False
        self.subscribers: set[MemorySubscription] = set()


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
        self._broadcast: set[MemorySubscription] = set()
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()
        self.published = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for topic in list(self._topics.values()):
            for sub in list(topic.subscribers):
                sub.finish()
        for sub in list(self._broadcast):
            sub.finish()

    # -- publishing ---------------------------------------------------------

    async def publish(self, topic: str, event: Event) -> None:
        self._publish(topic, [event])

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        self._publish(topic, events)

    def _publish(self, topic: str, events: list[Event]) -> None:
        self.published += len(events)
        if topic == BROADCAST:
            subscribers = list(self._broadcast)
        else:
            state = self._topic(topic)
            if state.closed:
                raise RuntimeError(f"publish to closed topic {topic}")
            state.history.extend(events)
            for event in reversed(events):
                if event.seq is not None:
                    state.last_seq = event.seq
                    break
            subscribers = list(state.subscribers)
        # Subscribers share the batch; they only read it.
        for sub in subscribers:
            sub.offer_many(events)

    async def close_topic(self, topic: str) -> None:
        state = self._topic(topic)
        state.closed = True
        for sub in list(state.subscribers):
            sub.finish()
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
        backlog = (
            [e for e in state.history if e.seq is not None and e.seq > after_seq]
            if after_seq is not None
            else []
        )
        # The replayed backlog must fit whole; live events then get the normal buffer.
        sub = MemorySubscription(state, self._buffer + len(backlog))
        sub.offer_many(backlog)
        if state.closed:
            sub.finish()
        else:
            state.subscribers.add(sub)
        return sub

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        state = self._topics.get(topic)
        if state is None:
            raise UnknownTopic(topic)
        events = [e for e in state.history if e.seq is not None and e.seq > after_seq]
        first = state.history[0].seq if state.history else state.last_seq + 1
        return History(
            events=events, first_seq=first or 1, last_seq=state.last_seq, closed=state.closed
        )

    def _topic(self, topic: str) -> _Topic:
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic(self._history_per_run)
        return state

    # -- run records --------------------------------------------------------

    async def save_run(self, record: RunRecord) -> None:
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
