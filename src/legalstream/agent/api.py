"""The contract between the run machinery (``runs.py``) and an agent.

``runs.py`` hands an :class:`AgentRunner` a request, an :class:`Emit`
callback and a cancellation flag, and calls :meth:`AgentRunner.run` in a
worker thread. The runner reports every step through ``emit`` (thread-safe,
cheap, never blocks the event loop) and returns a :class:`RunOutcome`. The
lifecycle frames (query_received, agent_execution_start/complete/error) belong
to ``runs.py``; a runner emits only what happens inside the run.

A runner may also count what went wrong outside any one run's outcome (see
:class:`CountingRunner`); ``/metrics`` reads those counters at scrape time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from legalstream.events import EventType


class RunCancelled(Exception):
    """Raised inside a run when its cancellation flag was set."""


class RunFailed(Exception):
    """A run failed in a way the client can act on (``code`` is an ErrorCode)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class RunRequest:
    run_id: str
    query: str
    case_id: int | str | None
    stream_thinking: bool = True
    #: Who asked (the JWT subject, or "anonymous"): for audit and attribution.
    user: str = "anonymous"


@dataclass(slots=True)
class RunOutcome:
    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


class Emit(Protocol):
    """Publish one event of the running run; safe to call from any thread."""

    def __call__(
        self,
        type: EventType,
        *,
        agent_name: str | None = None,
        task: str | None = None,
        action: str | None = None,
        tool_name: str | None = None,
        input_data: dict[str, Any] | None = None,
        output_data: dict[str, Any] | None = None,
        error: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None: ...


class AgentRunner(Protocol):
    """Something that answers one question, reporting its steps as it goes."""

    def run(self, request: RunRequest, emit: Emit, cancelled: threading.Event) -> RunOutcome:
        """Answer ``request`` synchronously (called in a worker thread).

        Must check ``cancelled`` before each LLM or tool call and raise
        :class:`RunCancelled` once it is set; raise :class:`RunFailed` for an
        error with a code, any other exception for an internal failure.
        """
        ...


#: A runner's counters: counter name -> label value -> total since the runner was built.
AgentCounters = Mapping[str, Mapping[str, int]]


@runtime_checkable
class CountingRunner(Protocol):
    """An :class:`AgentRunner` that also counts (optional; ``isinstance`` tells).

    Counter names a runner may report, and what ``/metrics`` makes of them:

    * ``translation_errors``: agent events the runner could not translate into
      protocol events, by the agent framework's event type (for CrewAI, a
      changed event shape); ``legalstream_agent_translation_errors_total{event_type}``.
    """

    def counters(self) -> AgentCounters:
        """Current totals; cheap, thread-safe, callable from any thread at any time."""
        ...
