"""One WebSocket connection on ``/ws/query``: read commands, stream runs.

Per connection there is one reader (the handler itself) and, per run it
streams, a :class:`RunFollower` the bus pushes the run's events into. Nothing
on that path awaits the socket: frames are written in place when the transport
takes them at once, and otherwise queue in the bounded outbox for a writer
task that exists only while frames are queued or a run is followed. A slow
client therefore cannot stall the bus or other clients. When the outbox is
full the client is a *slow consumer* and the connection is closed with 1013
(try again later); a resume picks its runs up again (docs/protocol.md, "Slow
consumers").
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from starlette.websockets import WebSocket, WebSocketDisconnect

from legalstream.audit import audit_refused
from legalstream.bus.base import (
    BusUnavailable,
    SubscriptionOverflow,
    UnknownTopic,
    run_topic,
)
from legalstream.events import (
    LIFECYCLE_TYPES,
    ErrorCode,
    Event,
    EventType,
    decode_event,
    error_event,
    frames_for,
)
from legalstream.runs import ServerBusy
from legalstream.server.auth import Principal
from legalstream.server.connections import ConnectionInfo
from legalstream.server.protocol import (
    CancelCommand,
    ProtocolError,
    QueryCommand,
    ReplayCommand,
    ResumeCommand,
    SubscribeCommand,
    parse_message,
)
from legalstream.server.state import Services
from legalstream.server.ws_protocol import SEND_MANY

log = logging.getLogger("legalstream.session")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_TOKEN_EXPIRED = 4401

#: Most frames handed to the server in one batched send (ws_protocol.SEND_MANY).
MAX_SEND_BATCH = 256

_LIFECYCLE = frozenset(t.value for t in LIFECYCLE_TYPES)


class EventFilter:
    """Which event types of a run reach this client (``stream_thinking``, ``events``)."""

    __slots__ = ("allowed",)

    def __init__(self, stream_thinking: bool, events: frozenset[str] | None) -> None:
        allowed: frozenset[str] | None = None if stream_thinking else _LIFECYCLE
        if events is not None:
            allowed = events if allowed is None else allowed & events
        self.allowed = allowed

    def __call__(self, event: Event) -> bool:
        # Final frames always pass: the seed's clients loop until they see one.
        return self.allowed is None or event.type in self.allowed or event.is_final


class Session:
    def __init__(self, websocket: WebSocket, svc: Services, principal: Principal) -> None:
        self.ws = websocket
        self.svc = svc
        self.principal = principal
        self.id = uuid.uuid4().hex
        client = websocket.client
        self.info = ConnectionInfo(
            connection_id=self.id,
            user=principal.user,
            client=f"{client.host}:{client.port}" if client else None,
        )
        self._outbox: deque[bytes] = deque()
        # Starlette's WebSocket.send only passes the standard message types; the
        # batched send is an extension of our uvicorn protocol, so it goes to the
        # raw ASGI send, and only when the server advertised it.
        extension = websocket.scope.get("extensions", {}).get(SEND_MANY)
        self._send_many = websocket._send if extension is not None else None
        #: Writes frames in place when the transport takes them without waiting.
        self._write_nowait: Callable[[list[bytes]], bool] | None = (
            extension.get("write_nowait") if extension is not None else None
        )
        if extension is not None:
            self.info.keepalive = extension.get("keepalive")
        #: The writer holds frames it took from the outbox but has not written yet.
        self._writer_holds = False
        self._capacity = svc.settings.server.send_queue_size
        self.info.queue_capacity = self._capacity
        self._metrics = svc.metrics
        self._writer_running = False
        #: Set (and replaced) each time the writer hands frames to the server.
        self._progress: anyio.Event | None = None
        #: Set when frames arrive for a writer that waits between a run's bursts.
        self._more: anyio.Event | None = None
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
        self.send_events([event])

    def send_events(self, events: list[Event]) -> None:
        """Send frames in order; never waits. A full outbox marks a slow consumer."""
        if self.closing:
            return
        outbox = self._outbox
        frames: list[bytes] | None = None
        if not outbox and not self._writer_holds and self._write_nowait is not None:
            # Nothing of ours is queued, so these overtake nothing: write them in
            # place when the transport takes them (ws_protocol.write_nowait).
            frames = frames_for(events, self.id)
            if self._write_nowait(frames):
                info = self.info
                info.messages_sent += len(frames)
                info.last_sent = time.time()
                if self._metrics is not None:
                    self._metrics.events_delivered(events)
                return
        if len(outbox) + len(events) > self._capacity:
            self.info.dropped += 1
            if self._metrics is not None:
                self._metrics.frame_dropped()
                self._metrics.slow_consumer("send_buffer_full")
            self.close(CLOSE_TRY_AGAIN, "slow consumer: send buffer full")
            return
        outbox.extend(frames if frames is not None else frames_for(events, self.id))
        self.info.queue_depth = len(outbox)
        if self._metrics is not None:
            self._metrics.events_delivered(events)
        if self._writer_running:
            self._wake_writer()
        elif self._scope is not None:
            self._writer_running = True
            self._spawn(self._writer())

    def _wake_writer(self) -> None:
        if self._more is not None:
            self._more.set()
            self._more = None

    async def send_history(self, events: list[Event]) -> None:
        """Queue stored events (replay, a resume's backlog) as the client takes them.

        History can be longer than the send queue; it is the server's burst,
        not the client's lag, so it goes in half-queue steps, each once there
        is room, instead of tripping the slow-consumer policy. A client that
        stops reading holds this task, not memory.
        """
        step = max(1, self._capacity // 2)
        for start in range(0, len(events), step):
            chunk = events[start : start + step]
            while not self.closing and len(self._outbox) + len(chunk) > self._capacity:
                if self._progress is None:
                    self._progress = anyio.Event()
                await self._progress.wait()
            if self.closing:
                return
            self.send_events(chunk)

    def send_error(self, code: ErrorCode | str, message: str, **kw: Any) -> None:
        self.send_event(error_event(code, message, **kw))

    async def _writer(self) -> None:
        # While the connection follows a run the writer waits for the run's next
        # burst instead of ending and being started again for it; an idle
        # connection keeps no writer task (memory per idle connection).
        outbox, info = self._outbox, self.info
        try:
            while True:
                if not outbox:
                    if self.closing or not info.runs:
                        return
                    self._more = more = anyio.Event()
                    await more.wait()
                    continue
                if self._send_many is not None:
                    n = min(len(outbox), MAX_SEND_BATCH)
                    frames = [outbox.popleft() for _ in range(n)]
                    info.queue_depth = len(outbox)
                    self._writer_holds = True
                    try:
                        await self._send_many({"type": SEND_MANY, "frames": frames})
                    finally:
                        self._writer_holds = False
                else:
                    n = 1
                    frame = outbox.popleft()
                    info.queue_depth = len(outbox)
                    await self.ws.send_text(frame.decode())
                info.messages_sent += n
                info.last_sent = time.time()
                if self._progress is not None:
                    self._progress.set()
                    self._progress = None
        except (WebSocketDisconnect, OSError, RuntimeError):
            self.close(CLOSE_NORMAL, "")
        finally:
            self._writer_running = False
            self._more = None

    def close(self, code: int, reason: str) -> None:
        """Close from anywhere (reaper, pumps, shutdown); idempotent."""
        if self.closing:
            return
        self.closing = True
        self._outbox.clear()
        if self._progress is not None:  # a paced history send stops waiting
            self._progress.set()
            self._progress = None
        self._wake_writer()
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
                command = parse_message(text, max_query_chars=max_chars)
                await self._dispatch(command)
            except ProtocolError as exc:
                self.send_error(exc.code, exc.message, run_id=exc.run_id)
            except BusUnavailable as exc:
                self.send_error(ErrorCode.SERVER_BUSY, f"event bus unavailable, try again: {exc}")

    async def _dispatch(self, command: Any) -> None:
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
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED, "token expired; reconnect with a new one")
        if not self.principal.has_scope("query"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "token lacks the 'query' scope")
        if not self.principal.may_query(cmd.case_id):
            self._audit_refused(cmd, ErrorCode.FORBIDDEN_CASE)
            raise ProtocolError(
                ErrorCode.FORBIDDEN_CASE, f"not allowed to query case {cmd.case_id}"
            )
        cap = self.svc.settings.server.max_runs_per_connection
        if len(self.info.runs) >= cap:
            raise ProtocolError(
                ErrorCode.TOO_MANY_RUNS, f"at most {cap} concurrent runs per connection"
            )
        client_ip = self.ws.client.host if self.ws.client else None
        if self.svc.limits is not None:
            limited = await self.svc.limits.check_query(
                self.principal, client_ip, self.svc.runs.active_for(self.principal.user)
            )
            if limited is not None:
                self._audit_refused(cmd, ErrorCode.RATE_LIMITED)
                self.send_error(
                    ErrorCode.RATE_LIMITED, limited.message, metadata=limited.metadata()
                )
                return
        try:
            run = await self.svc.runs.start(
                query=cmd.query,
                case_id=cmd.case_id,
                stream_thinking=cmd.stream_thinking,
                user=self.principal.user,
                connection_id=self.id,
                client_ip=client_ip,
            )
        except ServerBusy as exc:
            raise ProtocolError(ErrorCode.SERVER_BUSY, str(exc)) from None
        events = cmd.events if cmd.events is not None else self._subscription
        allowed = EventFilter(cmd.stream_thinking, events)
        # The opening frames (on the bus already) go out now, in one write and in
        # order with this connection's other replies: an error for its next
        # message cannot overtake them. The bus streams the rest.
        opening = [event for event in run.opening if allowed(event)]
        if opening:
            self.send_events(opening)
        self._follow(run.run_id, run.opening[-1].seq or 0, allowed)

    async def _resume(self, cmd: ResumeCommand) -> None:
        record = await self.svc.bus.get_run(cmd.run_id)
        if record is None:
            raise ProtocolError(ErrorCode.UNKNOWN_RUN, "unknown or expired run", cmd.run_id)
        self._check_owner(record.user, cmd.run_id)
        try:
            history = await self.svc.bus.history(run_topic(cmd.run_id), after_seq=cmd.after_seq)
        except UnknownTopic:
            history = None
        backlog_until = history.last_seq if history is not None else 0
        if history is None and record.status == "running":
            # Nothing of the run is on the bus yet (its first batch is still in
            # flight): nothing was lost, the subscription will replay it.
            after = cmd.after_seq
        elif history is None or history.first_seq > cmd.after_seq + 1:
            # Events after after_seq are gone: say so, and hand over the run's state.
            self.send_event(
                Event(
                    type=EventType.RESUME_FAILED,
                    run_id=cmd.run_id,
                    error="events after after_seq are no longer in history",
                    metadata={
                        "after_seq": cmd.after_seq,
                        "first_available_seq": history.first_seq if history else None,
                        "last_seq": history.last_seq if history else record.event_count,
                        "lost": [
                            cmd.after_seq + 1,
                            (history.first_seq - 1) if history else record.event_count,
                        ],
                        "status": record.status,
                    },
                    output_data=(record.final or {}).get("output_data"),
                )
            )
            if record.final is not None or history is None:
                if record.final is not None:
                    self.send_event(decode_event(record.final))
                return
            after = history.first_seq - 1
        else:
            after = cmd.after_seq
        if cmd.run_id in self.info.runs:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "this connection already follows that run", cmd.run_id
            )
        self._follow(
            cmd.run_id,
            after,
            EventFilter(cmd.stream_thinking, cmd.events or self._subscription),
            backlog_until=backlog_until,
            # What history() returned is the backlog: the bus need not read it again.
            backlog=history.events if history is not None else None,
        )

    async def _replay(self, cmd: ReplayCommand) -> None:
        record = await self.svc.bus.get_run(cmd.run_id)
        if record is None:
            raise ProtocolError(ErrorCode.UNKNOWN_RUN, "unknown or expired run", cmd.run_id)
        self._check_owner(record.user, cmd.run_id)
        if record.status == "running":
            raise ProtocolError(
                ErrorCode.RUN_NOT_FINISHED, "run is still going: use resume", cmd.run_id
            )
        try:
            history = await self.svc.bus.history(run_topic(cmd.run_id), after_seq=cmd.after_seq)
        except UnknownTopic:
            raise ProtocolError(ErrorCode.UNKNOWN_RUN, "run history expired", cmd.run_id) from None
        await self.send_history(history.events)

    def _check_owner(self, owner: str, run_id: str) -> None:
        if owner != self.principal.user and not self.principal.is_admin:
            raise ProtocolError(ErrorCode.UNKNOWN_RUN, "unknown or expired run", run_id)

    def _audit_refused(self, cmd: QueryCommand, outcome: str) -> None:
        audit_refused(
            user=self.principal.user,
            client_ip=self.ws.client.host if self.ws.client else None,
            case_id=cmd.case_id,
            outcome=str(outcome),
            connection_id=self.id,
        )

    # -- following runs ---------------------------------------------------------

    def _follow(
        self,
        run_id: str,
        after_seq: int,
        allowed: EventFilter,
        *,
        backlog_until: int = 0,
        backlog: list[Event] | None = None,
    ) -> None:
        """Stream a run from ``after_seq``; events up to ``backlog_until`` are history.

        ``backlog``, when given, holds the history already read (up to
        ``backlog_until``); the bus then only delivers what comes after it.
        """
        self.info.runs.add(run_id)
        self.svc.runs.attach(run_id)
        follower = RunFollower(self, run_id, after_seq, allowed, backlog_until)
        self._follows[run_id] = follower
        if backlog is not None:
            follower.deliver(backlog)
            after_seq = max(after_seq, backlog_until)
        # On the in-process bus, this delivers what history remains before it returns.
        self.svc.bus.follow(follower.topic, follower, after_seq=after_seq)


class RunFollower:
    """One run a connection streams: the bus pushes the run's events in here.

    Live events go straight to :meth:`Session.send_events` from the bus's
    publish, with no task per run and no buffer of their own (the session's
    send queue is the bound). History (events up to ``backlog_until``: a
    resume's backlog) goes out as the client takes it, from a pacing task;
    whatever arrives meanwhile waits behind it, in order.
    """

    __slots__ = (
        "_ended",
        "_final",
        "_paced",
        "after_seq",
        "allowed",
        "backlog_until",
        "done",
        "run_id",
        "session",
        "topic",
    )

    def __init__(
        self,
        session: Session,
        run_id: str,
        after_seq: int,
        allowed: EventFilter,
        backlog_until: int,
    ) -> None:
        self.session = session
        self.run_id = run_id
        self.topic = run_topic(run_id)
        self.after_seq = after_seq
        self.allowed = allowed
        self.backlog_until = backlog_until
        self.done = False
        self._paced: deque[Event] | None = None
        self._final = False
        self._ended = False

    def deliver(self, events: list[Event]) -> None:
        if self.done:
            return
        frames: list[Event] = []
        final = False
        after, allowed = self.after_seq, self.allowed
        for event in events:
            # Live events can include what the caller already has (the ack).
            if event.seq is not None and event.seq <= after:
                continue
            if allowed(event):
                frames.append(event)
            if event.is_final:
                final = True
                break
        if self._paced is not None or (frames and (frames[0].seq or 0) <= self.backlog_until):
            self._pace(frames, final)
            return
        if frames:
            self.session.send_events(frames)
        if final:
            self.finish()

    def end(self, error: Exception | None = None) -> None:
        if self.done:
            return
        session = self.session
        if isinstance(error, SubscriptionOverflow):
            if session._metrics is not None and not session.closing:
                session._metrics.slow_consumer("fell_behind_run")
            session.close(CLOSE_TRY_AGAIN, "slow consumer: fell behind the run")
        elif isinstance(error, BusUnavailable):
            session.close(CLOSE_TRY_AGAIN, "event bus unavailable: resume later")
        elif error is not None:  # a bug on our side: the stream has a hole now
            session.close(CLOSE_INTERNAL_ERROR, "internal error: resume the run")
        elif self._paced is not None:
            self._ended = True  # the pacer finishes once the history is out
            return
        self.finish()

    def finish(self) -> None:
        """Stop following: unsubscribe, detach from the run, let the writer end."""
        if self.done:
            return
        self.done = True
        session = self.session
        session.svc.bus.unfollow(self.topic, self)
        session._follows.pop(self.run_id, None)
        if self.run_id in session.info.runs:
            session.info.runs.discard(self.run_id)
            session.svc.runs.detach(self.run_id)
        session._wake_writer()  # it may end now that there is no run to wait for

    def _pace(self, frames: list[Event], final: bool) -> None:
        session = self.session
        if self._paced is None:
            if session._scope is None:
                return
            self._paced = deque()
            session._spawn(self._pacer())
        self._paced.extend(frames)
        self._final = self._final or final
        # History may be long; live events behind it get the bus's usual room.
        room = session.svc.settings.bus.subscriber_buffer + max(
            0, self.backlog_until - self.after_seq
        )
        if len(self._paced) > room:
            self.end(SubscriptionOverflow("fell behind while history was sent"))

    async def _pacer(self) -> None:
        paced = self._paced
        assert paced is not None
        session = self.session
        step = max(1, session._capacity // 2)
        while paced and not self.done and not session.closing:
            chunk = [paced.popleft() for _ in range(min(step, len(paced)))]
            await session.send_history(chunk)
        self._paced = None
        if self._final or self._ended:
            self.finish()
