"""The AsyncAPI 3.0 description of ``/ws/query``, generated from the code that speaks it.

Frames come from :mod:`legalstream.events` (``EventType``, ``ErrorCode``, the
fields of ``Event``), client messages from the command dataclasses of
:mod:`legalstream.server.protocol` (their fields are the JSON keys), close
codes from its ``CLOSE_*`` constants, AG-UI frames from
:mod:`legalstream.dialects.agui` and the ``ag-ui-protocol`` event types.
What code cannot say (what each frame means) is written here, keyed by the
enum, and a test fails when an enum member has no description.

``python -m legalstream.server.asyncapi > docs/asyncapi.json`` refreshes the
committed copy (tests/test_asyncapi.py fails when it differs); the app
serves the same document at ``/asyncapi.json``.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from typing import Any

import orjson
from ag_ui.core import EventType as AguiEventType
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from legalstream import __version__
from legalstream.dialects.agui import WS_FRAME_TYPE
from legalstream.events import FINAL_TYPES, ErrorCode, Event, EventType
from legalstream.server import protocol
from legalstream.settings import ServerSettings

#: What each server frame type means.
FRAME_DESCRIPTIONS: dict[EventType, str] = {
    EventType.CONNECTION_ESTABLISHED: "First frame of every connection; carries connection_id.",
    EventType.QUERY_RECEIVED: "A query was accepted: seq 1 of its run, with the new run_id.",
    EventType.AGENT_EXECUTION_START: "The run started (seq 2).",
    EventType.AGENT_EXECUTION_COMPLETE: "Final frame of a run that answered with a grounded answer: output_data.answer, .citations (sentence-level) and .grounding.",
    EventType.AGENT_EXECUTION_ERROR: "Final frame of a run that failed, was cancelled or timed out; code says why. With code ungrounded_answer or truncated_answer, output_data carries the answer as an unverified draft (answer, citations, grounding).",
    EventType.AGENT_START: "The agent started working on the question.",
    EventType.AGENT_ACTION: "A thought with a tool choice (input_data: the tool's arguments).",
    EventType.AGENT_OBSERVATION: "A tool's result fed back to the agent.",
    EventType.AGENT_END: "The agent finished.",
    EventType.TOOL_START: "A tool call started (the RAG Legal Retrieval Tool).",
    EventType.TOOL_END: "A tool call ended (output_data.result, metadata.elapsed_ms).",
    EventType.LLM_START: "An LLM call started (metadata: model, call_id, step).",
    EventType.LLM_END: "An LLM call ended (metadata: model, usage, finish_reason).",
    EventType.LLM_ERROR: "An LLM call failed.",
    EventType.LLM_STREAM_CHUNK: "A token chunk of an LLM call (output_data.chunk; metadata.thinking for reasoning).",
    EventType.RAG_QUERY_START: "A retrieval started (input_data: query, case_id, k, mode).",
    EventType.RAG_QUERY_END: "A retrieval ended (output_data.hits: the retrieved passages).",
    EventType.THINKING_START: "A reasoning step started (metadata.step).",
    EventType.THINKING_END: "A reasoning step ended (output_data.thought).",
    EventType.BROADCAST: "A message to every client (POST /ws/broadcast).",
    EventType.ERROR: "A client message was refused; code says why. The connection stays open.",
    EventType.RESUME_FAILED: "A resume's events are no longer all in history (metadata.lost).",
    EventType.DOCUMENT_PROGRESS: "Case files SSE only: one document's ingest progress (output_data: IngestProgress and job_id; phases parsing, embedding with chunks_done/chunks_total and eta_seconds, indexing, done or failed with error).",
    EventType.DOCUMENTS_CHANGED: "Case files SSE only: documents were added (an upload job finished) or removed (a delete); output_data: case_id, job_id (uploads), added, removed.",
    EventType.INGEST_JOB_DONE: "Case files SSE only: an upload job's last event; output_data: job_id, case_id, ingested, replaced, skipped, failed and files.",
}

#: Frames of the case files progress stream (SSE), not of /ws/query.
CASE_TYPES = (EventType.DOCUMENT_PROGRESS, EventType.DOCUMENTS_CHANGED, EventType.INGEST_JOB_DONE)

#: What each client message does (by its ``type``).
MESSAGE_DESCRIPTIONS: dict[str, str] = {
    "query": "Start a run (the seed's message: `type` may be left out).",
    "cancel": "Stop a run of this connection; it ends with a `cancelled` final frame.",
    "resume": "Follow a run (any worker) from after `after_seq`: every later event once, in order.",
    "replay": "Send a finished run's stored events again.",
    "subscribe": "Default event filter for this connection's later queries (`null` clears it).",
}

#: When each close code is used (values: legalstream.server.protocol.CLOSE_*).
CLOSE_DESCRIPTIONS: dict[str, str] = {
    "CLOSE_NORMAL": "idle timeout (no message and no run in progress)",
    "CLOSE_GOING_AWAY": "server shutting down (after the runs' final frames)",
    "CLOSE_POLICY": "handshake refused (auth, origin) where the server cannot answer with HTTP",
    "CLOSE_TOO_BIG": "a frame larger than server.max_frame_bytes",
    "CLOSE_INTERNAL_ERROR": "keepalive ping not answered, or a server fault cut a run's stream: resume",
    "CLOSE_TRY_AGAIN": "slow consumer, or the Redis bus is unreachable: reconnect and resume",
    "CLOSE_TOKEN_EXPIRED": "the token expired during the connection",
}
#: Close codes the WebSocket library sends on the server's behalf.
LIBRARY_CLOSE_CODES = {
    1002: "WebSocket protocol violation (uvicorn)",
    1007: "invalid UTF-8 in a text frame (uvicorn)",
}

#: Frame types that are not about one run (no run_id and seq).
_SERVICE_TYPES = {
    EventType.CONNECTION_ESTABLISHED,
    EventType.BROADCAST,
    EventType.ERROR,
    *CASE_TYPES,
}

_NULLABLE = {
    str: {"type": ["string", "null"]},
    int: {"type": ["integer", "null"]},
    float: {"type": ["number", "null"]},
    dict: {"type": ["object", "null"]},
}


def asyncapi_document(server: ServerSettings | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of ``/ws/query`` (defaults: ``ServerSettings()``)."""
    server = server or ServerSettings()
    frames = {f"frame.{t.value}": _frame_message(t) for t in EventType if t not in CASE_TYPES}
    frames[f"frame.{WS_FRAME_TYPE}"] = _agui_message()
    case_frames = {f"frame.{t.value}": _frame_message(t) for t in CASE_TYPES}
    client = {f"client.{kind}": _client_message(kind, cls, server) for kind, cls in _commands()}
    channel_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in client | frames}
    case_messages = {name: {"$ref": f"#/components/messages/{name}"} for name in case_frames}
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "legalstream /ws/query",
            "version": __version__,
            "description": (
                "Ask questions about a legal case's documents and watch the agent work. "
                "Generated from src/legalstream/events.py and src/legalstream/server/protocol.py "
                "by legalstream.server.asyncapi; docs/protocol.md explains the protocol."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": f"{server.host}:{server.port}",
                "protocol": "ws",
                "description": "`make run`; behind nginx, wss:// (docs/deploy.md).",
            }
        },
        "channels": {
            "query": {
                "address": "/ws/query",
                "title": "Queries and their runs' frames",
                "description": (
                    "JSON text frames both ways. Credentials on the handshake: "
                    "`Authorization: Bearer <jwt>`, the subprotocols `legalstream.v1, "
                    "bearer.<jwt>` or `legalstream.v1, ticket.<ticket>`, or `?ticket=` / "
                    "`?token=` (docs/security.md)."
                ),
                "messages": channel_messages,
                "bindings": {
                    "ws": {
                        "bindingVersion": "0.1.0",
                        "query": {
                            "type": "object",
                            "properties": {
                                "ticket": {"type": "string"},
                                "token": {"type": "string"},
                            },
                        },
                    }
                },
            },
            "caseDocuments": {
                "address": "/cases/{case_id}/documents/events",
                "title": "A case's document events (Server-Sent Events)",
                "description": (
                    "HTTP GET, `text/event-stream`: each message is `event: <type>` and "
                    "`data: <frame JSON>`, with `: keepalive` comments between. Every worker's "
                    "ingest progress of the case, from the bus (docs/casefiles.md)."
                ),
                "parameters": {"case_id": {"description": "The case (an integer)."}},
                "messages": case_messages,
            },
        },
        "operations": {
            **{
                f"receive{kind.capitalize()}": {
                    "action": "receive",
                    "channel": {"$ref": "#/channels/query"},
                    "summary": MESSAGE_DESCRIPTIONS[kind],
                    "messages": [{"$ref": f"#/channels/query/messages/client.{kind}"}],
                }
                for kind, _ in _commands()
            },
            "sendFrames": {
                "action": "send",
                "channel": {"$ref": "#/channels/query"},
                "summary": "Every frame the server sends.",
                "messages": [{"$ref": f"#/channels/query/messages/{name}"} for name in frames],
            },
            "sendCaseDocumentEvents": {
                "action": "send",
                "channel": {"$ref": "#/channels/caseDocuments"},
                "summary": "A case's ingest progress and document changes, live.",
                "messages": [
                    {"$ref": f"#/channels/caseDocuments/messages/{name}"} for name in case_frames
                ],
            },
        },
        "components": {"messages": {**client, **frames, **case_frames}},
        "x-close-codes": _close_codes(),
        "x-error-codes": [code.value for code in ErrorCode],
    }


