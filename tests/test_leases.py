"""A worker killed mid-run: its run still ends, once, with ``worker_lost`` (issue 15, item 4).

Three worker processes share a real Redis (with the default 2 s heartbeat).
A client follows an endless run on worker A; A is killed with SIGKILL. The
client sees its connection drop (1006), resumes on worker B, and gets the
run's final frame — ``agent_execution_error`` with code ``worker_lost`` —
within 15 s of the death; the history has exactly one final frame though two
survivors were looking; replay and ``GET /runs`` show the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from support import collect_run, free_port, recv_json

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[list[tuple[int, subprocess.Popen[bytes]]]]:
    prefix = f"lstest-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "LEGALSTREAM_BUS__BACKEND": "redis",
        "LEGALSTREAM_BUS__REDIS_URL": redis_url,
        "LEGALSTREAM_BUS__REDIS_PREFIX": prefix,
        "LEGALSTREAM_RUNS__RESUME_GRACE_SECONDS": "30",
        "LEGALSTREAM_RUNS__ID_SECRET": "test-deployment",
        "LEGALSTREAM_RAG__INGEST_SAMPLE_ON_START": "false",
        "LEGALSTREAM_AUDIT__ENABLED": "false",
        "LEGALSTREAM_LOG_LEVEL": "warning",
    }
    env.pop("LEGALSTREAM_CONFIG", None)
    started: list[tuple[int, subprocess.Popen[bytes]]] = []
    try:
        for i in range(3):
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, str(TESTS / "scripted_app.py"), "--port", str(port)],
                env={**env, "LEGALSTREAM_RAG__DATA_DIR": str(tmp_path / f"w{i}")},
                cwd=REPO,
            )
            started.append((port, proc))
        for port, proc in started:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("worker did not start")
                time.sleep(0.05)
        yield started
    finally:
        for _, proc in started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        from redis_fixture import delete_prefix

        delete_prefix(redis_url, prefix)


def _ws(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws/query"


async def test_a_killed_worker_s_run_ends_once_with_worker_lost(workers):
    (port_a, proc_a), (port_b, _), (port_c, _) = workers
    received: list[dict] = []
    ws = await websockets.connect(_ws(port_a))
    await recv_json(ws)
    await ws.send(json.dumps({"query": "endless question", "case_id": 1}))
    while len(received) < 12:
        received.append(await recv_json(ws))
    proc_a.kill()  # SIGKILL: no graceful shutdown, no final event from A
    killed_at = time.monotonic()
    proc_a.wait(10)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            received.append(await recv_json(ws, timeout=10))
    assert closed.value.rcvd is None  # 1006: the connection just dropped
    run_id = received[0]["run_id"]
    async with websockets.connect(_ws(port_b)) as ws2:
        await recv_json(ws2)
        resume = {"type": "resume", "run_id": run_id, "after_seq": received[-1]["seq"]}
        await ws2.send(json.dumps(resume))
        rest = await collect_run(ws2, timeout=20)
    ended_after = time.monotonic() - killed_at
    final = rest[-1]
    assert final["type"] == "agent_execution_error" and final["code"] == "worker_lost", final
    assert ended_after < 15, ended_after
    seqs = [f["seq"] for f in received + rest]
    assert seqs == list(range(1, len(seqs) + 1)), "gapless, each event once"
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_c}") as http:
        lines = (await http.get(f"/runs/{run_id}/events")).text.splitlines()
        history = [json.loads(line) for line in lines]
        runs = {r["run_id"]: r for r in (await http.get("/runs")).json()["runs"]}
    finals = [
        e
        for e in history
        if e["type"].startswith("agent_execution_") and e["type"] != "agent_execution_start"
    ]
    assert len(finals) == 1 and finals[0]["code"] == "worker_lost"
    assert runs[run_id]["status"] == "error" and runs[run_id]["event_count"] == final["seq"]
    async with websockets.connect(_ws(port_c)) as ws3:
        await recv_json(ws3)
        await ws3.send(json.dumps({"type": "replay", "run_id": run_id, "after_seq": 0}))
        replayed = await collect_run(ws3)
    assert [f["seq"] for f in replayed] == [e["seq"] for e in history]
