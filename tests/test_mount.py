"""create_app() mounted under a prefix inside another Starlette or FastAPI app."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from legalstream.app import create_app
from support import collect_run, live_server, recv_json


async def _home(request):
    return PlainTextResponse("host app")


def _starlette_host(legal):
    return Starlette(
        routes=[Route("/", _home), Mount("/legal", legal)],
        lifespan=lambda app: legal.lifespan(legal),
    )


def _fastapi_host(legal):
    fastapi = pytest.importorskip("fastapi")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with legal.lifespan(legal):
            yield

    host = fastapi.FastAPI(lifespan=lifespan)
    host.get("/")(lambda: "host app")
    host.mount("/legal", legal)
    return host


@pytest.mark.parametrize(
    "make_host", [_starlette_host, _fastapi_host], ids=["starlette", "fastapi"]
)
async def test_mounted_app_streams(tmp_settings, scripted, make_host):
    legal = create_app(tmp_settings, runner_factory=lambda svc: scripted)
    host = make_host(legal)
    with live_server(host, tmp_settings) as server:
        url = f"ws://127.0.0.1:{server.port}/legal/ws/query"
        async with websockets.connect(url) as ws:
            assert (await recv_json(ws))["type"] == "connection_established"
            await ws.send(json.dumps({"query": "Who is the plaintiff?", "case_id": 1}))
            frames = await collect_run(ws)
            assert frames[-1]["type"] == "agent_execution_complete"
            async with httpx.AsyncClient() as http:
                status = (await http.get(f"{server.http}/legal/ws/status")).json()
                assert status["active_connections"] == 1
                assert (await http.get(f"{server.http}/legal/health")).status_code == 200
                assert (await http.get(f"{server.http}/")).text.strip('"') == "host app"
