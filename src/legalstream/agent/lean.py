"""Two per-run costs of CrewAI that a streaming service should not pay.

Both were found by profiling the time from ``run()`` to the first agent event
(docs/benchmarks.md, "Agent"); each removes work, not behaviour we use.

1. **The replay store.** Every ``Crew`` opens CrewAI's kickoff-outputs SQLite
   database (``latest_kickoff_task_outputs.db``), and every kickoff deletes all
   its rows and writes each task's output, each time under a process-wide file
   lock. That store backs ``crewai replay``, which a service never uses: our run
   history is the record. With concurrent runs it is worse than slow: they queue
   on the lock and the disk, and each kickoff erases the others' rows.
   :class:`LeanCrew` gives its crews a store that keeps nothing.

2. **A new pydantic class per agent executor.** CrewAI's flow-based
   ``AgentExecutor`` declares a state model without an ``id``; every instance
   then builds ``class StateWithId(FlowState, AgentExecutorState)`` afresh,
   a full pydantic schema generation (about a third of the time to the first
   event). :func:`reuse_executor_state_class` builds that class once; flows then
   take CrewAI's own path for a state type that already is a ``FlowState``.
"""

from __future__ import annotations

from typing import Any

from crewai import Crew
from pydantic import PrivateAttr


class NoReplayStore:
    """CrewAI's ``TaskOutputStorageHandler`` interface, keeping nothing."""

    def update(self, task_index: int, log: dict[str, Any]) -> None:
        return None

    def add(self, *args: Any, **kwargs: Any) -> None:
        return None

    def reset(self) -> None:
        return None

    def load(self) -> list[dict[str, Any]] | None:
        return None


class LeanCrew(Crew):
    """A ``Crew`` without CrewAI's on-disk replay store (see the module doc)."""

    _task_output_handler: Any = PrivateAttr(default_factory=NoReplayStore)


def reuse_executor_state_class() -> None:
    """Give CrewAI's ``AgentExecutor`` a state class with ``id``, built once.

    Idempotent; a CrewAI whose executor state already has an ``id`` is left alone.
    """
    from crewai.agents.agent_executor import AgentExecutor
    from crewai.flow.runtime import FlowState

    declared = getattr(AgentExecutor, "_initial_state_t", None)
    if not isinstance(declared, type) or issubclass(declared, FlowState):
        return

    # The same bases, in the same order, as the class CrewAI builds per instance.
    state_with_id = type(declared.__name__ + "WithId", (FlowState, declared), {})
    AgentExecutor._initial_state_t = state_with_id
