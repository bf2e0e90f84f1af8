"""The wire format: every frame legalstream sends, and how it is encoded.

This module is the single source of truth for the protocol. A server frame is
one JSON object that always carries the seed's event structure::

    type, timestamp, agent_name, task, action, tool_name,
    input_data, output_data, error, metadata

Run events add ``run_id`` and ``seq`` (gapless per run, starting at 1) and
every frame sent to a connection carries that connection's ``connection_id``.
Error frames add a machine-readable ``code``. Fields that do not apply are
``null`` so that a client can rely on every key being present. The payloads
that go into ``input_data`` / ``output_data`` / ``metadata`` are built and
parsed by the payload classes at the end of this module.

Events are encoded once (``Event.encoded``) and the per-connection
``connection_id`` is spliced in front of the shared bytes, so fan-out to many
subscribers costs one ``orjson.dumps`` per event, not one per subscriber.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

__all__ = [
    "FINAL_TYPES",
    "LIFECYCLE_TYPES",
    "UNVERIFIED_CODES",
    "CitationPayload",
    "ErrorCode",
    "Event",
    "EventType",
    "FinalAnswer",
    "Grounding",
    "LLMCallEnd",
    "LLMCallError",
    "LLMCallStart",
    "RagQuery",
    "RagResult",
    "RagTiming",
    "RunFailure",
    "StreamChunk",
    "TokenUsage",
    "ToolResult",
    "ToolTiming",
    "decode_event",
    "error_code",
    "error_event",
]


class EventType(StrEnum):
    """Every frame type of the protocol (the seed's 19 plus the extensions)."""

    # Connection events
    CONNECTION_ESTABLISHED = "connection_established"
    QUERY_RECEIVED = "query_received"
    # Agent execution events
    AGENT_EXECUTION_START = "agent_execution_start"
    AGENT_EXECUTION_COMPLETE = "agent_execution_complete"
    AGENT_EXECUTION_ERROR = "agent_execution_error"
    # Agent lifecycle events
    AGENT_START = "agent_start"
    AGENT_ACTION = "agent_action"
    AGENT_OBSERVATION = "agent_observation"
    AGENT_END = "agent_end"
    # Tool events
    TOOL_START = "tool_start"
    TOOL_END = "tool_end"
    # LLM events
    LLM_START = "llm_start"
    LLM_END = "llm_end"
    LLM_ERROR = "llm_error"
    LLM_STREAM_CHUNK = "llm_stream_chunk"
    # Custom events
    RAG_QUERY_START = "rag_query_start"
    RAG_QUERY_END = "rag_query_end"
    THINKING_START = "thinking_start"
    THINKING_END = "thinking_end"
    # Service frames
    BROADCAST = "broadcast"
    ERROR = "error"
    # Resume (a resume whose events are no longer all in history)
    RESUME_FAILED = "resume_failed"
    # Case files (GET /cases/{case_id}/documents/events, SSE): an ingest's progress
    DOCUMENT_PROGRESS = "document_progress"
    DOCUMENTS_CHANGED = "documents_changed"
    INGEST_JOB_DONE = "ingest_job_done"


#: The frames a run ends with; exactly one per run.
FINAL_TYPES: frozenset[EventType] = frozenset(
    {EventType.AGENT_EXECUTION_COMPLETE, EventType.AGENT_EXECUTION_ERROR}
)

#: What a client with ``stream_thinking: false`` still receives of a run.
LIFECYCLE_TYPES: frozenset[EventType] = frozenset(
    {EventType.QUERY_RECEIVED, EventType.AGENT_EXECUTION_START, *FINAL_TYPES}
)


class ErrorCode(StrEnum):
    """Machine-readable ``code`` values of ``error`` frames and final errors."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    MISSING_QUERY = "missing_query"
    INVALID_QUERY = "invalid_query"
    QUERY_TOO_LONG = "query_too_long"
    INVALID_CASE_ID = "invalid_case_id"
    INVALID_FIELD = "invalid_field"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_RUN = "unknown_run"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    BINARY_NOT_SUPPORTED = "binary_not_supported"
    TOO_MANY_RUNS = "too_many_runs"
    SERVER_BUSY = "server_busy"
    RATE_LIMITED = "rate_limited"
    FORBIDDEN = "forbidden"
    FORBIDDEN_CASE = "forbidden_case"
    TOKEN_EXPIRED = "token_expired"
    CANCELLED = "cancelled"
    #: The run went past ``runs.timeout_seconds``.
    TIMEOUT = "timeout"
    AGENT_FAILED = "agent_failed"
    LLM_FAILED = "llm_failed"
    RETRIEVAL_FAILED = "retrieval_failed"
    #: The answer (delivered as a draft in ``output_data``) failed the grounding check.
    UNGROUNDED_ANSWER = "ungrounded_answer"
    #: The answer (delivered as a draft) was cut at the model's token limit.
    TRUNCATED_ANSWER = "truncated_answer"
    RUN_NOT_FINISHED = "run_not_finished"
    HISTORY_LOST = "history_lost"
    WORKER_LOST = "worker_lost"
    #: The case does not exist (a query, or a case file request).
    UNKNOWN_CASE = "unknown_case"
    #: ``POST /cases`` with the id of a case that exists.
    CASE_EXISTS = "case_exists"
    UNKNOWN_DOCUMENT = "unknown_document"
    #: One uploaded file is larger than ``casefiles.max_file_bytes``.
    FILE_TOO_LARGE = "file_too_large"
    #: The upload as a whole is larger than ``casefiles.max_upload_bytes``.
    UPLOAD_TOO_LARGE = "upload_too_large"
    #: A file whose suffix no loader reads.
    UNSUPPORTED_TYPE = "unsupported_type"
    #: No file, too many files, or a form that cannot be parsed.
    INVALID_UPLOAD = "invalid_upload"
    #: The ingest queue is full; retry later.
    INGEST_BUSY = "ingest_busy"
    INTERNAL = "internal_error"


#: Codes of an ``agent_execution_error`` that still delivers the model's answer, as an
#: unverified draft in ``output_data`` (a :class:`FinalAnswer` payload).
UNVERIFIED_CODES: frozenset[ErrorCode] = frozenset(
    {ErrorCode.UNGROUNDED_ANSWER, ErrorCode.TRUNCATED_ANSWER}
)


@dataclass(slots=True)
class Event:
    """One protocol event.

    ``connection_id`` is deliberately not a field: it belongs to the
    connection a frame is written to, not to the event, and is added by
    :meth:`frame_for`.
    """

    type: EventType
    timestamp: float = field(default_factory=time.time)
    agent_name: str | None = None
    task: str | None = None
    action: str | None = None
    tool_name: str | None = None
    input_data: dict[str, Any] | None = None
    output_data: dict[str, Any] | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    run_id: str | None = None
    seq: int | None = None
    code: str | None = None
    _encoded: bytes | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        # Key order of every frame: the seed's structure first, then our additions.
        # Spelled out rather than looped: this runs once per event on the hot path.
        data: dict[str, Any] = {
            "type": str(self.type),
            "timestamp": self.timestamp,
            "agent_name": self.agent_name,
            "task": self.task,
            "action": self.action,
            "tool_name": self.tool_name,
            "input_data": self.input_data,
            "output_data": self.output_data,
            "error": self.error,
            "metadata": self.metadata,
            "run_id": self.run_id,
            "seq": self.seq,
        }
        if self.code is not None:
            data["code"] = self.code
        return data

    @property
    def encoded(self) -> bytes:
        """The event as JSON bytes, without ``connection_id``; computed once."""
        if self._encoded is None:
            data = self.to_dict()
            try:
                encoded = orjson.dumps(data)
            except orjson.JSONEncodeError:
                # Non-str keys in a payload (a tool's dict): about a third
                # slower, so only when needed.
                encoded = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
            # A copy of exactly its size: the bytes orjson returns keep its whole
            # working buffer (~4 KiB here, for a 300-byte frame), and events are
            # kept (run history). 0.15 us per event; history of 1,000 runs went
            # from ~200 MB of RSS to ~14 MB.
            self._encoded = bytes(memoryview(encoded))
        return self._encoded

    def frame_for(self, connection_id: str | None) -> bytes:
        """The text frame (UTF-8 JSON) for one connection: shared bytes plus its id."""
        return splice_connection_id(self.encoded, connection_id)

    @property
    def is_final(self) -> bool:
        return self.type in FINAL_TYPES


def splice_connection_id(encoded: bytes, connection_id: str | None) -> bytes:
    """Prefix ``"connection_id"`` to an encoded JSON object.

    ``encoded`` always starts with ``{"type":`` so the object is never empty.
    """
    if connection_id is None:
        return encoded
    return _connection_prefix(connection_id) + encoded[1:]


def frames_for(events: list[Event], connection_id: str) -> list[bytes]:
    """:meth:`Event.frame_for` of a batch: one connection's frames, prefix built once."""
    prefix = _connection_prefix(connection_id)
    return [prefix + event.encoded[1:] for event in events]


def _connection_prefix(connection_id: str) -> bytes:
    # connection ids are server-made hex uuids: no escaping needed.
    return b'{"connection_id":"' + connection_id.encode() + b'",'


def error_event(
    code: ErrorCode | str,
    message: str,
    *,
    run_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Event:
    """An ``error`` frame: a protocol error the client can act on."""
    meta = {"code": str(code), **(metadata or {})}
    return Event(
        type=EventType.ERROR,
        error=message,
        run_id=run_id,
        metadata=meta,
        code=str(code),
    )


def decode_event(data: bytes | str | dict[str, Any]) -> Event:
    """Rebuild an :class:`Event` from its encoded form (Redis, replay, clients)."""
    obj = orjson.loads(data) if isinstance(data, bytes | str) else dict(data)
    # Bytes that came from Event.encoded (the Redis bus) are reused as they are:
    # a worker relaying an event does not encode it again.
    reuse = data if isinstance(data, bytes) and "connection_id" not in obj else None
    obj.pop("connection_id", None)
    return Event(
        type=EventType(obj["type"]),
        timestamp=float(obj.get("timestamp") or time.time()),
        agent_name=obj.get("agent_name"),
        task=obj.get("task"),
        action=obj.get("action"),
        tool_name=obj.get("tool_name"),
        input_data=obj.get("input_data"),
        output_data=obj.get("output_data"),
        error=obj.get("error"),
        metadata=obj.get("metadata"),
        run_id=obj.get("run_id"),
        seq=obj.get("seq"),
        code=obj.get("code"),
        _encoded=reuse,
    )


# --- payloads ------------------------------------------------------------------------------
# The ``input_data`` / ``output_data`` / ``metadata`` of run events, built here by the
# agent (listener, tool) and the run machinery, and read here by the clients and metrics.
# ``to_payload()`` gives the dict put on the wire; its key order is the wire's.
# ``from_payload()`` reads one leniently: a missing or mistyped key gives the default,
# never an exception (a client may read frames of a newer or older server, or of a
# test producer that sends only part of a payload).


def _mapping(data: Any) -> dict[str, Any]:
    return data if isinstance(data, dict) else {}


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_float(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value  # an int stays an int: it is shown as it came
    return None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass(frozen=True, slots=True)
class CitationPayload:
    """One cited or retrieved passage: ``rag_query_end`` hits and the final ``citations``.

    ``quote`` is the source text ``[char_start:char_end]``; ``marker`` is the ``[n]``
    the answer uses (absent when the agent did not number its sources). A final
    answer's citation quotes the sentence(s) that support a statement; its
    ``passage`` is the retrieved passage around them, the source text
    ``[passage_start:passage_end]`` (absent on retrieval hits, which are passages).
    """

    chunk_id: str
    doc_id: str
    title: str
    case_id: int | str | None
    page: int | None
    section: str | None
    char_start: int
    char_end: int
    quote: str
    score: float
    marker: int | None = None
    passage: str | None = None
    passage_start: int | None = None
    passage_end: int | None = None

    @classmethod
    def of(cls, citation: Any, marker: int | None = None) -> CitationPayload:
        """From anything with a citation's attributes (``legalstream.rag.citations.Citation``)."""
        return cls(
            chunk_id=citation.chunk_id,
            doc_id=citation.doc_id,
            title=citation.title,
            case_id=citation.case_id,
            page=citation.page,
            section=citation.section,
            char_start=citation.char_start,
            char_end=citation.char_end,
            quote=citation.quote,
            score=citation.score,
            marker=marker,
        )

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "title": self.title,
            "case_id": self.case_id,
            "page": self.page,
            "section": self.section,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "quote": self.quote,
            "score": self.score,
        }
        if self.marker is not None:
            data["marker"] = self.marker
        if self.passage is not None:
            data["passage"] = self.passage
            data["passage_start"] = self.passage_start
            data["passage_end"] = self.passage_end
        return data

    @classmethod
    def from_payload(cls, data: Any) -> CitationPayload:
        d = _mapping(data)
        case_id = d.get("case_id")
        return cls(
            chunk_id=_str(d.get("chunk_id")),
            doc_id=_str(d.get("doc_id")),
            title=_str(d.get("title")),
            case_id=case_id if isinstance(case_id, int | str) else None,
            page=_opt_int(d.get("page")),
            section=_opt_str(d.get("section")),
            char_start=_opt_int(d.get("char_start")) or 0,
            char_end=_opt_int(d.get("char_end")) or 0,
            quote=_str(d.get("quote")),
            score=_opt_float(d.get("score")) or 0.0,
            marker=_opt_int(d.get("marker")),
            passage=_opt_str(d.get("passage")),
            passage_start=_opt_int(d.get("passage_start")),
            passage_end=_opt_int(d.get("passage_end")),
        )


@dataclass(frozen=True, slots=True)
class RagQuery:
    """``rag_query_start`` / ``rag_query_end`` ``input_data``: what was searched."""

    query: str
    case_id: int | str | None
    k: int | None
    mode: str | None

    def to_payload(self) -> dict[str, Any]:
        return {"query": self.query, "case_id": self.case_id, "k": self.k, "mode": self.mode}

    @classmethod
    def from_payload(cls, data: Any) -> RagQuery:
        d = _mapping(data)
        case_id = d.get("case_id")
        return cls(
            query=_str(d.get("query")),
            case_id=case_id if isinstance(case_id, int | str) else None,
            k=_opt_int(d.get("k")),
            mode=_opt_str(d.get("mode")),
        )


@dataclass(frozen=True, slots=True)
class RagResult:
    """``rag_query_end`` ``output_data``: the hits (citation payloads with their marker)."""

    count: int
    hits: list[dict[str, Any]]

    def to_payload(self) -> dict[str, Any]:
        return {"count": self.count, "hits": self.hits}

    @classmethod
    def from_payload(cls, data: Any) -> RagResult:
        d = _mapping(data)
        hits = _dicts(d.get("hits"))
        count = _opt_int(d.get("count"))
        return cls(count=len(hits) if count is None else count, hits=hits)

    def citations(self) -> list[CitationPayload]:
        return [CitationPayload.from_payload(hit) for hit in self.hits]


@dataclass(frozen=True, slots=True)
class RagTiming:
    """``rag_query_end`` ``metadata``; ``dropped_other_case`` only when the search succeeded."""

    elapsed_ms: float | None
    dropped_other_case: int | None = None

    def to_payload(self) -> dict[str, Any]:
        if self.dropped_other_case is None:
            return {"elapsed_ms": self.elapsed_ms}
        return {"elapsed_ms": self.elapsed_ms, "dropped_other_case": self.dropped_other_case}

    @classmethod
    def from_payload(cls, data: Any) -> RagTiming:
        d = _mapping(data)
        return cls(_opt_float(d.get("elapsed_ms")), _opt_int(d.get("dropped_other_case")))


@dataclass(frozen=True, slots=True)
class ToolResult:
    """``tool_end`` ``output_data``: the tool's result text, as the model read it."""

    result: str

    def to_payload(self) -> dict[str, Any]:
        return {"result": self.result}

    @classmethod
    def from_payload(cls, data: Any) -> ToolResult:
        return cls(_str(_mapping(data).get("result")))


@dataclass(frozen=True, slots=True)
class ToolTiming:
    """``tool_end`` ``metadata``: how long the call took, and whether CrewAI's cache answered."""

    elapsed_ms: float | None
    from_cache: bool = False

    def to_payload(self) -> dict[str, Any]:
        return {"elapsed_ms": self.elapsed_ms, "from_cache": self.from_cache}

    @classmethod
    def from_payload(cls, data: Any) -> ToolTiming:
        d = _mapping(data)
        return cls(_opt_float(d.get("elapsed_ms")), d.get("from_cache") is True)


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one LLM call (``llm_end`` ``metadata.usage``).

    A provider's usage dict goes on the wire as the provider gave it (it may hold
    more keys); this reads the three counts every provider reports.
    """

    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None

    def to_payload(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }

    @classmethod
    def from_payload(cls, data: Any) -> TokenUsage:
        d = _mapping(data)
        return cls(
            _opt_int(d.get("prompt_tokens")),
            _opt_int(d.get("completion_tokens")),
            _opt_int(d.get("total_tokens")),
        )


@dataclass(frozen=True, slots=True)
class LLMCallStart:
    """``llm_start`` ``metadata``: ``call_id`` pairs it with its ``llm_end`` / ``llm_error``."""

    model: str | None
    call_id: str | None
    stream: bool | None
    step: int | None

    def to_payload(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "call_id": self.call_id,
            "stream": self.stream,
            "step": self.step,
        }

    @classmethod
    def from_payload(cls, data: Any) -> LLMCallStart:
        d = _mapping(data)
        stream = d.get("stream")
        return cls(
            _opt_str(d.get("model")),
            _opt_str(d.get("call_id")),
            stream if isinstance(stream, bool) else None,
            _opt_int(d.get("step")),
        )


@dataclass(frozen=True, slots=True)
class LLMCallEnd:
    """``llm_end`` ``metadata``: the provider's token ``usage`` (as given) and ``finish_reason``."""

    model: str | None
    call_id: str | None
    usage: dict[str, Any] | None
    finish_reason: str | None
    step: int | None

    def to_payload(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "call_id": self.call_id,
            "usage": self.usage,
            "finish_reason": self.finish_reason,
            "step": self.step,
        }

    @classmethod
    def from_payload(cls, data: Any) -> LLMCallEnd:
        d = _mapping(data)
        usage = d.get("usage")
        return cls(
            _opt_str(d.get("model")),
            _opt_str(d.get("call_id")),
            usage if isinstance(usage, dict) else None,
            _opt_str(d.get("finish_reason")),
            _opt_int(d.get("step")),
        )

    @property
    def tokens(self) -> TokenUsage:
        return TokenUsage.from_payload(self.usage)


@dataclass(frozen=True, slots=True)
class LLMCallError:
    """``llm_error`` ``metadata`` (``call_id`` is None when no call was open)."""

    model: str | None
    call_id: str | None
    step: int | None

    def to_payload(self) -> dict[str, Any]:
        return {"model": self.model, "call_id": self.call_id, "step": self.step}

    @classmethod
    def from_payload(cls, data: Any) -> LLMCallError:
        d = _mapping(data)
        return cls(_opt_str(d.get("model")), _opt_str(d.get("call_id")), _opt_int(d.get("step")))


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """``llm_stream_chunk`` ``output_data``: a piece of the model's reply, in order."""

    chunk: str

    def to_payload(self) -> dict[str, Any]:
        return {"chunk": self.chunk}

    @classmethod
    def from_payload(cls, data: Any) -> StreamChunk:
        return cls(_str(_mapping(data).get("chunk")))


@dataclass(frozen=True, slots=True)
class Grounding:
    """The grounding check of an answer (``output_data.grounding`` of a final frame).

    ``grounded`` is True only when every statement of the answer carries an
    ``[n]`` of a passage retrieved in the run and that passage has the
    sentence(s) that support it, and the answer was not cut at the token limit.
    ``problems`` says what failed, one ``{"kind", "statement", "marker"}`` each
    (kinds: ``no_retrieval``, ``no_citation``, ``unknown_marker``, ``unsupported``,
    ``uncited``, ``truncated``); ``retried``: a corrective retry was made.
    """

    grounded: bool
    statements: int = 0
    supported: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    retried: bool = False
    finish_reason: str | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "grounded": self.grounded,
            "statements": self.statements,
            "supported": self.supported,
            "problems": self.problems,
            "retried": self.retried,
            "finish_reason": self.finish_reason,
        }

    @classmethod
    def from_payload(cls, data: Any) -> Grounding:
        d = _mapping(data)
        return cls(
            grounded=d.get("grounded") is True,
            statements=_opt_int(d.get("statements")) or 0,
            supported=_opt_int(d.get("supported")) or 0,
            problems=_dicts(d.get("problems")),
            retried=d.get("retried") is True,
            finish_reason=_opt_str(d.get("finish_reason")),
        )

    def summary(self) -> str:
        """One line for people: what failed, or that the answer is grounded."""
        if self.grounded:
            return f"grounded: {self.supported} of {self.statements} statements supported"
        kinds: dict[str, int] = {}
        for problem in self.problems:
            kind = _str(problem.get("kind"), "problem")
            kinds[kind] = kinds.get(kind, 0) + 1
        parts = [f"{n} {kind.replace('_', ' ')}" if n > 1 else kind.replace("_", " ")
                 for kind, n in kinds.items()]  # fmt: skip
        return "not grounded: " + (", ".join(parts) or "no supported statement")


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """A run's answer: ``agent_execution_complete`` ``output_data``, and the unverified
    draft an ``agent_execution_error`` with code ``ungrounded_answer`` or
    ``truncated_answer`` carries in its ``output_data``.

    ``citations`` are citation payloads (sentence-level, with their passage);
    ``grounding`` the check of the answer (absent from servers before it existed).
    """

    answer: str
    citations: list[dict[str, Any]]
    grounding: dict[str, Any] | None = None

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {"answer": self.answer, "citations": self.citations}
        if self.grounding is not None:
            data["grounding"] = self.grounding
        return data

    @classmethod
    def from_payload(cls, data: Any) -> FinalAnswer:
        d = _mapping(data)
        grounding = d.get("grounding")
        return cls(
            _str(d.get("answer")),
            _dicts(d.get("citations")),
            grounding if isinstance(grounding, dict) else None,
        )

    def cited(self) -> list[CitationPayload]:
        return [CitationPayload.from_payload(c) for c in self.citations]

    @property
    def check(self) -> Grounding | None:
        """The grounding check, parsed (None when the server sent none)."""
        return None if self.grounding is None else Grounding.from_payload(self.grounding)


@dataclass(frozen=True, slots=True)
class RunFailure:
    """``agent_execution_error`` ``metadata``: the query that failed and why (``code``)."""

    query: str
    case_id: int | str | None
    code: str

    def to_payload(self) -> dict[str, Any]:
        return {"query": self.query, "case_id": self.case_id, "code": self.code}

    @classmethod
    def from_payload(cls, data: Any) -> RunFailure:
        d = _mapping(data)
        case_id = d.get("case_id")
        return cls(
            _str(d.get("query")),
            case_id if isinstance(case_id, int | str) else None,
            _str(d.get("code")),
        )


def error_code(frame: dict[str, Any]) -> str | None:
    """The ``code`` of an ``error`` / ``agent_execution_error`` / ``resume_failed`` frame."""
    code = frame.get("code") or _mapping(frame.get("metadata")).get("code")
    return code if isinstance(code, str) else None
