"""The /ws/query protocol against real uvicorn, with the scripted producer."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import orjson
import pytest
import websockets

from legalstream.app import create_app
from legalstream.events import EventType
from support import ScriptedRunner, collect_run, live_server, recv_json

SEED_FIELDS = {
    "type",
    "timestamp",
    "agent_name",
    "task",
    "action",
    "tool_name",
    "input_data",
    "output_data",
    "error",
    "metadata",
}
QUERY = {"query": "What was the defendant's response?", "case_id": 1, "stream_thinking": True}


async def _connect(server):
    ws = await websockets.connect(server.ws)
    hello = await recv_json(ws)
    assert hello["type"] == "connection_established"
    return ws, hello


def test_event_enum_has_every_protocol_type():
    expected = {
        "connection_established", "query_received", "agent_execution_start",
        "agent_execution_complete", "agent_execution_error", "agent_start", "agent_action",
        "agent_observation", "agent_end", "tool_start", "tool_end", "llm_start", "llm_end",
        "llm_error", "rag_query_start", "rag_query_end", "thinking_start", "thinking_end",
        "llm_stream_chunk", "broadcast", "error",
    }  # fmt: skip
    assert expected <= {t.value for t in EventType}


async def test_every_frame_carries_the_full_structure(server):
    ws, hello = await _connect(server)
    async with ws:
        assert hello["connection_id"]
        assert SEED_FIELDS <= hello.keys()
        await ws.send(json.dumps(QUERY))
        frames = await collect_run(ws)
    run_ids = {f["run_id"] for f in frames}
    assert len(run_ids) == 1
    for frame in frames:
        assert SEED_FIELDS <= frame.keys()
        assert isinstance(frame["timestamp"], float)
        assert frame["connection_id"] == hello["connection_id"]
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    types = [f["type"] for f in frames]
    assert types[:2] == ["query_received", "agent_execution_start"]
    final = frames[-1]
    assert final["type"] == "agent_execution_complete"
    assert final["output_data"]["answer"]
    assert isinstance(final["output_data"]["citations"], list)
    for kind in ("thinking_start", "tool_start", "tool_end", "llm_start", "llm_stream_chunk"):
        assert kind in types


async def test_seed_python_client_example_works_unchanged(server):
    """The seed document's Python client, verbatim but for the URI."""
    uri = server.ws
    seen = []

    async def legal_agent_client():
        async with websockets.connect(uri) as websocket:
            message = await websocket.recv()
            data = json.loads(message)
            seen.append(data)
            query = {
                "query": "What was the defendant's response?",
                "case_id": 1,
                "stream_thinking": True,
            }
            await websocket.send(json.dumps(query))
            while True:
                try:
                    message = await websocket.recv()
                    event = json.loads(message)
                    seen.append(event)
                    if event["type"] in ["agent_execution_complete", "agent_execution_error"]:
                        break
                except websockets.exceptions.ConnectionClosed:
                    break

    await asyncio.wait_for(legal_agent_client(), 20)
    assert seen[0]["type"] == "connection_established"
    assert seen[-1]["type"] == "agent_execution_complete"


async def test_stream_thinking_false_sends_only_lifecycle(server):
    ws, _ = await _connect(server)
    async with ws:
        await ws.send(json.dumps({**QUERY, "stream_thinking": False}))
        frames = await collect_run(ws)
    assert [f["type"] for f in frames] == [
        "query_received",
        "agent_execution_start",
        "agent_execution_complete",
    ]


async def test_sequential_and_concurrent_runs_on_one_connection(server):
    ws, _ = await _connect(server)
    async with ws:
        for _ in range(2):
            await ws.send(json.dumps(QUERY))
            frames = await collect_run(ws)
            assert frames[-1]["type"] == "agent_execution_complete"
        for i in range(3):
            await ws.send(json.dumps({**QUERY, "query": f"question {i}"}))
        finals: dict[str, dict] = {}
        by_run: dict[str, list[int]] = {}
        while len(finals) < 3:
            frame = await recv_json(ws)
            by_run.setdefault(frame["run_id"], []).append(frame["seq"])
            if frame["type"] == "agent_execution_complete":
                finals[frame["run_id"]] = frame
    assert len(by_run) == 3
    for seqs in by_run.values():
        assert seqs == list(range(1, len(seqs) + 1))
    answers = sorted(f["output_data"]["answer"] for f in finals.values())
    assert answers == [f"Scripted answer to: question {i}" for i in range(3)]


