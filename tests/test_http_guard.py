"""Request heads on the open network: deadline, size, and floods of half-open connections.

Regression tests of issue 15 (items 1 and 2): 20,000 connections that never
finished their request head filled every file descriptor and took /health
down; a 40 MB header was buffered whole. The server runs as its own process
(tests/scripted_app.py), the attackers as others (tests/flood.py: file
descriptors are per process), from 127.0.0.2 while the checks run from
127.0.0.1 (both loopback).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from support import collect_run, free_port, recv_json

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
HEAD_TIMEOUT = 2.0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(port, pid) of the scripted app in a process of its own."""
    port = free_port()
    env = {
        **os.environ,
        "LEGALSTREAM_RAG__DATA_DIR": str(tmp_path / "data"),
        "LEGALSTREAM_RAG__INGEST_SAMPLE_ON_START": "false",
        "LEGALSTREAM_SERVER__REQUEST_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
        "LEGALSTREAM_AUDIT__ENABLED": "false",
        "LEGALSTREAM_LOG_LEVEL": "warning",
    }
    env.pop("LEGALSTREAM_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "scripted_app.py"), "--port", str(port)],
        env=env,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("scripted app did not start")
            time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _raw(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:
            pass
        return out


def test_a_request_head_that_never_completes_gets_408_within_the_deadline(server):
    port, _ = server
    for partial in (b"", b"GET /health HTTP/1.1\r\nHost: x\r\n"):
        started = time.monotonic()
        reply = _raw(port, partial, wait=HEAD_TIMEOUT + 5)
        elapsed = time.monotonic() - started
        assert reply.startswith(b"HTTP/1.1 408"), reply[:80]
        assert HEAD_TIMEOUT - 0.2 < elapsed < HEAD_TIMEOUT + 2, elapsed


def test_request_heads_past_64_kib_get_431(server):
    port, _ = server
    # A WebSocket handshake with 120 x 8 KB headers (it got 101).
    big = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 8000) for i in range(120))
    handshake = (
        b"GET /ws/query HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        + big
        + b"\r\n"
    )
    assert _raw(port, handshake).startswith(b"HTTP/1.1 431")
    # /health with 18 MB of headers (it got 200), sent as a client would.
    result = json.loads(
        subprocess.run(
            [sys.executable, str(TESTS / "flood.py"), "--port", str(port), "--source", "127.0.0.1",
             "--header-bytes", str(18_000_000)],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout
    )  # fmt: skip
    assert result["reply"].startswith("HTTP/1.1 431") and result["sent"] < 18_000_000, result
    # A normal request with ordinary headers is untouched, on the same server.
    assert (
        httpx.get(f"http://127.0.0.1:{port}/health", headers={"X-A": "b" * 4000}).status_code == 200
    )


def test_big_heads_do_not_take_memory(server):
    port, pid = server
    before = _rss_kb(pid)
    attackers = [
        subprocess.Popen(
            [
                sys.executable,
                str(TESTS / "flood.py"),
                "--port",
                str(port),
                "--source",
                "127.0.0.2",
                "--header-bytes",
                str(40_000_000),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(10)
    ]
    peak = before
    while any(a.poll() is None for a in attackers):
        peak = max(peak, _rss_kb(pid))
        time.sleep(0.05)
    replies = [json.loads(a.stdout.read()) for a in attackers if a.stdout]
    assert all(r["reply"].startswith("HTTP/1.1 431") for r in replies), replies
    time.sleep(1.0)
    after = _rss_kb(pid)
    # The 40 MB heads were never buffered: ten of them once added 362 MB.
    assert peak - before < 30_000, (before, peak)
    assert after <= before * 1.10, (before, after)


async def test_a_flood_of_half_open_connections_leaves_the_service_up(server):
    port, pid = server
    url = f"ws://127.0.0.1:{port}/ws/query"
    rss_before = _rss_kb(pid)
    # A stream that is running when the flood starts, and must not notice it.
    ws = await websockets.connect(url)
    await recv_json(ws)
    await ws.send(json.dumps({"query": "slow question", "case_id": 1}))
    hold = HEAD_TIMEOUT + 2.0
    attackers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(TESTS / "flood.py"),
            "--port",
            str(port),
            "--source",
            "127.0.0.2",
            "--count",
            "10000",
            "--hold",
            str(hold),
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    latencies: list[float] = []
    statuses: list[int] = []
    # Fresh connections from another address, as a load balancer's checks are.
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as http:
        while any(a.returncode is None for a in attackers):
            started = time.monotonic()
            try:
                response = await http.get(f"http://127.0.0.1:{port}/health", timeout=5)
                statuses.append(response.status_code)
            except httpx.HTTPError:
                statuses.append(0)
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
            for attacker in attackers:
                if attacker.returncode is None:
                    try:
                        await asyncio.wait_for(attacker.wait(), 0.001)
                    except TimeoutError:
                        pass
    frames = await collect_run(ws, timeout=30)
    await ws.close()
    reports = [json.loads(await a.stdout.read()) for a in attackers if a.stdout]
    opened = sum(r["opened"] for r in reports)
    assert opened + sum(r["connect_failed"] for r in reports) == 20_000
    # Every half-open connection the server accepted was let go within the deadline.
    assert sum(r["still_open"] for r in reports) == 0, reports
    assert statuses and all(s == 200 for s in statuses), statuses
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99)]
    assert p99 < 0.1, (p99, statistics.median(latencies), len(latencies))
    assert frames[-1]["type"] == "agent_execution_complete"
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    await asyncio.sleep(1.0)
    rss_after = _rss_kb(pid)
    assert rss_after <= rss_before * 1.10, (rss_before, rss_after)
