"""The in-process bus: one worker, nothing shared, no task per anything.

:class:`MemoryTransport` keeps each stream's bounded history (the last
``history_per_run`` events) and hands every append to the hub inside the
append itself, so followers are pushed to from the publisher's own call. The
history of at most ``history_runs`` finished streams is kept, oldest dropped
first, together with their run records.

History holds each event's encoded bytes and seq, not the :class:`Event`:
bytes and ints are invisible to the garbage collector, whereas a thousand kept
runs of Event objects were tens of thousands of objects it kept scanning. A
replay decodes them back, reusing the bytes, so nothing is encoded twice.

Presence, control and leases are trivial here: every connection and every
run is in this process (when it dies, so does everything it held).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from legalstream.bus.base import (
    ControlHandler,
    History,
    RunRecord,
    SnapshotSource,
    TransportSink,
    UnknownTopic,
)
from legalstream.events import Event, decode_event


class _Stream:
    __slots__ = ("closed", "frames", "last_seq", "seqs")

    def __init__(self, history_size: int) -> None:
        # Parallel deques: ints and bytes, nothing the garbage collector tracks.
        self.seqs: deque[int] = deque(maxlen=history_size)
        self.frames: deque[bytes] = deque(maxlen=history_size)
        self.last_seq = 0
        self.closed = False

    def keep(self, events: list[Event]) -> None:
        for event in events:
            seq = event.seq
            if seq is None:
                raise ValueError("stream events must carry their seq")
            self.seqs.append(seq)
            self.frames.append(event.encoded)
            self.last_seq = seq

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


class MemoryRunRecords:
    """Run records of this process, newest last; bounded with the streams they describe."""

    def __init__(self) -> None:
        self._runs: OrderedDict[str, RunRecord] = OrderedDict()

    def save_now(self, record: RunRecord) -> None:
        self._runs[record.run_id] = record
        self._runs.move_to_end(record.run_id)

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    async def save(self, record: RunRecord) -> None:
        self.save_now(record)

    async def get(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    async def list_runs(self, *, case_id: Any = None, limit: int = 100) -> list[RunRecord]:
        records = [
            r for r in reversed(self._runs.values()) if case_id is None or r.case_id == case_id
        ]
        return records[:limit]


class MemoryTransport:
    """Streams and channels within one process (see the module docstring)."""

    inline = True

    def __init__(
        self,
        records: MemoryRunRecords,
        *,
        history_per_run: int = 10_000,
        history_runs: int = 1_000,
    ) -> None:
        self._records = records
        self._history_per_run = history_per_run
        self._history_runs = history_runs
        self._streams: dict[str, _Stream] = {}
        # Finished streams in the order they finished, for bounded retention.
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._sink: TransportSink | None = None

    def bind(self, sink: TransportSink) -> None:
        self._sink = sink

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- writes (inline) ---------------------------------------------------------

    def append_now(self, topic: str, events: list[Event]) -> None:
        stream = self._stream(topic)
        if stream.closed:
            raise RuntimeError(f"publish to closed topic {topic}")
        stream.keep(events)

    def open_run_now(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self._records.save_now(record)
        self.append_now(topic, events)

    def finish_run_now(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self.append_now(topic, events)
        self.end_now(topic)
        self._records.save_now(record)

    def end_now(self, topic: str) -> int:
        stream = self._stream(topic)
        stream.closed = True
        self._finished[topic] = None
        while len(self._finished) > self._history_runs:
            old, _ = self._finished.popitem(last=False)
            self._streams.pop(old, None)
            self._records.forget(old.removeprefix("run:"))
        return stream.last_seq

    # -- the Transport interface ----------------------------------------------

    async def append(self, topic: str, events: list[Event]) -> None:
        self.append_now(topic, events)

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self.open_run_now(topic, events, record)

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        self.finish_run_now(topic, events, record)

    async def end(self, topic: str) -> int:
        return self.end_now(topic)

    def replay(self, topic: str, after_seq: int) -> None:
        """Hand the history after ``after_seq`` to the hub now, and the end if it ended."""
        sink = self._sink
        stream = self._streams.get(topic)
        if sink is None or stream is None:
            return
        backlog = stream.after(after_seq)
        if backlog:
            sink.deliver(topic, backlog, after_seq=after_seq)
        if stream.closed:
            sink.ended(topic, stream.last_seq)

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        stream = self._streams.get(topic)
        if stream is None:
            raise UnknownTopic(topic)
        return History(
            events=stream.after(after_seq),
            first_seq=stream.first_seq or 1,
            last_seq=stream.last_seq,
            closed=stream.closed,
        )

    async def publish_channel(self, topic: str, event: Event) -> None:
        if self._sink is not None:
            self._sink.deliver(topic, [event])

    def _stream(self, topic: str) -> _Stream:
        stream = self._streams.get(topic)
        if stream is None:
            stream = self._streams[topic] = _Stream(self._history_per_run)
        return stream


class LocalPresence:
    """Presence of a single worker: its own connections are all there are."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self._source: SnapshotSource | None = None

    def attach(self, source: SnapshotSource) -> None:
        self._source = source

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def connections(self) -> list[dict[str, Any]]:
        return self._source.snapshot() if self._source is not None else []

    async def live_workers(self) -> list[str]:
        return [self.worker]


class LocalControl:
    """Control of a single worker: every run is its own, so there is nobody to tell."""

    def on_message(self, handler: ControlHandler) -> None:
        return None

    def send(self, op: str, run_id: str, reason: str | None = None) -> bool:
        return False

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None


class LocalLeases:
    """Leases of a single worker: no other worker can outlive it."""

    async def orphans(self) -> list[RunRecord]:
        return []

    async def finalize(self, record: RunRecord, final: Event) -> int:
        return 0
