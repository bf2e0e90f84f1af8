"""Case files over HTTP (issue 17): cases, their documents, uploads and ingest progress.

Reads need the ``query`` scope, writes (create, upload, delete) the
``documents`` scope; both need the token to allow the case. Errors are
``{"error", "code"}`` as everywhere (rest.py). Engine calls run off the event
loop; uploads are parsed by Starlette's multipart parser (files spooled to
disk past 1 MiB) under a byte limit on the whole body, then queued for the
ingest worker (server/ingest_jobs.py), whose progress every worker's
``GET /cases/{id}/documents/events`` streams from the bus.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any

import anyio
from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Message, Receive

from legalstream.bus.base import BusUnavailable, SubscriptionOverflow, case_topic
from legalstream.bus.hub import Subscription
from legalstream.events import ErrorCode, EventType
from legalstream.server.auth import Principal
from legalstream.server.ingest_jobs import IngestBusy, IngestJob, UploadedFile, case_event
from legalstream.server.protocol import ProtocolError
from legalstream.server.rest import ORJSONResponse, json_body, require_scope
from legalstream.server.state import Services, services

log = logging.getLogger("legalstream.casefiles")

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keepalive\n\n"
#: Largest case id (JSON-safe integer, as a query's case_id).
MAX_CASE_ID = 2**53 - 1
#: Longest title of a case or document.
MAX_TITLE = 500


def routes() -> list[Route]:
    # /events before {doc_id:path}: a path parameter would take "events" too.
    return [
        Route("/cases", create_case, methods=["POST"]),
        Route("/cases/{case_id}", delete_case, methods=["DELETE"]),
        Route("/cases/{case_id}/documents", list_documents, methods=["GET"]),
        Route("/cases/{case_id}/documents", upload, methods=["POST"]),
        Route("/cases/{case_id}/documents/events", events, methods=["GET"]),
        Route("/cases/{case_id}/documents/{doc_id:path}", get_document, methods=["GET"]),
        Route("/cases/{case_id}/documents/{doc_id:path}", delete_document, methods=["DELETE"]),
    ]


def _fail(status: int, code: ErrorCode, message: str) -> ProtocolError:
    return ProtocolError(code, message, status=status)


async def _case(request: Request, scope: str) -> tuple[Services, Principal, int]:
    """Who asks (scope checked first: a request without a token is 401, whatever its
    path), the case id, and that the case exists and the token allows it."""
    principal = await require_scope(request, scope)
    svc = services(request)
    case_id = _case_id(request.path_params["case_id"])
    if not principal.may_query(case_id):
        raise _fail(403, ErrorCode.FORBIDDEN_CASE, f"not allowed to use case {case_id}")
    engine = svc.engine
    if engine is None or not await anyio.to_thread.run_sync(engine.case_exists, case_id):
        raise _fail(404, ErrorCode.UNKNOWN_CASE, f"no case {case_id}")
    return svc, principal, case_id


def _case_id(raw: Any) -> int:
    try:
        case_id = int(raw)
    except (TypeError, ValueError):
        raise _fail(422, ErrorCode.INVALID_CASE_ID, "case_id must be an integer") from None
    if not 0 <= case_id <= MAX_CASE_ID:
        raise _fail(422, ErrorCode.INVALID_CASE_ID, f"case_id must be 0..{MAX_CASE_ID}")
    return case_id


def _engine(svc: Services) -> Any:
    if svc.engine is None:
        raise _fail(503, ErrorCode.SERVER_BUSY, "the retrieval engine is not loaded")
    return svc.engine


# -- cases ------------------------------------------------------------------------------


async def create_case(request: Request) -> Response:
    """``POST /cases`` ``{"title", "case_id"?}``: 201 with the case; 409 ``case_exists``."""
    principal = await require_scope(request, "documents")
    svc = services(request)
    data = await json_body(request)
    if not isinstance(data, dict):
        raise _fail(422, ErrorCode.INVALID_MESSAGE, "body must be a JSON object")
    title = data.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE:
        raise _fail(
            422, ErrorCode.INVALID_FIELD, f"'title' must be a non-empty string of <= {MAX_TITLE}"
        )
    raw_id = data.get("case_id")
    if raw_id is not None and (not isinstance(raw_id, int) or isinstance(raw_id, bool)):
        raise _fail(422, ErrorCode.INVALID_CASE_ID, "case_id must be an integer")
    engine = _engine(svc)
    assert svc.ingest is not None  # loaded with the engine
    # Check-then-create in order within this process (an id is not handed out twice).
    async with svc.ingest.case_lock:
        case_id = _case_id(raw_id) if raw_id is not None else await _next_id(engine, principal)
        if not principal.may_query(case_id):
            raise _fail(403, ErrorCode.FORBIDDEN_CASE, f"not allowed to use case {case_id}")
        if await anyio.to_thread.run_sync(engine.case_exists, case_id):
            raise _fail(409, ErrorCode.CASE_EXISTS, f"case {case_id} exists")
        info = await anyio.to_thread.run_sync(engine.create_case, case_id, title.strip())
    return ORJSONResponse({"case": info.to_dict()}, status_code=201)


async def _next_id(engine: Any, principal: Principal) -> int:
    infos = await anyio.to_thread.run_sync(engine.cases)
    taken = {c.case_id for c in infos}
    if principal.cases is not None:
        # A token limited to some cases gets the first of them that is free.
        free = sorted(c for c in principal.cases if c not in taken)
        if not free:
            raise _fail(403, ErrorCode.FORBIDDEN_CASE, "every case this token allows exists")
        return free[0]
    return max(taken, default=0) + 1


async def delete_case(request: Request) -> Response:
    """``DELETE /cases/{case_id}``: the case and all its documents."""
    svc, _, case_id = await _case(request, "documents")
    engine = _engine(svc)
    docs = await anyio.to_thread.run_sync(engine.documents, case_id)
    deleted = await anyio.to_thread.run_sync(engine.delete_case, case_id)
    await _changed(svc, case_id, removed=[d.doc_id for d in docs])
    return ORJSONResponse({"case_id": case_id, "deleted_chunks": deleted})


async def _changed(svc: Services, case_id: int, *, removed: list[str]) -> None:
    event = case_event(
        EventType.DOCUMENTS_CHANGED,
        case_id,
        {"case_id": case_id, "added": [], "removed": removed},
    )
    if svc.ingest is not None:
        await svc.ingest.publish(event)


# -- documents --------------------------------------------------------------------------


async def list_documents(request: Request) -> Response:
    svc, _, case_id = await _case(request, "query")
    docs = await anyio.to_thread.run_sync(_engine(svc).documents, case_id)
    return ORJSONResponse({"case_id": case_id, "documents": [d.to_dict() for d in docs]})


async def get_document(request: Request) -> Response:
    """One document's metadata and text; ``?start=&end=`` adds the highlighted span."""
    svc, _, case_id = await _case(request, "query")
    doc_id = request.path_params["doc_id"]
    engine = _engine(svc)
    try:
        doc = await anyio.to_thread.run_sync(engine.document, case_id, doc_id)
    except LookupError:  # the engine's UnknownDocument
        raise _fail(
            404, ErrorCode.UNKNOWN_DOCUMENT, f"no document {doc_id!r} in case {case_id}"
        ) from None
    body = doc.to_dict()
    start, end = request.query_params.get("start"), request.query_params.get("end")
    if start is not None or end is not None:
        try:
            s, e = int(start or ""), int(end or "")
        except ValueError:
            raise _fail(422, ErrorCode.INVALID_FIELD, "start and end must be integers") from None
        if not 0 <= s <= e <= len(doc.text):
            raise _fail(422, ErrorCode.INVALID_FIELD, f"need 0 <= start <= end <= {len(doc.text)}")
        body["highlight"] = {"start": s, "end": e, "text": doc.text[s:e]}
    return ORJSONResponse(body)


