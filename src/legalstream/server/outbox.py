"""One connection's outbound frames: a bounded queue, written in place when it can be.

Nothing on the streaming path awaits the socket. Frames are written in place
when the transport takes them at once and nothing of this connection is
queued; otherwise they queue here for a writer task, which exists only while
frames are queued or the connection follows a run. When more than
``capacity`` frames wait, the client is a *slow consumer*: ``on_overflow``
is called (the session closes with 1013) and the queue is dropped.

History (a replay, a resume's backlog) is not lag: :meth:`send_history` sends
it in half-queue steps as the client takes it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import anyio

from legalstream.events import Event, frames_for
from legalstream.server.connections import ConnectionInfo
from legalstream.server.uvicorn_ext import SEND_MANY

log = logging.getLogger("legalstream.session")

#: Most frames handed to the server in one batched send (uvicorn_ext.SEND_MANY).
MAX_SEND_BATCH = 256

Send = Callable[[dict[str, Any]], Awaitable[None]]


class Outbox:
    """The send queue and writer of one connection."""

    def __init__(
        self,
        send: Send,
        scope: dict[str, Any],
        connection_id: str,
        info: ConnectionInfo,
        *,
        capacity: int,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        on_overflow: Callable[[], None],
        on_broken: Callable[[], None],
        metrics: Any = None,
    ) -> None:
        self._send = send
        self._id = connection_id
        self.info = info
        self.capacity = capacity
        info.queue_capacity = capacity
        self._spawn = spawn
        self._on_overflow = on_overflow
        self._on_broken = on_broken
        self._metrics = metrics
        self._queue: deque[bytes] = deque()
        # The batched send is an ASGI extension of our uvicorn protocol, used only
        # when the server advertises it; any other server gets frame-by-frame sends.
        extension = scope.get("extensions", {}).get(SEND_MANY)
        self._batched = extension is not None
        #: Writes frames in place when the transport takes them without waiting.
        self._write_nowait: Callable[[list[bytes]], bool] | None = (
            extension.get("write_nowait") if extension is not None else None
        )
        if extension is not None:
            info.keepalive = extension.get("keepalive")
        #: The writer holds frames it took from the queue but has not written yet.
        self._writer_holds = False
        self._writer_running = False
        #: Set (and replaced) each time the writer hands frames to the server.
        self._progress: anyio.Event | None = None
        #: Set when frames arrive for a writer that waits between a run's bursts.
        self._more: anyio.Event | None = None
        self.closed = False
        #: run_id -> encoder of that run's frames in another dialect (AG-UI);
        #: runs not named here get the seed's frames.
        self.encoders: dict[str, Callable[[list[Event]], list[bytes]]] = {}

    def _frames(self, events: list[Event]) -> list[bytes]:
        encode = self.encoders.get(events[0].run_id or "") if self.encoders else None
        return frames_for(events, self._id) if encode is None else encode(events)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def send_events(self, events: list[Event]) -> None:
        """Send frames in order; never waits."""
        if self.closed:
            return
        queue = self._queue
        frames: list[bytes] | None = None
        if not events:
            return
        if not queue and not self._writer_holds and self._write_nowait is not None:
            # Nothing of ours is queued, so these overtake nothing: write them in
            # place when the transport takes them (uvicorn_ext's write_nowait).
            frames = self._frames(events)
            if not frames:
                return
            if self._write_nowait(frames):
                info = self.info
                info.messages_sent += len(frames)
                info.last_sent = time.time()
                if self._metrics is not None:
                    self._metrics.events_delivered(events)
                return
        if len(queue) + len(events) > self.capacity:
            self.info.dropped += 1
            if self._metrics is not None:
                self._metrics.frame_dropped()
            self._on_overflow()
            return
        if frames is None:
            frames = self._frames(events)
            if not frames:
                return
        queue.extend(frames)
        self.info.queue_depth = len(queue)
        if self._metrics is not None:
            self._metrics.events_delivered(events)
        if self._writer_running:
            self.wake()
        else:
            self._writer_running = True
            self._spawn(self._writer())

    async def send_history(self, events: list[Event]) -> None:
        """Queue stored events as the client takes them, in half-queue steps.

        A client that stops reading holds this task, not memory.
        """
        step = max(1, self.capacity // 2)
        for start in range(0, len(events), step):
            chunk = events[start : start + step]
            while not self.closed and len(self._queue) + len(chunk) > self.capacity:
                if self._progress is None:
                    self._progress = anyio.Event()
                await self._progress.wait()
            if self.closed:
                return
            self.send_events(chunk)

    def wake(self) -> None:
        """Let a writer waiting between bursts look again (more frames, or no more runs)."""
        if self._more is not None:
            self._more.set()
            self._more = None

    def close(self) -> None:
        """Drop what is queued and stop; idempotent."""
        self.closed = True
        self._queue.clear()
        if self._progress is not None:  # a paced history send stops waiting
            self._progress.set()
            self._progress = None
        self.wake()

    async def _writer(self) -> None:
        # While the connection follows a run the writer waits for the run's next
        # burst instead of ending and being started again for it; an idle
        # connection keeps no writer task (memory per idle connection).
        queue, info = self._queue, self.info
        try:
            while True:
                if not queue:
                    if self.closed or not info.runs:
                        return
                    self._more = more = anyio.Event()
                    await more.wait()
                    continue
                if self._batched:
                    n = min(len(queue), MAX_SEND_BATCH)
                    frames = [queue.popleft() for _ in range(n)]
                    info.queue_depth = len(queue)
                    self._writer_holds = True
                    try:
                        await self._send({"type": SEND_MANY, "frames": frames})
                    finally:
                        self._writer_holds = False
                else:
                    n = 1
                    frame = queue.popleft()
                    info.queue_depth = len(queue)
                    await self._send({"type": "websocket.send", "text": frame.decode()})
                info.messages_sent += n
                info.last_sent = time.time()
                if self._progress is not None:
                    self._progress.set()
                    self._progress = None
        except (OSError, RuntimeError) as exc:
            # The peer went away (uvicorn's ClientDisconnected is an OSError).
            log.debug("connection %s: write failed: %r", self._id, exc)
            self._on_broken()
        finally:
            self._writer_running = False
            self._more = None
