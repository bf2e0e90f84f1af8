"""Who may read a run's history, how much, and what a client hears when history is gone.

Regression tests of issue 15 (items 3, 5, 6 and 8): a token that lost a case
loses its history too; a run id this deployment issued whose history is gone
gets ``resume_failed`` (never ``unknown_run``); replay and resume count
against a per-user budget; a resume at the last seq of a finished run gets
its final frame again.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import websockets

from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, collect_run, live_server, recv_json
from test_auth import bearer, jwt_settings, make_token

QUERY = {"query": "What was the defendant's response?", "case_id": 1}


async def _run(url: str, **connect: Any) -> list[dict[str, Any]]:
    async with websockets.connect(url, **connect) as ws:
        await recv_json(ws)
        await ws.send(json.dumps(QUERY))
        return await collect_run(ws)


async def _ask(url: str, message: dict[str, Any], **connect: Any) -> list[dict[str, Any]]:
    """Send one message on a new connection; frames until a final, error or resume_failed."""
    async with websockets.connect(url, **connect) as ws:
        await recv_json(ws)
        await ws.send(json.dumps(message))
        frames = []
        while True:
            frame = await recv_json(ws)
            frames.append(frame)
            if frame["type"] in (
                "agent_execution_complete",
                "agent_execution_error",
                "error",
                "resume_failed",
            ):
                return frames


# -- 3: revoking a case revokes its history --------------------------------------


async def test_a_token_without_the_case_no_longer_sees_the_case_s_runs(tmp_path: Path):
    settings = jwt_settings(tmp_path)
    runner = ScriptedRunner(steps=1, chunks=2)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        both = make_token(cases=[1, 2], scope="query")
        frames = await _run(srv.ws, additional_headers=bearer(both))
        run_id = frames[0]["run_id"]
        assert frames[-1]["type"] == "agent_execution_complete"
        revoked = make_token(cases=[2], scope="query")  # same subject, case 1 taken away
        async with httpx.AsyncClient(base_url=srv.http) as http:
            events = await http.get(f"/runs/{run_id}/events", headers=bearer(revoked))
            assert events.status_code == 404 and events.json()["code"] == "unknown_run"
            listed = await http.get("/runs", params={"case_id": 1}, headers=bearer(revoked))
            assert listed.status_code == 200 and listed.json()["runs"] == []
            everything = await http.get("/runs", headers=bearer(revoked))
            assert run_id not in {r["run_id"] for r in everything.json()["runs"]}
            # The same subject with the case still sees it.
            ok = await http.get(f"/runs/{run_id}/events", headers=bearer(both))
            assert ok.status_code == 200
        for message in (
            {"type": "replay", "run_id": run_id, "after_seq": 0},
            {"type": "resume", "run_id": run_id, "after_seq": 0},
        ):
            (frame,) = await _ask(srv.ws, message, additional_headers=bearer(revoked))
            assert frame["type"] == "error" and frame["code"] == "unknown_run", message
            assert "quote" not in json.dumps(frame)


# -- 8: a resume at the tip of a finished run --------------------------------------


async def test_a_resume_at_the_last_seq_of_a_finished_run_gets_its_final_frame_again(server):
    frames = await _run(server.ws)
    final = frames[-1]
    assert final["type"] == "agent_execution_complete"
    for after in (final["seq"], final["seq"] + 5):
        got = await _ask(
            server.ws, {"type": "resume", "run_id": final["run_id"], "after_seq": after}
        )
        assert [f["type"] for f in got] == ["agent_execution_complete"], after
        assert got[0]["seq"] == final["seq"]
        assert got[0]["output_data"] == final["output_data"]


# -- 5: lost history is not an unknown run -------------------------------------------


async def test_a_run_whose_history_is_gone_gets_resume_failed_not_unknown_run(
    tmp_settings: Settings, redis_bus_settings, redis_url: str
):
    settings = tmp_settings.model_copy(update={"bus": redis_bus_settings})
    runner = ScriptedRunner(steps=1, chunks=2)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        run_id = (await _run(srv.ws))[0]["run_id"]
        # Redis restarted without persistence: every key of the deployment is gone.
        r = aioredis.from_url(redis_url)
        try:
            keys = [k async for k in r.scan_iter(f"{redis_bus_settings.redis_prefix}:*")]
            await r.delete(*keys)
        finally:
            await r.aclose()
        (frame,) = await _ask(srv.ws, {"type": "resume", "run_id": run_id, "after_seq": 3})
        assert frame["type"] == "resume_failed", frame
        assert frame["metadata"]["reason"] == "history_lost"
        assert frame["metadata"]["after_seq"] == 3
        # A run id this deployment never issued is still unknown.
        forged = run_id[:-4] + ("0000" if run_id[-4:] != "0000" else "1111")
        (frame,) = await _ask(srv.ws, {"type": "resume", "run_id": forged, "after_seq": 0})
        assert frame["type"] == "error" and frame["code"] == "unknown_run"


async def test_an_evicted_run_on_the_memory_bus_gets_resume_failed(tmp_settings: Settings):
    settings = tmp_settings.model_copy(
        update={"bus": tmp_settings.bus.model_copy(update={"history_runs": 1})}
    )
    runner = ScriptedRunner(steps=1, chunks=2)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        first = (await _run(srv.ws))[0]["run_id"]
        await _run(srv.ws)  # evicts the first run's record and history
        (frame,) = await _ask(srv.ws, {"type": "resume", "run_id": first, "after_seq": 0})
        assert frame["type"] == "resume_failed" and frame["metadata"]["reason"] == "history_lost"
        (frame,) = await _ask(srv.ws, {"type": "replay", "run_id": first, "after_seq": 0})
        assert frame["type"] == "error" and frame["code"] == "history_lost"


# -- 6: replay and resume have a budget ---------------------------------------------------


async def test_replay_and_resume_count_against_a_per_user_budget(tmp_path: Path):
    settings = jwt_settings(tmp_path)
    settings = settings.model_copy(
        update={
            "limits": settings.limits.model_copy(
                update={
                    "enabled": True,
                    "replays_per_minute": "3/minute",
                    "replay_bytes_per_minute": "1000000/minute",
                }
            )
        }
    )
    runner = ScriptedRunner(steps=1, chunks=2)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        token = make_token(cases=[1])
        run_id = (await _run(srv.ws, additional_headers=bearer(token)))[0]["run_id"]
        replay = {"type": "replay", "run_id": run_id, "after_seq": 0}
        async with websockets.connect(srv.ws, additional_headers=bearer(token)) as ws:
            await recv_json(ws)
            for _ in range(2):
                await ws.send(json.dumps(replay))
                assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"
            await ws.send(json.dumps({"type": "resume", "run_id": run_id, "after_seq": 0}))
            assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"
            await ws.send(json.dumps(replay))
            frame = await recv_json(ws)
            assert frame["type"] == "error" and frame["code"] == "rate_limited"
            assert frame["metadata"]["retry_after"] > 0
        async with httpx.AsyncClient(base_url=srv.http) as http:
            response = await http.get(f"/runs/{run_id}/events", headers=bearer(token))
            assert response.status_code == 429 and response.json()["code"] == "rate_limited"
            assert int(response.headers["Retry-After"]) >= 1
            # Another user has a budget of their own.
            other = make_token(sub="bob", cases=[1])
            mine = await http.get(f"/runs/{run_id}/events", headers=bearer(other))
            assert mine.status_code == 404


async def test_replay_bytes_count_too(tmp_path: Path):
    settings = jwt_settings(tmp_path)
    settings = settings.model_copy(
        update={
            "limits": settings.limits.model_copy(
                update={"enabled": True, "replay_bytes_per_minute": "30000/minute"}
            )
        }
    )
    runner = ScriptedRunner(steps=1, chunks=10)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        token = make_token(cases=[1])
        run_id = (await _run(srv.ws, additional_headers=bearer(token)))[0]["run_id"]
        async with httpx.AsyncClient(base_url=srv.http) as http:
            codes, sizes = [], []
            for _ in range(10):
                response = await http.get(f"/runs/{run_id}/events", headers=bearer(token))
                codes.append(response.status_code)
                sizes.append(len(response.content))
        # A replay of this run is several KB: the budget takes a few, then refuses.
        assert 3_000 < sizes[0] < 30_000, sizes
        allowed = codes.count(200)
        assert codes == [200] * allowed + [429] * (10 - allowed), (codes, sizes)
        # Each replay charges its events' bytes (the body adds a newline per event).
        assert 30_000 // sizes[0] <= allowed <= 30_000 // sizes[0] + 1, (codes, sizes)


async def test_the_audit_log_keeps_how_a_run_ended_apart_from_whether_anyone_got_it(
    tmp_settings: Settings, redis_prefix: str
):
    from redis_fixture import RedisServer

    server = RedisServer().start()
    try:
        settings = tmp_settings.model_copy(
            update={
                "bus": tmp_settings.bus.model_copy(
                    update={
                        "backend": "redis",
                        "redis_url": server.url,
                        "redis_prefix": redis_prefix,
                    }
                ),
                "audit": tmp_settings.audit.model_copy(
                    update={"path": tmp_settings.rag.data_dir / "audit.jsonl"}
                ),
                # The client may resume: its run goes on when the connection drops.
                "runs": tmp_settings.runs.model_copy(update={"resume_grace_seconds": 30.0}),
            }
        )
        runner = ScriptedRunner(steps=6, delay=0.1, chunks=2)
        app = create_app(settings, runner_factory=lambda svc: runner)
        with live_server(app, settings) as srv:
            ok = await _run(srv.ws)  # delivered: published, one follower at the end
            async with websockets.connect(srv.ws) as ws:
                await recv_json(ws)
                await ws.send(json.dumps(QUERY))
                await recv_json(ws)
                server.stop()  # Redis goes away mid-run; the agent still finishes
                while True:
                    try:
                        await recv_json(ws, timeout=15)
                    except websockets.ConnectionClosed:
                        break
            svc = app.state.services
            for _ in range(300):
                if svc.runs.active == 0:
                    break
                await asyncio.sleep(0.05)
            assert svc.runs.active == 0
    finally:
        server.stop()
    lines = [json.loads(x) for x in (settings.audit.path.read_text().splitlines())]
    by_run = {line["run_id"]: line for line in lines}
    delivered = by_run.pop(ok[0]["run_id"])
    assert (delivered["outcome"], delivered["published"], delivered["followers"]) == (
        "complete",
        True,
        1,
    )
    (lost,) = by_run.values()
    assert lost["outcome"] == "complete" and lost["published"] is False
