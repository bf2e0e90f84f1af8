"""The AG-UI endpoints: start a run and stream it as AG-UI events over SSE; resume one.

* ``POST <path>`` takes a ``RunAgentInput`` and answers ``text/event-stream``.
* ``GET <path>/runs/{run_id}`` streams a run from the position in its
  ``Last-Event-ID`` header (or ``?lastEventId=``; none: from its start), on
  any worker, exactly once.

Who may ask and see what, the rate limits and the audit log are
:mod:`legalstream.server.admission`'s, as on ``/ws/query``; what a resume
sends is :func:`legalstream.server.resume.plan_resume`'s. Refusals before
the stream starts are JSON (``{"error", "code"}``, 4xx); a run that fails
ends its stream with ``RUN_ERROR`` and a code. docs/agui.md has the details.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
from ag_ui.core import RunAgentInput
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from legalstream.bus.base import BusUnavailable, SubscriptionOverflow, UnknownTopic, run_topic
from legalstream.dialects.agui import (
    KEEPALIVE,
    MEDIA_TYPE,
    AguiStream,
    AguiTranslator,
    BadEventId,
    Position,
    parse_event_id,
    sse_many,
)
from legalstream.events import ErrorCode, Event, EventType
from legalstream.server.admission import authorize_query, may_see, start_query
from legalstream.server.protocol import ProtocolError, QueryCommand, parse_query
from legalstream.server.rest import json_body, require_scope
from legalstream.server.resume import plan_resume
from legalstream.server.state import Services, services
from legalstream.settings import AguiSettings

log = logging.getLogger("legalstream.agui")

#: Where in a ``RunAgentInput`` the case id is read, first match wins.
CASE_ID_FIELDS = (("forwardedProps", "caseId"), ("state", "caseId"))

#: Run events replayed per SSE write (a resume of a long run is sent in steps).
REPLAY_STEP = 256

_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def routes(settings: AguiSettings) -> list[BaseRoute]:
    if not settings.enabled:
        return []
    path = "/" + settings.path.strip("/")
    return [
        Route(path, start_run, methods=["POST"]),
        Route(path + "/runs/{run_id}", resume_run, methods=["GET"]),
    ]


async def start_run(request: Request) -> Response:
    """``POST <path>``: a ``RunAgentInput`` in, the run's AG-UI events out."""
    principal = await require_scope(request, "query")
    svc = services(request)
    cmd, thread_id = parse_run_input(
        await json_body(request), max_query_chars=svc.settings.server.max_query_chars
    )
    client_ip = request.client.host if request.client else None
    authorize_query(principal, cmd, client_ip=client_ip)
    run = await start_query(svc, principal, cmd, client_ip=client_ip)
    stream = AguiStream(AguiTranslator(run.run_id, thread_id))
    follow_after = run.opening[-1].seq if run.opening else 0
    body = _sse(svc, run.run_id, stream, run.opening, follow_after, attach=True)
    return StreamingResponse(
        body, media_type=MEDIA_TYPE, headers={**_HEADERS, "X-Run-Id": run.run_id}
    )


async def resume_run(request: Request) -> Response:
    """``GET <path>/runs/{run_id}``: the run's AG-UI events after ``Last-Event-ID``."""
    principal = await require_scope(request, "query")
    svc = services(request)
    run_id = request.path_params["run_id"]
    last = request.headers.get("last-event-id") or request.query_params.get("lastEventId")
    try:
        position = parse_event_id(last, run_id) if last else Position()
    except BadEventId as exc:
        raise ProtocolError(ErrorCode.INVALID_FIELD, f"Last-Event-ID: {exc}", status=400) from None
    thread_id = request.query_params.get("threadId") or run_id
    if len(thread_id) > 256:
        raise ProtocolError(ErrorCode.INVALID_FIELD, "threadId is longer than 256 characters")
    record = await svc.bus.records.get(run_id)
    if record is None or not may_see(principal, record):
        raise ProtocolError(ErrorCode.UNKNOWN_RUN, "unknown or expired run", status=404)
    try:
        history = await svc.bus.hub.history(run_topic(run_id), after_seq=0)
    except UnknownTopic:
        history = None
    # From seq 0: the AG-UI stream of a position depends on everything before it.
    plan = plan_resume(run_id, 0, record, history)
    stream = AguiStream(AguiTranslator(run_id, thread_id), position)
    headers = {**_HEADERS, "X-Run-Id": run_id}
    if record.final is not None and position.index is None and position.seq >= record.event_count:
        return Response(b"", media_type=MEDIA_TYPE, headers=headers)  # nothing after it
    lost = [event for event in plan.send if event.type is EventType.RESUME_FAILED]
    if lost:
        return Response(sse_many(stream.fail(lost[0])), media_type=MEDIA_TYPE, headers=headers)
    body = _sse(
        svc,
        run_id,
        stream,
        plan.backlog,
        max(plan.follow_after or 0, plan.backlog_until) if plan.follow_after is not None else None,
        attach=record.status == "running",
    )
    return StreamingResponse(body, media_type=MEDIA_TYPE, headers=headers)


