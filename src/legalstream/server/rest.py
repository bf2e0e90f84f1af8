"""HTTP endpoints: status, broadcast, health, the non-streaming query, run history."""

from __future__ import annotations

import dataclasses
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from legalstream.audit import audit_refused
from legalstream.bus.base import BROADCAST, UnknownTopic, run_topic
from legalstream.events import ErrorCode, Event, EventType
from legalstream.runs import ServerBusy
from legalstream.server.auth import AuthError, Principal
from legalstream.server.protocol import ProtocolError, QueryCommand, parse_message
from legalstream.server.state import Services, services

MAX_BODY = 64 * 1024


class ORJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def error(status: int, code: str, message: str, **extra: Any) -> Response:
    return ORJSONResponse({"error": message, "code": code, **extra}, status_code=status)


async def _principal(request: Request, scope: str) -> Principal:
    svc = services(request)
    principal, _ = await svc.auth.authenticate(request)
    if not principal.has_scope(scope):
        raise AuthError(403, f"token lacks the {scope!r} scope")
    return principal


async def _json_body(request: Request) -> Any:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"body larger than {MAX_BODY} bytes")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"body is not valid JSON: {exc}") from None


async def status(request: Request) -> Response:
    await _principal(request, "status")
    svc = services(request)
    connections = await _all_connections(svc)
    return ORJSONResponse({"active_connections": len(connections), "connections": connections})


async def _all_connections(svc: Services) -> list[dict[str, Any]]:
    cluster = getattr(svc.bus, "cluster_connections", None)
    if cluster is not None:
        return await cluster(svc.registry)
    return svc.registry.snapshot()


async def broadcast(request: Request) -> Response:
    await _principal(request, "admin")
    svc = services(request)
    data = await _json_body(request)
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
    await svc.bus.publish(BROADCAST, event)
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
    return ORJSONResponse({"status": "ready"})


async def query(request: Request) -> Response:
    """The non-streaming interface: same body as the WebSocket query, one JSON answer."""
    principal = await _principal(request, "query")
    svc = services(request)
    data = await _json_body(request)
    try:
        cmd = parse_message(
            orjson.dumps(data).decode(), max_query_chars=svc.settings.server.max_query_chars
        )
    except ProtocolError as exc:
        return error(422, exc.code, exc.message)
    except orjson.JSONEncodeError:
        # Parsed JSON nested deeper than orjson.dumps allows (254 levels).
        return error(422, ErrorCode.INVALID_MESSAGE, "body is nested too deeply")
    if not isinstance(cmd, QueryCommand):
        return error(422, ErrorCode.INVALID_MESSAGE, "body must be a query")
    client_ip = request.client.host if request.client else None
    if not principal.may_query(cmd.case_id):
        audit_refused(
            user=principal.user, client_ip=client_ip, case_id=cmd.case_id, outcome="forbidden_case"
        )
        return error(403, ErrorCode.FORBIDDEN_CASE, f"not allowed to query case {cmd.case_id}")
    if svc.limits is not None:
        limited = await svc.limits.check_query(
            principal, client_ip, svc.runs.active_for(principal.user)
        )
        if limited is not None:
            audit_refused(
                user=principal.user,
                client_ip=client_ip,
                case_id=cmd.case_id,
                outcome="rate_limited",
            )
            response = error(
                429, ErrorCode.RATE_LIMITED, limited.message, metadata=limited.metadata()
            )
            response.headers["Retry-After"] = str(max(1, round(limited.retry_after + 0.5)))
            return response
    try:
        run = await svc.runs.start(
            query=cmd.query,
            case_id=cmd.case_id,
            stream_thinking=False,
            user=principal.user,
            client_ip=client_ip,
        )
    except ServerBusy as exc:
        return error(503, ErrorCode.SERVER_BUSY, str(exc))
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
        body.update(final.output_data or {})
        return ORJSONResponse(body)
    body.update({"error": final.error, "code": final.code})
    return ORJSONResponse(body, status_code=499 if run.status == "cancelled" else 502)


async def list_runs(request: Request) -> Response:
    principal = await _principal(request, "query")
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
    records = await svc.bus.list_runs(case_id=case_id, limit=limit)
    visible = [r.to_dict() for r in records if principal.is_admin or r.user == principal.user]
    return ORJSONResponse({"runs": visible})


async def run_events(request: Request) -> Response:
    principal = await _principal(request, "query")
    svc = services(request)
    run_id = request.path_params["run_id"]
    record = await svc.bus.get_run(run_id)
    if record is None or not (principal.is_admin or record.user == principal.user):
        return error(404, ErrorCode.UNKNOWN_RUN, "unknown or expired run")
    try:
        history = await svc.bus.history(run_topic(run_id))
    except UnknownTopic:
        return error(404, ErrorCode.UNKNOWN_RUN, "run history expired")

    async def lines():
        for event in history.events:
            yield event.encoded + b"\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


async def cases(request: Request) -> Response:
    principal = await _principal(request, "query")
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
