"""A provider's LLM as one run uses it: retrieval first, tool calls written as text understood.

:class:`RunProviderLLM` is the ``BaseLLM`` the agent of a provider run gets. It
forwards every call to the provider's own LLM (``crewai.LLM(...)``: OpenAI,
any OpenAI-compatible server, Anthropic, ...) with two changes:

1. **Retrieval comes first.** The first call of a run makes no request: it
   answers with a call of the "RAG Legal Retrieval Tool" with the question as
   asked (a native tool call when CrewAI calls tools natively, a ReAct
   ``Action:`` otherwise). CrewAI runs the tool exactly as if the model had
   asked, so the tool and retrieval events stream as always, and the model's
   first request already has the passages to read. No model can answer
   without them, whatever it does with tools.
2. **Tool calls written as text are executed.** A reply that writes the call
   out (```json, ``<tool_call>``, a bare JSON object, ``Action:`` lines;
   :mod:`legalstream.agent.tool_text`) becomes the tool call it describes,
   instead of being taken for the final answer.

It also refuses to start a call once the run is cancelled. The offline
backend is not wrapped: its first step is the retrieval call by construction.
"""

from __future__ import annotations

import json
from typing import Any

from crewai import BaseLLM
from pydantic import PrivateAttr

from legalstream.agent import AGENT_NAME, TASK_NAME, TOOL_NAME, crewai_ext
from legalstream.agent.crewai_ext import HookAborted
from legalstream.agent.tool_text import TextToolCall, parse_tool_calls
from legalstream.events import EventType

__all__ = ["RunProviderLLM"]

#: Tool calls a run may make after the first one (CrewAI's max_iter bounds it too).
MAX_TEXT_TOOL_CALLS = 2
_ACTION_NAME = crewai_ext.tool_action_name(TOOL_NAME)
_FIRST_THOUGHT = (
    "Every answer must rest on the case record, so the case documents are searched "
    "first, with the question as asked."
)


def _ours(call: TextToolCall) -> bool:
    name = call.name.strip().lower()
    return (
        not name
        or name in {TOOL_NAME.lower(), _ACTION_NAME.lower(), "search", "retrieve"}
        or ("retriev" in name or "rag" in name.split("_"))
    )


class RunProviderLLM(BaseLLM):
    """One run's view of a provider LLM (see the module doc)."""

    llm_type: str = "legalstream-provider"

    _inner: Any = PrivateAttr(default=None)
    _ctx: Any = PrivateAttr(default=None)
    _calls: int = PrivateAttr(default=0)

    @classmethod
    def wrap(cls, inner: BaseLLM, ctx: Any) -> RunProviderLLM:
        llm = cls(
            model=inner.model,
            stream=inner.stream,
            temperature=inner.temperature,
            provider=inner.provider,
            max_tokens=inner.max_tokens,
            base_url=inner.base_url,
        )
        llm._inner = inner
        llm._ctx = ctx
        return llm

    @property
    def inner(self) -> BaseLLM:
        return self._inner

    # --- what CrewAI asks of an LLM: the provider's answers ------------------------------
    def supports_function_calling(self) -> bool:
        return bool(self._inner.supports_function_calling())

    def supports_stop_words(self) -> bool:
        return bool(self._inner.supports_stop_words())

    def get_context_window_size(self) -> int:
        return int(self._inner.get_context_window_size())

    def supports_multimodal(self) -> bool:
        return False

    def get_token_usage_summary(self) -> Any:
        return self._inner.get_token_usage_summary()

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> Any:
        ctx = self._ctx
        reason = ctx.stop_reason()
        if reason is not None:
            raise HookAborted(reason, source=crewai_ext.HOOK_SOURCE)
        native = bool(tools)
        if not ctx.retrieval_started:
            ctx.retrieval_started = True
            return self._first_retrieval(native)
        with crewai_ext.stop_override(self._inner, self.stop_sequences):
            response = self._inner.call(
                messages,
                tools=tools,
                callbacks=callbacks,
                available_functions=available_functions,
                from_task=from_task,
                from_agent=from_agent,
                response_model=response_model,
            )
        if not isinstance(response, str) or self._calls >= MAX_TEXT_TOOL_CALLS:
            return response
        # A native-tools LLM called without tools is asked for a final answer
        # (CrewAI's last iteration): text is then the answer, whatever it says.
        if not native and self._inner.supports_function_calling():
            return response
        if not native and "Final Answer:" in response:
            return response
        calls = [c for c in parse_tool_calls(response) if _ours(c)]
        if not calls:
            return response
        self._calls += 1
        return self._as_calls([c.arguments for c in calls[:1]], native, "The model wrote a "
                              "tool call as text; it is executed as one.")  # fmt: skip

    # --- pieces -------------------------------------------------------------------------
    def _first_retrieval(self, native: bool) -> Any:
        query = " ".join(str(self._ctx.request.query).split())
        return self._as_calls([{"query": query}], native, _FIRST_THOUGHT, forced=True)

    def _as_calls(
        self, arguments: list[dict[str, Any]], native: bool, thought: str, forced: bool = False
    ) -> Any:
        ctx = self._ctx
        calls = []
        for i, args in enumerate(arguments):
            query = args.get("query")
            args = {
                "query": query if isinstance(query, str) and query.strip() else ctx.request.query
            }
            ctx.emit(
                EventType.AGENT_ACTION,
                agent_name=AGENT_NAME,
                task=TASK_NAME,
                action="tool_call",
                tool_name=TOOL_NAME,
                input_data=args,
                output_data={"thought": thought, "forced": forced},
            )
            calls.append((f"call_legalstream_{ctx.tool_calls + i + 1}", args))
        if native:
            return [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": _ACTION_NAME, "arguments": json.dumps(args)},
                }
                for call_id, args in calls
            ]
        _call_id, args = calls[0]
        return (
            f"Thought: {thought}\nAction: {_ACTION_NAME}\n"
            f"Action Input: {json.dumps(args, ensure_ascii=False)}"
        )
