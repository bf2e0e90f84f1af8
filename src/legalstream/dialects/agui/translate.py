"""A run's events as AG-UI 1.0 events: one seed event becomes a group of zero or more.

:class:`AguiTranslator` is deterministic: the same run events, in seq order,
always give the same AG-UI events with the same ids and timestamps. Resume
relies on that (it translates a run again from seq 1 to know what was open at
the cut), so nothing here reads a clock, a random source or a counter shared
between runs.

The mapping (docs/agui.md has the table and the ``CUSTOM`` event schemas):

* ``query_received`` → ``RUN_STARTED``; the final frame → ``RUN_FINISHED``
  (``result: {answer, citations, grounding}``, token ``usage`` per model) or
  ``RUN_ERROR`` (``code`` is the run's error code; an answer that failed its
  grounding check, codes ``ungrounded_answer`` / ``truncated_answer``, comes
  as ``metadata: {answer, citations, grounding, unverified: true}`` after a
  ``legalstream.citations`` event marked ``unverified``);
* ``agent_start``/``agent_end``, each LLM call and each retrieval →
  ``STEP_STARTED``/``STEP_FINISHED``;
* ``thinking_start``/``thinking_end`` → ``REASONING_START``/``REASONING_END``;
  an LLM call's text before ``Final Answer:`` (and tokens flagged
  ``thinking``) → ``REASONING_MESSAGE_*``; the text after it, and tokens
  outside any reasoning step → ``TEXT_MESSAGE_*`` (the answer);
* ``tool_start`` → ``TOOL_CALL_START``/``ARGS``/``END``; ``tool_end`` →
  ``TOOL_CALL_RESULT``;
* ``rag_query_end`` → ``CUSTOM`` ``legalstream.retrieval`` (the hits); the
  final answer's citations → ``CUSTOM`` ``legalstream.citations``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from ag_ui.core import (
    BaseEvent,
    CustomEvent,
    ReasoningEndEvent,
    ReasoningMessageContentEvent,
    ReasoningMessageEndEvent,
    ReasoningMessageStartEvent,
    ReasoningStartEvent,
    RunErrorEvent,
    RunFinishedEvent,
    RunFinishedSuccessOutcome,
    RunStartedEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
    TokenUsage,
    ToolCallArgsEvent,
    ToolCallEndEvent,
    ToolCallResultEvent,
    ToolCallStartEvent,
)

from legalstream.events import UNVERIFIED_CODES, Event, EventType, FinalAnswer

#: Where an LLM call's reasoning ends and its answer begins (the ReAct format
#: CrewAI asks the model for).
ANSWER_MARKER = "Final Answer:"

#: ``CUSTOM`` event names (docs/agui.md, "Custom events").
RETRIEVAL_EVENT = "legalstream.retrieval"
CITATIONS_EVENT = "legalstream.citations"

#: ``RUN_ERROR.code`` when the events after a resume position are no longer held.
RESUME_FAILED = "resume_failed"

#: The step name of the agent itself when its frame names none.
DEFAULT_AGENT = "Legal Question Answering Agent"


class AguiTranslator:
    """Translate one run's events, in seq order, into AG-UI events."""

    def __init__(self, run_id: str, thread_id: str) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        #: RUN_FINISHED or RUN_ERROR was produced: later events translate to nothing.
        self.ended = False
        self._agent_step: str | None = None
        self._llm_calls = 0
        self._llm_step: str | None = None
        self._retrievals = 0
        self._retrieval_step: str | None = None
        self._reasoning_steps = 0
        self._span: str | None = None
        self._thought: str | None = None
        self._answers = 0
        self._answer: str | None = None
        #: Text of the open LLM call held back because it may be the start of the marker.
        self._pending = ""
        #: The open LLM call's text is the answer now (its marker was seen).
        self._answering = False
        self._answer_started = False
        self._tool_calls = 0
        #: Tool calls that have no TOOL_CALL_RESULT yet, oldest first.
        self._awaiting_result: list[str] = []
        #: model -> [input, output, total] tokens of the run's LLM calls.
        self._usage: dict[str, list[int]] = {}
        self._handlers: dict[EventType, Callable[[Event, int], list[BaseEvent]]] = {
            EventType.QUERY_RECEIVED: self._query_received,
            EventType.AGENT_START: self._agent_start,
            EventType.AGENT_END: self._agent_end,
            EventType.THINKING_START: self._thinking_start,
            EventType.THINKING_END: self._thinking_end,
            EventType.LLM_START: self._llm_start,
            EventType.LLM_STREAM_CHUNK: self._llm_chunk,
            EventType.LLM_END: self._llm_end,
            EventType.LLM_ERROR: self._llm_end,
            EventType.TOOL_START: self._tool_start,
            EventType.TOOL_END: self._tool_end,
            EventType.RAG_QUERY_START: self._retrieval_start,
            EventType.RAG_QUERY_END: self._retrieval_end,
            EventType.AGENT_EXECUTION_COMPLETE: self._complete,
            EventType.AGENT_EXECUTION_ERROR: self._error,
            EventType.RESUME_FAILED: self._resume_failed,
        }

    def translate(self, event: Event) -> list[BaseEvent]:
        """The AG-UI events of one run event (often none, sometimes several)."""
        if self.ended:
            return []
        handler = self._handlers.get(event.type)
        if handler is None:
            return []
        return handler(event, int(event.timestamp * 1000))

    # -- run ------------------------------------------------------------------------

    def _query_received(self, event: Event, ts: int) -> list[BaseEvent]:
        return [RunStartedEvent(thread_id=self.thread_id, run_id=self.run_id, timestamp=ts)]

    def _complete(self, event: Event, ts: int) -> list[BaseEvent]:
        output = event.output_data or {}
        answer = output.get("answer") if isinstance(output.get("answer"), str) else ""
        citations = output.get("citations") if isinstance(output.get("citations"), list) else []
        out = self._close_everything(ts)
        if self._answers == 0 and answer:
            # No answer text was streamed (a provider that answers without the
            # ReAct marker, or a run without token events): send it whole.
            message_id = self._next_answer_id()
            out += [
                TextMessageStartEvent(message_id=message_id, role="assistant", timestamp=ts),
                TextMessageContentEvent(message_id=message_id, delta=answer, timestamp=ts),
                TextMessageEndEvent(message_id=message_id, timestamp=ts),
            ]
        out.append(CustomEvent(name=CITATIONS_EVENT, value={"citations": citations}, timestamp=ts))
        result: dict[str, Any] = {"answer": answer, "citations": citations}
        if isinstance(output.get("grounding"), dict):
            result["grounding"] = output["grounding"]
        usage = [
            TokenUsage(model=model, input_tokens=i, output_tokens=o, total_tokens=t)
            for model, (i, o, t) in self._usage.items()
        ]
        out.append(
            RunFinishedEvent(
                thread_id=self.thread_id,
                run_id=self.run_id,
                result=result,
                outcome=RunFinishedSuccessOutcome(),
                usage=usage or None,
                timestamp=ts,
            )
        )
        self.ended = True
        return out

    def _error(self, event: Event, ts: int) -> list[BaseEvent]:
        self.ended = True
        code = event.code or (event.metadata or {}).get("code") or "agent_failed"
        message = event.error or "run failed"
        if code not in UNVERIFIED_CODES or not isinstance(event.output_data, dict):
            return [RunErrorEvent(message=message, code=str(code), timestamp=ts)]
        # An answer that failed its grounding check: delivered, marked unverified.
        draft = {**FinalAnswer.from_payload(event.output_data).to_payload(), "unverified": True}
        out = self._close_everything(ts)
        out.append(
            CustomEvent(
                name=CITATIONS_EVENT,
                value={"citations": draft["citations"], "unverified": True},
                timestamp=ts,
            )
        )
        out.append(RunErrorEvent(message=message, code=str(code), metadata=draft, timestamp=ts))
        return out

    def _resume_failed(self, event: Event, ts: int) -> list[BaseEvent]:
        self.ended = True
        return [
            RunErrorEvent(
                message=event.error or "events of this run are no longer in history",
                code=RESUME_FAILED,
                metadata=event.metadata,
                timestamp=ts,
            )
        ]

    def _close_everything(self, ts: int) -> list[BaseEvent]:
        """Close what is open, innermost first: RUN_FINISHED needs nothing open."""
        out = self._close_llm_text(ts)
        if self._span is not None:
            out.append(ReasoningEndEvent(message_id=self._span, timestamp=ts))
            self._span = None
        for tool_call_id in self._awaiting_result:
            out.append(self._result(tool_call_id, "", ts))
        self._awaiting_result.clear()
        for step in (self._retrieval_step, self._llm_step, self._agent_step):
            if step is not None:
                out.append(StepFinishedEvent(step_name=step, timestamp=ts))
        self._retrieval_step = self._llm_step = self._agent_step = None
        return out

    # -- steps -----------------------------------------------------------------------

    def _agent_start(self, event: Event, ts: int) -> list[BaseEvent]:
        if self._agent_step is not None:
            return []
        self._agent_step = event.agent_name or DEFAULT_AGENT
        return [StepStartedEvent(step_name=self._agent_step, timestamp=ts)]

    def _agent_end(self, event: Event, ts: int) -> list[BaseEvent]:
        if self._agent_step is None:
            return []
        step, self._agent_step = self._agent_step, None
        return [StepFinishedEvent(step_name=step, timestamp=ts)]

    # -- reasoning and the answer --------------------------------------------------------

    def _thinking_start(self, event: Event, ts: int) -> list[BaseEvent]:
        out = self._close_reasoning(ts)
        self._reasoning_steps += 1
        self._span = f"{self.run_id}:reasoning:{self._reasoning_steps}"
        out.append(ReasoningStartEvent(message_id=self._span, timestamp=ts))
        return out

    def _thinking_end(self, event: Event, ts: int) -> list[BaseEvent]:
        return self._close_reasoning(ts)

    def _close_reasoning(self, ts: int) -> list[BaseEvent]:
        out = self._flush(ts)
        if self._thought is not None:
            out.append(ReasoningMessageEndEvent(message_id=self._thought, timestamp=ts))
            self._thought = None
        if self._span is not None:
            out.append(ReasoningEndEvent(message_id=self._span, timestamp=ts))
            self._span = None
        return out

    def _llm_start(self, event: Event, ts: int) -> list[BaseEvent]:
        out = self._close_llm_text(ts)
        if self._llm_step is not None:
            out.append(StepFinishedEvent(step_name=self._llm_step, timestamp=ts))
        self._llm_calls += 1
        self._llm_step = f"llm_call_{self._llm_calls}"
        self._answering = False
        meta = event.metadata or {}
        out.append(
            StepStartedEvent(
                step_name=self._llm_step,
                metadata=_present(model=meta.get("model"), call_id=meta.get("call_id")),
                timestamp=ts,
            )
        )
        return out

    def _llm_end(self, event: Event, ts: int) -> list[BaseEvent]:
        out = self._close_llm_text(ts)
        meta = event.metadata or {}
        self._add_usage(meta.get("model"), meta.get("usage"))
        if self._llm_step is not None:
            if event.type is EventType.LLM_ERROR:
                info = _present(
                    model=meta.get("model"), call_id=meta.get("call_id"), error=event.error
                )
            else:
                info = _present(
                    model=meta.get("model"),
                    call_id=meta.get("call_id"),
                    usage=meta.get("usage"),
                    finish_reason=meta.get("finish_reason"),
                )
            out.append(StepFinishedEvent(step_name=self._llm_step, metadata=info, timestamp=ts))
            self._llm_step = None
        return out

    def _close_llm_text(self, ts: int) -> list[BaseEvent]:
        """The end of an LLM call's text: flush held text, close its messages."""
        out = self._flush(ts)
        if self._thought is not None:
            out.append(ReasoningMessageEndEvent(message_id=self._thought, timestamp=ts))
            self._thought = None
        if self._answer is not None:
            out.append(TextMessageEndEvent(message_id=self._answer, timestamp=ts))
            self._answer = None
        self._answering = False
        return out

    def _llm_chunk(self, event: Event, ts: int) -> list[BaseEvent]:
        chunk = (event.output_data or {}).get("chunk")
        if not isinstance(chunk, str) or not chunk:
            return []
        if (event.metadata or {}).get("thinking"):
            return self._reason(chunk, ts)
        if self._answering or self._span is None:
            return self._say(chunk, ts)
        text = self._pending + chunk
        self._pending = ""
        at = text.find(ANSWER_MARKER)
        if at >= 0:
            out = self._reason(text[:at], ts)
            if self._thought is not None:
                out.append(ReasoningMessageEndEvent(message_id=self._thought, timestamp=ts))
                self._thought = None
            self._answering = True
            self._answer_started = False
            return out + self._say(text[at + len(ANSWER_MARKER) :], ts)
        hold = _marker_prefix(text)
        self._pending = text[len(text) - hold :] if hold else ""
        return self._reason(text[: len(text) - hold], ts)

    def _flush(self, ts: int) -> list[BaseEvent]:
        pending, self._pending = self._pending, ""
        return self._reason(pending, ts)

    def _reason(self, text: str, ts: int) -> list[BaseEvent]:
        if not text:
            return []
        out: list[BaseEvent] = []
        if self._span is None:  # reasoning tokens outside a thinking step
            self._reasoning_steps += 1
            self._span = f"{self.run_id}:reasoning:{self._reasoning_steps}"
            out.append(ReasoningStartEvent(message_id=self._span, timestamp=ts))
        if self._thought is None:
            self._thought = f"{self._span}:message"
            out.append(
                ReasoningMessageStartEvent(message_id=self._thought, role="reasoning", timestamp=ts)
            )
        out.append(ReasoningMessageContentEvent(message_id=self._thought, delta=text, timestamp=ts))
        return out

    def _say(self, text: str, ts: int) -> list[BaseEvent]:
        if not self._answer_started:
            text = text.lstrip()
        if not text:
            return []
        self._answer_started = True
        out: list[BaseEvent] = []
        if self._answer is None:
            self._answer = self._next_answer_id()
            out.append(
                TextMessageStartEvent(message_id=self._answer, role="assistant", timestamp=ts)
            )
        out.append(TextMessageContentEvent(message_id=self._answer, delta=text, timestamp=ts))
        return out

    def _next_answer_id(self) -> str:
        self._answers += 1
        return f"{self.run_id}:answer:{self._answers}"

    def _add_usage(self, model: Any, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        counts = [_count(usage, "prompt_tokens"), _count(usage, "completion_tokens")]
        total = _count(usage, "total_tokens") or sum(counts)
        into = self._usage.setdefault(str(model or "unknown"), [0, 0, 0])
        for i, value in enumerate((*counts, total)):
            into[i] += value

    # -- the retrieval tool ----------------------------------------------------------------

    def _tool_start(self, event: Event, ts: int) -> list[BaseEvent]:
        self._tool_calls += 1
        tool_call_id = f"{self.run_id}:tool:{self._tool_calls}"
        self._awaiting_result.append(tool_call_id)
        args = orjson.dumps(event.input_data or {}, option=orjson.OPT_NON_STR_KEYS).decode()
        name = event.tool_name or "tool"
        return [
            ToolCallStartEvent(tool_call_id=tool_call_id, tool_call_name=name, timestamp=ts),
            ToolCallArgsEvent(tool_call_id=tool_call_id, delta=args, timestamp=ts),
            ToolCallEndEvent(tool_call_id=tool_call_id, timestamp=ts),
        ]

    def _tool_end(self, event: Event, ts: int) -> list[BaseEvent]:
        if not self._awaiting_result:
            return []
        tool_call_id = self._awaiting_result.pop(0)
        output = event.output_data or {}
        result = output.get("result")
        if event.error:
            content = event.error
        elif isinstance(result, str):
            content = result
        else:
            content = (
                orjson.dumps(output, option=orjson.OPT_NON_STR_KEYS).decode() if output else ""
            )
        return [self._result(tool_call_id, content, ts)]

    def _result(self, tool_call_id: str, content: str, ts: int) -> ToolCallResultEvent:
        return ToolCallResultEvent(
            message_id=f"{tool_call_id}:result",
            tool_call_id=tool_call_id,
            content=content,
            role="tool",
            timestamp=ts,
        )

    def _retrieval_start(self, event: Event, ts: int) -> list[BaseEvent]:
        out: list[BaseEvent] = []
        if self._retrieval_step is not None:
            out.append(StepFinishedEvent(step_name=self._retrieval_step, timestamp=ts))
        self._retrievals += 1
        self._retrieval_step = f"retrieval_{self._retrievals}"
        out.append(StepStartedEvent(step_name=self._retrieval_step, timestamp=ts))
        return out

    def _retrieval_end(self, event: Event, ts: int) -> list[BaseEvent]:
        request = event.input_data or {}
        output = event.output_data or {}
        meta = event.metadata or {}
        value = {
            "query": request.get("query"),
            "case_id": request.get("case_id"),
            "k": request.get("k"),
            "mode": request.get("mode"),
            "count": output.get("count", len(output.get("hits") or [])),
            "hits": output.get("hits") or [],
            "elapsed_ms": meta.get("elapsed_ms"),
            "error": event.error,
        }
        out: list[BaseEvent] = [CustomEvent(name=RETRIEVAL_EVENT, value=value, timestamp=ts)]
        if self._retrieval_step is not None:
            out.append(StepFinishedEvent(step_name=self._retrieval_step, timestamp=ts))
            self._retrieval_step = None
        return out


def _marker_prefix(text: str) -> int:
    """Length of the longest end of ``text`` that the marker starts with."""
    for size in range(min(len(text), len(ANSWER_MARKER) - 1), 0, -1):
        if ANSWER_MARKER.startswith(text[-size:]):
            return size
    return 0


def _present(**fields: Any) -> dict[str, Any] | None:
    """The fields that have a value (``None`` when none has)."""
    return {key: value for key, value in fields.items() if value is not None} or None


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
