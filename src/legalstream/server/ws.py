"""The ``/ws/query`` endpoint: check the handshake, then hand over to a Session.

An ASGI app rather than a Starlette endpoint function: the session writes
batches of frames through the raw ASGI ``send`` (an extension message of our
uvicorn protocol), which Starlette's ``WebSocket`` does not pass on.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from legalstream.server.auth import AuthError
from legalstream.server.protocol import CLOSE_POLICY
from legalstream.server.session import Session
from legalstream.server.state import services

log = logging.getLogger("legalstream.ws")


class QueryEndpoint:
    """ASGI app of ``/ws/query``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        svc = services(websocket)
        # Everything that can refuse a client happens before accept(), so a refused
        # client gets a plain HTTP status instead of an opened-then-closed socket.
        try:
            svc.auth.check_origin(websocket)
            if svc.limits is not None:
                await svc.limits.connection_attempt(websocket)
            principal, subprotocol = await svc.auth.authenticate(websocket)
            if svc.shutting_down:
                raise AuthError(503, "server shutting down")
            if len(svc.registry) >= svc.settings.server.max_connections:
                raise AuthError(503, "too many connections")
            if svc.limits is not None:
                await svc.limits.admit_connection(principal, svc.registry)
        except AuthError as exc:
            await _deny(websocket, exc.status, exc.message, exc.headers)
            return
        await websocket.accept(subprotocol=subprotocol)
        await Session(websocket, send, svc, principal).serve()


async def _deny(
    websocket: WebSocket, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    response = JSONResponse(
        {"error": message, "code": _code(status)}, status_code=status, headers=headers
    )
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:
        await websocket.close(code=CLOSE_POLICY, reason=message)


def _code(status: int) -> str:
    return {401: "unauthorized", 403: "forbidden", 429: "rate_limited", 503: "unavailable"}.get(
        status, "refused"
    )
