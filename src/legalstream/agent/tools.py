"""The "RAG Legal Retrieval Tool" and the per-run state it shares with the crew.

One :class:`RunContext` and one tool instance are built per run. The tool
searches the retrieval engine filtered to the run's case (the model cannot
choose another case: the case is not a tool argument), emits
``rag_query_start``/``rag_query_end`` on the emitting thread, and numbers each
retrieved chunk in a per-run registry. Those numbers are the ``[n]`` citation
markers the model is asked to use, so every citation of a run maps back to a
chunk that run actually retrieved.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from crewai.tools import BaseTool
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from legalstream.agent import AGENT_NAME, TASK_NAME, TOOL_NAME
from legalstream.agent.api import Emit, RunRequest
from legalstream.events import CitationPayload, EventType, RagQuery, RagResult, RagTiming

#: Marker of a passage header in the tool's observation text (parsed by the offline LLM).
PASSAGE_HEADER = re.compile(r"^Passage \[(\d+)\] (.*)$", re.MULTILINE)


@dataclass(slots=True)
class Retrieved:
    marker: int
    citation: Any  # legalstream.rag.citations.Citation


@dataclass
class RunContext:
    """Everything one run's crew, tool, LLM and listener share."""

    request: RunRequest
    emit: Emit
    cancelled: threading.Event
    top_k: int | None = None
    mode: str | None = None
    #: Let the engine drop passages far behind the best (a model's prompt stays
    #: short); False for a reader that weighs passages itself (the offline one).
    cut_off: bool = True
    #: chunk_id -> Retrieved, in the order chunks were first retrieved.
    registry: dict[str, Retrieved] = field(default_factory=dict)
    retrieval_error: str | None = None
    llm_error: str | None = None
    tool_calls: int = 0
    llm_calls: int = 0
    #: The run's first retrieval was made (or forced): see provider_llm.py.
    retrieval_started: bool = False
    #: ``finish_reason`` of the last LLM call that completed (``"length"``: cut off).
    last_finish_reason: str | None = None
    #: The run's abortable HTTP client for provider calls (httpx_ext.AbortableClient).
    http: Any = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def case_id(self) -> Any:
        return self.request.case_id

    def register(self, citations: list[Any]) -> list[Retrieved]:
        """Number ``citations`` (stable per chunk within the run)."""
        out: list[Retrieved] = []
        with self.lock:
            for cit in citations:
                item = self.registry.get(cit.chunk_id)
                if item is None:
                    item = Retrieved(len(self.registry) + 1, cit)
                    self.registry[cit.chunk_id] = item
                out.append(item)
        return out

    def by_marker(self) -> dict[int, Retrieved]:
        with self.lock:
            return {r.marker: r for r in self.registry.values()}

    def sources(self) -> dict[int, Any]:
        """The run's passages as the grounding check reads them, by marker."""
        from legalstream.agent.grounding import Source

        return {
            r.marker: Source(r.marker, r.citation.quote, r.citation.char_start, r.citation)
            for r in self.by_marker().values()
        }

    def stop_reason(self) -> str | None:
        """Why no further LLM or tool call may start, if one must not."""
        if self.cancelled.is_set():
            return "run cancelled"
        if self.retrieval_error is not None:
            return f"retrieval failed: {self.retrieval_error}"
        return None


class RetrievalInput(BaseModel):
    query: str = Field(
        ...,
        description="A focused search query about the case, e.g. the legal question "
        "restated with its key terms (parties, clause, date, claim).",
    )


def format_observation(case_id: Any, hits: list[Retrieved]) -> str:
    """The tool result the model reads: numbered passages, quote lines prefixed "> ",
    each after its ``Heading:`` and ``Lead-in:`` lines (context, not the passage)."""
    if not hits:
        return f"No passages of case {case_id} matched the query."
    lines = [
        f"Retrieved {len(hits)} passages from the documents of case {case_id}. "
        "Cite each statement with the [n] marker of the passage it comes from.",
        "",
    ]
    for item in hits:
        cit = item.citation
        where = [cit.title]
        if cit.section:
            where.append(str(cit.section))
        if cit.page is not None:
            where.append(f"p. {cit.page}")
        lines.append(f"Passage [{item.marker}] " + " — ".join(where))
        # The heading the passage sits under, and the lead-in it continues: the
        # passage alone is a clause, which these say how to read.
        for ctx in getattr(cit, "context", ()):
            label = "Heading" if ctx.role == "heading" else "Lead-in"
            lines.append(f"{label}: {' '.join(ctx.quote.split())}")
        lines.extend("> " + line for line in cit.quote.splitlines())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def hit_dict(item: Retrieved) -> dict[str, Any]:
    """The wire form of a retrieved chunk: its citation payload with its ``[n]`` marker."""
    return CitationPayload.of(item.citation, item.marker).to_payload()


class RAGLegalRetrievalTool(BaseTool):
    """Search the run's case file; one instance per run."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = TOOL_NAME
    description: str = (
        "Searches the documents of the current case (pleadings, motions, orders, "
        "depositions, exhibits) and returns the most relevant passages, each with a "
        "[n] marker, its document title, section and page. Use it before answering."
    )
    args_schema: type[BaseModel] = RetrievalInput
    cache_function: Any = lambda _args=None, _result=None: False

    _engine: Any = PrivateAttr()
    _ctx: RunContext = PrivateAttr()

    def __init__(self, engine: Any, ctx: RunContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._engine = engine
        self._ctx = ctx

    def _run(self, query: str, **_: Any) -> str:
        ctx = self._ctx
        if ctx.cancelled.is_set():  # cancelled between the tool hook and here
            return "The run was cancelled; no search was made."
        query = " ".join(str(query).split())[:1000]
        ctx.tool_calls += 1
        ctx.retrieval_started = True
        request = RagQuery(query, ctx.case_id, ctx.top_k, ctx.mode).to_payload()
        rag_event = functools.partial(
            ctx.emit,
            agent_name=AGENT_NAME,
            task=TASK_NAME,
            tool_name=TOOL_NAME,
            action="rag_query",
            input_data=request,
        )
        rag_event(EventType.RAG_QUERY_START)
        started = time.perf_counter()
        try:
            if ctx.cut_off:
                citations = self._engine.search(query, ctx.case_id, k=ctx.top_k, mode=ctx.mode)
            else:
                citations = self._engine.search(
                    query, ctx.case_id, k=ctx.top_k, mode=ctx.mode, cut_off=False
                )
        except Exception as exc:
            ctx.retrieval_error = f"{type(exc).__name__}: {exc}"
            rag_event(
                EventType.RAG_QUERY_END,
                error=ctx.retrieval_error,
                metadata=RagTiming(round((time.perf_counter() - started) * 1000, 2)).to_payload(),
            )
            return f"Retrieval failed: {ctx.retrieval_error}"
        # Defence in depth: the engine filters by case inside the store; a hit of
        # another case here would be an engine bug, and must never be cited.
        same_case = [c for c in citations if str(c.case_id) == str(ctx.case_id)]
        hits = ctx.register(same_case)
        if ctx.cancelled.is_set():
            return "The run was cancelled."
        rag_event(
            EventType.RAG_QUERY_END,
            output_data=RagResult(len(hits), [hit_dict(h) for h in hits]).to_payload(),
            metadata=RagTiming(
                round((time.perf_counter() - started) * 1000, 2),
                dropped_other_case=len(citations) - len(same_case),
            ).to_payload(),
        )
        return format_observation(ctx.case_id, hits)
