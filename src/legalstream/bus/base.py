"""What the bus is made of: topics, the records of runs, and the four interfaces.

A topic is one of two kinds:

* a **stream** (``run_topic(run_id)``): numbered events (``seq``, gapless,
  from 1) with a bounded history, so a late or reconnecting follower can
  continue after any ``seq`` the history still covers; it ends once;
* a **channel** (:data:`BROADCAST`, ``case_topic(case_id)``): live
  notifications, no history, no seq.

The bus is four things, each an interface with an in-process and a Redis
implementation (``bus/memory.py``, ``bus/redis/``):

* :class:`Transport` moves a topic's events and keeps stream history. It
  knows nothing of who follows what: whatever arrives it hands to the
  :class:`~legalstream.bus.hub.Hub`, which owns followers, cursors, overflow
  policy and fan-out (written once, for both transports);
* :class:`RunRecords`: what each run is and how it ended (``GET /runs``,
  resume);
* :class:`Presence`: which connections are open on which worker;
* :class:`Control`: messages about a run to the worker that owns it (attach,
  detach, cancel);
* :class:`Leases`: runs whose worker died, found and ended by a survivor.

:class:`Bus` bundles the four; ``legalstream.bus.open_bus`` builds one from
settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from legalstream.events import Event

if TYPE_CHECKING:
    from legalstream.bus.hub import Hub

#: The channel every connection receives (``POST /ws/broadcast``).
BROADCAST = "broadcast"


def run_topic(run_id: str) -> str:
    return f"run:{run_id}"


#: Prefix of the per-case channels (case file progress: ``case_topic``).
CASE_PREFIX = "case:"


def case_topic(case_id: int) -> str:
    """The channel of one case's document events (ingest progress, changes)."""
    return f"{CASE_PREFIX}{int(case_id)}"


def is_channel(topic: str) -> bool:
    """Channels are live only; every other topic is a numbered stream."""
    return topic == BROADCAST or topic.startswith(CASE_PREFIX)


class SubscriptionOverflow(Exception):
    """The follower did not keep up; its bounded buffer filled."""


class HistoryLost(SubscriptionOverflow):
    """The events a follower needs next are no longer in the topic's history."""


class UnknownTopic(Exception):
    """No such stream in the bus's history (never existed or expired)."""


class BusUnavailable(Exception):
    """The bus's backing service (Redis) failed; try again later (resume)."""


@dataclass(slots=True)
class History:
    """What the bus still holds of a stream, for replay and resume."""

    events: list[Event]
    #: seq of the first event the bus still holds (1 when nothing was evicted).
    first_seq: int
    #: seq of the newest event published so far (0 when none).
    last_seq: int
    closed: bool


@dataclass(slots=True)
class RunRecord:
    """A run as the bus remembers it: for ``GET /runs`` and resume state."""

    run_id: str
    query: str
    case_id: Any
    user: str
    status: str  # running | complete | error | cancelled
    started_at: float
    ended_at: float | None = None
    event_count: int = 0
    final: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "query": self.query,
            "case_id": self.case_id,
            "user": self.user,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "event_count": self.event_count,
        }


class Follower(Protocol):
    """Takes a topic's events as they arrive (pushed by the hub, no task of its own).

    Called on the event loop, in order. ``deliver`` must not block; it raises
    :class:`SubscriptionOverflow` when it cannot take more, and is then cut
    off. ``end`` is called once: the stream ended (``error`` None) or ``error``
    (overflow, lost history, an unreachable bus) cut the follower off.
    """

    def deliver(self, events: list[Event]) -> None: ...

    def end(self, error: Exception | None = None) -> None: ...


class TransportSink(Protocol):
    """What a transport hands its events to (the hub)."""

    def deliver(self, topic: str, events: list[Event], *, after_seq: int | None = None) -> None:
        """Events of ``topic``; for a stream, its events right after ``after_seq``."""
        ...

    def ended(self, topic: str, last_seq: int) -> None:
        """The stream ended; ``last_seq`` is its final event's seq."""
        ...

    def lost(self, topic: str, first_seq: int) -> None:
        """The stream's history now starts at ``first_seq``: older events are gone."""
        ...

    def fail(self, topic: str | None, error: Exception) -> None:
        """The stream (``None``: every stream) cannot be followed now."""
        ...

    def wanted(self) -> dict[str, int]:
        """Streams followed here whose next events must be read, each after the seq given."""
        ...

    def following(self) -> bool:
        """Whether any stream has a follower here (a reader then watches its connection)."""
        ...