# -- server frames -----------------------------------------------------------------------


def _frame_fields() -> dict[str, dict[str, Any]]:
    """The JSON keys of every frame and their types, from :class:`Event`."""
    hints = typing.get_type_hints(Event)
    out: dict[str, dict[str, Any]] = {}
    for key in Event(type=EventType.ERROR).to_dict():
        hint = hints[key]
        out[key] = dict(_NULLABLE[_base(hint)]) if key != "type" else {"type": "string"}
    out["timestamp"] = {"type": "number"}
    out["connection_id"] = {"type": "string"}
    out["code"] = {"type": "string"}
    return out


def _base(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    target = args[0] if args else hint
    origin = typing.get_origin(target) or target
    if origin is EventType:
        return str
    return origin  # type: ignore[no-any-return]


def _frame_message(kind: EventType) -> dict[str, Any]:
    properties = _frame_fields()
    required = [key for key in properties if key != "code"]
    if kind in CASE_TYPES:
        required.remove("connection_id")  # SSE frames belong to no connection
    properties["type"] = {"const": kind.value}
    if kind not in _SERVICE_TYPES:
        properties["run_id"] = {"type": "string"}
        properties["seq"] = {
            "type": ["integer", "null"] if kind is EventType.RESUME_FAILED else "integer",
            "minimum": 1,
        }
    codes = [code.value for code in ErrorCode]
    if kind in (EventType.ERROR, EventType.AGENT_EXECUTION_ERROR):
        properties["code"] = {"enum": codes}
        properties["error"] = {"type": "string"}
        required.append("code")
    if kind is EventType.ERROR:
        properties["metadata"] = {
            "type": "object",
            "properties": {"code": {"enum": codes}, "retry_after": {"type": "number"}},
            "required": ["code"],
        }
    if kind is EventType.AGENT_EXECUTION_COMPLETE:
        properties["output_data"] = {
            "type": "object",
            "properties": {
                "answer": {"type": "string"},
                "citations": {"type": "array", "items": _CITATION},
                "grounding": _GROUNDING,
            },
            "required": ["answer", "citations"],
        }
    if kind is EventType.AGENT_EXECUTION_ERROR:
        properties["output_data"] = {
            "type": ["object", "null"],
            "properties": {
                "answer": {"type": "string"},
                "citations": {"type": "array", "items": _CITATION},
                "grounding": _GROUNDING,
            },
        }
    if kind is EventType.LLM_STREAM_CHUNK:
        properties["output_data"] = {
            "type": "object",
            "properties": {"chunk": {"type": "string"}},
            "required": ["chunk"],
        }
    if kind is EventType.RAG_QUERY_END:
        properties["output_data"] = {
            "type": ["object", "null"],
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "hits": {"type": "array", "items": _CITATION},
            },
        }
    if kind is EventType.CONNECTION_ESTABLISHED:
        properties["metadata"] = {
            "type": "object",
            "properties": {"connection_id": {"type": "string"}, "user": {"type": "string"}},
            "required": ["connection_id"],
        }
    if kind is EventType.BROADCAST:
        properties["output_data"] = {
            "type": "object",
            "properties": {"message": {"type": "string"}},
            "required": ["message"],
        }
    if kind is EventType.RESUME_FAILED:
        properties["metadata"] = {
            "type": "object",
            "properties": {
                "after_seq": {"type": "integer"},
                "first_available_seq": {"type": ["integer", "null"]},
                "last_seq": {"type": ["integer", "null"]},
                "lost": {"type": "array", "items": {"type": ["integer", "null"]}},
                "status": {"type": "string"},
            },
            "required": ["after_seq", "lost", "status"],
        }
    final = " Final: exactly one per run." if kind in FINAL_TYPES else ""
    return {
        "name": kind.value,
        "title": kind.value,
        "summary": FRAME_DESCRIPTIONS[kind] + final,
        "payload": {"type": "object", "properties": properties, "required": required},
    }


