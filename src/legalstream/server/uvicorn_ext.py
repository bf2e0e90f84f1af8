"""The only module that touches uvicorn's (and websockets') internals.

uvicorn and websockets are pinned (pyproject.toml) to the versions this was
written against; tests/test_uvicorn_ext_contract.py fails, naming the
attribute, when either changes what is used here:

* :class:`GuardedHttpProtocol`: uvicorn's httptools protocol with a deadline
  and a size limit for the request head, and caps on unfinished requests per
  client address and in total (below);
* :class:`BatchingSansIOProtocol`: uvicorn's ``websockets-sansio`` protocol
  plus batched sends and keepalive reporting (below);
* :class:`Server`: uvicorn's server, but shutdown lets the app close its
  WebSocket clients properly before uvicorn closes them with 1012, a stop
  asked for by SIGINT or SIGTERM ends the process normally, and start-up
  reports its progress;
* :func:`run_workers`: uvicorn's multiprocess supervisor, its workers running
  :class:`Server`.

**Request heads.** uvicorn waits for a request head as long as the peer
likes and buffers it whatever its size, and it counts a connection only
once its head has arrived: 20,000 connections that never finish their head
fill every file descriptor (and a 40 MB header fills memory). The guarded
protocol counts a connection from its first moment, resets it at once when
its address (or everyone together) already has too many unfinished heads,
answers 431 when a head grows past ``max_bytes`` and 408 when it is not
complete within ``timeout`` seconds, and closes. It runs before anything of
the app.

**Batched sends.** A streaming run produces frames in bursts: a token stream is hundreds of small
frames a second per client. Through plain ASGI each frame is one
``websocket.send`` message, and uvicorn writes each one to the socket on its
own: a trip through Starlette's and uvicorn's send wrappers and one
``transport.write`` (a system call) per frame. Profiling the fan-out bench put
that at the largest share of the server's time per frame.

This protocol adds one ASGI extension, :data:`SEND_MANY`. The app may send
``{"type": SEND_MANY, "frames": [b"...", ...]}``: each item becomes one text
frame, in order, and the whole batch goes to the transport in one write. The
wire is unchanged (one JSON object per WebSocket message); only the number of
writes changes. Flow control is kept: like uvicorn's own ``send``, a batch
waits while the transport is paused above its high-water mark, so a slow
client still backs the writer up and trips the slow-consumer policy.

The extension's entry in ``scope["extensions"]`` also carries ``keepalive``: a
function returning when the client last answered one of uvicorn's keepalive
pings (wall-clock seconds) and that ping's round trip, or ``(None, None)``.
uvicorn answers pings and times pongs itself but tells the app neither; the
connection's health in ``GET /ws/status`` reports them.

And it carries ``write_nowait``:
a plain function that writes a batch at once when the transport takes it
without waiting (not paused, connection open) and returns False otherwise.
With a thousand clients asking at the same moment, a frame that waits for a
writer task waits for every other connection's turn on the event loop first;
the client sat idle for that long, then the server did while the client caught
up. Written in place, frames reach the client as they are made. The app keeps
its own order: it writes in place only when nothing of its own is queued.

An app that does not see the extension in ``scope["extensions"]`` (another
server, or this app mounted under one) sends frame by frame as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from uvicorn.config import LOG_LEVELS
from uvicorn.logging import DefaultFormatter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import HANDLED_SIGNALS
from uvicorn.supervisors import multiprocess
from websockets.protocol import State

from legalstream.audit import install_redaction

log = logging.getLogger("legalstream.server")

#: What ``server.ws_impl`` names, when it is not one of uvicorn's own choices.
WS_PROTOCOLS = {
    "websockets-sansio": "legalstream.server.uvicorn_ext:BatchingSansIOProtocol",
}
#: uvicorn's ``http`` option for the guarded request-head protocol.
HTTP_PROTOCOL = "legalstream.server.uvicorn_ext:GuardedHttpProtocol"


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """Limits on request heads (``server.request_head_*`` settings)."""

    #: Seconds from a connection (or a keep-alive request's first byte) to its complete head.
    timeout: float = 10.0
    #: Bytes of request line and headers.
    max_bytes: int = 64 * 1024
    #: Connections whose head is not complete yet, per client address.
    max_unfinished_per_ip: int = 256
    #: ... and in total.
    max_unfinished: int = 4096


class _Unfinished:
    """The unfinished request heads of one server (all its connections)."""

    def __init__(self) -> None:
        self.total = 0
        self.per_ip: dict[str, int] = {}

    def add(self, ip: str) -> None:
        self.total += 1
        self.per_ip[ip] = self.per_ip.get(ip, 0) + 1

    def remove(self, ip: str) -> None:
        self.total -= 1
        left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)


class _HeadTooLarge(Exception):
    """A request head grew past its limit (raised inside the parser's callbacks)."""


#: Raw bytes a head may take before it is refused even if the parser has not
#: reported them yet (one huge header line is buffered inside httptools), on
#: top of ``max_bytes``: room for a body that came in the same read.
_RAW_SLACK = 256 * 1024


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with request-head limits (see the module docstring)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._limits: HeadLimits = getattr(self.config, "head_limits", None) or HeadLimits()
        unfinished = getattr(self.server_state, "legalstream_unfinished", None)
        if unfinished is None:
            unfinished = self.server_state.legalstream_unfinished = _Unfinished()  # type: ignore[attr-defined]
        self._unfinished: _Unfinished = unfinished
        self._ip = self.client[0] if self.client else "unknown"
        self._in_head = False
        self._too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        limits = self._limits
        if (
            unfinished.total >= limits.max_unfinished
            or unfinished.per_ip.get(self._ip, 0) >= limits.max_unfinished_per_ip
        ):
            # A flood's worth of these arrive at once: the cheapest refusal is a
            # reset, with no response to write and no buffer to flush.
            self.parser = None  # type: ignore[assignment]
            transport.abort()
            return
        self._begin_head()

    def _begin_head(self) -> None:
        self._in_head = True
        self._too_large = False
        self._head_bytes = 0
        self._raw_bytes = 0
        self._unfinished.add(self._ip)
        self._head_timer = self.loop.call_later(self._limits.timeout, self._head_expired)

    def _end_head(self) -> None:
        if self._in_head:
            self._in_head = False
            self._unfinished.remove(self._ip)
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, "request head not received in time")

    def _refuse(self, status: int, message: str) -> None:
        self._end_head()
        body = message.encode()
        self.transport.write(
            STATUS_LINES[status]
            + b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
            + b"content-length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self.transport.close()
        self.parser = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # refused: whatever else arrives is dropped
            return
        if not self._in_head and self.cycle is not None and self.cycle.response_complete:
            self._begin_head()  # the first bytes of the next keep-alive request
        if self._in_head:
            self._raw_bytes += len(data)
            if self._raw_bytes > self._limits.max_bytes + _RAW_SLACK:
                self._too_large = True
                self.send_400_response("request head too large")
                return
        super().data_received(data)

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, nbytes: int) -> None:
        self._head_bytes += nbytes
        if self._head_bytes > self._limits.max_bytes:
            # Raised inside the parser's callback: uvicorn turns parser errors
            # into send_400_response, which answers 431 for this one.
            self._too_large = True
            raise _HeadTooLarge

    def send_400_response(self, msg: str) -> None:
        if self._too_large:
            self._refuse(431, "request head too large")
        else:
            self._end_head()
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)


