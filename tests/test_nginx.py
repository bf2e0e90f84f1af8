"""Two worker processes on the Redis bus behind a real nginx (config/nginx.conf).

Each worker is its own ``tests/scripted_app.py`` process (the real app and
uvicorn, with the scripted producer). nginx runs as an ordinary process from
the template rendered into a temp dir. Checked: a query streamed through the
proxy, a broadcast reaching clients of both workers, /ws/status counting both
workers' clients, forwarded headers, and a run resumed on the other worker.
Under CI=true a missing nginx fails these tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from legalstream.settings import REPO_ROOT
from redis_fixture import delete_prefix, unavailable
from support import collect_run, free_port, recv_json

TEMPLATE = REPO_ROOT / "config" / "nginx.conf"
TESTS = Path(__file__).parent


def render_nginx(listen: int, backends: list[int], tmp: Path) -> Path:
    temp_dir = tmp / "nginx-temp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    conf = TEMPLATE.read_text()
    for name, value in {
        "{{listen}}": f"127.0.0.1:{listen}",
        "{{upstream_servers}}": " ".join(f"server 127.0.0.1:{p};" for p in backends),
        "{{temp_dir}}": str(temp_dir),
        "{{access_log}}": str(tmp / "access.log"),
    }.items():
        conf = conf.replace(name, value)
    assert "{{" not in conf
    path = tmp / "nginx.conf"
    path.write_text(conf)
    return path


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Cluster:
    proxy: int
    backends: list[int]
    redis_url: str
    prefix: str

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.proxy}/ws/query"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.proxy}"

    def backend_ws(self, i: int) -> str:
        return f"ws://127.0.0.1:{self.backends[i]}/ws/query"

    def backend_http(self, i: int) -> str:
        return f"http://127.0.0.1:{self.backends[i]}"


@pytest.fixture(scope="module")
def cluster(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )
    if nginx is None:
        unavailable("nginx is not installed (apt-get install nginx)")
    tmp = tmp_path_factory.mktemp("cluster")
    prefix = f"lstest-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "LEGALSTREAM_BUS__BACKEND": "redis",
        "LEGALSTREAM_BUS__REDIS_URL": redis_url,
        "LEGALSTREAM_BUS__REDIS_PREFIX": prefix,
        "LEGALSTREAM_BUS__HEARTBEAT_SECONDS": "0.2",
        "LEGALSTREAM_RUNS__RESUME_GRACE_SECONDS": "0.5",
        "LEGALSTREAM_RAG__DATA_DIR": str(tmp / "data"),
        "LEGALSTREAM_RAG__INGEST_SAMPLE_ON_START": "false",
        "LEGALSTREAM_LOG_LEVEL": "warning",
        # nginx runs on this host: believe its X-Forwarded-For (docs/deploy.md).
        "LEGALSTREAM_SERVER__FORWARDED_ALLOW_IPS": '["127.0.0.1"]',
    }
    env.pop("LEGALSTREAM_CONFIG", None)
    backends = [free_port(), free_port()]
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for i, port in enumerate(backends):
            log = (tmp / f"worker{i}.log").open("wb")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(TESTS / "scripted_app.py"), "--port", str(port)],
                    env=env,
                    cwd=REPO_ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for proc, port in zip(procs, backends, strict=True):
            wait_http(f"http://127.0.0.1:{port}/ready", proc)
        proxy = free_port()
        conf = render_nginx(proxy, backends, tmp)
        directives = f"daemon off; pid {tmp}/nginx.pid; error_log {tmp}/error.log;"
        if os.geteuid() == 0:
            directives += " user root;"  # workers must reach the temp dir under tmp
        nginx_proc = subprocess.Popen(
            [
                nginx,
                "-p",
                str(tmp),
                "-e",
                str(tmp / "error.log"),
                "-c",
                str(conf),
                "-g",
                directives,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "nginx.stderr").open("wb"),
        )
        procs.append(nginx_proc)
        wait_http(f"http://127.0.0.1:{proxy}/health", nginx_proc, timeout=15)
        yield Cluster(proxy=proxy, backends=backends, redis_url=redis_url, prefix=prefix)
    finally:
        for proc in reversed(procs):
            stop(proc)
        for log in logs:
            log.close()
        delete_prefix(redis_url, prefix)


async def status(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/ws/status")
    assert response.status_code == 200, response.text
    return response.json()


async def connect(url: str, **kw: Any) -> tuple[Any, str]:
    ws = await websockets.connect(url, **kw)
    hello = await recv_json(ws)
    assert hello["type"] == "connection_established"
    return ws, hello["metadata"]["connection_id"]


async def wait_for(predicate: Any, within: float = 5.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def test_query_streams_through_nginx(cluster: Cluster):
    ws, _ = await connect(cluster.ws)
    async with ws:
        await ws.send(orjson.dumps({"query": "What did the court decide?", "case_id": 1}).decode())
        frames = await collect_run(ws)
    assert frames[0]["type"] == "query_received"
    assert frames[-1]["type"] == "agent_execution_complete"
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert {f["run_id"] for f in frames} == {frames[0]["run_id"]}
    # The run's record and history are visible through the proxy (any worker).
    async with httpx.AsyncClient() as client:
        for _ in range(4):  # round robin: hit both workers
            body = (await client.get(f"{cluster.http}/runs", params={"case_id": 1})).json()
            assert frames[0]["run_id"] in [r["run_id"] for r in body["runs"]]
            lines = (
                await client.get(f"{cluster.http}/runs/{frames[0]['run_id']}/events")
            ).text.splitlines()
            assert [orjson.loads(line)["seq"] for line in lines] == [f["seq"] for f in frames]


async def test_broadcast_and_status_span_both_workers(cluster: Cluster):
    clients: list[tuple[Any, str]] = []
    try:
        workers: dict[str, str] = {}

        async def placed() -> bool:
            body = await status(cluster.backend_http(0))
            by_id = {c["connection_id"]: c["metadata"]["worker"] for c in body["connections"]}
            for _, cid in clients:
                if cid in by_id:
                    workers[cid] = by_id[cid]
            return len(workers) == len(clients)

        # Round robin places them; connect until both workers hold some.
        for _ in range(8):
            clients.append(
                await connect(cluster.ws, additional_headers={"X-Forwarded-For": "203.0.113.7"})
            )
            if len(clients) >= 2:
                await wait_for(placed)
                if len(set(workers.values())) == 2:
                    break
        assert len(set(workers.values())) == 2, workers

        # /ws/status on either worker and through nginx counts every client
        # (another worker's clients show up within one heartbeat, 0.2 s here).
        ours = {cid for _, cid in clients}
        for url in (cluster.http, cluster.backend_http(0), cluster.backend_http(1)):

            async def complete(url: str = url) -> dict[str, Any] | None:
                body = await status(url)
                return body if ours <= {c["connection_id"] for c in body["connections"]} else None

            body = await wait_for(complete, within=3)
            listed = {c["connection_id"]: c for c in body["connections"]}
            assert ours <= set(listed), url
            assert body["active_connections"] == len(body["connections"]) >= len(ours)
            # Forwarded headers: the worker saw the original client address.
            assert all(listed[cid]["metadata"]["client"].startswith("203.0.113.7") for cid in ours)

        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{cluster.http}/ws/broadcast",
                json={"message": "maintenance at 18:00", "type": "maintenance"},
            )
        assert response.status_code == 200, response.text
        assert response.json()["recipients"] >= len(clients)
        for ws, cid in clients:
            frame = await recv_json(ws, timeout=5)
            assert frame["type"] == "broadcast"
            assert frame["connection_id"] == cid
            assert frame["output_data"] == {"message": "maintenance at 18:00"}
    finally:
        for ws, _ in clients:
            await ws.close()

    # Closed connections leave the cluster view (the heartbeat refreshes it).
    async def gone() -> bool:
        body = await status(cluster.backend_http(1))
        return not ({c["connection_id"] for c in body["connections"]} & {cid for _, cid in clients})

    await wait_for(gone, within=5)


async def test_resume_lands_on_the_other_worker(cluster: Cluster):
    """Start on worker 0, drop the connection, resume on worker 1.

    The resume grace is 0.5 s and the run takes ~2 s more: unless worker 1's
    attach reached worker 0 (control channel), worker 0 cancels the run.
    """
    ws, _ = await connect(cluster.backend_ws(0))
    await ws.send(orjson.dumps({"query": "slow: summarise the pleadings", "case_id": 2}).decode())
    seen = []
    while len(seen) < 4:
        seen.append(await recv_json(ws))
    run_id = seen[0]["run_id"]
    after = seen[-1]["seq"]
    await ws.close()

    ws2, _ = await connect(cluster.backend_ws(1))
    async with ws2:
        await ws2.send(
            orjson.dumps({"type": "resume", "run_id": run_id, "after_seq": after}).decode()
        )
        rest = await collect_run(ws2, timeout=15)
    assert [f["seq"] for f in rest] == list(range(after + 1, after + 1 + len(rest)))
    assert {f["run_id"] for f in rest} == {run_id}
    assert rest[-1]["type"] == "agent_execution_complete", rest[-1]
    assert [f["seq"] for f in seen + rest] == list(range(1, len(seen) + len(rest) + 1))


async def test_abandoned_run_is_cancelled_after_grace(cluster: Cluster):
    """Without a follower anywhere, the grace period still ends the run."""
    ws, _ = await connect(cluster.backend_ws(0))
    await ws.send(orjson.dumps({"query": "slow: nobody waits for this", "case_id": 3}).decode())
    run_id = (await recv_json(ws))["run_id"]
    await ws.close()
    async with httpx.AsyncClient() as client:

        async def finished() -> Any:
            body = (
                await client.get(f"{cluster.backend_http(1)}/runs", params={"case_id": 3})
            ).json()
            run = next((r for r in body["runs"] if r["run_id"] == run_id), None)
            return run if run and run["status"] != "running" else None

        run = await wait_for(finished, within=5)
    assert run["status"] == "cancelled"
