"""Helpers of the agent tests: a recording Emit and the stream invariants."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from legalstream.agent.api import RunRequest
from legalstream.events import EventType

PAIRS = {
    EventType.AGENT_START: EventType.AGENT_END,
    EventType.THINKING_START: EventType.THINKING_END,
    EventType.LLM_START: EventType.LLM_END,
    EventType.TOOL_START: EventType.TOOL_END,
    EventType.RAG_QUERY_START: EventType.RAG_QUERY_END,
}
ENDS = {end: start for start, end in PAIRS.items()}
ENDS[EventType.LLM_ERROR] = EventType.LLM_START  # a failed call ends with llm_error


class Recorder:
    """An ``Emit`` that records ``(type, fields, thread name)``; thread-safe, never blocks long."""

    def __init__(self, on_event: Callable[[EventType, dict[str, Any]], None] | None = None) -> None:
        self.events: list[tuple[EventType, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._on_event = on_event

    def __call__(self, type: EventType, **fields: Any) -> None:
        with self._lock:
            self.events.append((EventType(type), fields))
        if self._on_event is not None:
            self._on_event(EventType(type), fields)

    @property
    def types(self) -> list[EventType]:
        return [t for t, _ in self.events]

    def of(self, type: EventType) -> list[dict[str, Any]]:
        return [f for t, f in self.events if t == type]


def assert_well_formed(
    events: list[tuple[EventType, dict[str, Any]]], *, complete: bool = True
) -> None:
    """Every end closes the innermost open start of its kind; nothing left open."""
    stack: list[EventType] = []
    for index, (type_, fields) in enumerate(events):
        assert fields.get("agent_name") == "Legal Question Answering Agent", (index, type_)
        assert fields.get("task") == "Answer legal question", (index, type_)
        if type_ in PAIRS:
            stack.append(type_)
        elif type_ in ENDS:
            start = ENDS[type_]
            assert start in stack, f"{type_} at {index} without {start}"
            assert stack[-1] == start, f"{type_} at {index} closes {start} over {stack}"
            stack.pop()
        if type_ in (EventType.TOOL_START, EventType.TOOL_END, EventType.AGENT_ACTION,
                     EventType.RAG_QUERY_START, EventType.RAG_QUERY_END):  # fmt: skip
            assert fields.get("tool_name") == "RAG Legal Retrieval Tool", (index, type_)
    if complete:
        assert stack == [], f"left open: {stack}"


def request(query: str, case_id: int = 1, run_id: str = "run-1") -> RunRequest:
    return RunRequest(run_id=run_id, query=query, case_id=case_id)
