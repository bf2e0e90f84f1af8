"""Hardening: frame and query limits, idle and ping timeouts, slow consumers,
graceful shutdown, compression, the audit log and log redaction."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import signal
import socket
import struct
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
import websockets
from websockets.exceptions import ConnectionClosed

from legalstream.app import create_app
from legalstream.audit import AuditWriter, RedactSecrets, install_redaction, redact
from legalstream.server.runner import uvicorn_config
from legalstream.server.uvicorn_ext import Server
from legalstream.settings import Settings
from support import LiveServer, ScriptedRunner, collect_run, free_port, live_server, recv_json
from test_auth import bearer, jwt_settings, make_token

QUERY = {"query": "What was the defendant's response?", "case_id": 1}
REPO = Path(__file__).resolve().parents[1]


def settings_for(tmp_path: Path, **server) -> Settings:
    s = Settings(rag={"data_dir": tmp_path / "data", "ingest_sample_on_start": False})
    s.server = s.server.model_copy(update=server)
    return s


# -- a raw WebSocket client, for what well-behaved libraries refuse to do --------


class RawWS:
    """A blocking WebSocket client speaking bytes: malformed frames, no reads, no pongs."""

    def __init__(self, port: int, path: str = "/ws/query", rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.port = port
        self.path = path

    def handshake(self, extra: str = "") -> int:
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
            ).encode()
        )
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]) if head else 0

    @staticmethod
    def frame(
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        mask: bool = True,
        rsv: int = 0,
        length: int | None = None,
    ) -> bytes:
        n = len(payload) if length is None else length
        first = (0x80 if fin else 0) | (rsv << 4) | opcode
        if n < 126:
            header = struct.pack("!BB", first, (0x80 if mask else 0) | n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, n)
        else:
            header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, n)
        if not mask:
            return header + payload
        key = os.urandom(4)
        masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return header + key + masked

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_text(self, text: str | bytes, **kw) -> None:
        self.send(self.frame(0x1, text.encode() if isinstance(text, str) else text, **kw))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return b0 & 0x0F, self._read(n)

    def recv_json(self) -> dict:
        """The next text frame as JSON, answering pings; raises on a close frame."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                raise ClosedError(struct.unpack("!H", payload[:2])[0] if payload else 1005)
            if opcode == 0x9:
                self.send(self.frame(0xA, payload))

    def close_code(self) -> int | None:
        """Read until the server's close frame (or EOF)."""
        try:
            while True:
                opcode, payload = self.recv_frame()
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
        except (ConnectionError, OSError):
            return None

    def abort(self) -> None:
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


class ClosedError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def status(srv) -> dict:
    async with httpx.AsyncClient() as http:
        return (await http.get(srv.http + "/ws/status")).json()


async def wait_for_connections(srv, count: int, within: float = 10.0) -> float:
    t0 = time.monotonic()
    while (await status(srv))["active_connections"] != count:
        if time.monotonic() - t0 > within:
            raise AssertionError(f"still {(await status(srv))['active_connections']} connections")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def graceful_live_server(app, settings, **overrides) -> LiveServer:
    srv = LiveServer(app, settings, **overrides)
    srv.server = Server(srv.server.config)
    srv.thread = threading.Thread(target=srv.server.run, daemon=True)
    return srv.start()


# -- frames, queries, idle -------------------------------------------------------


async def test_oversized_frames_close_with_1009_and_long_queries_get_an_error(tmp_path):
    s = settings_for(tmp_path, max_frame_bytes=4096, max_query_chars=100)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner())
    with live_server(app, s) as srv:
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"query": "x" * 101, "case_id": 1}))
            frame = await recv_json(ws)
            assert frame["code"] == "query_too_long"
            await ws.send("y" * 4097)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1009
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            await ws.send(b"\x00" * 5000)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1009
        await wait_for_connections(srv, 0)


async def test_idle_connections_are_closed(tmp_path):
    s = settings_for(tmp_path, idle_timeout=1.0)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner())
    with live_server(app, s) as srv:
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1000 and ws.close_reason == "idle timeout"