async def test_concurrent_run_cap_answers_with_error(tmp_settings):
    slow = ScriptedRunner(steps=50, delay=0.02)
    settings = tmp_settings.model_copy(
        update={"server": tmp_settings.server.model_copy(update={"max_runs_per_connection": 2})}
    )
    app = create_app(settings, runner_factory=lambda svc: slow)
    with live_server(app, settings) as server:
        ws, _ = await _connect(server)
        async with ws:
            for _ in range(3):
                await ws.send(json.dumps(QUERY))
            errors = []
            run_ids = set()
            deadline = time.monotonic() + 10
            while not errors and time.monotonic() < deadline:
                frame = await recv_json(ws)
                if frame["type"] == "error":
                    errors.append(frame)
                elif frame["type"] == "query_received":
                    run_ids.add(frame["run_id"])
            assert errors[0]["code"] == "too_many_runs"
            for run_id in run_ids:
                await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))


async def test_cancel_ends_run_with_cancelled_final_frame(tmp_settings):
    slow = ScriptedRunner(steps=200, delay=0.01)
    app = create_app(tmp_settings, runner_factory=lambda svc: slow)
    with live_server(app, tmp_settings) as server:
        ws, _ = await _connect(server)
        async with ws:
            await ws.send(json.dumps(QUERY))
            first = await recv_json(ws)
            run_id = first["run_id"]
            await recv_json(ws)
            await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
            frames = await collect_run(ws)
            final = frames[-1]
            assert final["type"] == "agent_execution_error"
            assert final["code"] == "cancelled"
            assert final["metadata"]["code"] == "cancelled"
            assert final["metadata"]["query"] == QUERY["query"]
            # The connection stays usable.
            await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
            err = await recv_json(ws)
            assert err["type"] == "error" and err["code"] == "unknown_run"
        await _wait_for(lambda: slow.active == 0)


async def test_disconnect_cancels_runs_and_leaves_nothing_behind(tmp_settings):
    slow = ScriptedRunner(steps=500, delay=0.01)
    app = create_app(tmp_settings, runner_factory=lambda svc: slow)
    with live_server(app, tmp_settings) as server:
        ws, _ = await _connect(server)
        await ws.send(json.dumps(QUERY))
        await ws.send(json.dumps(QUERY))
        await recv_json(ws)
        await _wait_for(lambda: slow.active == 2)
        await ws.close()
        await _wait_for(lambda: slow.active == 0, timeout=5)
        svc = app.state.services
        await _wait_for(lambda: svc.runs.active == 0 and not svc.sessions)
        async with httpx.AsyncClient() as http:
            status = (await http.get(f"{server.http}/ws/status")).json()
        assert status == {"active_connections": 0, "connections": []}


async def test_status_is_accurate(server):
    async with httpx.AsyncClient() as http:
        ws1, h1 = await _connect(server)
        ws2, h2 = await _connect(server)
        status = (await http.get(f"{server.http}/ws/status")).json()
        assert status["active_connections"] == 2
        ids = {c["connection_id"] for c in status["connections"]}
        assert ids == {h1["connection_id"], h2["connection_id"]}
        meta = status["connections"][0]["metadata"]
        assert "connected_at" in meta and "last_activity" in meta
        assert "T" in meta["connected_at"]
        await ws1.close()
        status = (await http.get(f"{server.http}/ws/status")).json()
        # Closing is acknowledged only after the server's session ended.
        assert status["active_connections"] == 1
        # A dropped TCP connection (no close frame) disappears as well.
        ws2.transport.abort()
        await _wait_for_status(http, server, 0)