_CASE_PAYLOADS: dict[EventType, dict[str, Any]] = {
    EventType.DOCUMENT_PROGRESS: {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "name": {"type": "string"},
            "doc_id": {"type": ["string", "null"]},
            "case_id": {"type": "integer"},
            "phase": {"enum": ["parsing", "embedding", "indexing", "done", "failed"]},
            "status": {"enum": ["ingested", "replaced", "skipped", "failed", None]},
            "chunks_done": {"type": "integer", "minimum": 0},
            "chunks_total": {"type": "integer", "minimum": 0},
            "eta_seconds": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "all_chunks_done": {"type": "integer", "minimum": 0},
            "all_chunks_total": {"type": "integer", "minimum": 0},
            "file_index": {"type": "integer", "minimum": 1},
            "files_total": {"type": "integer", "minimum": 1},
            "time": {"type": "number"},
        },
        "required": ["job_id", "name", "case_id", "phase"],
    },
    EventType.DOCUMENTS_CHANGED: {
        "type": "object",
        "properties": {
            "case_id": {"type": "integer"},
            "job_id": {"type": "string"},
            "added": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["case_id", "added", "removed"],
    },
    EventType.INGEST_JOB_DONE: {
        "type": "object",
        "properties": {
            "job_id": {"type": "string"},
            "case_id": {"type": "integer"},
            "ingested": {"type": "integer", "minimum": 0},
            "replaced": {"type": "integer", "minimum": 0},
            "skipped": {"type": "integer", "minimum": 0},
            "failed": {"type": "integer", "minimum": 0},
            "files": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["job_id", "case_id", "ingested", "replaced", "skipped", "failed"],
    },
}

_CITATION = {
    "type": "object",
    "properties": {
        "chunk_id": {"type": "string"},
        "doc_id": {"type": "string"},
        "title": {"type": "string"},
        "case_id": {},
        "page": {"type": ["integer", "null"]},
        "section": {"type": ["string", "null"]},
        "char_start": {"type": "integer"},
        "char_end": {"type": "integer"},
        "quote": {"type": "string"},
        "score": {"type": ["number", "null"]},
        "marker": {"type": "integer"},
        "passage": {"type": "string"},
        "passage_start": {"type": "integer"},
        "passage_end": {"type": "integer"},
    },
}

_GROUNDING = {
    "type": "object",
    "properties": {
        "grounded": {"type": "boolean"},
        "statements": {"type": "integer", "minimum": 0},
        "supported": {"type": "integer", "minimum": 0},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {
                        "enum": [
                            "no_retrieval",
                            "no_citation",
                            "unknown_marker",
                            "unsupported",
                            "uncited",
                            "truncated",
                        ]
                    },
                    "statement": {"type": ["string", "null"]},
                    "marker": {"type": ["integer", "null"]},
                },
                "required": ["kind"],
            },
        },
        "retried": {"type": "boolean"},
        "finish_reason": {"type": ["string", "null"]},
    },
    "required": ["grounded", "problems"],
}