async def delete_document(request: Request) -> Response:
    svc, _, case_id = await _case(request, "documents")
    doc_id = request.path_params["doc_id"]
    engine = _engine(svc)
    exists = await anyio.to_thread.run_sync(engine.store.get_document, case_id, doc_id)
    if exists is None:
        raise _fail(
            404, ErrorCode.UNKNOWN_DOCUMENT, f"no document {doc_id!r} in case {case_id}"
        ) from None
    deleted = await anyio.to_thread.run_sync(engine.delete_document, case_id, doc_id)
    await _changed(svc, case_id, removed=[doc_id])
    return ORJSONResponse({"case_id": case_id, "doc_id": doc_id, "deleted_chunks": deleted})


# -- upload -----------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


def _counting(receive: Receive, limit: int) -> Callable[[], Awaitable[Message]]:
    """``receive`` that stops the body at ``limit`` bytes (chunked bodies have no length)."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
        return message

    return wrapped


async def upload(request: Request) -> Response:
    """``POST /cases/{case_id}/documents``: multipart ``file`` (1..N) and ``title``; 202."""
    svc, principal, case_id = await _case(request, "documents")
    cfg = svc.settings.casefiles
    if svc.shutting_down or svc.ingest is None:
        raise _fail(503, ErrorCode.INGEST_BUSY, "not accepting uploads (shutting down)")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _fail(400, ErrorCode.INVALID_UPLOAD, "the body must be multipart/form-data")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > cfg.max_upload_bytes:
        raise _fail(
            413,
            ErrorCode.UPLOAD_TOO_LARGE,
            f"the upload is larger than {cfg.max_upload_bytes} bytes",
        )
    limited = Request(request.scope, _counting(request.receive, cfg.max_upload_bytes))
    try:
        form = await limited.form(max_files=cfg.max_files, max_fields=8, max_part_size=64 * 1024)
    except _TooLarge:
        raise _fail(
            413,
            ErrorCode.UPLOAD_TOO_LARGE,
            f"the upload is larger than {cfg.max_upload_bytes} bytes",
        ) from None
    except (MultiPartException, MultipartParseError, ValueError) as exc:
        raise _fail(400, ErrorCode.INVALID_UPLOAD, f"bad multipart form: {exc}") from None
    try:
        files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        title = form.get("title")
        if not files:
            raise _fail(400, ErrorCode.INVALID_UPLOAD, "no 'file' field with a file in the form")
        if title is not None and not isinstance(title, str):
            raise _fail(400, ErrorCode.INVALID_UPLOAD, "'title' must be a text field")
        if title is not None and len(files) > 1:
            raise _fail(400, ErrorCode.INVALID_UPLOAD, "'title' names one file: upload one")
        if title is not None and (not title.strip() or len(title) > MAX_TITLE):
            raise _fail(
                400, ErrorCode.INVALID_UPLOAD, f"'title' must have 1..{MAX_TITLE} characters"
            )
        uploads = [await _read(f, cfg.max_file_bytes, cfg.allowed_suffixes) for f in files]
    finally:
        await form.close()
    names = [u.name for u in uploads]
    if len(set(names)) != len(names):
        raise _fail(400, ErrorCode.INVALID_UPLOAD, "two files have the same name")
    job = IngestJob(case_id, uploads, title=title.strip() if title else None, user=principal.user)
    try:
        svc.ingest.submit(job)
    except IngestBusy as exc:
        response = ORJSONResponse(
            {"error": str(exc), "code": ErrorCode.INGEST_BUSY}, status_code=503
        )
        response.headers["Retry-After"] = "5"
        return response
    body = {
        "job_id": job.job_id,
        "case_id": case_id,
        "files": [{"name": u.name, "size": u.size} for u in uploads],
    }
    return ORJSONResponse(body, status_code=202)


async def _read(f: UploadFile, max_bytes: int, suffixes: list[str]) -> UploadedFile:
    """The file's name (no folders) and bytes, checked against the limits."""
    name = PurePosixPath((f.filename or "").replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        raise _fail(400, ErrorCode.INVALID_UPLOAD, "every file needs a file name")
    if len(name) > 255:
        raise _fail(400, ErrorCode.INVALID_UPLOAD, "a file name is longer than 255 characters")
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in {s.lower() for s in suffixes}:
        raise _fail(
            415,
            ErrorCode.UNSUPPORTED_TYPE,
            f"{name}: unsupported file type (allowed: {', '.join(sorted(suffixes))})",
        )
    size = f.size
    if size is not None and size > max_bytes:
        raise _fail(413, ErrorCode.FILE_TOO_LARGE, f"{name} is larger than {max_bytes} bytes")
    data = await f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise _fail(413, ErrorCode.FILE_TOO_LARGE, f"{name} is larger than {max_bytes} bytes")
    return UploadedFile(name, data)


# -- progress -----------------------------------------------------------------------------


async def events(request: Request) -> Response:
    """``GET /cases/{case_id}/documents/events``: the case's document events, live (SSE)."""
    svc, _, case_id = await _case(request, "query")
    cfg = svc.settings.casefiles
    sub = Subscription(svc.bus.hub, case_topic(case_id), cfg.subscriber_buffer)
    svc.bus.hub.follow(case_topic(case_id), sub)
    if svc.ingest is not None:
        svc.ingest.streams.add(sub)
    return StreamingResponse(
        _sse(svc, sub, cfg.keepalive_seconds), media_type="text/event-stream", headers=SSE_HEADERS
    )


async def _sse(svc: Services, sub: Subscription, keepalive: float) -> AsyncIterator[bytes]:
    """``event: <type>`` / ``data: <event JSON>`` per event, keepalive comments between."""
    try:
        yield b": connected\n\n"
        while True:
            batch = None
            with anyio.move_on_after(keepalive):
                batch = await sub.next_batch()
            if batch is None:
                yield KEEPALIVE
                continue
            yield b"".join(
                b"event: " + str(e.type).encode() + b"\ndata: " + e.encoded + b"\n\n" for e in batch
            )
    except StopAsyncIteration:
        pass  # shutdown, or the bus closed: the client reconnects
    except (SubscriptionOverflow, BusUnavailable) as exc:
        log.info("case progress stream cut: %r (the client reconnects)", exc)
    finally:
        if svc.ingest is not None:
            svc.ingest.streams.discard(sub)
        await sub.aclose()
