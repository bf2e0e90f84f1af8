"""Everything legalstream uses of CrewAI beyond its documented public API.

The only module that reaches into CrewAI's internals; the other agent modules
call the small functions below. crewai is pinned (``CREWAI_VERSION``, and
``crewai==`` in pyproject.toml), and tests/agent/test_crewai_contract.py
checks each name used here against the installed CrewAI, failing with the
attribute's name when an upgrade moves or reshapes it.

1. **Stream sinks** (``crewai.events.stream_context``): a callable CrewAI calls
   inline, on the emitting thread, for the events of one context only. Not in
   ``crewai.events.__all__``.
2. **Scoped hooks** (``crewai.hooks.dispatch``): a run's own before-LLM-call
   and before-tool-call guard that aborts the call with ``HookAborted``.
3. **What a custom ``BaseLLM`` calls to look like a provider**: the private
   ``BaseLLM._emit_*_event`` methods, ``_track_token_usage_internal``,
   ``_effective_stream`` and ``llm_call_context`` (which gives the call its id).
4. **Tool names as the ReAct prompt spells them**: ``sanitize_tool_name``.
   **A wrapping LLM's stop words**: ``call_stop_override`` (the agent's stop
   words for one call, which CrewAI sets on the wrapper, passed to the
   provider's LLM inside it). **The HTTP client of a provider's OpenAI SDK**:
   the ``client_params`` field and the cached ``_client``
   of CrewAI's OpenAI(-compatible) provider (so a run's requests go through a
   client it can abort: :mod:`legalstream.agent.httpx_ext`).
5. **Two per-run costs removed** (found by profiling the time from ``run()`` to
   the first agent event; docs/benchmarks.md, "Agent"):

   * *The replay store.* Every ``Crew`` opens CrewAI's kickoff-outputs SQLite
     database, and every kickoff deletes its rows and writes each task's
     output under a process-wide file lock. It backs ``crewai replay``, which
     a service never uses (our run history is the record); concurrent runs
     queue on the lock and erase each other's rows. :class:`LeanCrew` replaces
     the private ``Crew._task_output_handler`` with :class:`NoReplayStore`.
   * *A pydantic class per agent executor.* ``AgentExecutor`` declares a state
     model (``_initial_state_t``) without an ``id``; every instance then builds
     a ``StateWithId`` class afresh, a full schema generation.
     :func:`reuse_executor_state_class` builds it once.

6. **The event shapes the listener reads**: :data:`LISTENED_EVENTS`.
7. **Quiet once a run is stopped** (``crewai.events.event_context``'s private
   config variable, and the ``crewai.flow.runtime`` logger's message): a run
   :func:`guarded_calls` stopped (cancelled, or its retrieval failed) unwinds
   through CrewAI, which then logs "Error executing listener ...: run
   cancelled" at ERROR and prints "Event pairing mismatch" warnings. Those two,
   and only while the run's stop reason is set, are dropped (:class:`QuietOnceStopped`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator
from typing import Any

from crewai import Crew
from crewai.events import event_context
from crewai.events.stream_context import add_stream_sink, reset_stream_sinks
from crewai.events.types.llm_events import LLMCallType
from crewai.hooks import HookAborted
from crewai.hooks.dispatch import InterceptionPoint, register_scoped, scoped_hooks
from crewai.llms.base_llm import BaseLLM, call_stop_override, llm_call_context
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import PrivateAttr

__all__ = [
    "CREWAI_VERSION",
    "LISTENED_EVENTS",
    "HookAborted",
    "LeanCrew",
    "NoReplayStore",
    "add_sink",
    "call_scope",
    "effective_stream",
    "emit_call_completed",
    "emit_call_failed",
    "emit_call_started",
    "emit_stream_chunk",
    "guarded_calls",
    "remove_sink",
    "reuse_executor_state_class",
    "stop_override",
    "tool_action_name",
    "track_token_usage",
    "use_http_client",
]

#: The CrewAI version whose internals this module relies on.
CREWAI_VERSION = "1.15.30"

#: Where a guard's abort says it came from (CrewAI logs it).
HOOK_SOURCE = "legalstream"

# --- 1. stream sinks ------------------------------------------------------------------------

Sink = Callable[[Any, Any], None]


def add_sink(sink: Sink) -> contextvars.Token[Any]:
    """Deliver this context's CrewAI events to ``sink(source, event)``, inline, in order."""
    return add_stream_sink(sink)