STATUS_LINES = {
    status: f"HTTP/1.1 {status} {phrase}\r\n".encode()
    for status, phrase in (
        (408, "Request Timeout"),
        (431, "Request Header Fields Too Large"),
    )
}

#: ASGI message type (and ``scope["extensions"]`` key) of a batch of text frames.
SEND_MANY = "legalstream.websocket.send_many"

_FIN_TEXT = 0x81
_SHORT_HEADERS = tuple(bytes((_FIN_TEXT, n)) for n in range(126))
_pack16 = struct.Struct("!BBH").pack
_pack64 = struct.Struct("!BBQ").pack


def text_frame_header(length: int) -> bytes:
    """Header of one unmasked, unfragmented text frame (RFC 6455 5.2), as servers send."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 1 << 16:
        return _pack16(_FIN_TEXT, 126, length)
    return _pack64(_FIN_TEXT, 127, length)


class BatchingSansIOProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` with the :data:`SEND_MANY` extension."""

    #: Wall-clock time the client last answered a keepalive ping (None: not yet).
    last_pong_at: float | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The ASGI task was created but has not run yet: it sees this key.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_MANY] = {
                "write_nowait": self.write_nowait,
                "keepalive": self.keepalive,
            }

    def handle_pong(self, event: Any) -> None:
        awaited = self.pending_ping_payload
        super().handle_pong(event)
        # uvicorn clears the payload only for the pong that answers its ping.
        if awaited is not None and self.pending_ping_payload is None:
            self.last_pong_at = time.time()

    def keepalive(self) -> tuple[float | None, float | None]:
        """When the client last answered a keepalive ping, and that ping's round trip (s)."""
        if self.last_pong_at is None:
            return None, None
        return self.last_pong_at, self.last_ping_rtt

    async def send(self, message: Any) -> None:
        if message["type"] != SEND_MANY:
            await super().send(message)
            return
        await self.writable.wait()
        conn = self.conn
        if self.disconnected or self.close_sent or conn.state is not State.OPEN:
            raise ClientDisconnected()
        self._write_frames(message["frames"])

    def write_nowait(self, frames: list[bytes]) -> bool:
        """Write text frames now if nothing stands in the way; False if the caller must wait.

        In the way: the transport is paused above its high-water mark (the
        client is behind), or the connection is not open. The caller then
        queues the frames and sends them with ``SEND_MANY``, which waits.
        """
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or self.conn.state is not State.OPEN
        ):
            return False
        self._write_frames(frames)
        return True

    def _write_frames(self, frames: list[bytes]) -> None:
        conn = self.conn
        # Control frames websockets has queued (a pong) go first, whole.
        out = conn.data_to_send()
        if conn.extensions:
            # A negotiated extension (permessage-deflate) transforms frames:
            # let websockets build them; still one write for the batch.
            for data in frames:
                conn.send_text(data)
            out += conn.data_to_send()
        else:
            for data in frames:
                out.append(text_frame_header(len(data)))
                out.append(data)
        self.transport.write(b"".join(out))


