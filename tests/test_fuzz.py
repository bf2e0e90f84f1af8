"""Bad-input battery: property-based and fuzz inputs against /ws/query and the
REST endpoints, while a canary client keeps streaming.

The server must never crash, answer every input with the documented outcome
(an ``error`` frame with a code of docs/protocol.md's "Bad input" table, a
close code of its "Closing codes" table, or an HTTP 4xx), keep other clients
streaming, and end with zero connections, runs and extra tasks. The expected
frame types and codes are read from docs/protocol.md, not from the code under
test, so a code the server sends and the documentation does not list fails.

The battery runs once, in order, in the module fixture ``battery`` (its own
server and canary); each test below reports one part of it, so any one test
run alone, or in any order, runs the whole battery first. The figures are
written to a temp dir, or to ``LEGALSTREAM_FUZZ_FIGURES`` when set (the table
in docs/security.md is made from them).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect as sync_connect

from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, live_server
from test_hardening import RawWS
from test_wire_vocabulary import (
    documented_close_codes,
    documented_error_codes,
    documented_event_types,
)

#: What docs/protocol.md documents: the frame types, the codes of error frames, close codes.
TYPES = documented_event_types()
CODES = documented_error_codes()
CLOSE_CODES = documented_close_codes()
FINAL = {"agent_execution_complete", "agent_execution_error"}
SENTINEL = "fuzz-sentinel"

#: category -> {"inputs": n, "failures": n, "outcome": text}
FIG: dict[str, dict[str, Any]] = {}
OUTCOMES: Counter[str] = Counter()


def record(category: str, outcome: str, ok: bool, n: int = 1) -> None:
    entry = FIG.setdefault(category, {"inputs": 0, "failures": 0, "outcomes": Counter()})
    entry["inputs"] += n
    entry["failures"] += 0 if ok else n
    entry["outcomes"][outcome] += n


def _write_figures(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, ensure_ascii=False))


def documented_close(codes: set[int | None]) -> set[int | None]:
    """``codes``, after checking that each (but None: no close) is in the close-code table."""
    undocumented = {c for c in codes if c is not None} - CLOSE_CODES
    assert not undocumented, f"close codes {undocumented} are not in docs/protocol.md"
    return codes


def with_probe(app: Any) -> Any:
    """The app plus ``GET /_probe``: the server loop's task count (for leak checks)."""

    async def wrapper(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/_probe":
            body = orjson.dumps({"tasks": len(asyncio.all_tasks())})
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return wrapper


class Canary(threading.Thread):
    """A well-behaved client streaming queries back to back the whole time."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.stop = threading.Event()
        self.completed = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with sync_connect(self.url, open_timeout=10) as ws:
                    json.loads(ws.recv(timeout=10))
                    for _ in range(20):
                        if self.stop.is_set():
                            return
                        ws.send(json.dumps({"query": "canary question", "case_id": 1}))
                        seqs = []
                        while True:
                            frame = json.loads(ws.recv(timeout=20))
                            if frame["type"] == "broadcast":
                                continue
                            seqs.append(frame["seq"])
                            if frame["type"] in FINAL:
                                break
                        if frame["type"] != "agent_execution_complete" or seqs != list(
                            range(1, len(seqs) + 1)
                        ):
                            self.failures.append(f"bad run: {frame['type']} {seqs[:5]}")
                        self.completed += 1
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.1)


@dataclass
class Battery:
    """The battery's server, what each part raised, and what the end state was."""

    srv: Any
    failed: dict[str, BaseException] = field(default_factory=dict)
    leak: str | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    figures_path: Path | None = None

    def check(self, part: str) -> None:
        """Re-raise what ``part`` raised (its traceback and hypothesis notes intact)."""
        if part in self.failed:
            raise self.failed[part]


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    """Start a server and the canary, run every part in order, then check the end state."""
    tmp = tmp_path_factory.mktemp("fuzz")
    s = Settings(
        rag={"data_dir": tmp / "data", "ingest_sample_on_start": False},
        audit={"enabled": False},
    )
    s.server.max_runs_per_connection = 4
    runner = ScriptedRunner(steps=1, delay=0.0005, chunks=3)
    app = create_app(s, runner_factory=lambda svc: runner)
    figures_env = os.environ.get("LEGALSTREAM_FUZZ_FIGURES")
    figures_path = Path(figures_env) if figures_env else tmp / "security-fuzz.json"
    FIG.clear()
    with live_server(with_probe(app), s) as srv:
        srv.app = app
        srv.baseline_tasks = httpx.get(srv.http + "/_probe").json()["tasks"]
        canary = Canary(srv.ws)
        canary.start()
        srv.canary = canary
        srv.t0 = time.monotonic()
        result = Battery(srv, figures_path=figures_path)
        try:
            for name, part in PARTS:
                try:
                    part(srv)
                except Exception as exc:  # reported by the part's own test
                    result.failed[name] = exc
        finally:
            canary.stop.set()
            canary.join(timeout=30)
        result.leak, result.figures = end_state(srv)
        _write_figures(figures_path, result.figures)
        yield result


# -- checking frames -------------------------------------------------------------


def check_frame(frame: dict) -> str:
    """The frame's outcome label; raises if it is not a documented frame."""
    assert frame["type"] in TYPES, frame
    assert "connection_id" in frame and "metadata" in frame
    if frame["type"] == "error":
        assert frame["code"] in CODES, frame
        assert frame["metadata"]["code"] == frame["code"]
        return f"error:{frame['code']}"
    return frame["type"]


def exchange(ws, payload: str | bytes) -> list[str]:
    """Send one input; every frame it causes (and, for a query, every frame of
    its run up to the final one) must be documented.

    A sentinel command goes right behind the input: the server answers a
    connection's messages in order, so everything before the sentinel's answer
    belongs to the input (an input accepted silently, like a valid
    ``subscribe``, has nothing there). No timing assumptions: a loaded machine
    only makes this slower, never wrong.
    """
    ws.send(payload)
    ws.send(json.dumps({"type": "cancel", "run_id": SENTINEL}))
    outcomes: list[str] = []
    open_runs: set[str] = set()
    sentinel_seen = False
    while not sentinel_seen or open_runs:
        frame = json.loads(ws.recv(timeout=20))
        label = check_frame(frame)
        if frame.get("run_id") == SENTINEL:
            assert frame["code"] == "unknown_run"
            sentinel_seen = True
            continue
        if frame["type"] == "broadcast":
            continue
        if frame.get("run_id") and frame.get("seq") is not None:
            if frame["type"] in FINAL:
                open_runs.discard(frame["run_id"])
            else:
                open_runs.add(frame["run_id"])
        if not sentinel_seen or frame.get("run_id") in open_runs or frame["type"] in FINAL:
            outcomes.append(label)
    return outcomes or ["no frame (accepted, e.g. subscribe)"]


# -- 1. property-based: any JSON, any text --------------------------------------------

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_value = st.recursive(
    json_scalar,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    ["type", "query", "case_id", "stream_thinking", "events", "run_id", "after_seq"]
)
type_values = st.sampled_from(
    ["query", "cancel", "resume", "replay", "subscribe", "QUERY", "", "x" * 100]
)
command = st.dictionaries(
    keys, st.one_of(json_value, type_values, st.lists(st.sampled_from(sorted(TYPES)))), max_size=6
)
weird_text = st.text(
    alphabet=st.characters(
        codec="utf-8", categories=["Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "So", "Lo", "Nd"]
    ),
    max_size=200,
)
message = st.one_of(
    command.map(lambda d: json.dumps(d)),
    json_value.map(lambda v: json.dumps(v)),
    weird_text,
    weird_text.map(lambda t: json.dumps({"query": t, "case_id": 1})),
    st.binary(max_size=300),
)


def part_property(srv) -> None:
    ws = sync_connect(srv.ws, open_timeout=10, max_size=None, legacy=True)
    json.loads(ws.recv(timeout=10))
    state = {"ws": ws}

    @settings(
        max_examples=1500,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        database=None,
    )
    @given(message)
    def prop(payload):
        outcomes = exchange(state["ws"], payload)
        # One input, one outcome: its first answer (a run counts as "query_received").
        record(
            "hypothesis: JSON values, commands, control/format/unicode text, binary",
            outcomes[0],
            True,
        )

    try:
        prop()
    finally:
        state["ws"].close()


# -- 2. big and deep inputs ------------------------------------------------------------


def part_big_deep_and_odd(srv) -> None:
    ws = sync_connect(srv.ws, open_timeout=10, max_size=None, legacy=True)
    json.loads(ws.recv(timeout=10))
    cases: list[tuple[str, str | bytes, set[str]]] = [
        ("nested arrays 30k deep", "[" * 30_000 + "]" * 30_000, {"error:invalid_json"}),
        ("nested objects 2k deep", '{"a":' * 2000 + "1" + "}" * 2000, {"error:invalid_json"}),
        ("nested objects 500 deep", '{"a":' * 500 + "1" + "}" * 500, {"error:missing_query"}),
        (
            "60 KiB query string",
            json.dumps({"query": "x" * 60_000, "case_id": 1}),
            {"error:query_too_long"},
        ),
        ("60 KiB of whitespace", " " * 60_000, {"error:invalid_json"}),
        ("NUL bytes", "\x00" * 1000, {"error:invalid_json"}),
        (
            "case_id 2**64",
            '{"query":"q","case_id":18446744073709551616}',
            {"error:invalid_json", "error:invalid_case_id"},
        ),
        ("case_id -1", '{"query":"q","case_id":-1}', {"error:invalid_case_id"}),
        ("case_id 1e3", '{"query":"q","case_id":1e3}', {"error:invalid_case_id"}),
        ("case_id true", '{"query":"q","case_id":true}', {"error:invalid_case_id"}),
        ("duplicate keys", '{"query":1,"query":"q","case_id":1}', {"query_received"}),
        (
            "lone surrogate escape",
            '{"query":"\\ud800","case_id":1}',
            {"error:invalid_json", "query_received"},
        ),
        (
            "BOM + RTL override + ZWJ",
            json.dumps({"query": "\ufeff\u202e\u200d?", "case_id": 1}),
            {"query_received"},
        ),
        (
            "emoji + combining marks",
            json.dumps({"query": "👩‍⚖️" + "e\u0301" * 500, "case_id": 1}),
            {"query_received"},
        ),
        (
            "500 event names",
            json.dumps({"type": "subscribe", "events": ["x"] * 500}),
            {"error:unknown_event_type"},
        ),
        (
            "run_id of 10k chars",
            json.dumps({"type": "resume", "run_id": "r" * 10_000}),
            {"error:invalid_field"},
        ),
        ("binary 60 KiB", os.urandom(60_000), {"error:binary_not_supported"}),
    ]
    try:
        for name, payload, expected in cases:
            outcomes = exchange(ws, payload)
            ok = outcomes[0] in expected
            record(f"big/deep/odd: {name}", outcomes[0], ok)
            assert ok, (name, outcomes)
    finally:
        ws.close()


# -- 3. raw frames: what a WebSocket library would not send ---------------------------------


def _raw(srv) -> RawWS:
    raw = RawWS(srv.port)
    assert raw.handshake() == 101
    assert raw.recv_json()["type"] == "connection_established"
    return raw


def _expect_close(srv, name: str, data: bytes, codes: set[int | None]) -> None:
    documented_close(codes)
    raw = _raw(srv)
    t0 = time.monotonic()
    raw.send(data)
    code = raw.close_code()
    raw.abort()
    if os.environ.get("FUZZ_DEBUG"):
        print(f"{name}: {code} in {time.monotonic() - t0:.2f}s")
    record(f"raw frames: {name}", f"close {code}", code in codes)
    assert code in codes, (name, code)


def part_raw_frames(srv) -> None:
    F = RawWS.frame
    query = json.dumps({"query": "fragmented", "case_id": 1}).encode()
    for bad in (
        b"\xff\xfe",
        b'{"query":"\xc3\x28","case_id":1}',
        b"\xc0\xaf",
        b"\xed\xa0\x80",
        b"ok\xf4\x90\x80\x80",
    ):
        _expect_close(srv, "invalid UTF-8 in a text frame", F(0x1, bad), {1007})
    _expect_close(
        srv,
        "invalid UTF-8 split across fragments",
        F(0x1, b"ab\xe2", fin=False) + F(0x0, b"\x28\xa1"),
        {1007},
    )
    _expect_close(srv, "continuation without a start", F(0x0, b"x"), {1002})
    _expect_close(
        srv, "new message inside a fragmented one", F(0x1, b"a", fin=False) + F(0x1, b"b"), {1002}
    )
    for rsv in (1, 2, 4):
        _expect_close(srv, "reserved bits set", F(0x1, b"{}", rsv=rsv), {1002})
    _expect_close(srv, "unmasked client frame", F(0x1, b"{}", mask=False), {1002})
    for opcode in (0x3, 0x7, 0xB, 0xF):
        _expect_close(srv, "reserved opcode", F(opcode, b"x"), {1002})
    _expect_close(srv, "control frame over 125 bytes", F(0x9, b"p" * 200), {1002})
    _expect_close(srv, "fragmented control frame", F(0x9, b"p", fin=False), {1002})
    _expect_close(srv, "length header claims 2**40 bytes", F(0x1, b"", length=1 << 40), {1009})
    _expect_close(
        srv,
        "fragments adding up past 64 KiB",
        F(0x1, b"x" * 30_000, fin=False) + F(0x0, b"x" * 30_000, fin=False) + F(0x0, b"x" * 30_000),
        {1009},
    )
    _expect_close(srv, "close frame with code 999", F(0x8, struct.pack("!H", 999)), {1002})
    _expect_close(srv, "close frame with a 1-byte payload", F(0x8, b"\x03"), {1002})
    _expect_close(
        srv,
        "close frame with invalid UTF-8 reason",
        F(0x8, struct.pack("!H", 1000) + b"\xff"),
        {1007, 1002},
    )
    _expect_close(srv, "clean close", F(0x8, struct.pack("!H", 1000)), {1000})

    # Fragmented, with a ping in the middle: a valid query, answered normally.
    for pieces in (2, 5, 30):
        raw = _raw(srv)
        step = max(1, len(query) // pieces)
        chunks = [query[i : i + step] for i in range(0, len(query), step)]
        data = b""
        for i, chunk in enumerate(chunks):
            data += F(0x1 if i == 0 else 0x0, chunk, fin=i == len(chunks) - 1)
            if i == 1:
                data += F(0x9, b"mid-ping")
        raw.send(data)
        types = []
        while not types or types[-1] not in FINAL:
            types.append(raw.recv_json()["type"])
        ok = types[0] == "query_received" and types[-1] == "agent_execution_complete"
        record("raw frames: fragmented query with a ping between fragments", "answered", ok)
        assert ok
        raw.abort()

    # Abrupt disconnects: mid-header, mid-payload, mid-fragmented message, mid-run.
    rng = random.Random(1234)
    for i in range(200):
        raw = _raw(srv)
        frame = F(0x1, query)
        cut = [1, 2, 5, len(frame) // 2, len(frame) - 1][i % 5]
        if i % 4 == 3:
            raw.send(frame)  # a whole query: hang up while the run streams
        else:
            raw.send(frame[:cut])
        time.sleep(rng.random() * 0.01)
        raw.abort()
        record("raw frames: abrupt disconnect mid-frame or mid-run", "connection dropped", True)

    # Random bytes after a good handshake.
    for _ in range(150):
        raw = _raw(srv)
        raw.sock.settimeout(0.1)
        raw.send(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 400))))
        code = raw.close_code()  # None: the server still waits for the rest of a frame
        raw.abort()
        ok = code in documented_close({None, 1000, 1002, 1007, 1009})
        outcome = f"close {code}" if code else "server waits for the rest of the frame"
        record("raw frames: random bytes after the handshake", outcome, ok)
        assert ok, code


def _http_raw(srv, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
    return out


def part_handshakes(srv) -> None:
    base = "GET /ws/query HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    cases = {
        "no Sec-WebSocket-Key": base + "Sec-WebSocket-Version: 13\r\n\r\n",
        "WebSocket version 8": base + key + "Sec-WebSocket-Version: 8\r\n\r\n",
        "bad key": base + "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
        "POST upgrade": base.replace("GET", "POST") + key + "Sec-WebSocket-Version: 13\r\n\r\n",
        "100 KiB header": base
        + key
        + "Sec-WebSocket-Version: 13\r\nX-Big: "
        + "a" * 100_000
        + "\r\n\r\n",
        "non-ASCII header": base + key + "Sec-WebSocket-Version: 13\r\nX-Name: caf\xe9\r\n\r\n",
        "garbage request line": "\x00\x01\x02 GARBAGE\r\n\r\n",
        "subprotocol junk": base
        + key
        + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ,,, ;;\r\n\r\n",
        "extension junk": base
        + key
        + "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99\r\n\r\n",
        "query string junk": base.replace("/ws/query", "/ws/query?token=%ZZ&&ticket=\x7f")
        + key
        + "Sec-WebSocket-Version: 13\r\n\r\n",
    }
    for name, request in cases.items():
        reply = _http_raw(srv, request.encode("latin-1"))
        status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/1.1") else "closed"
        ok = status == "closed" or status.startswith("4") or status == "101"
        record(f"handshake: {name}", f"HTTP {status}", ok)
        assert ok, (name, reply[:200])
    rng = random.Random(99)
    for _ in range(200):
        reply = _http_raw(srv, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 2000))))
        status = reply.split(b" ", 2)[1].decode() if reply.startswith(b"HTTP/1.1") else "closed"
        ok = status == "closed" or status.startswith("4")
        record("handshake: random bytes instead of HTTP", f"HTTP {status}", ok)
        assert ok


