"""The crew: one Legal Question Answering Agent, one task, one retrieval tool.

:class:`CrewRunner` implements :class:`legalstream.agent.api.AgentRunner`.
Each run builds fresh CrewAI objects (CrewAI mutates Crew, Agent, Task and
LLM, and no CrewAI event carries a run id), installs its own
:class:`~legalstream.agent.listener.EventTranslator` as a stream sink and its
own cancellation hooks in a private copy of the context, and kicks the crew
off synchronously in the calling worker thread. The CrewAI internals this
takes (stream sinks, scoped hooks, the lean crew) come from
:mod:`legalstream.agent.crewai_ext`.

Cancellation (CrewAI has no cancel API): a scoped before-LLM-call and
before-tool-call hook raises ``HookAborted`` once the run's flag is set, the
offline LLM checks the flag between chunks, and the listener forwards nothing
after it. A provider request in flight is cut off at once: each run's provider
calls go through its own :class:`~legalstream.agent.httpx_ext.AbortableClient`,
aborted when the flag is set (and when a call passes its whole-call deadline).
The runner then raises ``RunCancelled``.

Every answer is checked (:mod:`legalstream.agent.grounding`): each statement
must cite a passage of this run that supports it. A provider's answer that
fails gets one corrective retry (a second pass of the crew with the problems
and the passages); the offline backend's is deterministic and is not retried.
The outcome carries the check; ``runs.py`` turns a failed one into an
``ungrounded_answer`` or ``truncated_answer`` final frame with the draft.
"""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from typing import Any

from legalstream.agent import AGENT_NAME, TASK_NAME, TOOL_NAME, env
from legalstream.agent.api import (
    Cancellation,
    Emit,
    RunCancelled,
    RunFailed,
    RunOutcome,
    RunRequest,
)
from legalstream.events import ErrorCode, EventType

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

#: The offline backend reads this many times ``rag.top_k`` passages: it cannot
#: paraphrase nor search again in other words, so it needs the deeper list
#: (docs/agent.md: 59/59 eval answers over 10 passages, 54/59 over 5). A model
#: gets ``rag.top_k``, which keeps its prompt short.
OFFLINE_DEPTH = 2

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


