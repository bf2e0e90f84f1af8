"""The Python client, the ``query``/``probe`` commands, /metrics and /ws/status health.

Everything runs against the real app on real uvicorn; ``ScriptedRunner`` stands
in for CrewAI so runs are fast and their shape is known.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import httpx
import pytest

from legalstream.app import create_app
from legalstream.client import (
    ConnectionLost,
    LegalStreamClient,
    RunError,
    probe_command,
    query_command,
    ticket_url,
)
from legalstream.settings import Settings
from support import ScriptedRunner, live_server
from test_auth import jwt_settings, make_token


def _get(url: str) -> tuple[int, str, str]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("content-type", ""), r.read().decode()


@pytest.fixture
def slow_server(tmp_path: Path):
    """Runs that take ~1 s and outlive a dropped connection for 10 s (resume)."""
    settings = Settings(
        rag={"data_dir": tmp_path / "data", "ingest_sample_on_start": False},
        runs={"resume_grace_seconds": 10.0},
        bus={"history_per_run": 10_000},
    )
    runner = ScriptedRunner(steps=3, delay=0.05, chunks=10)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        yield srv


async def test_ask_returns_answer_and_citations(server):
    async with LegalStreamClient(server.ws) as c:
        assert c.connection_id
        answer = await c.ask("What was the defendant's response?", case_id=1)
    assert answer.answer == "Scripted answer to: What was the defendant's response?"
    assert answer.citations == [{"doc_id": "case-1/x", "quote": "q"}]
    assert answer.run_id and len(answer.run_id) == 48  # a UUID and its signature (runs/ids.py)
    assert [e["seq"] for e in answer.events] == list(range(1, len(answer.events) + 1))


async def test_query_streams_frames_in_order(server):
    async with LegalStreamClient(server.ws) as c:
        frames = [f async for f in c.query("q1", case_id=1)]
    types = [f["type"] for f in frames]
    assert types[0] == "query_received" and types[-1] == "agent_execution_complete"
    assert "llm_stream_chunk" in types and "rag_query_end" in types
    assert all(f["connection_id"] == frames[0]["connection_id"] for f in frames)


async def test_no_thinking_gets_lifecycle_only(server):
    async with LegalStreamClient(server.ws, stream_thinking=False) as c:
        frames = [f async for f in c.query("q1", case_id=1)]
    assert [f["type"] for f in frames] == [
        "query_received",
        "agent_execution_start",
        "agent_execution_complete",
    ]


async def test_concurrent_queries_are_attributed_to_their_calls(server):
    async with LegalStreamClient(server.ws) as c:
        questions = [f"question number {i}" for i in range(4)]
        answers = await asyncio.gather(*(c.ask(q, case_id=1) for q in questions))
    for q, a in zip(questions, answers, strict=True):
        assert a.answer == f"Scripted answer to: {q}"
        assert {e["run_id"] for e in a.events} == {a.run_id}
    assert len({a.run_id for a in answers}) == 4


async def test_refused_query_raises_run_error_and_connection_stays_usable(server):
    async with LegalStreamClient(server.ws) as c:
        with pytest.raises(RunError) as info:
            await c.ask("x", case_id=-1)
        assert info.value.code == "invalid_case_id"
        answer = await c.ask("still works?", case_id=1)
        assert answer.answer.endswith("still works?")


async def test_cancel(slow_server):
    async with LegalStreamClient(slow_server.ws) as c:
        stream = c.query("cancel me", case_id=1)
        run_id = await stream.started()
        await c.cancel(run_id)
        frames = [f async for f in stream]
    final = frames[-1]
    assert final["type"] == "agent_execution_error"
    assert final["code"] == "cancelled"


async def test_ask_raises_on_cancelled_run(slow_server):
    async with LegalStreamClient(slow_server.ws) as c:

        async def cancel_soon(frame):
            if frame["type"] == "agent_start":
                await c.cancel(frame["run_id"])

        with pytest.raises(RunError) as info:
            await c.ask("cancel me too", case_id=1, on_event=cancel_soon)
    assert info.value.code == "cancelled"
    assert info.value.run_id


async def test_reconnect_resumes_from_last_seq(slow_server):
    async with LegalStreamClient(slow_server.ws, backoff_initial=0.05) as c:
        first_connection = c.connection_id
        frames = []
        async for frame in c.query("survive a drop", case_id=1):
            frames.append(frame)
            if len(frames) == 6:
                # Drop the connection under the client (not a client close()).
                await c._ws.close()
        assert c.reconnects == 1
        assert c.connection_id != first_connection
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(1, len(frames) + 1)), "gapless, no duplicates across the reconnect"
    assert frames[-1]["type"] == "agent_execution_complete"
    assert {f["connection_id"] for f in frames} == {first_connection, c.connection_id}


async def test_resume_failed_is_passed_on(tmp_path: Path):
    settings = Settings(
        rag={"data_dir": tmp_path / "data", "ingest_sample_on_start": False},
        runs={"resume_grace_seconds": 10.0},
        bus={"history_per_run": 4},
    )
    runner = ScriptedRunner(steps=4, delay=0.05, chunks=10)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        async with LegalStreamClient(srv.ws, backoff_initial=0.3) as c:
            frames = []
            async for frame in c.query("lose some", case_id=1):
                frames.append(frame)
                if len(frames) == 3:
                    await c._ws.close()
    types = [f["type"] for f in frames]
    assert "resume_failed" in types
    failed = frames[types.index("resume_failed")]
    before = frames[: types.index("resume_failed")]
    # after_seq is the last seq the client received before the drop.
    assert failed["metadata"]["after_seq"] == before[-1]["seq"] >= 3
    after = [f["seq"] for f in frames[types.index("resume_failed") + 1 :]]
    assert after[0] > failed["metadata"]["after_seq"] + 1  # the lost events are skipped
    assert after == list(range(after[0], after[0] + len(after)))
    assert types[-1] == "agent_execution_complete"


def test_ticket_url():
    assert ticket_url("ws://h:1/ws/query") == "http://h:1/ws/ticket"
    assert ticket_url("wss://h/legal/ws/query?x=1") == "https://h/legal/ws/ticket"


def _drops_authorization_on_upgrades(app: Any) -> Any:
    """A proxy in front of ``app`` that passes ``Authorization`` on HTTP but not on
    WebSocket upgrades (as some do), so only a ticket gets a handshake through."""

    async def proxy(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
            scope = {**scope, "headers": headers}
        await app(scope, receive, send)

    return proxy


async def test_token_client_falls_back_to_a_ticket_when_the_handshake_gets_401(tmp_path: Path):
    settings = jwt_settings(tmp_path)
    app = create_app(settings, runner_factory=lambda svc: ScriptedRunner(steps=1))
    with live_server(_drops_authorization_on_upgrades(app), settings) as srv:
        async with LegalStreamClient(srv.ws, token=make_token(sub="alice")) as c:
            answer = await c.ask("What did the lease say?", case_id=1)
            assert c._use_ticket  # the header was refused (401), the ticket let it in
    assert answer.answer == "Scripted answer to: What did the lease say?"


async def test_ticket_provider_is_used_from_the_first_handshake(tmp_path: Path):
    settings = jwt_settings(tmp_path)
    app = create_app(settings, runner_factory=lambda svc: ScriptedRunner(steps=1))
    token = make_token(sub="alice")
    asked: list[str] = []
    with live_server(app, settings) as srv:

        async def provider() -> str:
            # Where a browser-side app would ask its own backend for a ticket.
            async with httpx.AsyncClient(base_url=srv.http) as http:
                r = await http.post("/ws/ticket", headers={"Authorization": f"Bearer {token}"})
            asked.append(r.json()["ticket"])
            return asked[-1]

        async with LegalStreamClient(srv.ws, ticket_provider=provider) as c:
            answer = await c.ask("q", case_id=1)
    assert len(asked) == 1 and answer.answer == "Scripted answer to: q"


async def test_token_client_without_a_ticket_endpoint_reports_the_refusal(tmp_path: Path):
    settings = jwt_settings(tmp_path)
    app = create_app(settings, runner_factory=lambda svc: ScriptedRunner(steps=1))
    with live_server(_drops_authorization_on_upgrades(app), settings) as srv:
        bad = LegalStreamClient(srv.ws, token="not-a-jwt", reconnect=False)
        with pytest.raises(ConnectionLost, match="/ws/ticket: HTTP 401"):
            async with bad:
                pass


def test_query_command_json(server, capsys):
    assert query_command(server.ws, "json please", 1, as_json=True) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    frames = [json.loads(line) for line in lines]
    assert frames[0]["type"] == "query_received"
    assert frames[-1]["type"] == "agent_execution_complete"
    assert frames[-1]["output_data"]["answer"] == "Scripted answer to: json please"


def test_query_command_rich(server, capsys):
    assert query_command(server.ws, "pretty please", 1) == 0
    out = capsys.readouterr().out
    assert "query_received" in out and "rag_query_end" in out
    assert "part0 part1" in out  # streamed tokens, inline
    assert "Scripted answer to: pretty please" in out
    assert "citations" in out


def test_query_command_refused(server, capsys):
    assert query_command(server.ws, "bad case", -5) == 1
    assert "invalid_case_id" in capsys.readouterr().err


def test_query_command_unreachable(capsys):
    assert query_command("ws://127.0.0.1:9/ws/query", "anyone?", 1) == 2


def test_probe_command(server, capsys):
    assert probe_command(server.ws, 1, queries=["first probe", "second probe"]) == 0
    out = capsys.readouterr().out
    assert "summary" in out and "events by type" in out
    assert re.search(r"llm_stream_chunk\s+.*10", out)  # 5 chunks x 2 runs
    assert "2/2 runs complete" in out
    assert "time to first event" in out


def test_metrics_endpoint(server):
    assert query_command(server.ws, "count me", 1, as_json=True) == 0
    status, ctype, body = _get(server.http + "/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line and not line.startswith("#")
    }
    assert values["legalstream_runs_started_total"] == 1
    assert values['legalstream_runs_finished_total{outcome="complete"}'] == 1
    assert values['legalstream_events_published_total{type="llm_stream_chunk"}'] == 5
    assert values['legalstream_events_delivered_total{type="llm_stream_chunk"}'] == 5
    assert values['legalstream_events_published_total{type="query_received"}'] == 1
    assert values['legalstream_llm_call_seconds_count{outcome="ok"}'] == 2
    assert values['legalstream_retrieval_seconds_count{outcome="ok"}'] == 2
    assert values['legalstream_run_duration_seconds_count{outcome="complete"}'] == 1
    assert values["legalstream_time_to_first_event_seconds_count"] == 1
    assert values["legalstream_connections_total"] == 1
    assert values["legalstream_connections_open"] == 0
    assert values["legalstream_send_queue_depth"] == 0
    assert "legalstream_slow_consumer_disconnects_total" in body
    assert "legalstream_send_queue_drops_total" in body


def test_two_apps_have_separate_registries(tmp_settings):
    a = create_app(tmp_settings, runner_factory=lambda svc: ScriptedRunner())
    b = create_app(tmp_settings, runner_factory=lambda svc: ScriptedRunner())
    assert a.state.metrics.registry is not b.state.metrics.registry
    a.state.metrics.runs_started.inc()
    assert b"legalstream_runs_started_total 0.0" in b.state.metrics.render()


async def test_status_reports_connection_health(server):
    async with LegalStreamClient(server.ws) as c:
        await c.ask("health", case_id=1)
        _, _, body = await asyncio.to_thread(_get, server.http + "/ws/status")
    status = json.loads(body)
    assert status["active_connections"] == 1
    meta = status["connections"][0]["metadata"]
    assert meta["messages_sent"] >= 20
    assert meta["queue_depth"] == 0 and meta["queue_capacity"] > 0
    assert meta["last_sent"] is not None
    health = meta["health"]
    assert health["state"] == "ok"
    assert health["last_pong"] is None
    assert health["last_inbound_s"] >= 0