def remove_sink(token: contextvars.Token[Any]) -> None:
    """Undo :func:`add_sink`."""
    reset_stream_sinks(token)


# --- 2. scoped hooks ------------------------------------------------------------------------


@contextlib.contextmanager
def guarded_calls(stop_reason: Callable[[], str | None]) -> Iterator[None]:
    """Within the block, each LLM and tool call of this context first asks ``stop_reason()``.

    A reason (not None) aborts the call with ``HookAborted(reason)``; CrewAI
    then unwinds the agent loop.
    """

    def guard(_hook_context: Any) -> None:
        reason = stop_reason()
        if reason is not None:
            raise HookAborted(reason, source=HOOK_SOURCE)

    with scoped_hooks(), _quiet_once_stopped(stop_reason):
        register_scoped(InterceptionPoint.PRE_MODEL_CALL, guard)
        register_scoped(InterceptionPoint.PRE_TOOL_CALL, guard)
        yield


# --- 3. a custom BaseLLM that reports like a provider ---------------------------------------


def call_scope() -> contextlib.AbstractContextManager[str]:
    """The scope of one LLM call: the events emitted within it share one ``call_id``."""
    return llm_call_context()


def effective_stream(llm: BaseLLM) -> bool:
    """Whether this call of ``llm`` streams (CrewAI may override ``llm.stream`` per call)."""
    return bool(llm._effective_stream())


def emit_call_started(
    llm: BaseLLM,
    *,
    messages: Any,
    tools: Any,
    callbacks: Any,
    available_functions: Any,
    from_task: Any,
    from_agent: Any,
) -> None:
    llm._emit_call_started_event(
        messages=messages,
        tools=tools,
        callbacks=callbacks,
        available_functions=available_functions,
        from_task=from_task,
        from_agent=from_agent,
    )


def emit_call_completed(
    llm: BaseLLM,
    *,
    response: str,
    from_task: Any,
    from_agent: Any,
    usage: dict[str, Any],
    finish_reason: str,
) -> None:
    llm._emit_call_completed_event(
        response=response,
        call_type=LLMCallType.LLM_CALL,
        from_task=from_task,
        from_agent=from_agent,
        messages=None,
        usage=usage,
        finish_reason=finish_reason,
    )


def emit_call_failed(llm: BaseLLM, *, error: str, from_task: Any, from_agent: Any) -> None:
    llm._emit_call_failed_event(error=error, from_task=from_task, from_agent=from_agent)


def emit_stream_chunk(llm: BaseLLM, chunk: str, *, from_task: Any, from_agent: Any) -> None:
    llm._emit_stream_chunk_event(
        chunk, from_task=from_task, from_agent=from_agent, call_type=LLMCallType.LLM_CALL
    )


def track_token_usage(llm: BaseLLM, usage: dict[str, Any]) -> None:
    """Add one call's usage to ``llm``'s totals (what CrewAI reports per crew)."""
    llm._track_token_usage_internal(usage)


# --- 4. tool names --------------------------------------------------------------------------


def tool_action_name(name: str) -> str:
    """The name a ReAct ``Action:`` line (and CrewAI's tool events) use for tool ``name``."""
    return sanitize_tool_name(name)


def stop_override(llm: BaseLLM, stop: list[str]) -> contextlib.AbstractContextManager[None]:
    """Within the block, ``llm`` stops at ``stop`` (its ``stop`` field is not touched)."""
    return call_stop_override(llm, list(stop) if stop else None)


def use_http_client(llm: BaseLLM, http_client: Any) -> bool:
    """Make ``llm``'s provider SDK send through ``http_client`` (an ``httpx.Client``).

    True for CrewAI's OpenAI and OpenAI-compatible providers (openai/, ollama/,
    hosted_vllm/, ...); False, and nothing changed, for the others.
    """
    if "client_params" not in type(llm).model_fields or not hasattr(llm, "_client"):
        return False
    llm.client_params = {**(llm.client_params or {}), "http_client": http_client}
    # The SDK client was built eagerly with the default http client: build it again
    # on first use. (The async client is left alone: runs call synchronously.)
    llm._client = None
    return True


# --- 5. two per-run costs removed -----------------------------------------------------------


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


# --- 6. event shapes ------------------------------------------------------------------------

