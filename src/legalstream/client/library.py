"""Async Python client for ``/ws/query``: :class:`LegalStreamClient` and its runs.

::

    async with LegalStreamClient("ws://127.0.0.1:8000/ws/query", token=jwt) as c:
        async for event in c.query("What was the defendant's response?", case_id=1):
            print(event["type"], event.get("seq"))
        answer = await c.ask("Who signed the storage agreement?", case_id=1)
        print(answer.answer, answer.citations)

Frames are the server's JSON objects as ``dict`` (the seed's event structure
plus ``run_id``/``seq``/``connection_id``); their types, codes and payloads are
those of :mod:`legalstream.events`. docs/clients.md has the details.

How runs are told apart
    Every run frame carries ``run_id``; a query is acknowledged by
    ``query_received`` (which carries the new ``run_id``) or by an ``error``
    frame without one. The protocol has no client request id, and the two kinds
    of acknowledgement travel different paths on the server, so the client
    sends one query at a time and waits for its acknowledgement before sending
    the next: each run is tied to the call that started it, even when many
    queries are started concurrently on one connection.

Reconnect and resume
    When the connection drops (network, server restart, 1013 slow consumer),
    the client reconnects with exponential backoff and jitter and sends
    ``{"type": "resume", "run_id", "after_seq"}`` for each unfinished run, with
    the last ``seq`` it saw; frames already seen are skipped. A
    ``resume_failed`` frame is passed on to the caller (events were lost from
    the server's history); when the server no longer knows the run at all the
    stream raises :class:`RunError`. The server keeps a run going for
    ``runs.resume_grace_seconds`` after its client vanished (default 0: it is
    cancelled at once, and a resume delivers the cancellation).

Auth
    ``token=`` is sent as ``Authorization: Bearer`` on the handshake; when the
    server refuses that (401), the client trades the token for a single-use
    ticket (``POST /ws/ticket``) and offers it as the ``ticket.<t>`` subprotocol.
    ``ticket_provider=`` (a callable, sync or async, returning a ticket) always
    uses tickets — e.g. when the token lives elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from legalstream.events import (
    FINAL_TYPES,
    UNVERIFIED_CODES,
    ErrorCode,
    EventType,
    FinalAnswer,
    error_code,
)

__all__ = [
    "DEFAULT_URL",
    "Answer",
    "ConnectionLost",
    "LegalStreamClient",
    "RunError",
    "RunStream",
    "ticket_url",
]

SUBPROTOCOL = "legalstream.v1"
DEFAULT_URL = "ws://127.0.0.1:8000/ws/query"
#: Close codes after which reconnecting cannot help.
_FATAL_CLOSE = frozenset({1008, 1009})
# The frame types the reader branches on, as plain module globals: they are compared
# once per frame, and an enum attribute lookup costs more than the comparison.
_QUERY_RECEIVED = EventType.QUERY_RECEIVED.value
_ERROR = EventType.ERROR.value
_RESUME_FAILED = EventType.RESUME_FAILED.value

TicketProvider = Callable[[], "str | Awaitable[str]"]


class RunError(Exception):
    """A run ended with ``agent_execution_error``, or its query was refused.

    ``draft``: with code ``ungrounded_answer`` or ``truncated_answer``, the answer
    that failed its grounding check (answer, citations, grounding), to show as
    unverified; None otherwise.
    """

    def __init__(self, code: str | None, message: str, event: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}" if code else message)
        self.code = code
        self.message = message
        self.event = event
        self.run_id = (event or {}).get("run_id")
        output = (event or {}).get("output_data")
        self.draft: FinalAnswer | None = (
            FinalAnswer.from_payload(output)
            if code in UNVERIFIED_CODES and isinstance(output, dict)
            else None
        )


class ConnectionLost(Exception):
    """The connection dropped and could not be re-established."""


@dataclass(slots=True)
class Answer:
    run_id: str
    answer: str
    citations: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The grounding check (a ``Grounding`` payload; None from a server that sends none).
    grounding: dict[str, Any] | None = None


class RunStream:
    """One run's frames, in ``seq`` order, ending with its final frame.

    Async-iterate it (the first iteration sends the query), or ``await
    stream.started()`` to send it and learn the ``run_id`` first.
    """

    def __init__(
        self,
        client: LegalStreamClient,
        message: dict[str, Any],
    ) -> None:
        self._client = client
        self.message = message
        self.run_id: str | None = None
        self.last_seq = 0
        self.final: dict[str, Any] | None = None
        self._queue: asyncio.Queue[dict[str, Any] | BaseException] = asyncio.Queue()
        self._ack: asyncio.Future[None] | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._done = False
        #: A resume was sent and nothing of the run has arrived since.
        self._resuming = False

    @property
    def stream_thinking(self) -> bool:
        return bool(self.message.get("stream_thinking", True))

    @property
    def live(self) -> bool:
        return self.run_id is not None and self.final is None and not self._done

    async def started(self) -> str:
        """Send the query (once) and wait for ``query_received``; returns the run id."""
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._client._start(self))
        await asyncio.shield(self._start_task)
        assert self.run_id is not None
        return self.run_id

    async def cancel(self) -> None:
        if self.run_id is None:
            await self.started()
        assert self.run_id is not None
        await self._client.cancel(self.run_id)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        if self._start_task is None:
            try:
                await self.started()
            except BaseException:
                self._done = True
                raise
        item = await self._queue.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if item.get("type") in FINAL_TYPES:
            self._done = True
        return item

    # -- fed by the client's reader --------------------------------------------------

    def _push(self, frame: dict[str, Any]) -> None:
        self._resuming = False
        seq = frame.get("seq")
        if isinstance(seq, int):
            if seq <= self.last_seq:
                return  # already delivered before a reconnect
            self.last_seq = seq
        if frame.get("type") in FINAL_TYPES:
            self.final = frame
        self._queue.put_nowait(frame)

    def _fail(self, exc: BaseException) -> None:
        if self.final is None:
            self.final = {"type": EventType.AGENT_EXECUTION_ERROR.value, "error": str(exc)}
        self._queue.put_nowait(exc)


class LegalStreamClient:
    """A connection to ``/ws/query`` that multiplexes runs and survives reconnects."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        ticket_provider: TicketProvider | None = None,
        stream_thinking: bool = True,
        reconnect: bool = True,
        max_reconnect_attempts: int = 8,
        backoff_initial: float = 0.25,
        backoff_max: float = 10.0,
        open_timeout: float = 10.0,
        ack_timeout: float = 30.0,
        max_size: int | None = 16 * 1024 * 1024,
    ) -> None:
        self.url = url
        self.token = token
        self.ticket_provider = ticket_provider
        self.stream_thinking = stream_thinking
        self.reconnect = reconnect
        self.max_reconnect_attempts = max_reconnect_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.open_timeout = open_timeout
        self.ack_timeout = ack_timeout
        self.max_size = max_size
        self.connection_id: str | None = None
        #: connection_established frame of the current connection.
        self.hello: dict[str, Any] | None = None
        #: Number of successful reconnects (for tests and probes).
        self.reconnects = 0
        self._ws: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._dead: BaseException | None = None
        self._runs: dict[str, RunStream] = {}
        self._awaiting: RunStream | None = None
        self._send_lock = asyncio.Lock()
        self._use_ticket = ticket_provider is not None
        self._handlers: dict[str, list[Callable[[dict[str, Any]], Any]]] = {}
        self._connect_lock = asyncio.Lock()
        self._handler_tasks: set[asyncio.Future[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> LegalStreamClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> dict[str, Any]:
        """Open the connection; returns the ``connection_established`` frame."""
        async with self._connect_lock:
            if self._ws is not None and self._connected.is_set():
                assert self.hello is not None
                return self.hello
            self._closing = False
            self._dead = None
            await self._open()
            self._reader = asyncio.create_task(self._read_loop(), name="legalstream-reader")
            assert self.hello is not None
            return self.hello

    async def close(self) -> None:
        self._closing = True
        self._connected.clear()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        for stream in list(self._runs.values()):
            if stream.live:
                stream._fail(ConnectionLost("client closed"))
        self._runs.clear()

    def on(self, event_type: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        """Call ``handler(frame)`` for every frame of a type (``"*"``: every frame)."""
        self._handlers.setdefault(event_type, []).append(handler)

    # -- runs ------------------------------------------------------------------------

    def query(
        self,
        query: str,
        case_id: int,
        *,
        stream_thinking: bool | None = None,
        events: list[str] | None = None,
    ) -> RunStream:
        """A run's frames; the query is sent when iteration starts."""
        message: dict[str, Any] = {
            "query": query,
            "case_id": case_id,
            "stream_thinking": self.stream_thinking if stream_thinking is None else stream_thinking,
        }
        if events is not None:
            message["events"] = list(events)
        return RunStream(self, message)

    async def ask(
        self,
        query: str,
        case_id: int,
        *,
        stream_thinking: bool | None = None,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
    ) -> Answer:
        """Run a query to the end; returns the answer or raises :class:`RunError`."""
        events: list[dict[str, Any]] = []
        stream = self.query(query, case_id, stream_thinking=stream_thinking)
        async for event in stream:
            events.append(event)
            if on_event is not None:
                result = on_event(event)
                if inspect.isawaitable(result):
                    await result
        final = stream.final or {}
        if final.get("type") != EventType.AGENT_EXECUTION_COMPLETE:
            raise RunError(error_code(final), final.get("error") or "run failed", final)
        out = FinalAnswer.from_payload(final.get("output_data"))
        return Answer(
            run_id=final["run_id"],
            answer=out.answer,
            citations=list(out.citations),
            metadata=final.get("metadata") or {},
            events=events,
            grounding=out.grounding,
        )

    async def cancel(self, run_id: str) -> None:
        await self._send({"type": "cancel", "run_id": run_id})

    async def replay(self, run_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """A finished run's frames from the server's history (``replay``)."""
        stream = RunStream(self, {})
        stream.run_id = run_id
        stream.last_seq = after_seq
        self._runs[run_id] = stream
        try:
            await self._send({"type": "replay", "run_id": run_id, "after_seq": after_seq})
            frames = [frame async for frame in _until_final(stream)]
        finally:
            self._runs.pop(run_id, None)
        return frames

    # -- internals: sending ------------------------------------------------------------

    async def _send(self, message: dict[str, Any]) -> None:
        await self._wait_connected()
        await self._ws.send(orjson.dumps(message).decode())

    async def _wait_connected(self) -> None:
        if self._ws is None and not self._connected.is_set() and self._reader is None:
            await self.connect()
        while not self._connected.is_set():
            if self._dead is not None:
                raise ConnectionLost(str(self._dead)) from self._dead
            waiter = asyncio.ensure_future(self._connected.wait())
            try:
                await asyncio.wait_for(asyncio.shield(waiter), 0.2)
            except TimeoutError:
                pass
            finally:
                waiter.cancel()
        if self._dead is not None:
            raise ConnectionLost(str(self._dead)) from self._dead

    async def _start(self, stream: RunStream) -> None:
        """Send one query and wait for its acknowledgement (one at a time)."""
        async with self._send_lock:
            for _ in range(self.max_reconnect_attempts + 1):
                await self._wait_connected()
                loop = asyncio.get_running_loop()
                stream._ack = loop.create_future()
                self._awaiting = stream
                try:
                    await self._ws.send(orjson.dumps(stream.message).decode())
                    await asyncio.wait_for(asyncio.shield(stream._ack), self.ack_timeout)
                    return
                except _Retry:
                    continue  # the connection dropped before the ack: send again
                except Exception as exc:
                    if _is_closed(exc):
                        await asyncio.sleep(0)
                        continue
                    raise
                finally:
                    self._awaiting = None
            raise ConnectionLost("could not send the query")

    # -- internals: connection -------------------------------------------------------

    async def _open(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        while True:
            # Offer subprotocols only with a ticket: a server in auth mode "none"
            # selects none, which browsers (not this client) treat as an error.
            url, headers, subprotocols = self.url, None, None
            if self._use_ticket:
                ticket = await self._ticket()
                subprotocols = [SUBPROTOCOL, f"ticket.{ticket}"]
            elif self.token:
                headers = {"Authorization": f"Bearer {self.token}"}
            try:
                ws = await connect(
                    url,
                    additional_headers=headers,
                    subprotocols=subprotocols,  # type: ignore[arg-type]
                    open_timeout=self.open_timeout,
                    max_size=self.max_size,
                )
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status == 401 and self.token and not self._use_ticket:
                    self._use_ticket = True  # the server wants a ticket
                    continue
                raise
            break
        hello = orjson.loads(await asyncio.wait_for(ws.recv(), self.open_timeout))
        if hello.get("type") != EventType.CONNECTION_ESTABLISHED:
            await ws.close()
            raise ConnectionLost(f"unexpected first frame {hello.get('type')!r}")
        self._ws = ws
        self.hello = hello
        self.connection_id = hello.get("connection_id")
        self._connected.set()
        self._dispatch_handlers(hello)

    async def _ticket(self) -> str:
        if self.ticket_provider is not None:
            result = self.ticket_provider()
            return await result if inspect.isawaitable(result) else result  # type: ignore[return-value]
        import httpx

        async with httpx.AsyncClient(timeout=self.open_timeout) as http:
            response = await http.post(
                ticket_url(self.url), headers={"Authorization": f"Bearer {self.token}"}
            )
        if response.status_code != 200:
            raise ConnectionLost(
                f"POST /ws/ticket: HTTP {response.status_code}: {response.text[:200]}"
            )
        data = response.json()
        ticket = data.get("ticket") if isinstance(data, dict) else None
        if not isinstance(ticket, str):
            raise ConnectionLost("POST /ws/ticket returned no ticket")
        return ticket

    async def _read_loop(self) -> None:
        from websockets.exceptions import ConnectionClosed

        while True:
            ws = self._ws
            try:
                async for message in ws:
                    self._dispatch(orjson.loads(message))
                code = ws.close_code
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
            except asyncio.CancelledError:
                raise
            except Exception:
                code = None
            self._connected.clear()
            if self._closing:
                return
            if self._awaiting is not None and self._awaiting._ack is not None:
                if not self._awaiting._ack.done():
                    self._awaiting._ack.set_exception(_Retry())
            if not self.reconnect or code in _FATAL_CLOSE:
                self._die(ConnectionLost(f"connection closed (code {code})"))
                return
            if not await self._reconnect():
                return

    async def _reconnect(self) -> bool:
        delay = self.backoff_initial
        last: BaseException | None = None
        for _ in range(self.max_reconnect_attempts):
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(self.backoff_max, delay * 2)
            try:
                await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                last = exc
                continue
            self.reconnects += 1
            for stream in list(self._runs.values()):
                if stream.live:
                    message = {
                        "type": "resume",
                        "run_id": stream.run_id,
                        "after_seq": stream.last_seq,
                        "stream_thinking": stream.stream_thinking,
                    }
                    if "events" in stream.message:
                        message["events"] = stream.message["events"]
                    stream._resuming = True
                    await self._ws.send(orjson.dumps(message).decode())
            return True
        self._die(
            ConnectionLost(f"reconnect failed after {self.max_reconnect_attempts} attempts: {last}")
        )
        return False

    def _die(self, exc: BaseException) -> None:
        self._dead = exc
        self._ws = None
        self._reader = None
        for stream in list(self._runs.values()):
            if stream.live:
                stream._fail(exc)
        self._runs.clear()
        if self._awaiting is not None and self._awaiting._ack is not None:
            if not self._awaiting._ack.done():
                self._awaiting._ack.set_exception(exc)

    # -- internals: receiving --------------------------------------------------------

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        run_id = frame.get("run_id")
        stream = self._runs.get(run_id) if run_id else None
        if stream is None and kind == _QUERY_RECEIVED and self._awaiting is not None:
            stream = self._awaiting
            stream.run_id = run_id
            self._runs[run_id] = stream
            if stream._ack is not None and not stream._ack.done():
                stream._ack.set_result(None)
        if stream is not None:
            if kind == _ERROR:
                # A refused resume (unknown or expired run): nothing more will come.
                code = frame.get("code")
                if code == ErrorCode.UNKNOWN_RUN and stream.live and stream._resuming:
                    stream._fail(RunError(code, frame.get("error") or "", frame))
                    self._runs.pop(run_id, None)
            elif kind == _RESUME_FAILED:
                stream._resuming = False
                stream._queue.put_nowait(frame)
                meta = frame.get("metadata") or {}
                if meta.get("first_available_seq") is None and meta.get("status") == "running":
                    stream._fail(RunError(_RESUME_FAILED, frame.get("error") or "", frame))
                    self._runs.pop(run_id, None)
            else:
                stream._push(frame)
                if kind in FINAL_TYPES:
                    self._runs.pop(run_id, None)
        elif kind == _ERROR and not run_id and self._awaiting is not None:
            awaiting = self._awaiting
            if awaiting._ack is not None and not awaiting._ack.done():
                awaiting._ack.set_exception(
                    RunError(error_code(frame), frame.get("error") or "", frame)
                )
        self._dispatch_handlers(frame)

    def _dispatch_handlers(self, frame: dict[str, Any]) -> None:
        for key in (frame.get("type"), "*"):
            for handler in self._handlers.get(key or "", ()):
                try:
                    result = handler(frame)
                    if inspect.isawaitable(result):
                        task = asyncio.ensure_future(result)
                        self._handler_tasks.add(task)
                        task.add_done_callback(self._handler_tasks.discard)
                except Exception:  # a broken handler must not kill the reader
                    pass


class _Retry(Exception):
    pass


async def _until_final(stream: RunStream) -> AsyncIterator[dict[str, Any]]:
    while True:
        item = await stream._queue.get()
        if isinstance(item, BaseException):
            raise item
        yield item
        if item.get("type") in FINAL_TYPES:
            return


def _is_closed(exc: BaseException) -> bool:
    from websockets.exceptions import ConnectionClosed

    return isinstance(exc, ConnectionClosed)


def ticket_url(ws_url: str) -> str:
    """``ws://h/prefix/ws/query`` -> ``http://h/prefix/ws/ticket``."""
    parts = urllib.parse.urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    path = parts.path.rsplit("/", 1)[0] + "/ticket"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, "", ""))
