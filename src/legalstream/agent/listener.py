"""Map one run's CrewAI events to protocol events, in order, with no cross-talk.

An :class:`EventTranslator` is installed per run with
``crewai.events.stream_context.add_stream_sink``: CrewAI calls it inline on
the emitting thread, in emission order, for exactly the events of the context
that installed it (contextvars follow the run into every thread CrewAI
starts). CrewAI's global event-bus handlers, by contrast, run on a thread
pool, out of order, and cannot tell runs apart; nothing here uses them.

The sink must be cheap and must never raise (an exception would break the
run): it builds a few small payloads (:mod:`legalstream.events`) and calls
``emit``, which is the run machinery's thread-safe, non-blocking hand-off.
An event it cannot translate (an unexpected event shape: CrewAI changed) is
skipped, counted by CrewAI event type in :class:`TranslationErrors` (the
runner's ``counters()``, on ``/metrics``) and logged at warning level, at most
once a minute per type. The event shapes it reads are declared in
:data:`legalstream.agent.crewai_ext.LISTENED_EVENTS`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

from legalstream.agent import AGENT_NAME, TASK_NAME, TOOL_NAME, crewai_ext
from legalstream.agent.tools import RunContext
from legalstream.events import (
    EventType,
    LLMCallEnd,
    LLMCallError,
    LLMCallStart,
    StreamChunk,
    ToolResult,
    ToolTiming,
)

log = logging.getLogger(__name__)

#: Longest text put into one event field (tool results, responses, outputs).
MAX_TEXT = 8000

_REACT_ACTION = re.compile(
    r"(?:Thought:\s*(?P<thought>.*?)\s*)?Action\s*\d*\s*:\s*(?P<tool>.*?)\s*"
    r"Action\s*\d*\s*Input\s*\d*\s*:\s*(?P<input>.*)",
    re.DOTALL,
)
_FINAL = re.compile(
    r"(?:Thought:\s*(?P<thought>.*?)\s*)?Final Answer\s*:\s*(?P<answer>.*)", re.DOTALL
)


def _clip(text: Any, limit: int = MAX_TEXT) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit] + "…"


def _json_args(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return {"input": _clip(value, 2000)}
        return parsed if isinstance(parsed, dict) else {"input": parsed}
    return {"input": _clip(value, 2000)}


#: Our tool's name as CrewAI's events and the ReAct "Action:" line spell it.
_TOOL_ACTION_NAME = crewai_ext.tool_action_name(TOOL_NAME)


def _canonical_tool(name: str | None) -> str | None:
    if not name:
        return name
    if name == TOOL_NAME or name == _TOOL_ACTION_NAME:
        return TOOL_NAME
    return name


def parse_step(response: Any) -> dict[str, Any]:
    """What an LLM response decided: ``{"thought", "tool", "tool_input"}`` or ``{"final"}``."""
    if isinstance(response, list):  # native function calling: a list of tool calls
        calls = []
        for call in response:
            fn = (
                call.get("function", call)
                if isinstance(call, dict)
                else getattr(call, "function", call)
            )
            name = fn.get("name") if isinstance(fn, dict) else getattr(fn, "name", None)
            args = fn.get("arguments") if isinstance(fn, dict) else getattr(fn, "arguments", None)
            calls.append({"tool": _canonical_tool(name), "tool_input": _json_args(args)})
        return {"thought": "", "calls": calls}
    text = response if isinstance(response, str) else str(response or "")
    final = _FINAL.search(text)
    action = _REACT_ACTION.search(text)
    if action and not (final and final.start() < action.start()):
        tool_input = action.group("input").strip()
        tool_input = tool_input.split("\nObservation")[0].strip()
        return {
            "thought": (action.group("thought") or "").strip(),
            "calls": [
                {
                    "tool": _canonical_tool(action.group("tool").strip()),
                    "tool_input": _json_args(tool_input),
                }
            ],
        }
    if final:
        return {
            "thought": (final.group("thought") or "").strip(),
            "final": final.group("answer").strip(),
        }
    return {"thought": "", "final": text.strip()}


class TranslationErrors:
    """CrewAI events the translators could not translate, by event type; thread-safe.

    Each is logged at warning level with its traceback, at most once per event
    type per ``log_every`` seconds: a changed event shape fails on every event
    of its type, and the log must not flood.
    """

    def __init__(
        self, log_every: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log_every = log_every
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}
        self._logged_count: dict[str, int] = {}

    def record(self, event_type: str) -> None:
        """Count one failure; call it from the ``except`` block (the log has the traceback)."""
        with self._lock:
            n = self._counts[event_type] = self._counts.get(event_type, 0) + 1
            now = self._clock()
            last = self._logged_at.get(event_type)
            if last is not None and now - last < self.log_every:
                return
            suppressed = n - 1 - self._logged_count.get(event_type, 0)
            self._logged_at[event_type] = now
            self._logged_count[event_type] = n
        log.warning(
            "could not translate a CrewAI %r event (%d so far, %d not logged); "
            "the run goes on without it",
            event_type,
            n,
            suppressed,
            exc_info=True,
        )

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class EventTranslator:
    """A per-run stream sink: CrewAI event -> protocol events through ``ctx.emit``."""

    #: CrewAI event type -> the method that translates it (the keys are
    #: crewai_ext.LISTENED_EVENTS; the contract test holds them equal).
    HANDLERS: ClassVar[dict[str, str]] = {
        "agent_execution_started": "_agent_started",
        "agent_execution_completed": "_agent_completed",
        "agent_execution_error": "_agent_error",
        "llm_call_started": "_llm_started",
        "llm_stream_chunk": "_llm_chunk",
        "llm_thinking_chunk": "_llm_thinking_chunk",
        "llm_call_completed": "_llm_completed",
        "llm_call_failed": "_llm_failed",
        "tool_usage_started": "_tool_started",
        "tool_usage_finished": "_tool_finished",
        "tool_usage_error": "_tool_error",
        "tool_validate_input_error": "_tool_error",
        "tool_selection_error": "_tool_error",
    }

    def __init__(self, ctx: RunContext, errors: TranslationErrors | None = None) -> None:
        self.ctx = ctx
        self._emit = ctx.emit
        self._lock = threading.Lock()
        self._thinking = False
        self._open_llm: dict[str, str | None] = {}
        self._open_tools = 0
        self._failed: set[str] = set()
        self._step = 0
        #: Shared with the runner's other translators (see TranslationErrors).
        self.translation_errors = errors if errors is not None else TranslationErrors()
        #: This run's untranslated events.
        self.errors = 0
        self.forwarded = 0
        self._handlers: dict[str, Callable[[Any], None]] = {
            event_type: getattr(self, method) for event_type, method in self.HANDLERS.items()
        }

    # The sink CrewAI calls: inline, on the emitting thread, in order.
    def __call__(self, source: Any, event: Any) -> None:
        event_type = getattr(event, "type", None)
        handler = self._handlers.get(event_type)
        if handler is None or self.ctx.cancelled.is_set():
            return
        try:
            with self._lock:
                handler(event)
        except Exception:  # never break the run for a translation problem
            self.errors += 1
            self.translation_errors.record(event_type)

    @property
    def llm_open(self) -> bool:
        return bool(self._open_llm)

    def _send(self, type: EventType, **fields: Any) -> None:
        self.forwarded += 1
        self._emit(type, agent_name=AGENT_NAME, task=TASK_NAME, **fields)

    # --- agent -------------------------------------------------------------------------
    def _agent_started(self, ev: Any) -> None:
        llm = getattr(ev.agent, "llm", None)
        self._send(
            EventType.AGENT_START,
            action="agent_start",
            input_data={"query": self.ctx.request.query, "case_id": self.ctx.case_id},
            metadata={"role": ev.agent.role, "model": getattr(llm, "model", None)},
        )

    def _agent_completed(self, ev: Any) -> None:
        self._close_thinking()
        self._send(
            EventType.AGENT_END, action="agent_end", output_data={"output": _clip(ev.output)}
        )

    def _agent_error(self, ev: Any) -> None:
        self._close_thinking(error=str(ev.error))
        self._send(EventType.AGENT_END, action="agent_end", error=_clip(ev.error, 2000))

    # --- LLM ---------------------------------------------------------------------------
    def _llm_started(self, ev: Any) -> None:
        self.ctx.llm_calls += 1
        if not self._thinking:
            self._thinking = True
            self._step += 1
            self._send(EventType.THINKING_START, action="reasoning", metadata={"step": self._step})
        self._open_llm[ev.call_id] = ev.model
        messages = ev.messages
        self._send(
            EventType.LLM_START,
            action="llm_call",
            input_data={"messages": len(messages) if isinstance(messages, list) else 1},
            metadata=LLMCallStart(ev.model, ev.call_id, ev.stream, self._step).to_payload(),
        )

    def _llm_chunk(self, ev: Any) -> None:
        meta: dict[str, Any] = {"call_id": ev.call_id}
        if ev.tool_call is not None:
            meta["tool_call"] = ev.tool_call.model_dump(mode="json")
        self._send(
            EventType.LLM_STREAM_CHUNK,
            action="llm_stream",
            output_data=StreamChunk(ev.chunk).to_payload(),
            metadata=meta,
        )

    def _llm_thinking_chunk(self, ev: Any) -> None:
        self._send(
            EventType.LLM_STREAM_CHUNK,
            action="llm_stream",
            output_data=StreamChunk(ev.chunk).to_payload(),
            metadata={"call_id": ev.call_id, "thinking": True},
        )

    def _llm_completed(self, ev: Any) -> None:
        self._open_llm.pop(ev.call_id, None)
        self.ctx.last_finish_reason = ev.finish_reason
        step = parse_step(ev.response)
        usage = ev.usage if isinstance(ev.usage, dict) else None
        self._send(
            EventType.LLM_END,
            action="llm_call",
            output_data={"response": _clip(ev.response if isinstance(ev.response, str) else step)},
            metadata=LLMCallEnd(
                ev.model, ev.call_id, usage, ev.finish_reason, self._step
            ).to_payload(),
        )
        self._close_thinking(thought=step.get("thought"), final="final" in step)
        for call in step.get("calls", ()):
            self._send(
                EventType.AGENT_ACTION,
                action="tool_call",
                tool_name=call["tool"],
                input_data=call["tool_input"],
                output_data={"thought": step.get("thought", "")},
            )

    def _llm_failed(self, ev: Any) -> None:
        # CrewAI reports some provider failures twice (provider, then its caller).
        if ev.call_id in self._failed:
            return
        self._failed.add(ev.call_id)
        self._open_llm.pop(ev.call_id, None)
        self.ctx.llm_error = str(ev.error)
        self._send(
            EventType.LLM_ERROR,
            action="llm_call",
            error=_clip(ev.error, 2000),
            metadata=LLMCallError(ev.model, ev.call_id, self._step).to_payload(),
        )
        self._close_thinking(error=str(ev.error))

    def llm_error_synthetic(self, model: str | None, error: str) -> None:
        """Close an LLM call CrewAI failed without a failed event (runner's last resort)."""
        with self._lock:
            for call_id, call_model in list(self._open_llm.items()):
                self._open_llm.pop(call_id)
                self._failed.add(call_id)
                self._send(
                    EventType.LLM_ERROR,
                    action="llm_call",
                    error=_clip(error, 2000),
                    metadata=LLMCallError(call_model or model, call_id, self._step).to_payload(),
                )
            if not self.ctx.llm_error:
                if not self._failed:  # the reply arrived but CrewAI could not use it
                    self._send(
                        EventType.LLM_ERROR,
                        action="llm_call",
                        error=_clip(error, 2000),
                        metadata=LLMCallError(model, None, self._step).to_payload(),
                    )
                self.ctx.llm_error = error
            self._close_thinking(error=error)

    def _close_thinking(
        self, *, thought: str | None = None, final: bool = False, error: str | None = None
    ) -> None:
        if not self._thinking:
            return
        self._thinking = False
        output = {"thought": thought or "", "final": final} if error is None else None
        self._send(
            EventType.THINKING_END,
            action="reasoning",
            output_data=output,
            error=_clip(error, 2000) if error else None,
            metadata={"step": self._step},
        )

    # --- tools -------------------------------------------------------------------------
    def _tool_started(self, ev: Any) -> None:
        self._open_tools += 1
        self._send(
            EventType.TOOL_START,
            action="tool_call",
            tool_name=_canonical_tool(ev.tool_name),
            input_data=_json_args(ev.tool_args),
            metadata={"attempt": ev.run_attempts},
        )

    def _tool_finished(self, ev: Any) -> None:
        self._open_tools = max(0, self._open_tools - 1)
        tool = _canonical_tool(ev.tool_name)
        output = _clip(ev.output)
        failure = getattr(ev, "failure", None)
        error = None
        if tool == TOOL_NAME and self.ctx.retrieval_error:
            error = self.ctx.retrieval_error
        elif failure is not None:
            error = _clip(getattr(failure, "message", failure), 2000)
        elapsed = (ev.finished_at - ev.started_at).total_seconds() * 1000
        self._send(
            EventType.TOOL_END,
            action="tool_call",
            tool_name=tool,
            input_data=_json_args(ev.tool_args),
            output_data=ToolResult(output).to_payload(),
            error=error,
            metadata=ToolTiming(round(elapsed, 2), ev.from_cache).to_payload(),
        )
        self._send(
            EventType.AGENT_OBSERVATION,
            action="observation",
            tool_name=tool,
            output_data={"observation": output},
        )

    def _tool_error(self, ev: Any) -> None:
        tool = _canonical_tool(ev.tool_name)
        error = _clip(ev.error, 2000)
        if ev.type == "tool_usage_error" and self._open_tools:
            self._open_tools -= 1
            self._send(
                EventType.TOOL_END,
                action="tool_call",
                tool_name=tool,
                input_data=_json_args(ev.tool_args),
                error=error,
            )
        self._send(EventType.AGENT_OBSERVATION, action="observation", tool_name=tool, error=error)
