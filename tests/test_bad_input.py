"""Every row of docs/protocol.md's bad-input table, on one connection."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import pytest
import websockets

from legalstream.app import create_app
from support import ScriptedRunner, collect_run, live_server, recv_json

QUERY = {"query": "What was the defendant's response?", "case_id": 1}

# (what is sent, the error code that comes back) — the table in docs/protocol.md.
BAD_INPUTS: list[tuple[str | bytes, str]] = [
    ("this is not json", "invalid_json"),
    ("{'single': 'quotes'}", "invalid_json"),
    ("[1, 2, 3]", "invalid_message"),
    ('"just a string"', "invalid_message"),
    ("42", "invalid_message"),
    ("null", "invalid_message"),
    ("{}", "missing_query"),
    ('{"case_id": 1}', "missing_query"),
    ('{"query": "", "case_id": 1}', "missing_query"),
    ('{"query": "   ", "case_id": 1}', "missing_query"),
    ('{"query": null, "case_id": 1}', "missing_query"),
    ('{"query": 42, "case_id": 1}', "invalid_query"),
    ('{"query": ["a"], "case_id": 1}', "invalid_query"),
    ('{"query": {"q": 1}, "case_id": 1}', "invalid_query"),
    (json.dumps({"query": "x" * 4001, "case_id": 1}), "query_too_long"),
    ('{"query": "q"}', "invalid_case_id"),
    ('{"query": "q", "case_id": "1"}', "invalid_case_id"),
    ('{"query": "q", "case_id": 1.5}', "invalid_case_id"),
    ('{"query": "q", "case_id": true}', "invalid_case_id"),
    ('{"query": "q", "case_id": -1}', "invalid_case_id"),
    ('{"query": "q", "case_id": [1]}', "invalid_case_id"),
    ('{"query": "q", "case_id": 1, "stream_thinking": "yes"}', "invalid_field"),
    ('{"query": "q", "case_id": 1, "stream_thinking": 1}', "invalid_field"),
    ('{"query": "q", "case_id": 1, "events": "tool_start"}', "invalid_field"),
    ('{"query": "q", "case_id": 1, "events": ["no_such_event"]}', "unknown_event_type"),
    ('{"type": "launch_missiles"}', "unknown_type"),
    ('{"type": 7}', "invalid_field"),
    ('{"type": "cancel"}', "invalid_field"),
    ('{"type": "cancel", "run_id": 5}', "invalid_field"),
    ('{"type": "cancel", "run_id": "0123456789abcdef"}', "unknown_run"),
    ('{"type": "resume", "run_id": "0123456789abcdef", "after_seq": 0}', "unknown_run"),
    ('{"type": "resume", "run_id": "0123456789abcdef", "after_seq": -3}', "invalid_field"),
    ('{"type": "replay", "run_id": "0123456789abcdef"}', "unknown_run"),
    (b"\x00\x01binary", "binary_not_supported"),
    (json.dumps({"query": "q", "case_id": 1}).encode(), "binary_not_supported"),
    ("[" * 5000 + "]" * 5000, "invalid_json"),
]


async def test_each_bad_input_gets_its_error_and_the_connection_stays_open(server):
    async with websockets.connect(server.ws) as ws:
        await recv_json(ws)
        for sent, code in BAD_INPUTS:
            await ws.send(sent)
            frame = await recv_json(ws)
            assert frame["type"] == "error", sent
            assert frame["code"] == code, (sent, frame)
            assert frame["metadata"]["code"] == code
            assert frame["error"]
        # Still usable after all of that.
        await ws.send(json.dumps(QUERY))
        assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"


async def test_oversized_frame_closes_with_1009_and_spares_others(server):
    async with websockets.connect(server.ws) as bystander:
        await recv_json(bystander)
        async with websockets.connect(server.ws, max_size=None) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"query": "x" * (70 * 1024), "case_id": 1}))
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009
        await bystander.send(json.dumps(QUERY))
        assert (await collect_run(bystander))[-1]["type"] == "agent_execution_complete"


async def test_slow_consumer_is_closed_and_others_keep_streaming(tmp_settings):
    """A client that never reads is cut off with 1013; a reader is unaffected."""
    runner = ScriptedRunner(steps=1, chunks=3000, delay=0, chunk_bytes=2048)
    server_cfg = tmp_settings.server.model_copy(update={"send_queue_size": 64})
    settings = tmp_settings.model_copy(update={"server": server_cfg})
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as server:
        # Paused reading and a small receive buffer: this client takes no more frames.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sluggard = await websockets.connect(server.ws, max_queue=1, sock=sock)
        await recv_json(sluggard)
        sluggard.transport.pause_reading()
        for _ in range(3):
            await sluggard.send(json.dumps(QUERY))
        async with websockets.connect(server.ws) as reader:
            await recv_json(reader)
            await reader.send(json.dumps(QUERY))
            frames = await collect_run(reader, timeout=60)
            assert frames[-1]["type"] == "agent_execution_complete"
            assert sum(f["type"] == "llm_stream_chunk" for f in frames) == 3000
        svc = app.state.services
        deadline = asyncio.get_running_loop().time() + 15
        while svc.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not svc.sessions, "the slow consumer's session should have been closed"
        assert svc.runs.active == 0
        sluggard.transport.abort()


async def test_rest_bodies(server):
    async with httpx.AsyncClient() as http:
        for body in (b"{", b"\xff\xfe", b"[]", b'{"query": 1, "case_id": 1}'):
            resp = await http.post(f"{server.http}/query", content=body)
            assert resp.status_code in (400, 422)
            assert resp.json()["code"]
        resp = await http.post(f"{server.http}/query", content=b"x" * (128 * 1024))
        assert resp.status_code in (400, 413, 422)