async def test_peer_that_stops_answering_pings_is_reaped(tmp_path):
    s = settings_for(tmp_path, ping_interval=0.3, ping_timeout=0.3)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner())
    with live_server(app, s) as srv:
        async with websockets.connect(srv.ws) as healthy:  # answers pings itself
            await recv_json(healthy)
            mute = RawWS(srv.port)
            assert mute.handshake() == 101
            assert mute.recv_json()["type"] == "connection_established"
            assert (await status(srv))["active_connections"] == 2
            # The mute peer never reads again, so it never answers a ping.
            await wait_for_connections(srv, 1, within=5)
            assert mute.close_code() == 1011  # keepalive ping timeout
            mute.abort()
            await asyncio.sleep(1.0)  # several ping rounds: the healthy one stays
            now = await status(srv)
            assert now["active_connections"] == 1
            # Its answers are on record: when the last pong came, and the round trip.
            health = now["connections"][0]["metadata"]["health"]
            last_pong = datetime.fromisoformat(health["last_pong"]).timestamp()
            assert 0 <= time.time() - last_pong < 1.0
            assert 0 <= health["ping_rtt_ms"] < 300
            await healthy.send(json.dumps(QUERY))
            assert (await collect_run(healthy))[-1]["type"] == "agent_execution_complete"


# -- compression ---------------------------------------------------------------


async def test_per_message_deflate_is_off_by_default_and_bounded_when_on(tmp_path):
    s = settings_for(tmp_path)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner())
    with live_server(app, s) as srv:
        # websockets offers permessage-deflate by default; the server declines.
        async with websockets.connect(srv.ws, compression="deflate") as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    s2 = settings_for(tmp_path, per_message_deflate=True)
    app2 = create_app(s2, runner_factory=lambda svc: ScriptedRunner())
    with live_server(app2, s2) as srv:
        async with websockets.connect(srv.ws, compression="deflate") as ws:
            ext = ws.response.headers["Sec-WebSocket-Extensions"]
            assert "permessage-deflate" in ext and "server_max_window_bits=12" in ext
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"


# -- slow consumers ------------------------------------------------------------


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_slow_consumer_is_dropped_while_others_stream(tmp_path):
    # A producer at a brisk token rate (~2000 frames/s per run). The stalled
    # client asks for four runs (~7 MB of frames), more than the kernel's socket
    # buffers (4 MB at most here) and uvicorn's 64 KiB write buffer can hide.
    cap = 256
    s = settings_for(tmp_path, send_queue_size=cap)
    runner = ScriptedRunner(steps=2, chunks=5000, delay=0.0005)
    app = create_app(s, runner_factory=lambda svc: runner)
    with live_server(app, s) as srv:
        rss0 = _rss_kib()
        stalled = RawWS(srv.port, rcvbuf=4096)
        assert stalled.handshake() == 101
        for _ in range(4):
            stalled.send_text(json.dumps(QUERY))
        # ... and never reads another byte.

        async def fast_client() -> list[dict]:
            async with websockets.connect(srv.ws, max_queue=None) as ws:
                await recv_json(ws)
                await ws.send(json.dumps(QUERY))
                return await collect_run(ws, timeout=30)

        depths: list[int] = []

        async def sample() -> None:
            while True:
                try:
                    st = await status(srv)
                except httpx.HTTPError:
                    continue  # a busy loop may time a poll out; the next one counts
                depths.extend(c["metadata"]["queue_depth"] for c in st["connections"])
                await asyncio.sleep(0.05)

        t0 = time.monotonic()
        sampler = asyncio.create_task(sample())
        try:
            runs = await asyncio.gather(*(fast_client() for _ in range(2)))
            for frames in runs:
                assert frames[-1]["type"] == "agent_execution_complete"
                assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
                assert len(frames) > 5000
            # The stalled client was closed as a slow consumer and is gone. When
            # that happened relative to the fast runs depends on how much the
            # kernel buffers, so the proof is the server's count, not a timing.
            await wait_for_connections(srv, 0, within=10)
        finally:
            sampler.cancel()
        svc = app.state.services
        slow = svc.metrics.registry.get_sample_value(
            "legalstream_slow_consumer_disconnects_total", {"reason": "send_buffer_full"}
        )
        assert slow == 1
        # A peer that never reads cannot take the close frame either (it sits
        # behind megabytes of unread frames), so it reads those, then EOF.
        assert await asyncio.to_thread(stalled.close_code) in (1013, None)
        assert depths and max(depths) <= cap
        assert svc.runs.active == 0  # its runs were cancelled, not left running
        # Memory stayed bounded: nothing close to the 7 MB the stalled client asked for
        # per buffered copy (client and server share this process).
        assert _rss_kib() - rss0 < 150_000, (_rss_kib() - rss0, time.monotonic() - t0)
        stalled.abort()


