"""One run a connection streams: the hub pushes the run's events in here.

Live events go straight to the connection's outbox from the bus's publish,
with no task per run and no buffer of their own (the outbox is the bound).
History (events up to ``backlog_until``: a resume's backlog) goes out as the
client takes it, from a pacing task; whatever arrives meanwhile waits behind
it, in order, up to a bound past which the follower is cut off as a slow
consumer.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from legalstream.bus.base import SubscriptionOverflow, run_topic
from legalstream.events import LIFECYCLE_TYPES, Event
from legalstream.server.outbox import Outbox

_LIFECYCLE = frozenset(t.value for t in LIFECYCLE_TYPES)


class EventFilter:
    """Which event types of a run reach this client (``stream_thinking``, ``events``)."""

    __slots__ = ("allowed",)

    def __init__(self, stream_thinking: bool, events: frozenset[str] | None) -> None:
        allowed: frozenset[str] | None = None if stream_thinking else _LIFECYCLE
        if events is not None:
            allowed = events if allowed is None else allowed & events
        self.allowed = allowed

    def __call__(self, event: Event) -> bool:
        # Final frames always pass: the seed's clients loop until they see one.
        return self.allowed is None or event.type in self.allowed or event.is_final


class FollowerOwner(Protocol):
    """The connection a follower belongs to."""

    def follower_done(self, follower: RunFollower) -> None:
        """The follower stopped (its run ended, or it was cut off)."""
        ...

    def follower_cut(self, follower: RunFollower, error: Exception) -> None:
        """The bus cut the follower off (overflow, lost history, bus down, a fault)."""
        ...


class RunFollower:
    """A :class:`~legalstream.bus.base.Follower` of one run for one connection."""

    __slots__ = (
        "_ended",
        "_final",
        "_paced",
        "_room",
        "_spawn",
        "allowed",
        "backlog_until",
        "done",
        "outbox",
        "owner",
        "run_id",
        "topic",
    )

    def __init__(
        self,
        run_id: str,
        allowed: EventFilter,
        outbox: Outbox,
        owner: FollowerOwner,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        *,
        backlog_until: int = 0,
        room: int = 4096,
    ) -> None:
        self.run_id = run_id
        self.topic = run_topic(run_id)
        self.allowed = allowed
        self.outbox = outbox
        self.owner = owner
        self._spawn = spawn
        self.backlog_until = backlog_until
        #: Live events that may wait behind a paced backlog.
        self._room = room
        self.done = False
        self._paced: deque[Event] | None = None
        self._final = False
        self._ended = False

    def deliver(self, events: list[Event]) -> None:
        if self.done:
            return
        frames: list[Event] = []
        final = False
        allowed = self.allowed
        for event in events:
            if allowed(event):
                frames.append(event)
            if event.is_final:
                final = True
                break
        if self._paced is not None or (frames and (frames[0].seq or 0) <= self.backlog_until):
            self._pace(frames, final)
            return
        if frames:
            self.outbox.send_events(frames)
        if final:
            self.finish()

    def end(self, error: Exception | None = None) -> None:
        if self.done:
            return
        if error is not None:
            self.owner.follower_cut(self, error)
        elif self._paced is not None:
            self._ended = True  # the pacer finishes once the history is out
            return
        self.finish()

    def finish(self) -> None:
        """Stop following; the owner unfollows and detaches from the run."""
        if not self.done:
            self.done = True
            self.owner.follower_done(self)

    def _pace(self, frames: list[Event], final: bool) -> None:
        if self._paced is None:
            self._paced = deque()
            self._spawn(self._pacer())
        self._paced.extend(frames)
        self._final = self._final or final
        if len(self._paced) > self._room:
            raise SubscriptionOverflow("fell behind while history was sent")

    async def _pacer(self) -> None:
        paced = self._paced
        assert paced is not None
        outbox = self.outbox
        step = max(1, outbox.capacity // 2)
        while paced and not self.done and not outbox.closed:
            chunk = [paced.popleft() for _ in range(min(step, len(paced)))]
            await outbox.send_history(chunk)
        self._paced = None
        if self._final or self._ended:
            self.finish()