async def _sse(
    svc: Services,
    run_id: str,
    stream: AguiStream,
    backlog: list[Event],
    follow_after: int | None,
    *,
    attach: bool,
) -> AsyncIterator[bytes]:
    """The stream: ``backlog`` first, then the run's live events after ``follow_after``.

    Ends after ``RUN_FINISHED``/``RUN_ERROR``, or without one when the client
    falls behind or the bus fails: the client resumes from its last id.
    """
    if attach:
        svc.runs.attach(run_id)
    try:
        for start in range(0, len(backlog), REPLAY_STEP):
            items = []
            for event in backlog[start : start + REPLAY_STEP]:
                items += stream.feed(event)
            if items:
                yield sse_many(items)
            # A long history is translated in steps, with other work between them.
            await anyio.lowlevel.checkpoint()
        if stream.ended or follow_after is None:
            return
        keepalive = svc.settings.agui.keepalive_seconds
        sub = svc.bus.hub.subscribe(run_topic(run_id), after_seq=follow_after)
        try:
            while not stream.ended:
                batch: list[Event] | None = None
                with anyio.move_on_after(keepalive):
                    batch = await sub.next_batch()
                if batch is None:
                    yield KEEPALIVE
                    continue
                items = []
                for event in batch:
                    items += stream.feed(event)
                if items:
                    yield sse_many(items)
        except StopAsyncIteration:
            pass  # the run's stream ended (its final event is out)
        except (SubscriptionOverflow, BusUnavailable) as exc:
            log.info("agui stream of run %s cut: %r (the client resumes)", run_id, exc)
        finally:
            await sub.aclose()
    finally:
        if attach:
            svc.runs.detach(run_id)


def parse_run_input(data: Any, *, max_query_chars: int) -> tuple[QueryCommand, str]:
    """The query a ``RunAgentInput`` asks, and its thread id; ``ProtocolError`` otherwise.

    The question is the text of the last ``user`` message; the case id is
    ``forwardedProps.caseId``, else ``state.caseId`` (an integer).
    """
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, "body must be a RunAgentInput object")
    try:
        run_input = RunAgentInput.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"not a RunAgentInput: {where}: {first['msg']}"[:300]
        ) from None
    question = _question(data.get("messages"))
    case_id = _case_id(data)
    try:
        cmd = parse_query({"query": question, "case_id": case_id}, max_query_chars=max_query_chars)
    except ProtocolError as exc:
        if exc.code is ErrorCode.MISSING_QUERY:
            exc.message = "the last user message must have text (the question)"
        elif exc.code is ErrorCode.INVALID_CASE_ID:
            exc.message = "forwardedProps.caseId (or state.caseId) must be a non-negative integer"
        elif exc.code is ErrorCode.QUERY_TOO_LONG:
            exc.message = f"the question is longer than {max_query_chars} characters"
        raise
    return cmd, run_input.thread_id


def _question(messages: Any) -> str | None:
    for message in reversed(messages if isinstance(messages, list) else []):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):  # multimodal: its text parts
            return " ".join(
                part["text"]
                for part in content
                if isinstance(part, dict)
                and part.get("type") == "text"
                and isinstance(part.get("text"), str)
            )
        return None
    return None


def _case_id(data: dict[str, Any]) -> Any:
    for outer, key in CASE_ID_FIELDS:
        holder = data.get(outer)
        if isinstance(holder, dict) and key in holder:
            return holder[key]
    return None