def _graceful_hook(app: Any) -> Callable[[], Any] | None:
    """The app's ``graceful_shutdown`` coroutine function, through uvicorn's wrappers."""
    for _ in range(16):
        if app is None:
            return None
        hook = getattr(app, "graceful_shutdown", None)
        if callable(hook):
            return hook  # type: ignore[no-any-return]
        app = getattr(app, "app", None)
    return None


class Server(uvicorn.Server):
    """uvicorn's server, but shutdown tells WebSocket clients properly.

    ``uvicorn.Server.shutdown`` closes every WebSocket with 1012 *before* the
    lifespan shutdown runs, so the app's own graceful stop (finish or cancel
    runs, deliver their final frames, close with 1001) would come too late.
    This subclass stops listening, runs the app's ``graceful_shutdown`` first,
    then lets uvicorn finish as usual.

    SIGINT (Ctrl-C) and SIGTERM stop it that way and the process then exits
    normally (see :meth:`capture_signals`). While the app starts, a line every
    :data:`STARTUP_REPORT_SECONDS` says it is still starting; once it serves,
    one line gives its address.

    ``config.on_started`` (an attribute we add; picklable, since worker
    processes receive the config) is called once the lifespan has started.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Let SIGINT and SIGTERM stop the server gracefully, then end the process normally.

        uvicorn's own version raises the signal again once it has shut down,
        so the process ended as if killed by it: Ctrl-C printed a
        ``KeyboardInterrupt`` traceback out of ``asyncio.run``, SIGTERM ended
        with status 143, and ``make run`` reported its recipe as interrupted.
        A stop that was asked for and carried out is a normal exit (status 0).
        A second Ctrl-C still skips the graceful part (uvicorn's ``force_exit``).
        """
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers belong to the main thread (a server in a test thread)
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: Any = None) -> None:
        log_to_console(self.config.log_level)  # worker processes configure logging afresh
        install_redaction()
        reporter = asyncio.create_task(self._report_startup())
        try:
            await super().startup(sockets)
        finally:
            reporter.cancel()
        if self.started and not self.should_exit:
            where = f" (worker process {os.getpid()})" if self.config.workers > 1 else ""
            log.info("ready on %s%s; Ctrl-C stops it", _base_url(self.config, sockets), where)
        on_started: Callable[[], None] | None = getattr(self.config, "on_started", None)
        if on_started is not None:
            on_started()

    async def _report_startup(self) -> None:
        """Say, now and then, that the app is still starting (a first start loads for a while),
        and at once when a stop was asked for meanwhile."""
        started = time.monotonic()
        next_report = STARTUP_REPORT_SECONDS
        told_stop = False
        while True:
            await asyncio.sleep(0.1)
            elapsed = time.monotonic() - started
            if self.should_exit and not told_stop:
                told_stop = True
                # The app's start-up runs in threads that cannot be interrupted.
                log.info("stopping once start-up has finished (%.0f s so far)", elapsed)
            elif not self.should_exit and elapsed >= next_report:
                next_report += STARTUP_REPORT_SECONDS
                log.info("still starting (%.0f s)", elapsed)

    async def shutdown(self, sockets: Any = None) -> None:
        for listener in getattr(self, "servers", []):
            listener.close()
        hook = _graceful_hook(self.config.loaded_app) if self.config.loaded else None
        if hook is not None and not self.force_exit:
            grace = self.config.timeout_graceful_shutdown
            log.info("stopping: running queries may finish first; Ctrl-C again stops at once")
            try:
                await asyncio.wait_for(hook(), 2 * grace if grace else None)
            except Exception:
                log.exception("graceful shutdown of the app failed")
        await super().shutdown(sockets)