def _agui_message() -> dict[str, Any]:
    return {
        "name": WS_FRAME_TYPE,
        "title": WS_FRAME_TYPE,
        "summary": (
            "The AG-UI events of one run event, for queries and resumes with "
            '`"dialect": "ag-ui"` (docs/agui.md). `seq` is a resume position.'
        ),
        "payload": {
            "type": "object",
            "properties": {
                "type": {"const": WS_FRAME_TYPE},
                "run_id": {"type": "string"},
                "seq": {"type": "integer", "minimum": 0},
                "id": {"type": "string"},
                "events": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {"type": {"enum": [t.value for t in AguiEventType]}},
                        "required": ["type"],
                    },
                },
            },
            "required": ["type", "run_id", "seq", "id", "events"],
        },
    }


# -- client messages ---------------------------------------------------------------------


def _commands() -> list[tuple[str, type]]:
    """Every command of the protocol: its ``type`` (the class name without Command)."""
    commands = typing.get_args(protocol.Command)
    return [(cls.__name__.removesuffix("Command").lower(), cls) for cls in commands]


def _client_message(kind: str, cls: type, server: ServerSettings) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {"type": {"const": kind}}
    required = [] if kind == "query" else ["type"]
    for f in dataclasses.fields(cls):
        properties[f.name] = _field_schema(f.name, hints[f.name], server)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            if f.name != "after_seq":  # resume and replay default it to 0
                required.append(f.name)
    return {
        "name": kind,
        "title": kind,
        "summary": MESSAGE_DESCRIPTIONS[kind],
        "payload": {"type": "object", "properties": properties, "required": required},
    }