# -- graceful shutdown ------------------------------------------------------------


async def test_shutdown_finishes_runs_and_closes_with_1001(tmp_path):
    s = settings_for(tmp_path, shutdown_grace=5.0)
    runner = ScriptedRunner(steps=3, delay=0.1)
    app = create_app(s, runner_factory=lambda svc: runner)
    srv = graceful_live_server(app, s)
    try:
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            assert (await recv_json(ws))["type"] == "query_received"
            srv.server.should_exit = True  # what uvicorn's SIGTERM handler does
            frames = await collect_run(ws, timeout=15)
            assert frames[-1]["type"] == "agent_execution_complete"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
    finally:
        srv.stop()
    assert not srv.thread.is_alive()


async def test_sigterm_on_the_real_process(tmp_path):
    port = free_port()
    script = tmp_path / "serve.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(REPO / "tests")!r})
            from support import ScriptedRunner
            from legalstream.app import create_app
            from legalstream.server.runner import uvicorn_config
            from legalstream.server.uvicorn_ext import Server
            from legalstream.settings import Settings
            s = Settings(rag={{"data_dir": {str(tmp_path / "d")!r}, "ingest_sample_on_start": False}})
            s.server.shutdown_grace = 0.3
            runner = ScriptedRunner(steps=50, delay=0.1)
            app = create_app(s, runner_factory=lambda svc: runner)
            Server(uvicorn_config(s, app, host="127.0.0.1", port={port}, log_level="warning")).run()
            """
        )
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, str(script), cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.returncode is None
                await asyncio.sleep(0.05)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/query") as ws:
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            assert (await recv_json(ws))["type"] == "query_received"
            proc.send_signal(signal.SIGTERM)
            # The run outlives the grace period: it is cancelled, and the client is told.
            frames = await collect_run(ws, timeout=15)
            assert frames[-1]["type"] == "agent_execution_error"
            assert frames[-1]["code"] == "cancelled"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 1001
        # uvicorn re-raises the captured SIGTERM once it has shut down cleanly.
        assert await asyncio.wait_for(proc.wait(), 20) in (0, -signal.SIGTERM)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- audit log -------------------------------------------------------------------


async def test_audit_log_has_one_json_line_per_query(tmp_path):
    s = jwt_settings(tmp_path)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner(steps=1))
    token = make_token(sub="alice", cases=[1])
    with live_server(app, s) as srv:
        async with websockets.connect(srv.ws, additional_headers=bearer(token)) as ws:
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            frames = await collect_run(ws)
            await ws.send(json.dumps({"query": "secret plan", "case_id": 7}))
            assert (await recv_json(ws))["code"] == "forbidden_case"
        async with httpx.AsyncClient(base_url=srv.http) as http:
            r = await http.post("/query", json=QUERY, headers=bearer(token))
            assert r.status_code == 200
    lines = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    ws_line = next(x for x in lines if x["run_id"] == frames[0]["run_id"])
    assert ws_line["event"] == "query" and ws_line["outcome"] == "complete"
    assert ws_line["user"] == "alice" and ws_line["client_ip"] == "127.0.0.1"
    assert ws_line["case_id"] == 1 and ws_line["cited_doc_ids"] == ["case-1/x"]
    assert isinstance(ws_line["duration_s"], float) and ws_line["time"].endswith("+00:00")
    refused = next(x for x in lines if x["event"] == "query_refused")
    assert refused["outcome"] == "forbidden_case" and refused["case_id"] == 7
    rest_line = next(x for x in lines if x["run_id"] == r.json()["run_id"])
    assert rest_line["client_ip"] == "127.0.0.1" and rest_line["connection_id"] is None
    text = (tmp_path / "audit.jsonl").read_text()
    for secret in (token, "Scripted answer", "secret plan", QUERY["query"]):
        assert secret not in text


class _SlowStream(io.StringIO):
    """A stream that is slow to write to, so the writer falls behind."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.writer_threads: set[str] = set()

    def write(self, text: str) -> int:
        time.sleep(0.002)
        self.writes += 1
        self.writer_threads.add(threading.current_thread().name)
        return super().write(text)


