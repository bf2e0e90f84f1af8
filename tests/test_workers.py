"""``legalstream serve --workers N``: uvicorn's supervisor running our Server in each worker.

The worker processes must run :class:`legalstream.server.uvicorn_ext.Server` (not
uvicorn's), or a SIGTERM closes clients with 1012 before their runs finish.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from redis_fixture import redis_url  # noqa: F401
from support import collect_run, free_port, recv_json
from test_nginx import stop, wait_http

TESTS = Path(__file__).parent
REPO = TESTS.parent


def test_serve_refuses_workers_on_the_embedded_store(tmp_path):
    env = {**os.environ, "LEGALSTREAM_RAG__DATA_DIR": str(tmp_path / "data")}
    env.pop("LEGALSTREAM_CONFIG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "legalstream.cli", "serve", "--workers", "2", "--port", "1"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "rag.store = 'qdrant'" in proc.stderr


async def test_two_workers_stream_and_shut_down_gracefully(tmp_path, redis_url):  # noqa: F811
    port = free_port()
    env = {
        **os.environ,
        "LEGALSTREAM_BUS__BACKEND": "redis",
        "LEGALSTREAM_BUS__REDIS_URL": redis_url,
        "LEGALSTREAM_BUS__REDIS_PREFIX": f"lstest-{uuid.uuid4().hex[:12]}",
        "LEGALSTREAM_RAG__DATA_DIR": str(tmp_path / "data"),
        "LEGALSTREAM_RAG__INGEST_SAMPLE_ON_START": "false",
        "LEGALSTREAM_SERVER__SHUTDOWN_GRACE": "10",
        "LEGALSTREAM_LOG_LEVEL": "warning",
    }
    env.pop("LEGALSTREAM_CONFIG", None)
    log = (tmp_path / "serve.log").open("wb")
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, str(TESTS / "scripted_app.py"), "--port", str(port), "--workers", "2"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"ws://127.0.0.1:{port}/ws/query"
    try:
        await asyncio.to_thread(wait_http, f"http://127.0.0.1:{port}/ready", proc)

        async def ask(question: str) -> list[dict]:
            async with websockets.connect(url) as ws:
                await recv_json(ws)
                await ws.send(json.dumps({"query": question, "case_id": 1}))
                return await collect_run(ws)

        runs = await asyncio.gather(*(ask(f"question {i}") for i in range(8)))
        assert all(frames[-1]["type"] == "agent_execution_complete" for frames in runs)

        # A slow run (~2 s) is going when the supervisor is told to stop: the
        # worker lets it finish, then closes with 1001 (uvicorn's own server
        # would close with 1012 at once).
        async with websockets.connect(url) as ws:
            await recv_json(ws)
            await ws.send(json.dumps({"query": "slow one", "case_id": 1}))
            assert (await recv_json(ws))["type"] == "query_received"
            proc.send_signal(signal.SIGTERM)
            frames = await collect_run(ws, timeout=20)
            assert frames[-1]["type"] == "agent_execution_complete"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 15)
            assert ws.close_code == 1001
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        stop(proc)
        log.close()