def _field_schema(name: str, hint: Any, server: ServerSettings) -> dict[str, Any]:
    nullable = type(None) in typing.get_args(hint)
    base = _base(hint)
    schema: dict[str, Any]
    if name == "events":
        schema = {"type": "array", "items": {"enum": [t.value for t in EventType]}}
    elif name == "dialect":
        schema = {"enum": list(protocol.DIALECTS)}
    elif base is str:
        limit = server.max_query_chars if name == "query" else protocol.MAX_RUN_ID_CHARS
        schema = {"type": "string", "minLength": 1, "maxLength": limit}
    elif base is bool:
        schema = {"type": "boolean"}
    elif base is int:
        schema = {"type": "integer", "minimum": 0}
        if name == "case_id":
            schema["maximum"] = 2**53 - 1
    elif base in (frozenset, set, list):
        schema = {"type": "array"}
    else:  # pragma: no cover - a new field type needs a mapping here
        raise TypeError(f"no JSON schema for {name}: {hint!r}")
    if nullable or (isinstance(hint, types.UnionType) and type(None) in hint.__args__):
        schema = {"oneOf": [schema, {"type": "null"}]}
    return schema


def _close_codes() -> list[dict[str, Any]]:
    codes = [
        {"code": getattr(protocol, name), "name": name, "when": CLOSE_DESCRIPTIONS[name]}
        for name in sorted(n for n in vars(protocol) if n.startswith("CLOSE_"))
    ]
    codes += [{"code": c, "name": None, "when": w} for c, w in LIBRARY_CLOSE_CODES.items()]
    return sorted(codes, key=lambda c: c["code"])


async def endpoint(request: Request) -> Response:
    """``GET /asyncapi.json``: the document for this app's settings."""
    return JSONResponse(asyncapi_document(request.app.state.settings.server))


def render(document: dict[str, Any]) -> bytes:
    """The committed form: indented, keys in generation order, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


if __name__ == "__main__":
    sys.stdout.buffer.write(render(asyncapi_document()))