def test_audit_writer_writes_off_the_calling_thread_in_order_and_bounded():
    stream = _SlowStream()
    writer = AuditWriter(logging.StreamHandler(stream), max_pending=3)
    logger = logging.getLogger("test.audit.writer")
    logger.propagate, logger.level = False, logging.INFO
    logger.addHandler(writer)
    try:
        for i in range(30):
            logger.info("line %d", i)
            # Bounded: the caller waits for room instead of queueing without limit.
            assert len(writer._pending) <= 3
        writer.flush()
        assert stream.getvalue().splitlines() == [f"line {i}" for i in range(30)]
        assert stream.writer_threads == {"legalstream-audit"}
        assert stream.writes < 30  # lines queued together are written together
        logger.info("last")
    finally:
        logger.removeHandler(writer)
        writer.close()
    assert stream.getvalue().splitlines()[-1] == "last"  # close writes what is queued first


# -- redaction -------------------------------------------------------------------


def test_redact_patterns():
    jwt_like = make_token()
    cases = {
        "/ws/query?token=abc.def.ghi&x=1": "/ws/query?token=[REDACTED]&x=1",
        "/ws/query?x=1&ticket=T0k3n-_x": "/ws/query?x=1&ticket=[REDACTED]",
        "/ws/query?access_token=zzz": "/ws/query?access_token=[REDACTED]",
        "Authorization: Bearer abc.def": "Authorization: Bearer [REDACTED]",
        "protocols: legalstream.v1, bearer.abc.def.ghi": "protocols: legalstream.v1, bearer.[REDACTED]",
        f"saw {jwt_like} here": "saw [REDACTED] here",
        "/ws/query?case=1": "/ws/query?case=1",
    }
    for raw, expected in cases.items():
        assert redact(raw) == expected


