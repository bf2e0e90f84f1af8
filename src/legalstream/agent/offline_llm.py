"""The offline LLM: a CrewAI ``BaseLLM`` that answers extractively, without a model.

``OfflineExtractiveLLM`` is *not* a language model. It is deterministic and
speaks CrewAI's ReAct text protocol so the real agent loop runs without any
model or network:

1. First call (no observation yet): it thinks aloud and chooses the
   "RAG Legal Retrieval Tool" with the question, as asked, as query.
2. Next call (the tool's observation is in the conversation): it answers with
   :func:`legalstream.agent.extractive.extractive_answer` over the passages of
   the observation, verbatim, each statement followed by its ``[n]`` marker.

It emits CrewAI's LLM call started/completed/failed events and, when
streaming, one ``llm_stream_chunk`` per word, exactly like a provider would,
so the token path of the service is exercised end to end. The calls that do
so are CrewAI internals, made through :mod:`legalstream.agent.crewai_ext`.
Its answers are as good as the retrieval and the sentence picker: extractive,
never invented.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from crewai import BaseLLM
from pydantic import PrivateAttr

from legalstream.agent import TOOL_NAME, crewai_ext
from legalstream.agent.crewai_ext import HookAborted
from legalstream.agent.extractive import extractive_answer, signature_blocks, signature_question
from legalstream.agent.tools import PASSAGE_HEADER
from legalstream.events import TokenUsage

__all__ = ["OFFLINE_MODEL", "QUESTION_PREFIX", "OfflineExtractiveLLM", "parse_passages"]

OFFLINE_MODEL = "offline/extractive"

#: Marks the question line in the task description (see crew.py).
QUESTION_PREFIX = "Question: "


def parse_passages(observation: str) -> list[tuple[int, str]]:
    """``(marker, text)`` of each passage in a retrieval tool observation."""
    passages: list[tuple[int, str]] = []
    headers = list(PASSAGE_HEADER.finditer(observation))
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(observation)
        body = observation[match.end() : end]
        lines = [
            ln[2:] if ln.startswith("> ") else ln[1:]
            for ln in body.splitlines()
            if ln.startswith(">")
        ]
        # The last heading above the passage opens it, as a Markdown heading the
        # extractive reader knows: it can then name the section ("which defense").
        headings = [
            ln[len("Heading: ") :] for ln in body.splitlines() if ln.startswith("Heading: ")
        ]
        if headings:
            lines = [f"# {headings[-1].lstrip('#').strip()}", "", *lines]
        passages.append((int(match.group(1)), "\n".join(lines)))
    return passages


def _message_text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else message
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


class OfflineExtractiveLLM(BaseLLM):
    """Extractive offline backend: drives the CrewAI ReAct loop without a model."""

    llm_type: str = "offline"
    provider: str = "offline"
    max_sentences: int = 4
    #: Words per llm_stream_chunk when streaming.
    chunk_words: int = 1

    _cancelled: threading.Event | None = PrivateAttr(default=None)

    def bind_cancel(self, cancelled: threading.Event) -> OfflineExtractiveLLM:
        self._cancelled = cancelled
        return self

    # --- what CrewAI asks of an LLM -------------------------------------------------
    def supports_function_calling(self) -> bool:
        return False  # text ReAct: Thought / Action / Action Input / Final Answer

    def supports_stop_words(self) -> bool:
        return True

    def get_context_window_size(self) -> int:
        return 128_000

    def get_input_tokens_count(
        self, messages: Any, tools: Any = None, response_model: Any = None
    ) -> int:
        if isinstance(messages, str):
            return len(messages) // 4
        return sum(len(_message_text(m)) for m in messages) // 4

    def call(
        self,
        messages: Any,
        tools: Any = None,
        callbacks: Any = None,
        available_functions: Any = None,
        from_task: Any = None,
        from_agent: Any = None,
        response_model: Any = None,
    ) -> str:
        if self._cancelled is not None and self._cancelled.is_set():
            raise HookAborted("run cancelled", source="OfflineExtractiveLLM")
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        with crewai_ext.call_scope():
            crewai_ext.emit_call_started(
                self, messages=messages, tools=tools, callbacks=callbacks,
                available_functions=available_functions, from_task=from_task,
                from_agent=from_agent,
            )  # fmt: skip
            try:
                text = self._respond(messages)
                if crewai_ext.effective_stream(self):
                    self._stream(text, from_task, from_agent)
            except Exception as exc:
                if not isinstance(exc, HookAborted):
                    crewai_ext.emit_call_failed(
                        self,
                        error=f"{type(exc).__name__}: {exc}",
                        from_task=from_task,
                        from_agent=from_agent,
                    )
                raise
            prompt_tokens = self.get_input_tokens_count(messages)
            completion_tokens = len(text.split())
            usage = TokenUsage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=prompt_tokens + completion_tokens,
            ).to_payload()
            crewai_ext.track_token_usage(self, usage)
            crewai_ext.emit_call_completed(
                self, response=text, from_task=from_task, from_agent=from_agent,
                usage=usage, finish_reason="stop",
            )  # fmt: skip
            return text

    # --- the "reasoning" ----------------------------------------------------------------
    def _stream(self, text: str, from_task: Any, from_agent: Any) -> None:
        words = re.findall(r"\S+\s*", text)
        step = max(1, self.chunk_words)
        for i in range(0, len(words), step):
            if self._cancelled is not None and self._cancelled.is_set():
                raise HookAborted("run cancelled", source="OfflineExtractiveLLM")
            crewai_ext.emit_stream_chunk(
                self, "".join(words[i : i + step]), from_task=from_task, from_agent=from_agent
            )

    def _respond(self, messages: list[Any]) -> str:
        question = self._question(messages)
        observations = [
            _message_text(m) for m in messages
            if isinstance(m, dict) and m.get("role") != "system" and "Passage [" in _message_text(m)
        ]  # fmt: skip
        searches = sum(
            1
            for m in messages
            if isinstance(m, dict)
            and m.get("role") == "assistant"
            and "Action:" in _message_text(m)
        )
        if not observations and not searches:
            # The question as asked: the hybrid retrieval is tuned and evaluated on whole
            # questions, and the dense half reads a trailing "?" as part of the intent.
            query = " ".join(question.split())
            return _action(
                "I must ground the answer in the case record, so I will search the case "
                "documents first.",
                query,
            )
        passages: dict[int, str] = {}
        for observation in observations:  # markers are the run's: one passage each
            passages.update(parse_passages(observation))
        if (
            searches == 1
            and signature_question(question)
            and signature_blocks(list(passages.items())) < 2
        ):
            # Who signed is in the signature blocks (an agreement has two or more),
            # which a question rarely matches: search for them by their own words.
            return _action(
                "The passages do not show the signature blocks; I will search for them.",
                f"{' '.join(question.split())} By: /s/ Name: Title:",
            )
        answer = extractive_answer(question, sorted(passages.items()), self.max_sentences)
        if not answer:
            answer = (
                "The retrieved documents of this case do not contain a passage that "
                "answers the question."
            )
            thought = "The retrieved passages do not address the question."
        else:
            thought = "I now know the final answer"
        return f"Thought: {thought}\nFinal Answer: {answer}"

    @staticmethod
    def _question(messages: list[Any]) -> str:
        for m in messages:
            text = _message_text(m)
            for line in text.splitlines():
                if line.startswith(QUESTION_PREFIX):
                    return line[len(QUESTION_PREFIX) :].strip()
        return _message_text(messages[-1])[-500:]


def _action(thought: str, query: str) -> str:
    return (
        f"Thought: {thought}\n"
        f"Action: {crewai_ext.tool_action_name(TOOL_NAME)}\n"
        f'Action Input: {{"query": {_json_str(query)}}}'
    )


def _json_str(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
