"""HTTP endpoints: status, broadcast, health, the non-streaming query, run history,
tickets, metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import orjson
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from legalstream.bus.base import BROADCAST, UnknownTopic, run_topic
from legalstream.events import UNVERIFIED_CODES, ErrorCode, Event, EventType, FinalAnswer
from legalstream.server.admission import (
    authorize_query,
    charge_history,
    check_replay,
    may_see,
    start_query,
)
from legalstream.server.auth import AuthError, Principal
from legalstream.server.protocol import ProtocolError, parse_query
from legalstream.server.state import Services, services

MAX_BODY = 64 * 1024


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    return ORJSONResponse({"error": message, "code": code, **extra}, status_code=status)


async def require_scope(request: Request, scope: str) -> Principal:
    """The request's principal; 401 without valid credentials, 403 without ``scope``."""
    svc = services(request)
    principal, _ = await svc.auth.authenticate(request)
    if not principal.has_scope(scope):
        raise AuthError(403, f"token lacks the {scope!r} scope")
    return principal


async def json_body(request: Request) -> Any:
    """The request's JSON body, at most ``MAX_BODY`` bytes (``ProtocolError`` otherwise)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"body larger than {MAX_BODY} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(
            ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}", status=400
        ) from None


async def status(request: Request) -> Response:
    await require_scope(request, "status")
    svc = services(request)
    connections = await _all_connections(svc)
    return ORJSONResponse({"active_connections": len(connections), "connections": connections})


async def _all_connections(svc: Services) -> list[dict[str, Any]]:
    return await svc.bus.presence.connections()


async def broadcast(request: Request) -> Response:
    await require_scope(request, "admin")
    svc = services(request)
    data = await json_body(request)
    if not isinstance(data, dict):
        return error(422, ErrorCode.INVALID_MESSAGE, "body must be a JSON object")
    message, kind = data.get("message"), data.get("type", "notification")
    if not isinstance(message, str) or not message.strip():
        return error(422, ErrorCode.INVALID_FIELD, "'message' must be a non-empty string")
    if len(message) > 4000:
        return error(422, ErrorCode.INVALID_FIELD, "'message' is longer than 4000 characters")
    if not isinstance(kind, str) or not kind or len(kind) > 64:
        return error(422, ErrorCode.INVALID_FIELD, "'type' must be a short string")
    event = Event(
        type=EventType.BROADCAST,
        action=kind,
        output_data={"message": message},
        metadata={"type": kind},
    )
    reached = len(await _all_connections(svc))
    await svc.bus.hub.publish(BROADCAST, event)
    return ORJSONResponse({"delivered": True, "recipients": reached, "type": kind})


async def health(request: Request) -> Response:
    return ORJSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    svc = services(request)
    if svc.startup_error:
        return ORJSONResponse({"status": "failed", "error": svc.startup_error}, status_code=503)
    if not svc.ready or svc.shutting_down:
        return ORJSONResponse(
            {"status": "starting" if not svc.shutting_down else "stopping"}, status_code=503
        )
    # A configuration no query can succeed with (a provider without its API key)
    # is not ready: say why, rather than fail every query.
    problem = svc.runs.runner_problem()
    if problem is not None:
        return ORJSONResponse({"status": "misconfigured", "error": problem}, status_code=503)
    return ORJSONResponse({"status": "ready"})


async def query(request: Request) -> Response:
    """The non-streaming interface: same body as the WebSocket query, one JSON answer."""
    principal = await require_scope(request, "query")
    svc = services(request)
    cmd = parse_query(await json_body(request), max_query_chars=svc.settings.server.max_query_chars)
    cmd = dataclasses.replace(cmd, stream_thinking=False)
    client_ip = request.client.host if request.client else None
    authorize_query(principal, cmd, client_ip=client_ip)
    run = await start_query(svc, principal, cmd, client_ip=client_ip)
    svc.runs.attach(run.run_id)
    try:
        await run.done.wait()
    finally:
        # A client that hangs up cancels its run, as on the WebSocket.
        svc.runs.detach(run.run_id)
    final = run.final
    assert final is not None
    body: dict[str, Any] = {"run_id": run.run_id, "status": run.status}
    if final.type is EventType.AGENT_EXECUTION_COMPLETE:
        body.update(FinalAnswer.from_payload(final.output_data).to_payload())
        return ORJSONResponse(body)
    body.update({"error": final.error, "code": final.code})
    if final.code in UNVERIFIED_CODES and isinstance(final.output_data, dict):
        # The answer exists but did not pass its check: the client gets it
        # marked as a draft, never in the fields a verified answer uses.
        body["draft"] = FinalAnswer.from_payload(final.output_data).to_payload()
    return ORJSONResponse(body, status_code=499 if run.status == "cancelled" else 502)


async def list_runs(request: Request) -> Response:
    principal = await require_scope(request, "query")
    svc = services(request)
    case_param = request.query_params.get("case_id")
    case_id: int | None = None
    if case_param is not None:
        try:
            case_id = int(case_param)
        except ValueError:
            return error(422, ErrorCode.INVALID_CASE_ID, "case_id must be an integer")
    try:
        limit = max(1, min(int(request.query_params.get("limit", "100") or 100), 1000))
    except ValueError:
        return error(422, ErrorCode.INVALID_FIELD, "limit must be an integer")
    records = await svc.bus.records.list_runs(case_id=case_id, limit=limit)
    visible = [r.to_dict() for r in records if may_see(principal, r)]
    return ORJSONResponse({"runs": visible})


async def run_events(request: Request) -> Response:
    principal = await require_scope(request, "query")
    svc = services(request)
    run_id = request.path_params["run_id"]
    record = await svc.bus.records.get(run_id)
    if record is None and svc.runs.ids.issued(run_id):
        return error(410, ErrorCode.HISTORY_LOST, "the run's history is gone")
    if record is None or not may_see(principal, record):
        return error(404, ErrorCode.UNKNOWN_RUN, "unknown or expired run")
    await check_replay(svc, principal)
    try:
        history = await svc.bus.hub.history(run_topic(run_id))
    except UnknownTopic:
        return error(404, ErrorCode.UNKNOWN_RUN, "run history expired")
    await charge_history(svc, principal, history.events)

    async def lines():
        for event in history.events:
            yield event.encoded + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def cases(request: Request) -> Response:
    principal = await require_scope(request, "query")
    svc = services(request)
    engine = svc.engine
    if engine is None:
        return ORJSONResponse({"cases": []})
    infos = await anyio.to_thread.run_sync(engine.cases)
    items = []
    for info in infos:
        if hasattr(info, "to_dict"):
            item = info.to_dict()
        elif dataclasses.is_dataclass(info):  # CaseInfo is a slots dataclass: no vars()
            item = dataclasses.asdict(info)  # type: ignore[arg-type]
        else:
            item = dict(vars(info))
        if principal.may_query(item.get("case_id")):
            items.append(item)
    return ORJSONResponse({"cases": items})


async def ticket(request: Request) -> Response:
    """``POST /ws/ticket``: trade a bearer token for a single-use handshake ticket."""
    svc = services(request)
    principal = await require_scope(request, "query")
    if svc.limits is not None:
        await svc.limits.check_ticket(principal)
    try:
        issued = await svc.auth.issue_ticket(principal)
    except OverflowError:
        raise AuthError(503, "too many outstanding tickets") from None
    ttl = svc.settings.auth.ticket_ttl_seconds
    body = {
        "ticket": issued,
        "expires_in": ttl,
        "subprotocols": ["legalstream.v1", f"ticket.{issued}"],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format.

    Open in auth mode ``none``; otherwise the caller needs the ``status`` scope
    (Prometheus: ``authorization: {credentials_file: ...}`` in the scrape config).
    """
    metrics: Any = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return Response("metrics are not enabled\n", status_code=404, media_type="text/plain")
    svc = getattr(request.app.state, "services", None)
    if svc is not None and svc.settings.auth.mode != "none":
        await require_scope(request, "status")
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)
