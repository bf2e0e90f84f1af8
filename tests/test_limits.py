"""Rate limits per user and per client IP, and connection caps."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from legalstream.app import create_app
from legalstream.server.auth import AuthError, Principal
from legalstream.server.limits import Limits
from legalstream.settings import LimitSettings, Settings
from support import ScriptedRunner, collect_run, live_server, recv_json
from test_auth import SECRET, bearer, handshake_status, jwt_settings, make_token

QUERY = {"query": "What was the defendant's response?", "case_id": 1}


def limited_server(tmp_path, runner=None, server=None, **limits):
    s = jwt_settings(tmp_path)
    s.limits = LimitSettings(enabled=True, **limits)
    if server:
        s.server = s.server.model_copy(update=server)
    runner = runner or ScriptedRunner(steps=1, delay=0.001)
    return live_server(create_app(s, runner_factory=lambda svc: runner), s)


def test_limits_are_on_with_jwt_and_off_in_dev_mode():
    assert not Limits.from_settings(Settings(auth={"mode": "none"})).enabled
    assert Limits.from_settings(Settings(auth={"mode": "jwt", "secret": SECRET})).enabled
    assert Limits.from_settings(Settings(auth={"mode": "none"}, limits={"enabled": True})).enabled


async def test_connection_attempts_per_ip_get_429_before_auth(tmp_path):
    with limited_server(tmp_path, connects_per_minute="3/minute") as srv:
        # Failed attempts count too: the limit is checked before authentication.
        assert await handshake_status(srv.ws) == 401
        async with websockets.connect(srv.ws, additional_headers=bearer(make_token())):
            pass
        async with websockets.connect(srv.ws, additional_headers=bearer(make_token("bob"))):
            pass
        with pytest.raises(InvalidStatus) as err:
            await websockets.connect(srv.ws, additional_headers=bearer(make_token()))
        response = err.value.response
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert json.loads(response.body)["code"] == "rate_limited"


async def test_connections_per_user(tmp_path):
    with limited_server(
        tmp_path, max_connections_per_user=2, user_connects_per_minute="4/minute"
    ) as srv:
        h = bearer(make_token())
        async with (
            websockets.connect(srv.ws, additional_headers=h),
            websockets.connect(srv.ws, additional_headers=h),
        ):
            assert await handshake_status(srv.ws, additional_headers=h) == 429
            # Another user is not affected.
            assert (
                await handshake_status(srv.ws, additional_headers=bearer(make_token("bob"))) == 101
            )
        # Two closed, so there is room again, until the per-minute handshake budget runs out
        # (the refused attempt did not count against it).
        await asyncio.sleep(0.2)
        assert await handshake_status(srv.ws, additional_headers=h) == 101
        assert await handshake_status(srv.ws, additional_headers=h) == 101
        assert await handshake_status(srv.ws, additional_headers=h) == 429


async def test_max_connections_total(tmp_path):
    with limited_server(tmp_path, server={"max_connections": 2}) as srv:
        async with websockets.connect(srv.ws, additional_headers=bearer(make_token("a"))):
            async with websockets.connect(srv.ws, additional_headers=bearer(make_token("b"))):
                assert (
                    await handshake_status(srv.ws, additional_headers=bearer(make_token("c")))
                    == 503
                )


async def test_queries_per_minute_give_rate_limited_frames(tmp_path):
    with limited_server(tmp_path, queries_per_minute="2/minute") as srv:
        async with websockets.connect(srv.ws, additional_headers=bearer(make_token())) as ws:
            await recv_json(ws)
            for _ in range(2):
                await ws.send(json.dumps(QUERY))
                assert (await collect_run(ws))[-1]["type"] == "agent_execution_complete"
            await ws.send(json.dumps(QUERY))
            frame = await recv_json(ws)
            assert frame["type"] == "error" and frame["code"] == "rate_limited"
            assert 0 < frame["metadata"]["retry_after"] <= 60
            assert frame["metadata"]["limit"]
            # Still connected and usable.
            await ws.send(json.dumps({"type": "cancel", "run_id": "x"}))
            assert (await recv_json(ws))["code"] == "unknown_run"
        async with httpx.AsyncClient(base_url=srv.http) as http:
            r = await http.post("/query", json=QUERY, headers=bearer(make_token()))
            assert r.status_code == 429 and r.json()["code"] == "rate_limited"
            assert r.json()["metadata"]["retry_after"] > 0 and "Retry-After" in r.headers
            # Per user: bob has his own budget (and the per-IP one is also 2/minute).
            r = await http.post("/query", json=QUERY, headers=bearer(make_token("bob")))
            assert r.status_code == 429  # same IP as alice's two queries


async def test_concurrent_runs_per_user(tmp_path):
    slow = ScriptedRunner(steps=3, delay=0.15)
    with limited_server(tmp_path, runner=slow, max_concurrent_runs_per_user=1) as srv:
        h = bearer(make_token())
        async with (
            websockets.connect(srv.ws, additional_headers=h) as a,
            websockets.connect(srv.ws, additional_headers=h) as b,
        ):
            await recv_json(a)
            await recv_json(b)
            await a.send(json.dumps(QUERY))
            assert (await recv_json(a))["type"] == "query_received"
            await b.send(json.dumps(QUERY))
            frame = await recv_json(b)
            assert frame["code"] == "rate_limited" and frame["metadata"]["retry_after"] > 0
            assert (await collect_run(a))[-1]["type"] == "agent_execution_complete"
            await b.send(json.dumps(QUERY))  # the first run is done: allowed again
            assert (await collect_run(b))[-1]["type"] == "agent_execution_complete"


async def test_tickets_per_minute(tmp_path):
    with limited_server(tmp_path, tickets_per_minute="1/minute") as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            h = bearer(make_token())
            assert (await http.post("/ws/ticket", headers=h)).status_code == 200
            r = await http.post("/ws/ticket", headers=h)
            assert r.status_code == 429 and "Retry-After" in r.headers


async def test_redis_limits_are_shared_by_workers(redis_url):
    url = redis_url
    s = Settings(
        auth={"mode": "jwt", "secret": SECRET},
        bus={
            "backend": "redis",
            "redis_url": url,
            "redis_prefix": f"lstest-{uuid.uuid4().hex[:8]}",
        },
        limits={"queries_per_minute": "3/minute"},
    )
    worker_a, worker_b = Limits.from_settings(s), Limits.from_settings(s)
    assert type(worker_a.storage).__name__ == "RedisStorage"
    alice = Principal("alice")
    try:
        verdicts = [await w.check_query(alice, None, 0) for w in (worker_a, worker_b, worker_a)]
        assert verdicts == [None, None, None]
        limited = await worker_b.check_query(alice, None, 0)
        assert limited is not None and limited.retry_after > 0
    finally:
        await worker_a.aclose()
        await worker_b.aclose()


async def test_storage_failure_lets_requests_through():
    s = Settings(
        auth={"mode": "jwt", "secret": SECRET},
        bus={"backend": "redis", "redis_url": "redis://127.0.0.1:1/0"},
    )
    limits = Limits.from_settings(s)
    try:
        assert await asyncio.wait_for(limits.check_query(Principal("a"), "1.2.3.4", 0), 10) is None
    finally:
        await limits.aclose()
    with pytest.raises(AuthError) as err:
        await Limits(LimitSettings(connects_per_minute="0/minute")).connection_attempt(
            type("Conn", (), {"client": None})()
        )
    assert err.value.status == 429
