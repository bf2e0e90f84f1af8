"""Positions in a run's AG-UI stream, and resuming it at any of them exactly once.

Event ids. One run event (seq ``N``) becomes a group of ``n`` AG-UI events.
The last event of the group has the id ``<run_id>:<N>``; the ``k``-th of the
others has ``<run_id>:<N>.<k>`` (``k`` from 1). So ``<run_id>:<N>`` always
means "everything up to and including run event N" — the seed protocol's
``after_seq`` — and ``.k`` names a cut inside a group. ``<run_id>:0`` is the
position before the run's first event. Groups with no AG-UI event have no id.

Resuming after a position: the run is translated again from seq 1 (the
translation is deterministic), every AG-UI event up to the position is only
observed, and the first event after it is preceded by a *prelude* the AG-UI
client's verifier accepts: ``RUN_STARTED`` again, then the start events of
what was open at the cut (steps, reasoning, the text message, a tool call),
unchanged. Prelude events carry the id of the position resumed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ag_ui.core import BaseEvent, EventType

from legalstream.dialects.agui.translate import AguiTranslator
from legalstream.events import Event

_ID = re.compile(r"^(?P<run>[^:\s]{1,64}):(?P<seq>\d{1,12})(?:\.(?P<index>\d{1,6}))?$")

#: AG-UI event types that open something, and the ones that close it.
_OPENERS = {
    EventType.STEP_STARTED: "step",
    EventType.REASONING_START: "span",
    EventType.REASONING_MESSAGE_START: "thought",
    EventType.TEXT_MESSAGE_START: "text",
    EventType.TOOL_CALL_START: "tool",
}
_CLOSERS = {
    EventType.STEP_FINISHED: "step",
    EventType.REASONING_END: "span",
    EventType.REASONING_MESSAGE_END: "thought",
    EventType.TEXT_MESSAGE_END: "text",
    EventType.TOOL_CALL_END: "tool",
}
_TERMINAL = (EventType.RUN_FINISHED, EventType.RUN_ERROR)


class BadEventId(ValueError):
    """A ``Last-Event-ID`` that is not a position in this run's stream."""


@dataclass(frozen=True, slots=True)
class Position:
    """After run event ``seq`` (all of its group, or its first ``index`` AG-UI events)."""

    seq: int = 0
    index: int | None = None

    def event_id(self, run_id: str) -> str:
        return f"{run_id}:{self.seq}" if self.index is None else f"{run_id}:{self.seq}.{self.index}"


def event_id(run_id: str, seq: int, k: int, n: int) -> str:
    """The id of the ``k``-th (from 1) of the ``n`` AG-UI events of run event ``seq``."""
    return f"{run_id}:{seq}" if k == n else f"{run_id}:{seq}.{k}"


def parse_event_id(text: str, run_id: str) -> Position:
    """The position a ``Last-Event-ID`` names in ``run_id``'s stream."""
    match = _ID.match(text.strip())
    if match is None:
        raise BadEventId("expected '<run_id>:<seq>' or '<run_id>:<seq>.<k>'")
    if match["run"] != run_id:
        raise BadEventId("the event id belongs to another run")
    index = match["index"]
    if index is not None and int(index) < 1:
        raise BadEventId("the index inside a group starts at 1")
    return Position(int(match["seq"]), int(index) if index is not None else None)


class OpenConstructs:
    """What an AG-UI event stream has open, observed event by event."""

    def __init__(self) -> None:
        self.run_started: BaseEvent | None = None
        self.ended = False
        #: (kind, id) -> the event that opened it, in the order they were opened.
        self._open: dict[tuple[str, str], BaseEvent] = {}

    def observe(self, event: BaseEvent) -> None:
        kind = event.type
        if kind is EventType.RUN_STARTED:
            self.run_started = event
            self.ended = False
            self._open.clear()
        elif kind in _TERMINAL:
            self.ended = True
            self._open.clear()
        elif kind in _OPENERS:
            self._open[(_OPENERS[kind], _key(event))] = event
        elif kind in _CLOSERS:
            self._open.pop((_CLOSERS[kind], _key(event)), None)

    def reopen(self) -> list[BaseEvent]:
        """``RUN_STARTED`` and the start events of everything still open, in order."""
        if self.run_started is None or self.ended:
            return []
        return [self.run_started, *self._open.values()]


def _key(event: BaseEvent) -> str:
    for attr in ("step_name", "tool_call_id", "message_id"):
        value = getattr(event, attr, None)
        if value is not None:
            return str(value)
    return ""


class AguiStream:
    """One client's view of a run's AG-UI stream, from a position on.

    Feed the run's events in seq order from seq 1 (or from the position, when
    nothing before it needs replaying: a fresh stream); :meth:`feed` returns the
    ``(id, event)`` pairs to send.
    """

    def __init__(self, translator: AguiTranslator, after: Position | None = None) -> None:
        self.translator = translator
        self.run_id = translator.run_id
        self.after = after or Position()
        self.open = OpenConstructs()
        self._resumed = self.after.seq == 0 and self.after.index is None
        #: The last run event fed (translation needs them all, in order).
        self.seq = 0

    @property
    def ended(self) -> bool:
        return self.translator.ended

    def feed(self, event: Event) -> list[tuple[str, BaseEvent]]:
        seq = event.seq or 0
        if seq <= self.seq:  # already translated (a replay overlapping what we had)
            return []
        self.seq = seq
        group = self.translator.translate(event)
        after = self.after
        if seq < after.seq or (seq == after.seq and after.index is None):
            for item in group:
                self.open.observe(item)
            return []
        skip = (after.index or 0) if seq == after.seq else 0
        n = len(group)
        out: list[tuple[str, BaseEvent]] = []
        for k, item in enumerate(group, 1):
            if k <= skip:
                self.open.observe(item)
                continue
            if not self._resumed:
                self._resumed = True
                cursor = after.event_id(self.run_id)
                out.extend((cursor, opener) for opener in self.open.reopen())
            self.open.observe(item)
            out.append((event_id(self.run_id, seq, k, n), item))
        return out

    def fail(self, error: Event) -> list[tuple[str, BaseEvent]]:
        """A service event that ends this stream (``resume_failed``): its ``RUN_ERROR``."""
        events = self.translator.translate(error)
        cursor = self.after.event_id(self.run_id)
        return [(cursor, item) for item in events]
