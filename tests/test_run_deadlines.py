"""Cancel and timeout end a run even when its thread is stuck inside a library call.

Issue 16: with a server trickling one chunk every 5 s and ``runs.timeout_seconds =
30``, no final frame was ever sent and ``/runs`` said ``running`` for minutes; a
timeout ended (much later) as ``cancelled``. The run manager now publishes the
final frame itself ``runs.cancel_grace_seconds`` after the cancel or timeout,
drops what the stuck thread emits later, frees the run's place and writes the
thread off (a replacement takes its slot); ``/metrics`` counts it.

The runner here is stuck for real: it ignores the cancellation and waits on a
lock nobody releases until the test ends, like a provider SDK blocked in a read.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
import pytest
import websockets

from legalstream.agent.api import RunOutcome, RunRequest
from legalstream.app import create_app
from legalstream.events import EventType
from support import ScriptedRunner, collect_run, live_server, recv_json


class StuckRunner:
    """Runs whose query contains "stuck" block until ``release``, ignoring cancellation;
    the others answer at once (through a ScriptedRunner)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = threading.Event()
        self.returned = 0
        self._quick = ScriptedRunner(steps=1, delay=0.0)

    def run(self, request: RunRequest, emit: Any, cancelled: threading.Event) -> RunOutcome:
        if "stuck" not in request.query:
            return self._quick.run(request, emit, cancelled)
        emit(EventType.AGENT_START, agent_name="Legal Question Answering Agent")
        self.entered.set()
        self.release.wait(60)  # a library call that does not look at the cancel flag
        # What a stuck thread does when it comes back: more events, its own final.
        emit(EventType.THINKING_START, metadata={"late": True})
        self.returned += 1
        return RunOutcome(answer="late answer")


@pytest.fixture
def stuck() -> StuckRunner:
    runner = StuckRunner()
    yield runner
    runner.release.set()


def _settings(tmp_settings, **runs):
    return tmp_settings.model_copy(
        update={"runs": tmp_settings.runs.model_copy(update={"cancel_grace_seconds": 0.5, **runs})}
    )


async def _query(ws, query: str) -> str:
    await ws.send(json.dumps({"query": query, "case_id": 1}))
    ack = await recv_json(ws)
    assert ack["type"] == "query_received"
    return ack["run_id"]


async def _until(ws, type_: str) -> dict:
    while True:
        frame = await recv_json(ws)
        if frame["type"] == type_:
            return frame


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.parametrize("bus", ["memory", "redis"])
async def test_cancel_ends_a_stuck_run_within_a_second(
    tmp_settings, stuck, bus, request: pytest.FixtureRequest
):
    settings = _settings(tmp_settings, max_concurrent=1)
    if bus == "redis":
        settings = settings.model_copy(
            update={"bus": request.getfixturevalue("redis_bus_settings")}
        )
    app = create_app(settings, runner_factory=lambda svc: stuck)
    with live_server(app, settings) as srv:
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            run_id = await _query(ws, "stuck question")
            await _until(ws, "agent_start")
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "cancel", "run_id": run_id}))
            final = await _until(ws, "agent_execution_error")
            assert time.monotonic() - t0 < 1.0
            assert final["run_id"] == run_id and final["code"] == "cancelled"

            # Its place is free: with max_concurrent = 1, the next run runs at once.
            other = await _query(ws, "a quick one")
            frames = await collect_run(ws)
            assert frames[-1]["type"] == "agent_execution_complete"
            assert {f["run_id"] for f in frames} == {other}

            async with httpx.AsyncClient(base_url=srv.http) as http:
                metrics = (await http.get("/metrics")).text
                assert _metric(metrics, "legalstream_run_threads_stuck") == 1
                assert _metric(metrics, "legalstream_run_threads_abandoned_total") == 1
                runs = (await http.get("/runs")).json()["runs"]
                assert {r["run_id"]: r["status"] for r in runs}[run_id] == "cancelled"

                # The stuck thread comes back: what it emits is dropped; the run
                # keeps exactly one final frame.
                stuck.release.set()
                for _ in range(100):
                    if stuck.returned:
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.3)
                lines = (await http.get(f"/runs/{run_id}/events")).text.splitlines()
                events = [json.loads(line) for line in lines]
                assert [e["type"] for e in events if e["type"].startswith("agent_execution_")] == [
                    "agent_execution_start",
                    "agent_execution_error",
                ]
                assert not any((e.get("metadata") or {}).get("late") for e in events)
                assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
                metrics = (await http.get("/metrics")).text
                assert _metric(metrics, "legalstream_run_threads_stuck") == 0
            with pytest.raises(asyncio.TimeoutError):
                await recv_json(ws, timeout=0.3)  # nothing more for that run


async def test_timeout_ends_a_stuck_run_with_code_timeout(tmp_settings, stuck):
    settings = _settings(tmp_settings, timeout_seconds=1.5)
    app = create_app(settings, runner_factory=lambda svc: stuck)
    with live_server(app, settings) as srv:
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            t0 = time.monotonic()
            run_id = await _query(ws, "stuck question")
            final = await _until(ws, "agent_execution_error")
            elapsed = time.monotonic() - t0
            assert final["run_id"] == run_id
            assert final["code"] == "timeout", final  # not "cancelled"
            assert final["metadata"]["code"] == "timeout"
            assert 1.5 <= elapsed < 1.5 + 2.0, elapsed
            async with httpx.AsyncClient(base_url=srv.http) as http:
                runs = (await http.get("/runs")).json()["runs"]
                assert {r["run_id"]: r["status"] for r in runs}[run_id] != "running"


async def test_disconnect_ends_a_stuck_run(tmp_settings, stuck):
    settings = _settings(tmp_settings)
    app = create_app(settings, runner_factory=lambda svc: stuck)
    with live_server(app, settings) as srv:
        async with websockets.connect(srv.ws) as ws:
            await recv_json(ws)
            run_id = await _query(ws, "stuck question")
            await _until(ws, "agent_start")
        t0 = time.monotonic()
        async with httpx.AsyncClient(base_url=srv.http) as http:
            while True:
                runs = (await http.get("/runs")).json()["runs"]
                status = {r["run_id"]: r["status"] for r in runs}[run_id]
                if status != "running":
                    break
                assert time.monotonic() - t0 < 2.0, "the run outlived its client"
                await asyncio.sleep(0.05)
            assert status == "cancelled"
