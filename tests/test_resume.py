"""Resume after disconnect: cut 100 runs at random points, reassemble, compare.

Each run is cut at a random frame (by an abrupt TCP abort or a clean close),
then resumed from its last ``seq`` on a new connection — on the same server
(memory bus) or on another worker sharing Redis. The reassembled stream must
equal an uninterrupted run of the same query: every event exactly once, in
order, nothing missing.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest
import websockets

from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, collect_run, live_server, recv_json

RUNS = 100
PARALLEL = 10


def _shape(frame: dict[str, Any]) -> tuple[Any, ...]:
    """What must match between runs: everything but times and ids."""
    return (
        frame["seq"],
        frame["type"],
        frame["tool_name"],
        frame["input_data"],
        frame["output_data"],
    )


def _settings(base: Settings, **bus: Any) -> Settings:
    return base.model_copy(
        update={
            "runs": base.runs.model_copy(update={"resume_grace_seconds": 20.0}),
            "bus": base.bus.model_copy(update=bus) if bus else base.bus,
        }
    )


async def _reference(url: str, query: str) -> list[tuple[Any, ...]]:
    async with websockets.connect(url) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"query": query, "case_id": 1}))
        return [_shape(f) for f in await collect_run(ws)]


async def _cut_and_resume(first: str, second: str, query: str, rng: random.Random) -> list[dict]:
    received: list[dict] = []
    ws = await websockets.connect(first)
    await recv_json(ws)
    await ws.send(json.dumps({"query": query, "case_id": 1}))
    cut_after = rng.randint(1, 40)
    while len(received) < cut_after:
        frame = await recv_json(ws)
        received.append(frame)
        if frame["type"] == "agent_execution_complete":
            break
    if rng.random() < 0.5:
        ws.transport.abort()  # the network went away: no close frame
    else:
        await ws.close()
    run_id = received[0]["run_id"]
    if received[-1]["type"] != "agent_execution_complete":
        async with websockets.connect(second) as ws2:
            await recv_json(ws2)
            resume = {"type": "resume", "run_id": run_id, "after_seq": received[-1]["seq"]}
            await ws2.send(json.dumps(resume))
            received += await collect_run(ws2)
    return received


async def _check_many(first: str, second: str) -> None:
    rng = random.Random(20261125)
    queries = [f"question {i % 7}" for i in range(RUNS)]
    references = {q: await _reference(first, q) for q in set(queries)}
    sem = asyncio.Semaphore(PARALLEL)

    async def one(query: str) -> None:
        async with sem:
            frames = await _cut_and_resume(first, second, query, rng)
        assert [_shape(f) for f in frames] == references[query]
        assert len({f["run_id"] for f in frames}) == 1

    await asyncio.gather(*(one(q) for q in queries))


def _runner() -> ScriptedRunner:
    return ScriptedRunner(steps=3, delay=0.002, chunks=25)


async def test_random_cuts_resume_on_memory_bus(tmp_settings):
    settings = _settings(tmp_settings)
    runner = _runner()
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as server:
        await _check_many(server.ws, server.ws)
        assert app.state.services.runs.active == 0


async def test_random_cuts_resume_on_another_worker(tmp_settings, redis_bus_settings):
    settings = _settings(tmp_settings, **redis_bus_settings.model_dump())
    runner_a, runner_b = _runner(), _runner()
    app_a = create_app(settings, runner_factory=lambda svc: runner_a)
    app_b = create_app(settings, runner_factory=lambda svc: runner_b)
    with live_server(app_a, settings) as a, live_server(app_b, settings) as b:
        await _check_many(a.ws, b.ws)


async def test_resume_beyond_history_says_what_was_lost(tmp_settings):
    settings = tmp_settings.model_copy(
        update={
            "bus": tmp_settings.bus.model_copy(update={"history_per_run": 10}),
            "runs": tmp_settings.runs.model_copy(update={"resume_grace_seconds": 5.0}),
        }
    )
    runner = ScriptedRunner(steps=2, chunks=30)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as server:
        async with websockets.connect(server.ws) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"query": "q", "case_id": 1}))
            frames = await collect_run(ws)
        total = frames[-1]["seq"]
        async with websockets.connect(server.ws) as ws:
            await recv_json(ws)
            await ws.send(
                json.dumps({"type": "resume", "run_id": frames[0]["run_id"], "after_seq": 2})
            )
            failed = await recv_json(ws)
            assert failed["type"] == "resume_failed"
            meta = failed["metadata"]
            assert meta["status"] == "complete"
            assert meta["first_available_seq"] == total - 9
            assert meta["lost"] == [3, total - 10]
            final = await recv_json(ws)
            assert final["type"] == "agent_execution_complete"
            assert final["output_data"] == frames[-1]["output_data"]


@pytest.mark.parametrize("after_seq", [0, 5])
async def test_resume_of_unknown_run_is_an_error(server, after_seq):
    async with websockets.connect(server.ws) as ws:
        await recv_json(ws)
        await ws.send(json.dumps({"type": "resume", "run_id": "f" * 32, "after_seq": after_seq}))
        frame = await recv_json(ws)
        assert frame["type"] == "error" and frame["code"] == "unknown_run"