class Transport(Protocol):
    """Moves a topic's events and keeps stream history; delivers to its sink."""

    #: Appends complete without awaiting (``*_now`` methods work).
    inline: bool

    def bind(self, sink: TransportSink) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, topic: str, events: list[Event]) -> None:
        """Store a stream's batch, in order (one round trip on Redis)."""
        ...

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """The run's record and first batch (its opening frames), in one round trip."""
        ...

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """The run's last batch, the end of its stream and its final record, in one round trip."""
        ...

    async def end(self, topic: str) -> int:
        """End a stream; returns the seq of its last event."""
        ...

    def replay(self, topic: str, after_seq: int) -> None:
        """Hand the stream's events after ``after_seq`` to the sink, now or soon."""
        ...

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        """Raises :class:`UnknownTopic` when nothing of the stream is held."""
        ...

    async def publish_channel(self, topic: str, event: Event) -> None:
        """Send a channel event to every process (this one included, through its sink)."""
        ...


class InlineTransport(Transport, Protocol):
    """A transport whose writes complete without awaiting: the in-process one."""

    def append_now(self, topic: str, events: list[Event]) -> None: ...

    def open_run_now(self, topic: str, events: list[Event], record: RunRecord) -> None: ...

    def finish_run_now(self, topic: str, events: list[Event], record: RunRecord) -> None: ...


class RunRecords(Protocol):
    async def save(self, record: RunRecord) -> None: ...

    async def get(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(self, *, case_id: Any = None, limit: int = 100) -> list[RunRecord]:
        """Newest first; ``case_id`` narrows to one case."""
        ...


class SnapshotSource(Protocol):
    """This process's connections as ``GET /ws/status`` lists them."""

    def snapshot(self) -> list[dict[str, Any]]: ...


class Presence(Protocol):
    """Who is connected where: this worker's connections, and every live worker's."""

    def attach(self, source: SnapshotSource) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def connections(self) -> list[dict[str, Any]]:
        """Every live worker's connections (this worker's live, others' from their heartbeat)."""
        ...

    async def live_workers(self) -> list[str]: ...


#: ``handler(op, run_id, reason)`` for control messages sent by other workers.
ControlHandler = Callable[[str, str, str | None], None]


class Control(Protocol):
    """Messages about a run for the worker that owns it: ``attach``, ``detach``, ``cancel``."""

    def on_message(self, handler: ControlHandler) -> None: ...

    def send(self, op: str, run_id: str, reason: str | None = None) -> bool:
        """Queue a message for the other workers; False when there are none to tell."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Leases(Protocol):
    """Runs whose owning worker stopped heartbeating, and their end (runs/leases.py)."""

    async def orphans(self) -> list[RunRecord]:
        """Runs still "running" whose owner is not alive (another worker's, never ours)."""
        ...

    async def finalize(self, record: RunRecord, final: Event) -> int:
        """Append ``final`` (its seq is filled in) and end the run, unless its owner
        came back or it already ended. Exactly once across workers: returns the
        final event's seq, or 0 when there was nothing to do."""
        ...


class Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True, eq=False)
class Bus:
    """The hub over a transport, the run records, presence, control and leases of one app."""

    hub: Hub
    records: RunRecords
    presence: Presence
    control: Control
    leases: Leases
    #: Name of this process to the others (in run records, heartbeats, control).
    worker: str
    #: What must be started, in order (closed in reverse): connections, listeners,
    #: the hub (which starts its transport), presence, control.
    parts: tuple[Lifecycle, ...] = ()

    async def start(self) -> None:
        for part in self.parts:
            await part.start()

    async def close(self) -> None:
        for part in reversed(self.parts):
            await part.close()