#: The name of the handler :func:`log_to_console` puts on the ``legalstream`` logger.
CONSOLE_HANDLER = "legalstream-console"


def log_to_console(level: str | int | None) -> None:
    """legalstream's own log lines on stderr, formatted as uvicorn's, from ``level`` up.

    uvicorn's logging configuration covers its own loggers only: legalstream's
    INFO lines (start-up progress, the address once ready) went nowhere, and
    its warnings came out unformatted. Added beside that configuration, not
    into it: a ``dictConfig`` naming ``legalstream`` would reset every
    ``legalstream.*`` logger's handlers (the audit log's among them).
    Idempotent.
    """
    logger = logging.getLogger("legalstream")
    for old in [h for h in logger.handlers if h.get_name() == CONSOLE_HANDLER]:
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(CONSOLE_HANDLER)
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    logger.addHandler(handler)
    if level is not None:
        logger.setLevel(LOG_LEVELS[level] if isinstance(level, str) else level)


#: Seconds between "still starting" lines while the app's lifespan starts.
STARTUP_REPORT_SECONDS = 10.0


def _base_url(config: uvicorn.Config, sockets: list[socket.socket] | None) -> str:
    """``http://host:port/`` of the server (the bound socket's port: ``--port 0`` works)."""
    host, port = config.host, config.port
    if sockets:
        host, port = sockets[0].getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.is_ssl else 'http'}://{host}:{port}/"


class _WorkerProcess(multiprocess.Process):
    """A uvicorn worker process whose server is :class:`Server` (module level:
    spawned workers unpickle their target by name)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(self.config)
        return self._server


def run_workers(config: uvicorn.Config, sock: socket.socket | None = None) -> None:
    """uvicorn's multiprocess supervisor, each worker running :class:`Server`.

    The supervisor builds each worker from the module-level ``Process`` class;
    it is replaced here, in the supervisor process only, which
    ``legalstream serve`` owns. ``sock``: an already bound socket (else the
    configured address is bound here).
    """
    multiprocess.Process = _WorkerProcess  # type: ignore[misc]
    if sock is None:
        sock = config.bind_socket()
    multiprocess.Multiprocess(config, sockets=[sock]).run()