def correction_description(
    query: str, case_id: Any, draft: str, problems: list[str], passages: str
) -> str:
    """The task of the corrective retry: what was wrong, and the passages to answer from."""
    listed = "\n".join(f"- {p}" for p in problems) or "- no statement cites a passage"
    return (
        (
            task_description(query, case_id)
            + "\n\nYour previous answer could not be verified against the retrieved passages:\n"
            + listed
            + "\nPrevious answer: "
            + " ".join(draft.split())[:1500]
            + "\n\nAnswer again using only the passages below. Follow every sentence with the [n] "
            "marker of the passage that states it, keep to the passage's own words, add nothing the "
            "passages do not say, and keep the answer short. If they do not answer the question, "
            "say so in one sentence.\n\n" + passages
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

        from legalstream.agent import (
            crewai_ext,
            grounding,
            httpx_ext,
            listener,
            provider_llm,
            providers,
            tools,
        )

        if crewai.__version__ != crewai_ext.CREWAI_VERSION:  # pragma: no cover - pinned
            log.warning(
                "legalstream.agent is tested with crewai %s, found %s",
                crewai_ext.CREWAI_VERSION,
                crewai.__version__,
            )
        crewai_ext.reuse_executor_state_class()
        self._crewai = crewai_ext
        self._grounding = grounding
        self._httpx = httpx_ext
        self._listener = listener
        self._provider_llm = provider_llm
        self._providers = providers
        self._tools = tools
        #: Shared by every run's translator: what /metrics reads through counters().
        self._translation_errors = listener.TranslationErrors()
        self.settings = settings
        self.engine = engine
        self.offline = providers.is_offline(settings)

    @property
    def model(self) -> str:
        return self._providers.model_name(self.settings)

    def counters(self) -> dict[str, dict[str, int]]:
        """:class:`~legalstream.agent.api.CountingRunner`: CrewAI events not translated, by type."""
        return {"translation_errors": self._translation_errors.counts()}

    def problem(self) -> str | None:
        """:class:`~legalstream.agent.api.CheckingRunner`: why the LLM setting cannot work."""
        return self._providers.config_problem(self.settings)

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
            top_k=self.settings.rag.top_k * (OFFLINE_DEPTH if self.offline else 1),
            mode=self.settings.rag.mode,
            cut_off=not self.offline,
        )
        translator = self._listener.EventTranslator(ctx, self._translation_errors)
        stop_watching = self._watch_cancel(ctx)
        try:
            answer = self._answer(
                ctx, translator if capture else None, task_description(request.query, ctx.case_id)
            )
            check = self._check(answer, ctx)
            retried = False
            if not check.grounded and not self.offline and not cancelled.is_set():
                retried = True
                problems = [self._describe(p) for p in check.problems]
                emit(
                    EventType.AGENT_OBSERVATION,
                    agent_name=AGENT_NAME,
                    task=TASK_NAME,
                    action="grounding_check",
                    output_data={
                        "observation": "The answer is not grounded; one corrective retry: "
                        + "; ".join(problems),
                        "grounding": check.grounding(
                            finish_reason=ctx.last_finish_reason
                        ).to_payload(),
                    },
                )
                ctx.last_finish_reason = None
                description = correction_description(
                    request.query,
                    ctx.case_id,
                    answer,
                    problems,
                    self._tools.format_observation(
                        ctx.case_id, sorted(ctx.by_marker().values(), key=lambda r: r.marker)
                    ),
                )
                answer = self._answer(ctx, translator if capture else None, description)
                check = self._check(answer, ctx)
        finally:
            stop_watching()
            if ctx.http is not None:
                ctx.http.close()
        if cancelled.is_set():
            raise RunCancelled()
        grounding = check.grounding(retried=retried, finish_reason=ctx.last_finish_reason)
        citations = check.citations()
        return RunOutcome(
            answer=answer,
            citations=citations,
            grounding=grounding.to_payload(),
            metadata={
                "model": self.model,
                "case_id": request.case_id,
                "llm_calls": ctx.llm_calls,
                "tool_calls": ctx.tool_calls,
                "retrieved": len(ctx.registry),
                "cited_markers": sorted({c["marker"] for c in citations}),
                "unknown_markers": sorted(
                    {p["marker"] for p in check.problems if p["kind"] == "unknown_marker"}
                ),
                "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

    # --- pieces --------------------------------------------------------------------------
    def _answer(self, ctx: Any, translator: Any, description: str) -> str:
        """One pass of the crew over ``description``: the answer text (or an exception)."""
        crew = self._build_crew(ctx, description)
        try:
            # A private context: our sink and hooks never leak into the worker
            # thread's own context, and every thread CrewAI starts inherits them.
            result = contextvars.copy_context().run(self._kickoff, crew, ctx, translator)
        except BaseException as exc:
            raise self._failure(exc, ctx, translator) from exc
        if ctx.cancelled.is_set():
            raise RunCancelled()
        return str(getattr(result, "raw", result) or "").strip()

    def _check(self, answer: str, ctx: Any) -> Any:
        return self._grounding.check_answer(
            answer,
            ctx.sources(),
            question=ctx.request.query,
            finish_reason=ctx.last_finish_reason,
        )

    @staticmethod
    def _describe(problem: dict[str, Any]) -> str:
        kind, text, marker = problem["kind"], problem.get("statement"), problem.get("marker")
        quoted = f' "{text[:200]}"' if text else ""
        return {
            "no_retrieval": "nothing was retrieved",
            "no_citation": "no statement cites a retrieved passage with its [n] marker",
            "unknown_marker": f"[{marker}] is not a retrieved passage{quoted}",
            "unsupported": f"passage [{marker}] does not say{quoted}",
            "uncited": f"no [n] marker after{quoted}",
            "truncated": "the answer was cut off at the token limit",
        }.get(kind, kind)

    def _watch_cancel(self, ctx: Any) -> Any:
        """Abort the run's provider requests the moment it is cancelled; returns the undo."""

        def abort() -> None:
            if ctx.http is not None:
                ctx.http.abort("run cancelled")

        if isinstance(ctx.cancelled, Cancellation):
            return ctx.cancelled.add_callback(abort)
        # A plain Event (tests, benches): a small watcher thread does the same.
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.05):
                if ctx.cancelled.is_set():
                    abort()
                    return

        if not self.offline:
            threading.Thread(target=watch, name="legalstream-cancel-watch", daemon=True).start()
        return done.set

    def _build_crew(self, ctx: Any, description: str) -> Any:
        from crewai import Agent, Process, Task

        if self.offline:
            llm = self._providers.make_llm(self.settings, ctx.cancelled)
        else:
            if ctx.http is None:
                opts = self.settings.llm_options
                ctx.http = self._httpx.AbortableClient(
                    deadline=opts.timeout or None, timeout=opts.timeout or None
                )
                if ctx.cancelled.is_set():
                    ctx.http.abort("run cancelled")
            inner = self._providers.make_llm(self.settings, ctx.cancelled, http=ctx.http)
            llm = self._provider_llm.RunProviderLLM.wrap(inner, ctx)
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
            description=description,
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
        aborted = getattr(ctx.http, "aborted", None)
        if aborted:
            message = aborted  # the whole-call deadline cut the request off
        # Anything that escapes the agent loop while (or right after) talking to the
        # model is the model's failure: a failed call, or a reply CrewAI cannot use.
        if (
            aborted
            or ctx.llm_error is not None
            or (translator is not None and translator.llm_open)
            or _looks_like_llm_error(exc)
        ):
            if translator is not None and (ctx.llm_error is None or translator.llm_open):
                translator.llm_error_synthetic(self.model, message)
            detail = aborted or ctx.llm_error or message
            return RunFailed(ErrorCode.LLM_FAILED.value, f"LLM call failed: {detail}")
        return exc


def _looks_like_llm_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    if module.startswith(("openai", "anthropic", "httpx", "httpcore", "litellm", "ollama")):
        return True
    text = str(exc).lower()
    return "llm" in text or "invalid response" in text