async def test_access_log_never_shows_tokens_or_tickets(tmp_path):
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    s = jwt_settings(tmp_path)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner())
    buf = io.StringIO()
    token = make_token()
    srv = LiveServer(app, s)
    srv.server = uvicorn.Server(
        uvicorn_config(s, app, host="127.0.0.1", port=srv.port, log_level="info", access_log=True)
    )
    srv.thread = threading.Thread(target=srv.server.run, daemon=True)
    handlers = []
    for name, fmt in (
        ("uvicorn.access", AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')),
        ("uvicorn.error", DefaultFormatter("%(message)s")),
    ):
        handler = logging.StreamHandler(buf)
        handler.setFormatter(fmt)
        logging.getLogger(name).addHandler(handler)
        handlers.append((name, handler))
    install_redaction()
    srv.start()
    try:
        async with websockets.connect(f"{srv.ws}?token={token}") as ws:
            await recv_json(ws)
        async with httpx.AsyncClient(base_url=srv.http) as http:
            ticket = (await http.post("/ws/ticket", headers=bearer(token))).json()["ticket"]
            await http.get(f"/health?token={token}&ticket={ticket}")
        async with websockets.connect(f"{srv.ws}?ticket={ticket}") as ws:
            await recv_json(ws)
        await asyncio.sleep(0.2)
    finally:
        srv.stop()
        for name, handler in handlers:
            logging.getLogger(name).removeHandler(handler)
    out = buf.getvalue()
    assert "/health?token=[REDACTED]&ticket=[REDACTED]" in out
    assert "/ws/query?token=[REDACTED]" in out and "/ws/query?ticket=[REDACTED]" in out
    assert token not in out and ticket not in out
    assert any(isinstance(f, RedactSecrets) for f in logging.getLogger("uvicorn.access").filters)


def test_redaction_decodes_the_query_string_as_the_server_does():
    # Issue 15, item 7: Starlette percent-decodes parameter names and values, so
    # ?%74oken= authenticates; it must be redacted like ?token=.
    token = make_token()
    encoded_value = "".join(f"%{ord(c):02X}" for c in token)
    cases = [
        f"/ws/query?%74oken={token}",
        f"/ws/query?%74%6F%6B%65%6E={token}&x=1",
        "/ws/query?x=1&tick%65t=T0k3n-_xyzT0k3n-_xyzT0k3n",
        f"/ws/query?token={encoded_value}",
        f"/ws/query?access%5Ftoken={token}",
        f'"GET /ws/query?%74oken={token} HTTP/1.1" 101',
    ]
    for raw in cases:
        out = redact(raw)
        assert token not in out and "T0k3n-_xyz" not in out, (raw, out)
        assert encoded_value[:30] not in out, (raw, out)
        assert "[REDACTED]" in out, (raw, out)
    assert redact("/ws/query?case=1&x=%74") == "/ws/query?case=1&x=%74"


async def test_percent_encoded_credentials_never_reach_the_access_log(tmp_path):
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    s = jwt_settings(tmp_path)
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner())
    buf = io.StringIO()
    token = make_token()
    srv = LiveServer(app, s)
    srv.server = uvicorn.Server(
        uvicorn_config(s, app, host="127.0.0.1", port=srv.port, log_level="info", access_log=True)
    )
    srv.thread = threading.Thread(target=srv.server.run, daemon=True)
    handlers = []
    for name, fmt in (
        ("uvicorn.access", AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s')),
        ("uvicorn.error", DefaultFormatter("%(message)s")),
    ):
        handler = logging.StreamHandler(buf)
        handler.setFormatter(fmt)
        logging.getLogger(name).addHandler(handler)
        handlers.append((name, handler))
    install_redaction()
    srv.start()
    encoded_token = "".join(f"%{ord(c):02X}" for c in token)
    try:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            ticket = (await http.post("/ws/ticket", headers=bearer(token))).json()["ticket"]
            await http.get(f"/health?%74icket={ticket}&%74oken={encoded_token}")
        async with websockets.connect(f"{srv.ws}?%74icket={ticket}") as ws:
            assert (await recv_json(ws))["type"] == "connection_established"
        async with websockets.connect(f"{srv.ws}?token={encoded_token}") as ws:
            assert (await recv_json(ws))["type"] == "connection_established"
        await asyncio.sleep(0.2)
    finally:
        srv.stop()
        for name, handler in handlers:
            logging.getLogger(name).removeHandler(handler)
    out = buf.getvalue()
    assert "/health?" in out and "/ws/query?" in out
    for secret in (ticket, token, encoded_token[:30]):
        assert secret not in out


# -- forwarded headers (issue 15, item 9) ----------------------------------------


async def _audited_ip(tmp_path: Path, forwarded_allow_ips: list[str]) -> str:
    """The client address the audit log records for a query sent with X-Forwarded-For."""
    s = jwt_settings(tmp_path)
    s.server.forwarded_allow_ips = forwarded_allow_ips
    app = create_app(s, runner_factory=lambda svc: ScriptedRunner(steps=1))
    headers = {**bearer(make_token(sub="alice", cases=[1])), "X-Forwarded-For": "203.0.113.9"}
    with live_server(app, s) as srv:
        async with websockets.connect(srv.ws, additional_headers=headers) as ws:
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            await collect_run(ws)
    (line,) = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    return line["client_ip"]


async def test_forwarded_headers_are_not_trusted_by_default(tmp_path):
    assert await _audited_ip(tmp_path, []) == "127.0.0.1"


async def test_forwarded_headers_are_trusted_from_configured_proxies(tmp_path):
    assert await _audited_ip(tmp_path, ["127.0.0.1"]) == "203.0.113.9"
