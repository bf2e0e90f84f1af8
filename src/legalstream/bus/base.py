"""The bus interface: producers publish events to topics, sessions subscribe.

Two kinds of topic exist:

* a run topic (``run_topic(run_id)``): the run's events in ``seq`` order, with
  a bounded history so a late or reconnecting subscriber can replay from any
  ``after_seq`` it still covers;
* the broadcast topic (:data:`BROADCAST`): notifications to every connection,
  no history.

A topic is consumed in one of two ways. A subscription (``subscribe``) is an
async iterator of events (or of batches of them, with ``next_batch``) with its
own bounded buffer; it ends when the topic is closed (the run finished) and
raises :class:`SubscriptionOverflow` when its consumer fell further behind than
the buffer allows. A follower (``follow``) has events pushed into it as they
are published, with no task of its own: what sessions use to stream runs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from legalstream.events import Event

BROADCAST = "broadcast"


def run_topic(run_id: str) -> str:
    return f"run:{run_id}"


class SubscriptionOverflow(Exception):
    """The subscriber did not keep up; its bounded buffer filled."""


class UnknownTopic(Exception):
    """No such run in the bus's history (never existed or expired)."""


class BusUnavailable(Exception):
    """The bus's backing service (Redis) failed; try again later (resume)."""


@dataclass(slots=True)
class History:
    """What the bus still holds of a topic, for replay and resume."""

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


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...

    async def next_batch(self) -> list[Event]:
        """Every event ready now, at least one, in order (the fast path for
        streaming); raises ``StopAsyncIteration`` at the end like ``__anext__``."""
        ...

    async def aclose(self) -> None: ...


class Follower(Protocol):
    """Takes a topic's events as the bus has them (push; ``Bus.follow``).

    Called on the event loop, in publish order; must neither block nor raise.
    """

    def deliver(self, events: list[Event]) -> None: ...

    def end(self, error: Exception | None = None) -> None:
        """No more events: the topic closed, or ``error`` (a ``SubscriptionOverflow``
        or ``BusUnavailable``) cut the follower off. Possibly called more than once."""
        ...


class Bus(Protocol):
    """Same interface for the in-process and the Redis implementation."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, topic: str, event: Event) -> None:
        """Deliver ``event`` to the topic's subscribers (and its history)."""
        ...

    async def publish_many(self, topic: str, events: list[Event]) -> None:
        """Publish a run's batch in order (one round trip on Redis)."""
        ...

    async def close_topic(self, topic: str) -> None:
        """No more events: subscriptions end after draining."""
        ...

    async def open_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """``save_run`` and ``publish_many`` of a run's first batch (its opening
        frames), in one round trip on Redis."""
        ...

    async def finish_run(self, topic: str, events: list[Event], record: RunRecord) -> None:
        """``publish_many``, ``close_topic`` and ``save_run`` of a run's last batch
        (its final event), in one round trip on Redis."""
        ...

    def subscribe(self, topic: str, *, after_seq: int | None = None) -> Subscription:
        """Follow a topic; with ``after_seq``, first replay history after it.

        The caller must check coverage with :meth:`history` first when it
        needs to know whether events were lost (resume).
        """
        ...

    def follow(self, topic: str, follower: Follower, *, after_seq: int | None = None) -> None:
        """Deliver the topic's events to ``follower`` (after replaying history past
        ``after_seq``) until the topic closes or ``unfollow``. The in-process bus
        calls it from ``publish`` itself; Redis from a task reading a subscription."""
        ...

    def unfollow(self, topic: str, follower: Follower) -> None:
        """Stop delivering to ``follower``; idempotent."""
        ...

    async def history(self, topic: str, *, after_seq: int = 0) -> History:
        """Raises :class:`UnknownTopic` when the bus holds nothing of it."""
        ...

    async def save_run(self, record: RunRecord) -> None: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(self, *, case_id: Any = None, limit: int = 100) -> list[RunRecord]: ...


@runtime_checkable
class InlineBus(Protocol):
    """A bus whose writes complete without awaiting: the in-process one.

    ``RunManager`` publishes a run's events on such a bus straight from the
    loop callback that receives them from the run's thread, so a run costs no
    task on the event loop. Same semantics as the awaitable methods.
    """

    def publish_now(self, topic: str, events: list[Event]) -> None: ...

    def close_topic_now(self, topic: str) -> None: ...

    def save_run_now(self, record: RunRecord) -> None: ...
