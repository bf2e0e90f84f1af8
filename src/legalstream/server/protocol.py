"""Client messages on ``/ws/query`` and the close codes: parsing and validation.

A message without ``type`` (the seed's ``{"query", "case_id",
"stream_thinking"}``) is a query. Every rejection is a :class:`ProtocolError`
whose ``code`` goes into the ``error`` frame; docs/protocol.md has the table
(and tests/test_fuzz.py reads it from there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from legalstream.events import ErrorCode, EventType

_KNOWN_EVENTS = frozenset(t.value for t in EventType)

#: Encodings a client may ask a run's frames in (``dialect``): the seed's frames,
#: or AG-UI events (legalstream.dialects.agui; docs/agui.md).
DIALECTS = ("legalstream", "ag-ui")
AGUI = "ag-ui"

#: Longest ``run_id`` a message may name (server-made ids are 48 hex digits).
MAX_RUN_ID_CHARS = 64

# Close codes (RFC 6455 and ours); docs/protocol.md says when each is used.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_TOKEN_EXPIRED = 4401


class ProtocolError(Exception):
    """A message or request the server refuses, with a code the client can act on.

    ``metadata`` goes into the error frame's metadata (``retry_after``, ...);
    ``status`` is the HTTP status REST endpoints answer with.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        run_id: str | None = None,
        *,
        metadata: dict[str, Any] | None = None,
        status: int = 422,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.run_id = run_id
        self.metadata = metadata
        self.status = status


@dataclass(frozen=True, slots=True)
class QueryCommand:
    query: str
    case_id: int
    stream_thinking: bool = True
    events: frozenset[str] | None = None
    dialect: str = "legalstream"


@dataclass(frozen=True, slots=True)
class CancelCommand:
    run_id: str


@dataclass(frozen=True, slots=True)
class ResumeCommand:
    run_id: str
    after_seq: int
    stream_thinking: bool = True
    events: frozenset[str] | None = None
    dialect: str = "legalstream"


@dataclass(frozen=True, slots=True)
class ReplayCommand:
    run_id: str
    after_seq: int = 0


@dataclass(frozen=True, slots=True)
class SubscribeCommand:
    events: frozenset[str] | None


Command = QueryCommand | CancelCommand | ResumeCommand | ReplayCommand | SubscribeCommand


def parse_message(text: str, *, max_query_chars: int) -> Command:
    """A client message from its JSON text."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"message is not valid JSON: {exc}", status=400
        ) from None
    return parse_command(data, max_query_chars=max_query_chars)


def parse_command(data: Any, *, max_query_chars: int) -> Command:
    """A client message from its parsed JSON (WebSocket text, or a REST body)."""
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "message must be a JSON object")
    kind = data.get("type", "query")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'type' must be a string")
    match kind:
        case "query":
            return _query(data, max_query_chars)
        case "cancel":
            return CancelCommand(_run_id(data))
        case "resume":
            return ResumeCommand(
                _run_id(data),
                _seq(data, "after_seq"),
                _bool(data, "stream_thinking", True),
                _events(data),
                _dialect(data),
            )
        case "replay":
            return ReplayCommand(_run_id(data), _seq(data, "after_seq"))
        case "subscribe":
            return SubscribeCommand(_events(data))
        case _:
            raise ProtocolError(
                ErrorCode.UNKNOWN_TYPE,
                f"unknown message type {kind[:64]!r}; expected query, cancel, resume, replay or subscribe",
            )


def parse_query(data: Any, *, max_query_chars: int) -> QueryCommand:
    """A query from parsed JSON (``POST /query``): any other message is refused."""
    command = parse_command(data, max_query_chars=max_query_chars)
    if not isinstance(command, QueryCommand):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "body must be a query")
    return command


def _query(data: dict[str, Any], max_query_chars: int) -> QueryCommand:
    if "query" not in data or data["query"] is None:
        raise ProtocolError(ErrorCode.MISSING_QUERY, "'query' is required")
    query = data["query"]
    if not isinstance(query, str):
        raise ProtocolError(ErrorCode.INVALID_QUERY, "'query' must be a string")
    query = query.strip()
    if not query:
        raise ProtocolError(ErrorCode.MISSING_QUERY, "'query' must not be empty")
    if len(query) > max_query_chars:
        raise ProtocolError(
            ErrorCode.QUERY_TOO_LONG, f"'query' is longer than {max_query_chars} characters"
        )
    case_id = data.get("case_id")
    if case_id is None:
        raise ProtocolError(ErrorCode.INVALID_CASE_ID, "'case_id' is required (an integer)")
    if isinstance(case_id, bool) or not isinstance(case_id, int) or not 0 <= case_id < 2**53:
        raise ProtocolError(ErrorCode.INVALID_CASE_ID, "'case_id' must be a non-negative integer")
    return QueryCommand(
        query, case_id, _bool(data, "stream_thinking", True), _events(data), _dialect(data)
    )


def _bool(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' must be a boolean")
    return value


def _run_id(data: dict[str, Any]) -> str:
    run_id = data.get("run_id")
    if not isinstance(run_id, str) or not run_id or len(run_id) > MAX_RUN_ID_CHARS:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'run_id' must be a run id string")
    return run_id


def _seq(data: dict[str, Any], key: str) -> int:
    value = data.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"'{key}' must be a non-negative integer")
    return value


def _dialect(data: dict[str, Any]) -> str:
    value = data.get("dialect", DIALECTS[0])
    if value is None:
        return DIALECTS[0]
    if value not in DIALECTS:
        raise ProtocolError(
            ErrorCode.INVALID_FIELD, f"'dialect' must be one of {', '.join(DIALECTS)}"
        )
    return value


def _events(data: dict[str, Any]) -> frozenset[str] | None:
    value = data.get("events")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProtocolError(ErrorCode.INVALID_FIELD, "'events' must be a list of event type names")
    unknown = [v for v in value if v not in _KNOWN_EVENTS]
    if unknown:
        raise ProtocolError(
            ErrorCode.UNKNOWN_EVENT_TYPE, f"unknown event types: {', '.join(unknown[:10])[:200]}"
        )
    return frozenset(value)
