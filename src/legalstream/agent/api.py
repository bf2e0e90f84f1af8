"""The contract between the run machinery (``runs.py``) and an agent.

``runs.py`` hands an :class:`AgentRunner` a request, an :class:`Emit`
callback and a cancellation flag, and calls :meth:`AgentRunner.run` in a
worker thread. The runner reports every step through ``emit`` (thread-safe,
cheap, never blocks the event loop) and returns a :class:`RunOutcome`. The
lifecycle frames (query_received, agent_execution_start/complete/error) belong
to ``runs.py``; a runner emits only what happens inside the run.

A runner may also count what went wrong outside any one run's outcome (see
:class:`CountingRunner`), and say that its configuration cannot work (see
:class:`CheckingRunner`); ``/metrics`` and ``/ready`` read those.

The cancellation flag ``runs.py`` passes is a :class:`Cancellation`: a
``threading.Event`` that also calls back at once when it is set, so a runner
can cut off a provider request in flight instead of waiting for it to end.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from legalstream.events import ErrorCode, EventType, Grounding

log = logging.getLogger(__name__)


class Cancellation(threading.Event):
    """A run's cancellation flag: a ``threading.Event`` that calls back when it is set.

    Callbacks run once, on the thread that calls :meth:`set` (the event loop, for
    ``runs.py``), so they must be quick and must not block: cut a socket, set a
    flag. One added after the flag is set runs at once. Errors are logged.
    """

    def __init__(self) -> None:
        super().__init__()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def add_callback(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` when the flag is set; returns a function that removes it."""
        with self._lock:
            run_now = self.is_set()
            if not run_now:
                self._callbacks.append(callback)
        if run_now:
            _call(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def set(self) -> None:
        with self._lock:
            first = not self.is_set()
            super().set()
            callbacks, self._callbacks = self._callbacks, []
        if first:
            for callback in callbacks:
                _call(callback)


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("cancellation callback failed")


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
    """What a run answered: the answer, its citations and the check of its grounding.

    ``grounding`` is a :class:`~legalstream.events.Grounding` payload; an outcome
    without one (a runner that does not check) counts as grounded. An ungrounded
    or truncated answer is not a success: ``runs.py`` ends the run with an
    ``agent_execution_error`` of :attr:`failure_code` that carries it as a draft.
    """

    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    grounding: dict[str, Any] | None = None

    @property
    def failure_code(self) -> ErrorCode | None:
        """``truncated_answer`` / ``ungrounded_answer`` when the answer is no success, else None."""
        if self.grounding is None:
            return None
        check = Grounding.from_payload(self.grounding)
        if check.grounded:
            return None
        if any(p.get("kind") == "truncated" for p in check.problems):
            return ErrorCode.TRUNCATED_ANSWER
        return ErrorCode.UNGROUNDED_ANSWER


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
        error with a code, any other exception for an internal failure. When
        ``cancelled`` is a :class:`Cancellation`, a runner should also cut off
        what it is waiting for as soon as it is set. ``runs.py`` does not wait
        for a runner that does not return: it ends the run itself.
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


@runtime_checkable
class CheckingRunner(Protocol):
    """An :class:`AgentRunner` that can tell its configuration cannot work (optional).

    ``/ready`` answers 503 with the reason (e.g. a provider that needs an API key
    and has none), instead of saying ready and failing every query.
    """

    def problem(self) -> str | None:
        """Why no run can succeed with this configuration, or None; cheap, no network."""
        ...
