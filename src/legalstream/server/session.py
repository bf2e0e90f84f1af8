"""One WebSocket connection on ``/ws/query``: read commands, answer them, stream runs.

Per connection there is one reader (``serve`` itself), an
:class:`~legalstream.server.outbox.Outbox` for what goes out, and per run it
streams a :class:`~legalstream.server.follower.RunFollower` the hub pushes
the run's events into. A slow client therefore cannot stall the bus or other
clients: its outbox fills and it is closed with 1013 (try again later); a
resume picks its runs up again (docs/protocol.md, "Slow consumers").
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any

import anyio
from starlette.websockets import WebSocket

from legalstream.bus.base import (
    BusUnavailable,
    RunRecord,
    SubscriptionOverflow,
    UnknownTopic,
    run_topic,
)
from legalstream.dialects.agui import lost_history, ws_encoder
from legalstream.events import ErrorCode, Event, EventType, error_event
from legalstream.server.admission import (
    authorize_query,
    charge_history,
    check_replay,
    may_see,
    start_query,
)
from legalstream.server.auth import Principal
from legalstream.server.connections import ConnectionInfo
from legalstream.server.follower import EventFilter, RunFollower
from legalstream.server.outbox import Outbox, Send
from legalstream.server.protocol import (
    AGUI,
    CLOSE_INTERNAL_ERROR,
    CLOSE_NORMAL,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    CancelCommand,
    Command,
    ProtocolError,
    QueryCommand,
    ReplayCommand,
    ResumeCommand,
    SubscribeCommand,
    parse_message,
)
from legalstream.server.resume import plan_lost_history, plan_resume
from legalstream.server.state import Services

log = logging.getLogger("legalstream.session")


class Session:
    def __init__(
        self, websocket: WebSocket, send: Send, svc: Services, principal: Principal
    ) -> None:
        self.ws = websocket
        self.svc = svc
        self.principal = principal
        self.id = uuid.uuid4().hex
        client = websocket.client
        self.client_ip = client.host if client else None
        self.info = ConnectionInfo(
            connection_id=self.id,
            user=principal.user,
            client=f"{client.host}:{client.port}" if client else None,
        )
        self._metrics = svc.metrics
        self.outbox = Outbox(
            send,
            websocket.scope,
            self.id,
            self.info,
            capacity=svc.settings.server.send_queue_size,
            spawn=self._spawn,
            on_overflow=self._overflowed,
            on_broken=lambda: self.close(CLOSE_NORMAL, ""),
            metrics=svc.metrics,
        )
        #: The scope of serve(): set while the connection is served.
        self._scope: anyio.CancelScope | None = None
        #: Writer, closer and pacer tasks. Spawned with asyncio, not a task group:
        #: the bus pushes events from loop callbacks, where anyio cannot spawn.
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscription: frozenset[str] | None = None
        #: The runs this connection streams, by run id.
        self._follows: dict[str, RunFollower] = {}
        self.closing = False

    # -- outbound -----------------------------------------------------------

    def send_event(self, event: Event) -> None:
        """Queue a frame; never waits. A full outbox marks a slow consumer."""
        self.outbox.send_events([event])

    def send_error(self, code: ErrorCode | str, message: str, **kw: Any) -> None:
        self.send_event(error_event(code, message, **kw))

    def _overflowed(self) -> None:
        if self._metrics is not None:
            self._metrics.slow_consumer("send_buffer_full")
        self.close(CLOSE_TRY_AGAIN, "slow consumer: send buffer full")

    def close(self, code: int, reason: str) -> None:
        """Close from anywhere (reaper, followers, shutdown); idempotent."""
        if self.closing:
            return
        self.closing = True
        self.outbox.close()
        if self._scope is not None:
            self._spawn(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        # A peer that never reads may never take the close frame either.
        with anyio.move_on_after(2.0):
            try:
                await self.ws.close(code, reason)
            except Exception:
                pass
        if self._scope is not None:
            self._scope.cancel()  # ends the read loop, which awaits the client

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._scope is None:  # not (or no longer) served: nothing may start
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("session %s: task failed", self.id, exc_info=task.exception())

    # -- main loop ----------------------------------------------------------

    async def serve(self) -> None:
        svc = self.svc
        svc.registry.add(self.info)
        svc.sessions[self.id] = self
        if self._metrics is not None:
            self._metrics.connection_opened()
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                self.send_event(
                    Event(
                        type=EventType.CONNECTION_ESTABLISHED,
                        action="connect",
                        metadata={
                            "connection_id": self.id,
                            "user": self.principal.user,
                            "protocol": "legalstream/1",
                        },
                    )
                )
                await self._read_loop()
        finally:
            self._scope = None
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait(tasks)
            svc.registry.remove(self.id)
            svc.sessions.pop(self.id, None)
            for follower in list(self._follows.values()):
                follower.finish()
            for run_id in list(self.info.runs):
                svc.runs.detach(run_id)
            self.info.runs.clear()

    async def _read_loop(self) -> None:
        max_bytes = self.svc.settings.server.max_frame_bytes
        max_chars = self.svc.settings.server.max_query_chars
        while not self.closing:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            self.info.touch()
            self.info.messages_received += 1
            text = message.get("text")
            if text is None:
                if message.get("bytes") is not None:
                    if len(message["bytes"]) > max_bytes:
                        self.close(CLOSE_TOO_BIG, "frame too large")
                        return
                    self.send_error(
                        ErrorCode.BINARY_NOT_SUPPORTED,
                        "binary frames are not supported; send JSON text",
                    )
                continue
            # uvicorn enforces ws_max_size too; this holds when mounted elsewhere.
            if len(text) > max_bytes or len(text.encode()) > max_bytes:
                self.close(CLOSE_TOO_BIG, "frame too large")
                return
            try:
                await self._dispatch(parse_message(text, max_query_chars=max_chars))
            except ProtocolError as exc:
                self.send_error(exc.code, exc.message, run_id=exc.run_id, metadata=exc.metadata)
            except BusUnavailable as exc:
                self.send_error(ErrorCode.SERVER_BUSY, f"event bus unavailable, try again: {exc}")

    async def _dispatch(self, command: Command) -> None:
        match command:
            case QueryCommand():
                await self._query(command)
            case CancelCommand(run_id=run_id):
                if run_id not in self.info.runs or not self.svc.runs.cancel(run_id):
                    raise ProtocolError(ErrorCode.UNKNOWN_RUN, "no active run with that id", run_id)
            case ResumeCommand():
                await self._resume(command)
            case ReplayCommand():
                await self._replay(command)
            case SubscribeCommand(events=events):
                self._subscription = events

    # -- commands -----------------------------------------------------------

    async def _query(self, cmd: QueryCommand) -> None:
        if self.principal.expires_at is not None and time.time() > self.principal.expires_at:
            self.close(CLOSE_TOKEN_EXPIRED, "token expired")
            return
        authorize_query(self.principal, cmd, client_ip=self.client_ip, connection_id=self.id)
        cap = self.svc.settings.server.max_runs_per_connection
        if len(self.info.runs) >= cap:
            raise ProtocolError(
                ErrorCode.TOO_MANY_RUNS, f"at most {cap} concurrent runs per connection"
            )
        run = await start_query(
            self.svc,
            self.principal,
            cmd,
            client_ip=self.client_ip,
            connection_id=self.id,
        )
        events = cmd.events if cmd.events is not None else self._subscription
        allowed = EventFilter(cmd.stream_thinking, events)
        if cmd.dialect == AGUI:
            self.outbox.encoders[run.run_id] = ws_encoder(run.run_id, 0, self.id)
        # The opening frames (on the bus already) go out now, in one write and in
        # order with this connection's other replies: an error for its next
        # message cannot overtake them. The bus streams the rest.
        opening = [event for event in run.opening if allowed(event)]
        if opening:
            self.outbox.send_events(opening)
        self._follow(run.run_id, run.opening[-1].seq or 0, allowed)

    async def _visible_record(self, run_id: str) -> RunRecord | None:
        """The run's record if this principal may see it; None: ours, but its history is gone."""
        record = await self.svc.bus.records.get(run_id)
        if record is None and self.svc.runs.ids.issued(run_id):
            return None
        if record is None or not may_see(self.principal, record):
            raise ProtocolError(ErrorCode.UNKNOWN_RUN, "unknown or expired run", run_id)
        return record

    async def _resume(self, cmd: ResumeCommand) -> None:
        record = await self._visible_record(cmd.run_id)
        await check_replay(self.svc, self.principal)
        if cmd.dialect == AGUI and cmd.run_id not in self.info.runs:
            await self._agui_resume(cmd)
        if record is None:
            for event in plan_lost_history(cmd.run_id, cmd.after_seq).send:
                self.send_event(event)
            if cmd.run_id not in self.info.runs:
                self.outbox.encoders.pop(cmd.run_id, None)
            return
        try:
            history = await self.svc.bus.hub.history(run_topic(cmd.run_id), after_seq=cmd.after_seq)
        except UnknownTopic:
            history = None
        plan = plan_resume(cmd.run_id, cmd.after_seq, record, history)
        await charge_history(self.svc, self.principal, plan.backlog)
        for event in plan.send:
            self.send_event(event)
        if plan.follow_after is None:
            if cmd.run_id not in self.info.runs:
                self.outbox.encoders.pop(cmd.run_id, None)
            return
        if cmd.run_id in self.info.runs:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "this connection already follows that run", cmd.run_id
            )
        self._follow(
            cmd.run_id,
            plan.follow_after,
            EventFilter(cmd.stream_thinking, cmd.events or self._subscription),
            backlog=plan.backlog,
            backlog_until=plan.backlog_until,
        )

    async def _agui_resume(self, cmd: ResumeCommand) -> None:
        """Frames of this run in AG-UI from now on; what is before ``after_seq`` is
        translated first, unsent (the AG-UI stream at a position depends on it)."""
        encoder = ws_encoder(cmd.run_id, cmd.after_seq, self.id)
        self.outbox.encoders[cmd.run_id] = encoder
        if cmd.after_seq == 0:
            return
        try:
            history = await self.svc.bus.hub.history(run_topic(cmd.run_id), after_seq=0)
        except UnknownTopic:
            return  # nothing is held: the plan says so (resume_failed)
        if history.first_seq == 1:
            encoder.prime(history.events)
        else:  # what the client has can no longer be translated: RUN_ERROR, the end
            self.outbox.send_events([lost_history(cmd.run_id, cmd.after_seq, history.first_seq)])

    async def _replay(self, cmd: ReplayCommand) -> None:
        record = await self._visible_record(cmd.run_id)
        if record is None:
            raise ProtocolError(
                ErrorCode.HISTORY_LOST, "the run's history is gone", cmd.run_id, status=410
            )
        if record.status == "running":
            raise ProtocolError(
                ErrorCode.RUN_NOT_FINISHED, "run is still going: use resume", cmd.run_id
            )
        await check_replay(self.svc, self.principal)
        try:
            history = await self.svc.bus.hub.history(run_topic(cmd.run_id), after_seq=cmd.after_seq)
        except UnknownTopic:
            raise ProtocolError(ErrorCode.UNKNOWN_RUN, "run history expired", cmd.run_id) from None
        await charge_history(self.svc, self.principal, history.events)
        await self.outbox.send_history(history.events)

    # -- following runs -------------------------------------------------------

    def _follow(
        self,
        run_id: str,
        after_seq: int,
        allowed: EventFilter,
        *,
        backlog: list[Event] | None = None,
        backlog_until: int = 0,
    ) -> None:
        """Stream a run after ``after_seq``; ``backlog`` (up to ``backlog_until``) first.

        ``backlog`` is history the caller already read: the hub then only
        delivers what comes after it.
        """
        self.info.runs.add(run_id)
        self.svc.runs.attach(run_id)
        # History may be long; live events behind it get the bus's usual room.
        room = self.svc.settings.bus.subscriber_buffer + max(0, backlog_until - after_seq)
        follower = RunFollower(
            run_id, allowed, self.outbox, self, self._spawn, backlog_until=backlog_until, room=room
        )
        self._follows[run_id] = follower
        if backlog:
            try:
                follower.deliver(backlog)
            except SubscriptionOverflow as exc:
                follower.end(exc)
                return
            after_seq = max(after_seq, backlog_until)
        if not follower.done:
            # On the in-process bus, what history remains comes before this returns.
            self.svc.bus.hub.follow(follower.topic, follower, after_seq=after_seq)

    def follower_done(self, follower: RunFollower) -> None:
        self.svc.bus.hub.unfollow(follower.topic, follower)
        self.outbox.encoders.pop(follower.run_id, None)
        self._follows.pop(follower.run_id, None)
        if follower.run_id in self.info.runs:
            self.info.runs.discard(follower.run_id)
            self.svc.runs.detach(follower.run_id)
        self.outbox.wake()  # the writer may end now that there is no run to wait for

    def follower_cut(self, follower: RunFollower, error: Exception) -> None:
        if isinstance(error, SubscriptionOverflow):
            if self._metrics is not None and not self.closing:
                self._metrics.slow_consumer("fell_behind_run")
            self.close(CLOSE_TRY_AGAIN, "slow consumer: fell behind the run")
        elif isinstance(error, BusUnavailable):
            self.close(CLOSE_TRY_AGAIN, "event bus unavailable: resume later")
        else:  # a fault on our side: the stream has a hole now
            self.close(CLOSE_INTERNAL_ERROR, "internal error: resume the run")
