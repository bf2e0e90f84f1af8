"""The crew: one Legal Question Answering Agent, one task, one retrieval tool.

:class:`CrewRunner` implements :class:`legalstream.agent.api.AgentRunner`.
Each run builds fresh CrewAI objects (CrewAI mutates Crew, Agent, Task and
LLM, and no CrewAI event carries a run id), installs its own
:class:`~legalstream.agent.listener.EventTranslator` as a stream sink and its
own cancellation hooks in a private copy of the context, and kicks the crew
off synchronously in the calling worker thread. The CrewAI internals this
takes (stream sinks, scoped hooks, the lean crew) come from
:mod:`legalstream.agent.crewai_ext`.

Cancellation is cooperative (CrewAI has no cancel API): a scoped
before-LLM-call and before-tool-call hook raises ``HookAborted`` once the run's
flag is set, the offline LLM checks the flag between chunks, and the listener
forwards nothing after it. The runner then raises ``RunCancelled``.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from typing import Any

from legalstream.agent import AGENT_NAME, TASK_NAME, TOOL_NAME, env
from legalstream.agent.api import Emit, RunCancelled, RunFailed, RunOutcome, RunRequest
from legalstream.events import ErrorCode

log = logging.getLogger(__name__)

ROLE = AGENT_NAME
GOAL = (
    "Answer questions about a litigation case file accurately, using only the case's own "
    "documents, and support every statement with a citation to the passage it rests on."
)
BACKSTORY = (
    "You are a careful litigation associate. You read the pleadings, motions, orders, "
    "deposition transcripts and exhibits of the case before you answer; you quote rather "
    "than paraphrase when precision matters; you never rely on facts outside the record "
    "or on another matter's documents; and when the record does not answer a question "
    "you say so plainly instead of guessing."
)
EXPECTED_OUTPUT = (
    "A concise answer in plain prose. Every statement is followed by the [n] marker of "
    "the retrieved passage that supports it, e.g. 'The agreement was signed on March 14, "
    "2022 [1].' Cite only passages returned by the RAG Legal Retrieval Tool."
)

_MARKERS = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")


def task_description(query: str, case_id: Any) -> str:
    from legalstream.agent.offline_llm import QUESTION_PREFIX

    question = " ".join(query.split())
    return (
        (
            f"Answer a legal question about case {case_id}, using only the documents of that case.\n"
            f"{QUESTION_PREFIX}{question}\n"
            f"First search the case documents with the {TOOL_NAME}. Then answer, following each "
            "statement with the [n] marker of the passage it comes from. Do not cite anything "
            "you did not retrieve. If the documents do not answer the question, say so."
        )
        .replace("{", "(")
        .replace("}", ")")
    )


def cited_markers(answer: str) -> list[int]:
    seen: list[int] = []
    for group in _MARKERS.findall(answer):
        for part in re.split(r"\s*[,;]\s*", group):
            n = int(part)
            if n not in seen:
                seen.append(n)
    return seen


class CrewRunner:
    """AgentRunner over a fresh CrewAI crew per run."""

    def __init__(self, settings: Any, engine: Any) -> None:
        env.configure(
            storage_dir=settings.rag.data_dir / "crewai",
            telemetry=bool(getattr(settings, "crewai_telemetry", False)),
        )
        # Import CrewAI once per process, here, never per request.
        import crewai

        from legalstream.agent import crewai_ext, listener, providers, tools

        if crewai.__version__ != crewai_ext.CREWAI_VERSION:  # pragma: no cover - pinned
            log.warning(
                "legalstream.agent is tested with crewai %s, found %s",
                crewai_ext.CREWAI_VERSION,
                crewai.__version__,
            )
        crewai_ext.reuse_executor_state_class()
        self._crewai = crewai_ext
        self._listener = listener
        self._providers = providers
        self._tools = tools
        #: Shared by every run's translator: what /metrics reads through counters().
        self._translation_errors = listener.TranslationErrors()
        self.settings = settings
        self.engine = engine

    @property
    def model(self) -> str:
        return self._providers.model_name(self.settings)

    def counters(self) -> dict[str, dict[str, int]]:
        """:class:`~legalstream.agent.api.CountingRunner`: CrewAI events not translated, by type."""
        return {"translation_errors": self._translation_errors.counts()}

    # --- AgentRunner ---------------------------------------------------------------------
    def run(
        self,
        request: RunRequest,
        emit: Emit,
        cancelled: threading.Event,
        *,
        capture: bool = True,
    ) -> RunOutcome:
        """Answer ``request``; ``capture=False`` skips event capture (bench only)."""
        if cancelled.is_set():
            raise RunCancelled()
        started = time.perf_counter()
        ctx = self._tools.RunContext(
            request=request,
            emit=emit,
            cancelled=cancelled,
            top_k=self.settings.rag.top_k,
            mode=self.settings.rag.mode,
        )
        translator = self._listener.EventTranslator(ctx, self._translation_errors)
        crew = self._build_crew(ctx)
        try:
            # A private context: our sink and hooks never leak into the worker
            # thread's own context, and every thread CrewAI starts inherits them.
            result = contextvars.copy_context().run(
                self._kickoff, crew, ctx, translator if capture else None
            )
        except BaseException as exc:
            raise self._failure(exc, ctx, translator) from exc
        if cancelled.is_set():
            raise RunCancelled()
        answer = str(getattr(result, "raw", result) or "").strip()
        citations, markers, unknown = self._citations(answer, ctx)
        return RunOutcome(
            answer=answer,
            citations=citations,
            metadata={
                "model": self.model,
                "case_id": request.case_id,
                "llm_calls": ctx.llm_calls,
                "tool_calls": ctx.tool_calls,
                "retrieved": len(ctx.registry),
                "cited_markers": markers,
                "unknown_markers": unknown,
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    # --- pieces --------------------------------------------------------------------------
    def _build_crew(self, ctx: Any) -> Any:
        from crewai import Agent, Process, Task

        llm = self._providers.make_llm(self.settings, ctx.cancelled)
        tool = self._tools.RAGLegalRetrievalTool(self.engine, ctx)
        agent = Agent(
            role=ROLE,
            goal=GOAL,
            backstory=BACKSTORY,
            llm=llm,
            tools=[tool],
            allow_delegation=False,
            max_iter=4,
            max_retry_limit=0,
            cache=False,
            verbose=False,
        )
        task = Task(
            name=TASK_NAME,
            description=task_description(ctx.request.query, ctx.case_id),
            expected_output=EXPECTED_OUTPUT,
            agent=agent,
        )
        return self._crewai.LeanCrew(
            agents=[agent], tasks=[task], process=Process.sequential, verbose=False
        )

    def _kickoff(self, crew: Any, ctx: Any, translator: Any) -> Any:
        token = self._crewai.add_sink(translator) if translator is not None else None
        try:
            with self._crewai.guarded_calls(ctx.stop_reason):
                return crew.kickoff()
        finally:
            if token is not None:
                self._crewai.remove_sink(token)

    def _failure(self, exc: BaseException, ctx: Any, translator: Any) -> BaseException:
        if isinstance(exc, RunCancelled | RunFailed):
            return exc
        if ctx.cancelled.is_set():
            return RunCancelled()
        if ctx.retrieval_error is not None:
            return RunFailed(
                ErrorCode.RETRIEVAL_FAILED.value, f"retrieval failed: {ctx.retrieval_error}"
            )
        if not isinstance(exc, Exception):
            return exc  # KeyboardInterrupt, SystemExit
        message = f"{type(exc).__name__}: {exc}"
        # Anything that escapes the agent loop while (or right after) talking to the
        # model is the model's failure: a failed call, or a reply CrewAI cannot use.
        if ctx.llm_error is not None or translator.llm_open or _looks_like_llm_error(exc):
            if ctx.llm_error is None or translator.llm_open:
                translator.llm_error_synthetic(self.model, message)
            return RunFailed(
                ErrorCode.LLM_FAILED.value, f"LLM call failed: {ctx.llm_error or message}"
            )
        return exc

    def _citations(
        self, answer: str, ctx: Any
    ) -> tuple[list[dict[str, Any]], list[int], list[int]]:
        by_marker = ctx.by_marker()
        markers = cited_markers(answer)
        cited = [by_marker[m] for m in markers if m in by_marker]
        unknown = [m for m in markers if m not in by_marker]
        if not cited:  # the model cited nothing usable: cite what it was given
            cited = sorted(by_marker.values(), key=lambda r: r.marker)
        return [self._tools.hit_dict(r) for r in cited], [r.marker for r in cited], unknown


def _looks_like_llm_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    if module.startswith(("openai", "anthropic", "httpx", "httpcore", "litellm", "ollama")):
        return True
    text = str(exc).lower()
    return "llm" in text or "invalid response" in text