# -- 4. REST bodies --------------------------------------------------------------------------


rest_body = st.one_of(
    st.binary(max_size=500),
    json_value.map(lambda v: orjson.dumps(v)),
    command.map(lambda d: json.dumps(d).encode()),
    st.dictionaries(st.sampled_from(["message", "type"]), json_value, max_size=2).map(
        lambda d: json.dumps(d).encode()
    ),
)


def part_rest(srv) -> None:
    with httpx.Client(base_url=srv.http, timeout=30) as http:
        _rest_battery(http)


def _rest_battery(http: httpx.Client) -> None:
    def check(method: str, path: str, body: bytes | None, label: str) -> None:
        r = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
        # Our endpoints answer errors with {"error", "code"}; the router's own 404/405
        # (a path no route matches) is plain text.
        ok = r.status_code < 500 and (
            r.status_code < 400 or r.status_code in (404, 405) or "code" in r.json()
        )
        record(f"REST: {label}", f"HTTP {r.status_code}", ok)
        assert ok, (path, body[:200] if body else body, r.status_code, r.text[:300])

    @settings(max_examples=600, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(rest_body, st.sampled_from(["/query", "/ws/broadcast", "/ws/ticket"]))
    def prop(body, path):
        check("POST", path, body, "hypothesis bodies to /query, /ws/broadcast, /ws/ticket")

    prop()
    deep = [
        b"[" * 100_000,
        b'{"query":' * 300 + b'"q"' + b"}" * 300,
        b'{"message":' * 300 + b'"m"' + b"}" * 300,
        b"\xff\xfe\x00",
        b'{"query":"\xc3\x28","case_id":1}',
        b"x" * 200_000,
        json.dumps({"query": "q", "case_id": 1, "events": ["nope"]}).encode(),
        json.dumps({"message": "m" * 5000}).encode(),
        json.dumps({"message": "ok", "type": ["x"]}).encode(),
    ]
    for body in deep:
        for path in ("/query", "/ws/broadcast", "/ws/ticket"):
            check("POST", path, body, "huge, deep and invalid UTF-8 bodies")
    for q in (
        "limit=abc",
        "limit=-5",
        "limit=99999999999999999999",
        "case_id=x",
        "case_id=1e9",
        "limit=",
        "case_id=%00",
    ):
        check("GET", f"/runs?{q}", None, "bad query parameters on /runs")
    for run_id in ("x", "..%2F..%2Fetc", "%00", "r" * 5000, "😀"):
        check("GET", f"/runs/{run_id}/events", None, "odd run ids on /runs/{id}/events")
    for path in ("/ws/status", "/cases", "/health", "/ready"):
        check("GET", path, None, "plain GETs")


# -- 5. churn --------------------------------------------------------------------------------


async def _churn_one(srv, i: int) -> str:
    kind = i % 5
    if kind == 0:  # a polite client
        async with websockets.connect(srv.ws, open_timeout=20) as ws:
            await ws.recv()
        return "clean close"
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    try:
        if kind == 1:  # TCP connect, no handshake
            return "TCP only"
        writer.write(
            b"GET /ws/query HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        if kind == 2:  # hang up before the server answers
            return "handshake then hang up"
        await reader.readuntil(b"\r\n\r\n")
        if kind == 3:  # open, then reset
            return "open then reset"
        writer.write(RawWS.frame(0x1, b'{"query":"churn","case_id":1}'))
        await writer.drain()
        await asyncio.sleep(0.005)
        return "query then reset"
    finally:
        sock = writer.get_extra_info("socket")
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()


def part_churn(srv) -> None:
    asyncio.run(_churn(srv))


async def _churn(srv) -> None:
    total, width = 5000, 50
    sem = asyncio.Semaphore(width)
    results: Counter[str] = Counter()
    errors: list[str] = []

    async def one(i: int) -> None:
        async with sem:
            try:
                results[await _churn_one(srv, i)] += 1
            except Exception as exc:  # the client side may see resets; the server must not care
                errors.append(type(exc).__name__)

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = time.monotonic() - t0
    for outcome, n in results.items():
        record("churn: connects and disconnects, 50 at a time", outcome, True, n)
    # Polite clients must always get in; others may see their own reset.
    assert results["clean close"] == total // 5, (results, Counter(errors))
    FIG["churn: connects and disconnects, 50 at a time"]["seconds"] = round(elapsed, 1)


# -- the parts, in order ----------------------------------------------------------------------

PARTS: list[tuple[str, Callable[[Any], None]]] = [
    ("property", part_property),
    ("big/deep/odd", part_big_deep_and_odd),
    ("raw frames", part_raw_frames),
    ("handshakes", part_handshakes),
    ("REST", part_rest),
    ("churn", part_churn),
]


# -- the end: nothing leaked, the canary never noticed, figures written -------------------------


def end_state(srv) -> tuple[str | None, dict[str, Any]]:
    """``(leak, figures)`` once the canary has stopped: a leak description or None."""
    canary = srv.canary
    svc = srv.app.state.services
    deadline = time.monotonic() + 15
    leak: str | None = None
    with httpx.Client(base_url=srv.http) as http:
        while True:
            st_ = http.get("/ws/status").json()
            tasks = http.get("/_probe").json()["tasks"]
            uv_conns = len(srv.server.server_state.connections)
            clean = st_["active_connections"] == 0 and svc.runs.active == 0 and not svc.sessions
            if clean and tasks <= srv.baseline_tasks and uv_conns <= 1:
                break
            if time.monotonic() > deadline:
                leak = (
                    f"leak: {st_['active_connections']} connections, {svc.runs.active} runs, "
                    f"{tasks} tasks (baseline {srv.baseline_tasks}), {uv_conns} uvicorn connections"
                )
                break
            time.sleep(0.1)
    total_inputs = sum(e["inputs"] for e in FIG.values())  # bad inputs; canary runs apart
    total_failures = sum(e["failures"] for e in FIG.values())
    record(
        "canary: a well-behaved client streaming throughout",
        "all runs complete, gapless",
        not canary.failures,
        canary.completed,
    )
    figures = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.monotonic() - srv.t0, 1),
        "inputs": total_inputs,
        "failures": total_failures,
        "canary_runs": canary.completed,
        "end_state": {
            "connections": 0 if leak is None else "leaked",
            "runs": 0 if leak is None else "leaked",
            "tasks": f"{tasks} (baseline {srv.baseline_tasks})",
        },
        "categories": {
            name: {**e, "outcomes": dict(e["outcomes"].most_common(6))} for name, e in FIG.items()
        },
    }
    return leak, figures


# -- the tests: one per part, and the end state ---------------------------------------------------


def test_property_any_message_gets_a_documented_answer(battery):
    battery.check("property")


def test_big_deep_and_odd_inputs(battery):
    battery.check("big/deep/odd")


def test_raw_frame_battery(battery):
    battery.check("raw frames")


def test_malformed_handshakes(battery):
    battery.check("handshakes")


def test_rest_endpoints_answer_bad_bodies_with_4xx(battery):
    battery.check("REST")


def test_thousands_of_connects_and_disconnects(battery):
    battery.check("churn")


def test_no_leaks_and_the_canary_kept_streaming(battery):
    srv = battery.srv
    assert battery.leak is None, battery.leak
    assert srv.thread.is_alive()
    assert not srv.canary.failures, srv.canary.failures[:5]
    assert srv.canary.completed > 0
    assert battery.figures["failures"] == 0, battery.figures["categories"]
    assert battery.figures_path is not None and battery.figures_path.exists()