async def test_idle_connections_time_out(tmp_settings, scripted):
    settings = tmp_settings.model_copy(
        update={"server": tmp_settings.server.model_copy(update={"idle_timeout": 1.0})}
    )
    app = create_app(settings, runner_factory=lambda svc: scripted)
    with live_server(app, settings) as server:
        ws, _ = await _connect(server)
        async with httpx.AsyncClient() as http:
            with pytest.raises(websockets.ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd.code == 1000
            assert "idle" in info.value.rcvd.reason
            await _wait_for_status(http, server, 0)


async def test_broadcast_reaches_every_client(server):
    clients = [await _connect(server) for _ in range(3)]
    async with httpx.AsyncClient() as http:
        resp = await http.post(
            f"{server.http}/ws/broadcast",
            json={"message": "System maintenance in 5 minutes", "type": "notification"},
        )
        assert resp.status_code == 200
        assert resp.json()["recipients"] == 3
        for ws, hello in clients:
            frame = await recv_json(ws)
            assert frame["type"] == "broadcast"
            assert frame["output_data"]["message"] == "System maintenance in 5 minutes"
            assert frame["metadata"]["type"] == "notification"
            assert frame["connection_id"] == hello["connection_id"]
            await ws.close()
        for body in (
            b"not json",
            b"[1,2]",
            b'{"type": "x"}',
            b'{"message": 5}',
            b'{"message": ""}',
        ):
            resp = await http.post(f"{server.http}/ws/broadcast", content=body)
            assert resp.status_code in (400, 422), body
            assert resp.json()["code"]


async def test_health_and_ready(server):
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.http}/health")).json() == {"status": "ok"}
        ready = await http.get(f"{server.http}/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_non_streaming_query_endpoint(server):
    async with httpx.AsyncClient(timeout=20) as http:
        resp = await http.post(f"{server.http}/query", json=QUERY)
        body = resp.json()
        assert resp.status_code == 200
        assert body["answer"] and body["run_id"] and body["status"] == "complete"
        bad = await http.post(f"{server.http}/query", json={"case_id": 1})
        assert bad.status_code == 422 and bad.json()["code"] == "missing_query"


async def test_failed_run_yields_agent_execution_error(tmp_settings):
    failing = ScriptedRunner(steps=1, fail="upstream model returned HTTP 500")
    app = create_app(tmp_settings, runner_factory=lambda svc: failing)
    with live_server(app, tmp_settings) as server:
        ws, _ = await _connect(server)
        async with ws:
            await ws.send(json.dumps(QUERY))
            frames = await collect_run(ws)
            final = frames[-1]
            assert final["type"] == "agent_execution_error"
            assert final["error"] == "upstream model returned HTTP 500"
            assert final["metadata"] == {
                "query": QUERY["query"],
                "case_id": 1,
                "code": "llm_failed",
            }
            assert "llm_error" in [f["type"] for f in frames]
            await ws.send(json.dumps(QUERY))
            assert (await collect_run(ws))[-1]["type"] == "agent_execution_error"


async def test_events_filter_per_query_and_subscribe(server):
    ws, _ = await _connect(server)
    async with ws:
        await ws.send(json.dumps({**QUERY, "events": ["tool_start", "tool_end"]}))
        types = [f["type"] for f in await collect_run(ws)]
        assert set(types) == {"tool_start", "tool_end", "agent_execution_complete"}
        await ws.send(json.dumps({"type": "subscribe", "events": ["llm_stream_chunk"]}))
        await ws.send(json.dumps(QUERY))
        types = [f["type"] for f in await collect_run(ws)]
        assert set(types) == {"llm_stream_chunk", "agent_execution_complete"}


async def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _wait_for_status(http, server, expected: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = orjson.loads((await http.get(f"{server.http}/ws/status")).content)
        if status["active_connections"] == expected:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"status shows {status['active_connections']}, expected {expected}"
            )
        await asyncio.sleep(0.02)
