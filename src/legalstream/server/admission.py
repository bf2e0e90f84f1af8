"""Who may start a run, and who may see one: the same rules for WebSocket and REST.

Every refusal is a :class:`~legalstream.server.protocol.ProtocolError` with
the code a client acts on (and the HTTP status REST answers with); refusals
of a query are written to the audit log.
"""

from __future__ import annotations

import anyio

from legalstream.audit import audit_refused
from legalstream.bus.base import RunRecord
from legalstream.events import ErrorCode, Event
from legalstream.runs import Run, ServerBusy
from legalstream.server.auth import Principal
from legalstream.server.limits import RateLimited
from legalstream.server.protocol import ProtocolError, QueryCommand
from legalstream.server.state import Services


def authorize_query(
    principal: Principal,
    cmd: QueryCommand,
    *,
    client_ip: str | None,
    connection_id: str | None = None,
) -> None:
    """The token allows this query (scope, case); raises ``ProtocolError`` otherwise."""
    if not principal.has_scope("query"):
        raise ProtocolError(ErrorCode.FORBIDDEN, "token lacks the 'query' scope", status=403)
    if not principal.may_query(cmd.case_id):
        _refused(principal, cmd, ErrorCode.FORBIDDEN_CASE, client_ip, connection_id)
        raise ProtocolError(
            ErrorCode.FORBIDDEN_CASE, f"not allowed to query case {cmd.case_id}", status=403
        )


async def start_query(
    svc: Services,
    principal: Principal,
    cmd: QueryCommand,
    *,
    client_ip: str | None,
    connection_id: str | None = None,
) -> Run:
    """Check the case exists and the rate limits, then start the run; raises
    ``ProtocolError`` when refused."""
    await check_case(svc, principal, cmd, client_ip=client_ip, connection_id=connection_id)
    if svc.limits is not None:
        limited = await svc.limits.check_query(
            principal, client_ip, svc.runs.active_for(principal.user)
        )
        if limited is not None:
            _refused(principal, cmd, ErrorCode.RATE_LIMITED, client_ip, connection_id)
            raise ProtocolError(
                ErrorCode.RATE_LIMITED, limited.message, metadata=limited.metadata(), status=429
            )
    try:
        return await svc.runs.start(
            query=cmd.query,
            case_id=cmd.case_id,
            stream_thinking=cmd.stream_thinking,
            user=principal.user,
            connection_id=connection_id,
            client_ip=client_ip,
        )
    except ServerBusy as exc:
        raise ProtocolError(ErrorCode.SERVER_BUSY, str(exc), status=503) from None


async def check_case(
    svc: Services,
    principal: Principal,
    cmd: QueryCommand,
    *,
    client_ip: str | None,
    connection_id: str | None = None,
) -> None:
    """A query about a case that does not exist is refused (``unknown_case``), no run.

    Asked of the engine off the loop (two point lookups). Without an engine
    (an app built with a test producer and no retrieval) every case is admitted.
    """
    engine = svc.engine
    if engine is None:
        return
    if not await anyio.to_thread.run_sync(engine.case_exists, cmd.case_id):
        _refused(principal, cmd, ErrorCode.UNKNOWN_CASE, client_ip, connection_id)
        raise ProtocolError(ErrorCode.UNKNOWN_CASE, f"no case {cmd.case_id}", status=404)


async def check_replay(svc: Services, principal: Principal) -> None:
    """A replay or resume may read history (its requests count against a budget)."""
    if svc.limits is not None:
        _limited(await svc.limits.check_replay(principal))


async def charge_history(svc: Services, principal: Principal, events: list[Event]) -> None:
    """The bytes of stored history about to be sent count against the user's budget."""
    if svc.limits is not None and svc.limits.enabled and events:
        nbytes = sum(len(event.encoded) for event in events)
        _limited(await svc.limits.charge_replay(principal, nbytes))


def _limited(verdict: RateLimited | None) -> None:
    if verdict is not None:
        raise ProtocolError(
            ErrorCode.RATE_LIMITED, verdict.message, metadata=verdict.metadata(), status=429
        )


def may_see(principal: Principal, record: RunRecord) -> bool:
    """Whether ``principal`` may list, read, replay, resume or cancel this run.

    The run must be theirs (or they an admin), and their token must still
    allow the run's case: a case taken away from a token takes its history too.
    """
    return (principal.is_admin or record.user == principal.user) and principal.may_query(
        record.case_id
    )


def _refused(
    principal: Principal,
    cmd: QueryCommand,
    outcome: ErrorCode,
    client_ip: str | None,
    connection_id: str | None,
) -> None:
    audit_refused(
        user=principal.user,
        client_ip=client_ip,
        case_id=cmd.case_id,
        outcome=str(outcome),
        connection_id=connection_id,
    )