#: CrewAI event ``type`` -> (its class, the attributes the listener reads of it).
#: ``agent`` is an ``Agent`` (the listener reads ``role`` and ``llm.model``);
#: ``tool_call`` a pydantic model (``model_dump``). The contract test checks every
#: entry, and that the listener handles exactly these types and reads nothing else.
LISTENED_EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "agent_execution_started": ("crewai.events.types.agent_events.AgentExecutionStartedEvent", ("agent",)),
    "agent_execution_completed": ("crewai.events.types.agent_events.AgentExecutionCompletedEvent", ("output",)),
    "agent_execution_error": ("crewai.events.types.agent_events.AgentExecutionErrorEvent", ("error",)),
    "llm_call_started": ("crewai.events.types.llm_events.LLMCallStartedEvent", ("call_id", "model", "messages", "stream")),
    "llm_stream_chunk": ("crewai.events.types.llm_events.LLMStreamChunkEvent", ("call_id", "chunk", "tool_call")),
    "llm_thinking_chunk": ("crewai.events.types.llm_events.LLMThinkingChunkEvent", ("call_id", "chunk")),
    "llm_call_completed": ("crewai.events.types.llm_events.LLMCallCompletedEvent", ("call_id", "model", "response", "usage", "finish_reason")),
    "llm_call_failed": ("crewai.events.types.llm_events.LLMCallFailedEvent", ("call_id", "model", "error")),
    "tool_usage_started": ("crewai.events.types.tool_usage_events.ToolUsageStartedEvent", ("tool_name", "tool_args", "run_attempts")),
    "tool_usage_finished": ("crewai.events.types.tool_usage_events.ToolUsageFinishedEvent", ("tool_name", "tool_args", "output", "failure", "started_at", "finished_at", "from_cache")),
    "tool_usage_error": ("crewai.events.types.tool_usage_events.ToolUsageErrorEvent", ("type", "tool_name", "tool_args", "error")),
    "tool_validate_input_error": ("crewai.events.types.tool_usage_events.ToolValidateInputErrorEvent", ("type", "tool_name", "tool_args", "error")),
    "tool_selection_error": ("crewai.events.types.tool_usage_events.ToolSelectionErrorEvent", ("type", "tool_name", "tool_args", "error")),
}  # fmt: skip


# --- 7. quiet once a run is stopped ---------------------------------------------------------

#: The stop reason of the run whose context this is (set by :func:`guarded_calls`).
_STOP_REASON: contextvars.ContextVar[Callable[[], str | None] | None] = contextvars.ContextVar(
    "legalstream_stop_reason", default=None
)
#: The logger, and the start of the message, of CrewAI's report of a failed flow listener.
LISTENER_LOGGER = "crewai.flow.runtime"
LISTENER_ERROR = "Error executing listener "


def _stopped() -> bool:
    stop = _STOP_REASON.get()
    return stop is not None and stop() is not None


class QuietOnceStopped(logging.Filter):
    """Drops CrewAI's "Error executing listener ..." for a run legalstream stopped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_stopped() and str(record.msg).startswith(LISTENER_ERROR))


class _ScopeConfig:
    """CrewAI's ``EventContextConfig``, silent about unpaired events once the run is stopped."""

    def __init__(self) -> None:
        self.max_stack_depth = event_context.EventContextConfig().max_stack_depth

    @property
    def mismatch_behavior(self) -> event_context.MismatchBehavior:
        return _scope_behavior(event_context.EventContextConfig().mismatch_behavior)

    @property
    def empty_pop_behavior(self) -> event_context.MismatchBehavior:
        return _scope_behavior(event_context.EventContextConfig().empty_pop_behavior)


def _scope_behavior(default: event_context.MismatchBehavior) -> event_context.MismatchBehavior:
    return event_context.MismatchBehavior.SILENT if _stopped() else default


@contextlib.contextmanager
def _quiet_once_stopped(stop_reason: Callable[[], str | None]) -> Iterator[None]:
    stop_token = _STOP_REASON.set(stop_reason)
    config_token = event_context._event_context_config.set(_ScopeConfig())  # type: ignore[arg-type]
    try:
        yield
    finally:
        event_context._event_context_config.reset(config_token)
        _STOP_REASON.reset(stop_token)


logging.getLogger(LISTENER_LOGGER).addFilter(QuietOnceStopped())
