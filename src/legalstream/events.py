"""The wire format: every frame legalstream sends, and how it is encoded.

This module is the single source of truth for the protocol. A server frame is
one JSON object that always carries the seed's event structure::

    type, timestamp, agent_name, task, action, tool_name,
    input_data, output_data, error, metadata

Run events add ``run_id`` and ``seq`` (gapless per run, starting at 1) and
every frame sent to a connection carries that connection's ``connection_id``.
Error frames add a machine-readable ``code``. Fields that do not apply are
``null`` so that a client can rely on every key being present.

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
    "ErrorCode",
    "Event",
    "EventType",
    "decode_event",
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
    AGENT_FAILED = "agent_failed"
    LLM_FAILED = "llm_failed"
    RETRIEVAL_FAILED = "retrieval_failed"
    RUN_NOT_FINISHED = "run_not_finished"
    HISTORY_LOST = "history_lost"
    WORKER_LOST = "worker_lost"
    INTERNAL = "internal_error"


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
