"""The OpenAPI 3.1 description of the HTTP endpoints, served at ``/openapi.json``.

Hand-maintained here, next to nothing else: a route added to app.py without
an entry here fails tests/test_openapi.py, and schemathesis runs every
operation against a live server (auth on) and fails on a 5xx or a response
the schema does not describe. ``/ws/query`` is described by AsyncAPI
(``/asyncapi.json``, server/asyncapi.py).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from legalstream import __version__
from legalstream.events import ErrorCode
from legalstream.settings import Settings

_JSON = "application/json"
_SSE = "text/event-stream"

_ERROR = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "code": {"type": "string"},
        "metadata": {"type": "object"},
    },
    "required": ["error", "code"],
}

_WHY = {
    400: "Malformed JSON, or a malformed header (code `invalid_json`, `invalid_field`).",
    401: "Missing, malformed or expired bearer token (code `unauthorized`).",
    403: "The token lacks the scope, or may not query the case (`forbidden`, `forbidden_case`).",
    404: "Unknown or expired run, or another user's (`unknown_run`); unknown case (`unknown_case`) or document (`unknown_document`).",
    409: "The case exists (`case_exists`).",
    413: "A file or the whole upload is too large (`file_too_large`, `upload_too_large`).",
    415: "A file type no loader reads (`unsupported_type`).",
    422: "Invalid fields (code names the field's problem: docs/protocol.md).",
    429: "Rate limited (`rate_limited`, `Retry-After` header).",
    503: "Server busy, the bus unavailable or the ingest queue full (`server_busy`, `bus_unavailable`, `ingest_busy`); retry.",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {
            "description": _WHY[status],
            "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status in statuses
    }


def _ok(schema: dict[str, Any], media: str = _JSON, description: str = "OK") -> dict[str, Any]:
    return {"200": {"description": description, "content": {media: {"schema": schema}}}}


def _stream(description: str) -> dict[str, Any]:
    ok = _ok({"type": "string"}, _SSE, description)
    ok["200"]["headers"] = {
        "X-Run-Id": {"description": "The run's id (resume it by it).", "schema": {"type": "string"}}
    }
    return ok


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {_JSON: {"schema": schema}}}


_AUTH = [{"bearer": []}]
_OBJECT = {"type": "object"}
_CASE_ID = {
    "name": "case_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
}
_DOC_ID = {
    "name": "doc_id",
    "in": "path",
    "required": True,
    "description": "The document id (`case-1/complaint.md`); segments URL-encoded, `/` kept.",
    # No control characters: the route's path convertor does not match a newline.
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^\\x00-\\x1f\\x7f]+$"},
}
_CASE_REF = {"$ref": "#/components/schemas/CaseInfo"}
_DOC_REF = {"$ref": "#/components/schemas/DocumentInfo"}


def _casefile_paths(settings: Settings) -> dict[str, Any]:
    """``/cases`` (POST) and the case's documents: docs/casefiles.md."""
    limits = settings.casefiles
    return {
        "/cases/{case_id}": {
            "delete": {
                "summary": "Delete a case and all its documents. Scope `documents`.",
                "security": _AUTH,
                "parameters": [_CASE_ID],
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "case_id": {"type": "integer"},
                                "deleted_chunks": {"type": "integer", "minimum": 0},
                            },
                            "required": ["case_id", "deleted_chunks"],
                        }
                    ),
                    **_errors(401, 403, 404, 422, 503),
                },
            }
        },
        "/cases/{case_id}/documents": {
            "get": {
                "summary": "A case's documents (no text). Scope `query`.",
                "security": _AUTH,
                "parameters": [_CASE_ID],
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "case_id": {"type": "integer"},
                                "documents": {"type": "array", "items": _DOC_REF},
                            },
                            "required": ["case_id", "documents"],
                        }
                    ),
                    **_errors(401, 403, 404, 422, 503),
                },
            },
            "post": {
                "summary": (
                    "Upload files (multipart field `file`, repeated; `title` for one file) "
                    "to ingest; progress on the events stream. Scope `documents`."
                ),
                "security": _AUTH,
                "parameters": [_CASE_ID],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "file": {
                                        "type": "array",
                                        "items": {"type": "string", "format": "binary"},
                                        "minItems": 1,
                                        "maxItems": limits.max_files,
                                    },
                                    "title": {"type": "string", "minLength": 1},
                                },
                                "required": ["file"],
                            }
                        }
                    },
                },
                "responses": {
                    "202": {
                        "description": "Queued; the job's progress is on the events stream.",
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "job_id": {"type": "string"},
                                        "case_id": {"type": "integer"},
                                        "files": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "properties": {
                                                    "name": {"type": "string"},
                                                    "size": {"type": "integer"},
                                                },
                                                "required": ["name", "size"],
                                            },
                                        },
                                    },
                                    "required": ["job_id", "case_id", "files"],
                                }
                            }
                        },
                    },
                    **_errors(400, 401, 403, 404, 413, 415, 422, 503),
                },
            },
        },
        "/cases/{case_id}/documents/events": {
            "get": {
                "summary": (
                    "The case's document events, live (SSE): document_progress, "
                    "documents_changed, ingest_job_done (docs/protocol.md). Scope `query`."
                ),
                "security": _AUTH,
                "parameters": [_CASE_ID],
                "responses": {
                    **_ok({"type": "string"}, _SSE, "`event: <type>` / `data: <frame>`."),
                    **_errors(401, 403, 404, 422, 503),
                },
            }
        },
        "/cases/{case_id}/documents/{doc_id}": {
            "get": {
                "summary": (
                    "A document's metadata and text; with `start` and `end`, the span as "
                    "`highlight`. Scope `query`."
                ),
                "security": _AUTH,
                "parameters": [
                    _CASE_ID,
                    _DOC_ID,
                    {"name": "start", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "end", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ],
                "responses": {
                    **_ok(
                        {
                            "allOf": [_DOC_REF],
                            "type": "object",
                            "properties": {
                                "text": {"type": "string"},
                                "highlight": {
                                    "type": "object",
                                    "properties": {
                                        "start": {"type": "integer"},
                                        "end": {"type": "integer"},
                                        "text": {"type": "string"},
                                    },
                                    "required": ["start", "end", "text"],
                                },
                            },
                            "required": ["text"],
                        }
                    ),
                    **_errors(401, 403, 404, 422, 503),
                },
            },
            "delete": {
                "summary": "Delete one document. Scope `documents`.",
                "security": _AUTH,
                "parameters": [_CASE_ID, _DOC_ID],
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "case_id": {"type": "integer"},
                                "doc_id": {"type": "string"},
                                "deleted_chunks": {"type": "integer", "minimum": 0},
                            },
                            "required": ["case_id", "doc_id", "deleted_chunks"],
                        }
                    ),
                    **_errors(401, 403, 404, 422, 503),
                },
            },
        },
    }


_RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"$ref": "#/components/schemas/RunId"},
}


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The OpenAPI document of this app's HTTP endpoints."""
    settings = settings or Settings()
    agui = "/" + settings.agui.path.strip("/")
    max_chars = settings.server.max_query_chars
    paths: dict[str, Any] = {
        "/ws/status": {
            "get": {
                "summary": "Open WebSocket connections (all workers). Scope `status`.",
                "security": _AUTH,
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "active_connections": {"type": "integer", "minimum": 0},
                                "connections": {"type": "array", "items": _OBJECT},
                            },
                            "required": ["active_connections", "connections"],
                        }
                    ),
                    **_errors(401, 403, 503),
                },
            }
        },
        "/ws/broadcast": {
            "post": {
                "summary": "Send a `broadcast` frame to every client. Scope `admin`.",
                "security": _AUTH,
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "message": {"type": "string", "minLength": 1, "maxLength": 4000},
                            "type": {"type": "string", "minLength": 1, "maxLength": 64},
                        },
                        "required": ["message"],
                    }
                ),
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "delivered": {"type": "boolean"},
                                "recipients": {"type": "integer", "minimum": 0},
                                "type": {"type": "string"},
                            },
                            "required": ["delivered", "recipients", "type"],
                        }
                    ),
                    **_errors(400, 401, 403, 422, 503),
                },
            }
        },
        "/ws/ticket": {
            "post": {
                "summary": "Trade the bearer token for a single-use WebSocket ticket.",
                "security": _AUTH,
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "ticket": {"type": "string"},
                                "expires_in": {"type": "integer"},
                                "subprotocols": {"type": "array", "items": {"type": "string"}},
                            },
                            "required": ["ticket", "expires_in", "subprotocols"],
                        }
                    ),
                    **_errors(401, 403, 429, 503),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness.",
                "security": [],
                "responses": _ok(
                    {
                        "type": "object",
                        "properties": {"status": {"const": "ok"}},
                        "required": ["status"],
                    }
                ),
            }
        },
        "/ready": {
            "get": {
                "summary": "Readiness: the engine is loaded and the agent built.",
                "security": [],
                "responses": {
                    **_ok({"$ref": "#/components/schemas/Readiness"}),
                    "503": {
                        "description": "Starting, stopping, failed, or an LLM setting that cannot work.",
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Readiness"}}},
                    },
                },
            }
        },
        "/query": {
            "post": {
                "summary": (
                    "Ask and wait: the WebSocket query's body, one JSON answer. Scope `query`. "
                    "A case that does not exist: 404 `unknown_case`, no run."
                ),
                "security": _AUTH,
                "requestBody": _body({"$ref": "#/components/schemas/Query"}),
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "run_id": {"type": "string"},
                                "status": {"const": "complete"},
                                "answer": {"type": "string"},
                                "citations": {"type": "array", "items": _OBJECT},
                            },
                            "required": ["run_id", "status", "answer", "citations"],
                        }
                    ),
                    **_errors(400, 401, 403, 404, 422, 429, 503),
                    "499": {
                        "description": "The run was cancelled.",
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/RunFailed"}}},
                    },
                    "502": {
                        "description": "The run failed (agent, LLM or retrieval).",
                        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/RunFailed"}}},
                    },
                },
            }
        },
        "/runs": {
            "get": {
                "summary": "Runs the caller may see, newest first. Scope `query`.",
                "security": _AUTH,
                "parameters": [
                    {"name": "case_id", "in": "query", "schema": {"type": "integer"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {
                                "runs": {
                                    "type": "array",
                                    "items": {"$ref": "#/components/schemas/RunRecord"},
                                }
                            },
                            "required": ["runs"],
                        }
                    ),
                    **_errors(401, 403, 422, 503),
                },
            }
        },
        "/runs/{run_id}/events": {
            "get": {
                "summary": "A run's stored events, one seed frame (JSON) per line. Scope `query`.",
                "security": _AUTH,
                "parameters": [_RUN_ID],
                "responses": {
                    **_ok({"type": "string"}, "application/x-ndjson"),
                    **_errors(401, 403, 404, 503),
                },
            }
        },
        "/cases": {
            "get": {
                "summary": "Cases the caller may query, with document and chunk counts.",
                "security": _AUTH,
                "responses": {
                    **_ok(
                        {
                            "type": "object",
                            "properties": {"cases": {"type": "array", "items": _OBJECT}},
                            "required": ["cases"],
                        }
                    ),
                    **_errors(401, 403),
                },
            },
            "post": {
                "summary": "Create a case (no `case_id`: the next free one). Scope `documents`.",
                "security": _AUTH,
                "requestBody": _body(
                    {
                        "type": "object",
                        "properties": {
                            "title": {"type": "string", "minLength": 1, "maxLength": 500},
                            "case_id": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
                        },
                        "required": ["title"],
                    }
                ),
                "responses": {
                    "201": {
                        "description": "Created.",
                        "content": {
                            _JSON: {
                                "schema": {
                                    "type": "object",
                                    "properties": {"case": _CASE_REF},
                                    "required": ["case"],
                                }
                            }
                        },
                    },
                    **_errors(400, 401, 403, 409, 422, 503),
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics. Scope `status` (open in auth mode none).",
                "security": _AUTH,
                "responses": {
                    **_ok({"type": "string"}, "text/plain"),
                    "404": {
                        "description": "Metrics are not enabled.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **_errors(401, 403),
                },
            }
        },
        "/asyncapi.json": {
            "get": {
                "summary": "The AsyncAPI 3.0 description of /ws/query.",
                "security": [],
                "responses": _ok(_OBJECT),
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document.", "security": [], "responses": _ok(_OBJECT)}
        },
    }
    paths.update(_casefile_paths(settings))
    if settings.agui.enabled:
        paths[agui] = {
            "post": {
                "summary": "Run the agent for an AG-UI client: AG-UI 1.0 events over SSE (docs/agui.md).",
                "security": _AUTH,
                "requestBody": _body({"$ref": "#/components/schemas/RunAgentInput"}),
                "responses": {
                    **_stream("AG-UI events; each has `id: <run_id>:<seq>[.<k>]`."),
                    **_errors(400, 401, 403, 404, 422, 429, 503),
                },
            }
        }
        paths[agui + "/runs/{run_id}"] = {
            "get": {
                "summary": "A run's AG-UI events after Last-Event-ID, exactly once, on any worker.",
                "security": _AUTH,
                "parameters": [
                    _RUN_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "description": "`<run_id>:<seq>` or `<run_id>:<seq>.<k>`; none: from the start.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "threadId",
                        "in": "query",
                        "description": "The thread id RUN_STARTED carries (default: the run id).",
                        "schema": {"type": "string", "maxLength": 256},
                    },
                ],
                "responses": {
                    **_stream("AG-UI events after the position."),
                    **_errors(400, 401, 403, 404, 422, 503),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "legalstream HTTP API",
            "version": __version__,
            "description": (
                'REST and AG-UI endpoints. Errors are `{"error", "code"}`; codes: '
                + ", ".join(f"`{c.value}`" for c in ErrorCode)
                + ". The WebSocket protocol is at /asyncapi.json."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": {
                "Error": _ERROR,
                "RunId": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"},
                "CaseInfo": {
                    "type": "object",
                    "properties": {
                        "case_id": {"type": "integer"},
                        "title": {"type": ["string", "null"]},
                        "documents": {"type": "integer", "minimum": 0},
                        "chunks": {"type": "integer", "minimum": 0},
                        "created_at": {"type": ["number", "null"]},
                    },
                    "required": ["case_id", "title", "documents", "chunks"],
                },
                "DocumentInfo": {
                    "type": "object",
                    "properties": {
                        "doc_id": {"type": "string"},
                        "case_id": {"type": "integer"},
                        "title": {"type": "string"},
                        "chunks": {"type": "integer"},
                        "chars": {"type": "integer"},
                        "pages": {"type": ["integer", "null"]},
                        "content_hash": {"type": "string"},
                        "source_path": {"type": ["string", "null"]},
                        "file_type": {"type": ["string", "null"]},
                        "size_bytes": {"type": ["integer", "null"]},
                        "ingested_at": {"type": ["number", "null"]},
                        "source_name": {"type": ["string", "null"]},
                        "warnings": {"type": "array", "items": {"type": "string"}},
                    },
                    "required": ["doc_id", "case_id", "title", "chunks"],
                },
                "Query": {
                    "type": "object",
                    "properties": {
                        "query": {"type": "string", "minLength": 1, "maxLength": max_chars},
                        "case_id": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1},
                        "stream_thinking": {"type": "boolean"},
                    },
                    "required": ["query", "case_id"],
                },
                "RunFailed": {
                    "type": "object",
                    "properties": {
                        "run_id": {"type": "string"},
                        "status": {"type": "string"},
                        "error": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                        "draft": {
                            "type": "object",
                            "description": (
                                "With code `ungrounded_answer` or `truncated_answer`: the "
                                "unverified answer `{answer, citations, grounding}`"
                            ),
                        },
                    },
                    "required": ["run_id", "status"],
                },
                "Readiness": {
                    "type": "object",
                    "properties": {
                        "status": {
                            "enum": ["ready", "starting", "stopping", "failed", "misconfigured"]
                        },
                        "error": {"type": "string"},
                    },
                    "required": ["status"],
                },
                "RunRecord": {
                    "type": "object",
                    "properties": {
                        "run_id": {"type": "string"},
                        "query": {"type": "string"},
                        "case_id": {},
                        "user": {"type": "string"},
                        "status": {"enum": ["running", "complete", "error", "cancelled"]},
                        "started_at": {"type": "number"},
                        "ended_at": {"type": ["number", "null"]},
                        "event_count": {"type": "integer"},
                    },
                    "required": ["run_id", "status", "user"],
                },
                "RunAgentInput": {
                    "type": "object",
                    "description": (
                        "AG-UI's RunAgentInput. The question is the last `user` message; the "
                        "case is `forwardedProps.caseId`, else `state.caseId`."
                    ),
                    "properties": {
                        "threadId": {"type": "string"},
                        "runId": {"type": "string"},
                        "messages": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "role": {"enum": ["user", "assistant", "system", "developer"]},
                                    "content": {"type": "string"},
                                },
                                "required": ["id", "role", "content"],
                            },
                        },
                        "forwardedProps": {
                            "type": "object",
                            "properties": {
                                "caseId": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1}
                            },
                            "required": ["caseId"],
                        },
                        "state": _OBJECT,
                        "tools": {"type": "array", "items": _OBJECT},
                        "context": {"type": "array", "items": _OBJECT},
                    },
                    "required": ["threadId", "runId", "messages"],
                },
            },
        },
    }


async def endpoint(request: Request) -> Response:
    """``GET /openapi.json``."""
    return JSONResponse(openapi_document(request.app.state.settings))
