"""The hand-off of a run's events from its worker thread to the event loop.

Bounded and lossless: the worker thread takes a slot before it hands an event
over, and the slot comes back once the event is published. When the loop or
the bus falls behind, the *worker* waits, never the loop. A burst of events
costs the loop one wake-up, not one per event.

When the run manager ends a run without its thread (the thread is stuck past
the cancel grace), it abandons the bridge (:meth:`~ThreadBridge.abandon`): from then on
whatever the thread emits is dropped at once, without waiting for a slot.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from anyio.streams.memory import MemoryObjectSendStream

from legalstream.events import Event

if TYPE_CHECKING:
    from legalstream.runs.manager import Run

#: Events one run may have in flight between its thread and the in-process
#: bus. Past it the thread waits: a deeper window only lets a fast producer
#: stamp events that then queue in front of the loop, which shows as latency
#: (docs/benchmarks.md, "BRIDGE_SLOTS").
BRIDGE_SLOTS = 64
#: The same for a bus that awaits (Redis): a slot comes back a round trip
#: later, so the window must cover more.
REMOTE_BRIDGE_SLOTS = 256


class ThreadBridge:
    """Hands a run's events from its worker thread to the loop: bounded, lossless, batched.

    A thread appends to a pending list and schedules one loop callback only
    when the list was empty, so a burst of events costs one wake-up of the
    loop, not one per event. The callback passes the batch to ``deliver``.
    At most ``slots`` thread events are in flight (handed over, not yet
    published); past that the *thread* waits on the bridge's one lock, which
    is also all an event costs it otherwise.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        run: Run,
        deliver: Callable[[ThreadBridge, list[Event], int], None],
        slots: int = BRIDGE_SLOTS,
    ) -> None:
        self.run = run
        self._slots = slots
        self._loop = loop
        self._deliver = deliver
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._in_flight = 0
        self._pending: list[Event] = []
        #: The publisher task's inbox, on a bus that must await (see RunManager).
        self.inbox: MemoryObjectSendStream[tuple[list[Event], int]] | None = None
        #: The worker thread running the run (set when it starts), and whether it returned.
        self.thread: threading.Thread | None = None
        self.thread_done = False
        self._abandoned = False
        self._final_handed = False

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def emit_from_thread(self, event: Event) -> None:
        with self._lock:
            while self._in_flight >= self._slots and not self._abandoned:
                self._room.wait()
            if self._abandoned:
                return  # the run was ended without this thread
            if event.is_final:
                self._final_handed = True
            self._in_flight += 1
            self._pending.append(event)
            if len(self._pending) > 1:
                return
        self._loop.call_soon_threadsafe(self._flush)

    def abandon(self) -> tuple[list[Event], bool]:
        """Stop taking the thread's events (on the loop): its pending events, and whether
        one of the events it handed over was its final one."""
        with self._lock:
            self._abandoned = True
            batch, self._pending = self._pending, []
            self._room.notify_all()
            return batch, self._final_handed

    def _flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            # Every pending event came from the thread and holds a slot.
            self._deliver(self, batch, len(batch))

    def release(self, count: int) -> None:
        """``count`` thread events were published: their slots are free again."""
        if count:
            with self._lock:
                self._in_flight -= count
                self._room.notify_all()
