"""Fan-out benchmark: legalstream's streaming path against bare WebSocket servers.

Each of N clients (in this process) sends one query; the server streams K run
events back. For legalstream the events come from a synthetic producer that
emits them in a worker thread through the real path (RunManager's threads and
thread bridge, bus, session follower and send path, uvicorn). The baselines
send the same pre-encoded frames:

- ``starlette``: a bare Starlette endpoint on the same uvicorn settings (the
  baseline of issue 2). Its frames are pre-encoded, so they are published,
  and stamped, when a query asks for them;
- ``starlette-write``: the same endpoint, each frame stamped just before it is
  written: latency then leaves out the time a frame waits behind its own
  run's earlier frames, which every other server here is charged for (a
  reference row; sessions 3 and 4 used it as the baseline);
- ``starlette-thread``: the same endpoint, its frames made (and stamped) in
  worker threads and handed to the loop in batches: the least a server must do
  to stream from a synchronous agent, so legalstream minus this is what its
  bus and session cost;
- ``websockets``: a bare ``websockets`` server.

Servers run in a separate process.

Two load generators (``--client``; both by default), because which one is used
decides what the latency figures measure:

- ``lean`` (bench/wsclient.py) parses every frame of a socket read in one go.
  It keeps up with every server here, so the *server* sets the pace and
  latency is the server's own.
- ``websockets``, the seed's client, spends more per frame than the servers
  do. It sets the pace, and latency mostly measures the queue in front of it:
  the faster a server produces, the longer that queue.

Reported: delivered events/s and latency p50/p99 at saturation (every client
asks at once); latency below saturation (each client, queries started evenly
at half the bare endpoint's throughput with that client, open loop); server RSS per idle
connection. Latency is publish-to-receive: from the frame's ``timestamp`` (set
when the event is published: by legalstream's producer thread as it emits
the event, by starlette-thread's thread as it makes the frame, by the bare
endpoints when the query asks for the run's pre-encoded frames) to its
arrival; same clock, same machine. Ratios are against the bare Starlette
endpoint measured in the same run with the same client.

    python bench/fanout.py                 # 100 and 1,000 clients; RSS at 1,000 and 5,000
    python bench/fanout.py --quick         # smaller, for a smoke run
    python bench/fanout.py --client lean   # one load generator only
    python bench/fanout.py --ws-impls      # compare uvicorn's WebSocket implementations
    python bench/fanout.py --bus redis --workers 2   # the Redis bus (issue 5)
    python bench/fanout.py --cpu           # server CPU per connection+run and per event
    python bench/fanout.py --json out.json # the results, as fanout_report.py reads them
    python bench/fanout.py --docs          # results, charts and summary into docs/
    python bench/fanout.py --docs-from docs/img/fanout.json   # redraw them, no measuring

The last lines say, for each of issue 2's targets, whether legalstream met it
and by what ratio (fanout_report.py). ``--docs`` writes docs/img/fanout.json,
the charts docs/img/fanout-throughput.svg and docs/img/fanout-latency.svg
(drawn from that file) and the "fanout" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fanout_report
import orjson
import wsclient

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT / "src") not in sys.path:
    # Appended, not prepended: a server started with BENCH_EXTRA_PATH (another
    # checkout's src/, for A/B runs) must import that checkout's legalstream.
    sys.path.append(str(ROOT / "src"))

from legalstream.events import FINAL_TYPES, EventType  # noqa: E402

AGENT = "Legal Question Answering Agent"
#: Worker threads of the servers that make frames in threads (legalstream's
#: runs.max_concurrent, and starlette-thread's pool): as many as the machine
#: has cores. The synthetic runs are CPU-bound and take microseconds, so more
#: threads only queue more stamped events behind the GIL: against 4, 2 gave
#: the same throughput at 100 x 200 (0.98x), more at 1,000 x 50 (1.19x), and
#: half the p99 or less (session 5, bench/ab.py, 5 rounds). Real runs wait on
#: an LLM: the product's default is 16.
BENCH_THREADS = int(os.environ.get("BENCH_THREADS", "2"))
#: Servers whose latency is also measured below saturation (memory bus only).
PACED_KINDS = ("starlette", "starlette-write", "starlette-thread", "legalstream")
#: The uvicorn app factories of the bare endpoints (``serve --kind``).
BARE_APPS = {
    "starlette": "starlette_app",
    "starlette-write": "starlette_write_app",
    "starlette-thread": "starlette_thread_app",
}
#: The load generators (--client). Both run every client in this one process.
CLIENTS = {
    "lean": "lean (bench/wsclient.py: frames parsed per read, no future per frame)",
    "websockets": "websockets asyncio client (the seed's client: one recv() per frame)",
}
#: --ws-impls name for legalstream on uvicorn's own websockets-sansio class,
#: without the batched sends of legalstream.server.uvicorn_ext.
UNBATCHED = "sansio-unbatched"


# --------------------------------------------------------------------------- servers


def _template_frames(count: int) -> list[str]:
    """Frames shaped like a legalstream run: count+2 chunk events, then the final one."""
    from legalstream.events import Event, EventType

    def frame(type_: EventType, seq: int) -> str:
        event = Event(
            type=type_,
            agent_name=AGENT,
            task="Answer legal question",
            output_data={"chunk": "The defendant denied the allegations of paragraph 12 "},
            run_id="0" * 32,
            seq=seq,
            timestamp=0.0,
        )
        return event.frame_for("f" * 32).decode()

    chunks = [frame(EventType.LLM_STREAM_CHUNK, seq) for seq in range(1, count + 3)]
    return [*chunks, frame(EventType.AGENT_EXECUTION_COMPLETE, count + 3)]


def _requested_frames(query: str | bytes, cache: dict[int, list[str]]) -> list[str]:
    """The frames a baseline sends for a bench query (``"bench K"``): K chunks, then the final one."""
    count = int(orjson.loads(query)["query"].split()[-1])
    return cache.get(count) or cache.setdefault(count, _template_frames(count))


def _stamp(frame: str, now: float | None = None) -> str:
    stamp = time.time() if now is None else now
    return frame.replace('"timestamp":0.0', f'"timestamp":{stamp}', 1)


class BenchRunner:
    """Synthetic producer: K chunk events per run, as fast as the bridge takes them."""

    def __init__(self, events: int) -> None:
        self.events = events

    def run(self, request: Any, emit: Any, cancelled: threading.Event) -> Any:
        from legalstream.agent.api import RunCancelled, RunOutcome
        from legalstream.events import EventType

        count = int(request.query.split()[-1]) if request.query.startswith("bench") else self.events
        for _ in range(count):
            if cancelled.is_set():
                raise RunCancelled
            emit(
                EventType.LLM_STREAM_CHUNK,
                agent_name=AGENT,
                output_data={"chunk": "The defendant denied the allegations of paragraph 12 "},
            )
        return RunOutcome(answer="bench", citations=[])


def legalstream_app() -> Any:
    """uvicorn factory for the legalstream server under test (env-configured)."""
    from legalstream.app import create_app
    from legalstream.settings import Settings

    settings = Settings(rag={"ingest_sample_on_start": False})
    runner = BenchRunner(int(os.environ.get("BENCH_EVENTS", "100")))
    return create_app(settings, runner_factory=lambda svc: runner)


def starlette_app() -> Any:
    """Bare Starlette endpoint: on any message, send the pre-encoded frames, published now."""
    return _bare_app(stamp_at_write=False)


def starlette_write_app() -> Any:
    """The bare endpoint, each frame stamped just before it is written."""
    return _bare_app(stamp_at_write=True)


def _bare_app(*, stamp_at_write: bool) -> Any:
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    hello = '{"type":"connection_established"}'
    cache: dict[int, list[str]] = {}

    async def endpoint(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text(hello)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frames = _requested_frames(message["text"], cache)
            published = None if stamp_at_write else time.time()
            for frame in frames:
                await websocket.send_text(_stamp(frame, published))

    return Starlette(routes=[WebSocketRoute("/ws/query", endpoint)])


def starlette_thread_app() -> Any:
    """Bare Starlette endpoint whose frames are made in worker threads, as an agent's are.

    The least a server must do to stream from a synchronous producer (CrewAI
    is one): a thread stamps each frame as it makes it and hands it to the
    loop, in batches (one ``call_soon_threadsafe`` per batch, as legalstream's
    thread bridge does), and the endpoint writes what it is handed. Set
    against legalstream, it separates what the thread hand-off costs from
    what legalstream's bus and session add. ``BENCH_THREADS`` threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute

    hello = '{"type":"connection_established"}'
    cache: dict[int, list[str]] = {}
    pool = ThreadPoolExecutor(BENCH_THREADS)

    def produce(frames: list[str], loop: Any, inbox: asyncio.Queue[list[str]]) -> None:
        lock, pending = threading.Lock(), []

        def flush() -> None:
            with lock:
                batch = pending[:]
                pending.clear()
            inbox.put_nowait(batch)

        for frame in frames:
            with lock:
                pending.append(_stamp(frame))
                if len(pending) > 1:
                    continue
            loop.call_soon_threadsafe(flush)

    async def endpoint(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_text(hello)
        loop = asyncio.get_running_loop()
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            frames = _requested_frames(message["text"], cache)
            inbox: asyncio.Queue[list[str]] = asyncio.Queue()
            pool.submit(produce, frames, loop, inbox)
            left = len(frames)
            while left:
                batch = await inbox.get()
                for frame in batch:
                    await websocket.send_text(frame)
                left -= len(batch)

    return Starlette(routes=[WebSocketRoute("/ws/query", endpoint)])


async def websockets_server(port: int) -> None:
    from websockets.asyncio.server import serve

    cache: dict[int, list[str]] = {}

    async def handler(ws: Any) -> None:
        await ws.send('{"type":"connection_established"}')
        async for message in ws:
            frames = _requested_frames(message, cache)
            published = time.time()
            for frame in frames:
                await ws.send(_stamp(frame, published))

    async with serve(
        handler, "127.0.0.1", port, max_size=64 * 1024, compression=None, ping_interval=None
    ):
        await asyncio.Future()


def serve_main(args: argparse.Namespace) -> None:
    if args.kind == "websockets":
        asyncio.run(websockets_server(args.port))
        return
    import uvicorn

    options: dict[str, Any] = {
        "factory": True,
        "host": "127.0.0.1",
        "port": args.port,
        "ws": args.ws_impl,
        "ws_max_size": 64 * 1024,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
        "log_level": "warning",
        "backlog": 8192,
    }
    if args.kind in BARE_APPS:
        factory = f"fanout:{BARE_APPS[args.kind]}"
        uvicorn.run(factory, workers=args.workers if args.workers > 1 else None, **options)
        return
    # legalstream runs exactly as `legalstream serve` runs it (server/runner.py):
    # its uvicorn config and WebSocket protocol, graceful shutdown, GC settings.
    from legalstream.server.runner import run_server, uvicorn_config
    from legalstream.settings import Settings

    try:
        from legalstream.server.uvicorn_ext import WS_PROTOCOLS
    except ImportError:  # a tree from before the uvicorn fence (bench/ab.py --a)
        from legalstream.server.runner import WS_PROTOCOLS  # type: ignore[attr-defined,no-redef]

    settings = Settings(rag={"ingest_sample_on_start": False})
    if args.ws_impl == UNBATCHED:
        options["ws"] = "websockets-sansio"  # uvicorn's own class: one write per frame
    else:
        options["ws"] = WS_PROTOCOLS.get(args.ws_impl, args.ws_impl)
    options["ws_ping_timeout"] = None
    if args.workers > 1:
        options["workers"] = args.workers
    config = uvicorn_config(settings, "fanout:legalstream_app", **options)
    run_server(config, settings, args.workers)


# --------------------------------------------------------------------------- driver


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self,
        kind: str,
        ws_impl: str,
        bus: str,
        workers: int,
        events: int,
        threads: int = BENCH_THREADS,
    ) -> None:
        self.port = _free_port()
        self.bus = bus
        env = {
            **os.environ,
            "PYTHONPATH": os.environ.get("BENCH_EXTRA_PATH", "")
            + f"{HERE}{os.pathsep}{ROOT / 'src'}",
            "BENCH_EVENTS": str(events),
            "LEGALSTREAM_BUS__BACKEND": bus,
            "LEGALSTREAM_SERVER__SEND_QUEUE_SIZE": "100000",
            "LEGALSTREAM_SERVER__MAX_RUNS_PER_CONNECTION": "4",
            "LEGALSTREAM_RUNS__MAX_CONCURRENT": str(threads),
            "BENCH_THREADS": str(threads),
            "LEGALSTREAM_RUNS__MAX_QUEUED": "100000",
            "LEGALSTREAM_LOG_LEVEL": "warning",
            # Audit stays on (it is part of the product's cost), out of the report.
            "LEGALSTREAM_AUDIT__PATH": os.devnull,
            "LEGALSTREAM_BUS__REDIS_PREFIX": f"bench{self.port}",
        }
        cmd = [
            sys.executable,
            str(HERE / "fanout.py"),
            "serve",
            "--kind",
            kind,
            "--port",
            str(self.port),
        ]
        cmd += ["--ws-impl", ws_impl, "--workers", str(workers)]
        self.proc = subprocess.Popen(cmd, env=env)

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)
        raise RuntimeError("server did not start")

    def rss_kb(self) -> int:
        pids = [self.proc.pid, *_children(self.proc.pid)]
        total = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.bus == "redis":
            self._forget_redis_keys()

    def _forget_redis_keys(self) -> None:
        """Unlink this server's keys: runs keep a day of history, and a Redis
        grown by earlier measurements (hundreds of MB) slows the later ones."""
        import redis

        url = os.environ.get("LEGALSTREAM_BUS__REDIS_URL", "redis://127.0.0.1:6379/0")
        client = redis.Redis.from_url(url)
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"bench{self.port}:*", count=1000):
                batch.append(key)
                if len(batch) == 1000:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)
        finally:
            client.close()


def _children(pid: int) -> list[int]:
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]
    except OSError:
        return []


async def _connect_all(port: int, n: int, client: str = "websockets") -> list[Any]:
    """n connections, each past its first frame (connection_established)."""
    sem = asyncio.Semaphore(200)

    async def one() -> Any:
        async with sem:
            if client == "lean":
                ws = await wsclient.connect("127.0.0.1", port, "/ws/query")
            else:
                from websockets.asyncio.client import connect

                ws = await connect(
                    f"ws://127.0.0.1:{port}/ws/query",
                    max_size=None,
                    compression=None,
                    ping_interval=None,
                    open_timeout=60,
                )
            await ws.recv()
            return ws

    return await asyncio.gather(*(one() for _ in range(n)))


def _query(events: int) -> str:
    return orjson.dumps(
        {"query": f"bench {events}", "case_id": 1, "stream_thinking": True}
    ).decode()


class _Tally:
    """What the clients received: counts, latencies, and the run's end."""

    #: A run's final frames, and an error frame (a refused query): either ends the wait.
    FINAL = frozenset({*(t.value for t in FINAL_TYPES), EventType.ERROR.value})

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.received = 0

    def frame(self, raw: bytes | str, arrived: float) -> bool:
        """Record one frame; True when it ends the run."""
        frame = orjson.loads(raw)
        self.received += 1
        if frame["type"] == "llm_stream_chunk":
            self.latencies.append(arrived - frame["timestamp"])
        if frame["type"] in self.FINAL:
            if frame["type"] != EventType.AGENT_EXECUTION_COMPLETE:
                raise RuntimeError(f"bench run failed: {frame}")
            return True
        return False


async def _drive_websockets(ws: Any, events: int, tally: _Tally) -> None:
    await ws.send(_query(events))
    while True:
        raw = await ws.recv()
        if tally.frame(raw, time.time()):
            return


async def _drive_lean(ws: wsclient.LeanClient, events: int, tally: _Tally) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_message(payload: bytes, arrived: float) -> None:
        if done.done():
            return
        try:
            if tally.frame(payload, arrived):
                done.set_result(None)
        except Exception as exc:  # surfaced by the await below
            done.set_exception(exc)

    ws.on_message = on_message
    ws.closed.add_done_callback(
        lambda _: done.done() or done.set_exception(ConnectionError("closed mid-run"))
    )
    ws.send_text(_query(events))
    await done


async def throughput(
    port: int,
    clients: int,
    events: int,
    client: str = "websockets",
    runs_per_s: float | None = None,
) -> dict[str, float]:
    """Every client runs one query; all at once, or at ``runs_per_s`` (open loop).

    Paced, the clients start their queries evenly over time whatever the
    server does, so the offered load is fixed and latency is measured below
    saturation rather than in the queue that saturation builds.
    """
    conns = await _connect_all(port, clients, client)
    tally = _Tally()
    drive = _drive_lean if client == "lean" else _drive_websockets

    async def paced(i: int, ws: Any) -> None:
        assert runs_per_s is not None
        await asyncio.sleep(i / runs_per_s)
        await drive(ws, events, tally)

    start = time.perf_counter()
    if runs_per_s is None:
        await asyncio.gather(*(drive(ws, events, tally) for ws in conns))
    else:
        await asyncio.gather(*(paced(i, ws) for i, ws in enumerate(conns)))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    latencies = sorted(tally.latencies)

    def ms(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * q))] * 1000

    return {
        "events_per_s": tally.received / elapsed,
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "seconds": elapsed,
    }


async def idle_rss(server: Server, counts: list[int]) -> dict[int, float]:
    await asyncio.sleep(1.0)
    base = server.rss_kb()
    out: dict[int, float] = {}
    conns: list[Any] = []
    for n in counts:
        conns += await _connect_all(server.port, n - len(conns))
        await asyncio.sleep(1.0)
        out[n] = (server.rss_kb() - base) * 1024 / n
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    return out


async def resume_cost(port: int, events: int) -> float:
    """Seconds to replay ``events`` events of a finished run to a new connection."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/ws/query"
    async with connect(url, max_size=None) as ws:
        await ws.recv()
        await ws.send(orjson.dumps({"query": f"bench {events}", "case_id": 1}).decode())
        while True:
            frame = orjson.loads(await ws.recv())
            if frame["type"] == EventType.AGENT_EXECUTION_COMPLETE:
                run_id = frame["run_id"]
                break
    complete = EventType.AGENT_EXECUTION_COMPLETE.value  # looked up once, not per frame
    async with connect(url, max_size=None) as ws:
        await ws.recv()
        start = time.perf_counter()
        await ws.send(orjson.dumps({"type": "resume", "run_id": run_id, "after_seq": 0}).decode())
        while orjson.loads(await ws.recv())["type"] != complete:
            pass
        return time.perf_counter() - start


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def cpu_cost(kind: str, clients: int = 1000, rounds: int = 3) -> dict[str, float]:
    """Server CPU per connection+run (1-event runs) and per extra event (50-event runs).

    CPU time of the server process, not wall time, so the client process and
    the machine's noise matter less; includes each connection's handshake.
    """
    per_run: dict[int, float] = {}
    for events in (1, 50):
        server = Server(kind, "websockets-sansio", "memory", 1, events)
        try:
            await server.wait_ready()
            await throughput(server.port, 10, 10)  # warm-up
            before = _cpu_seconds(server.proc.pid)
            for _ in range(rounds):
                await throughput(server.port, clients, events)
            per_run[events] = (_cpu_seconds(server.proc.pid) - before) / (clients * rounds)
        finally:
            server.stop()
    return {"per_run_us": per_run[1] * 1e6, "per_event_us": (per_run[50] - per_run[1]) / 49 * 1e6}


async def cpu_driver() -> None:
    print("server CPU (1,000 clients, 3 rounds each; 1-event and 50-event runs)")
    for kind in ("starlette", "legalstream"):
        r = await cpu_cost(kind)
        print(
            f"  {kind:12} per connection+run {r['per_run_us']:7.0f} us"
            f"   per extra event {r['per_event_us']:5.1f} us"
        )


#: One server configuration under test: kind, ws_impl, bus, workers.
Config = tuple[str, str, str, int]


def _configs(args: argparse.Namespace) -> list[Config]:
    """What this run measures, baseline first, in the order the tables print."""
    configs: list[Config] = [("starlette", args.ws_impl, "memory", 1)]
    if "lean" in args.clients and not args.ws_impls:
        configs += [
            ("starlette-write", args.ws_impl, "memory", 1),
            ("starlette-thread", args.ws_impl, "memory", 1),
        ]
    impls = ("websockets-sansio", UNBATCHED, "websockets", "wsproto")
    for impl in impls if args.ws_impls else (args.ws_impl,):
        configs.append(("legalstream", impl, "memory", 1))
    if args.bus == "redis" or args.workers > 1:
        configs.append(("legalstream", args.ws_impl, args.bus, args.workers))
    if not args.quick:
        configs.append(("websockets", "-", "memory", 1))
    return configs


async def _one(
    config: Config, clients: int, events: int, client: str, runs_per_s: float | None = None
) -> dict[str, float]:
    """One measurement on a fresh server."""
    kind, ws_impl, bus, workers = config
    server = Server(kind, ws_impl, bus, workers, events)
    try:
        await server.wait_ready()
        await throughput(server.port, min(clients, 10), 10, client)  # warm-up
        return await throughput(server.port, clients, events, client, runs_per_s)
    finally:
        server.stop()


async def measure_round(
    config: Config,
    args: argparse.Namespace,
    *,
    paced: dict[str, float],
    saturation: bool = True,
    extras: bool = False,
) -> dict[str, Any]:
    """One round of a configuration: every load at saturation with each client,
    then paced (``paced``: runs/s by ``_paced_key``); RSS and resume with ``extras``."""
    kind, ws_impl, bus, workers = config
    result: dict[str, Any] = {}
    for clients, events in args.loads:
        for client in args.clients if saturation else []:
            result[f"tp{clients}/{client}"] = await _one(config, clients, events, client)
        for client in args.clients if kind in PACED_KINDS and bus == "memory" else []:
            key = _paced_key(clients, client)
            if key in paced:
                result[key] = await _one(config, clients, events, client, paced[key])
    if not extras:
        return result
    bare_rss = kind not in ("websockets", "starlette-write", "starlette-thread")
    if args.rss and bare_rss and workers == 1:
        server = Server(kind, ws_impl, bus, workers, 10)
        try:
            await server.wait_ready()
            result["rss"] = await idle_rss(server, args.rss)
        finally:
            server.stop()
    if kind == "legalstream" and args.resume:
        server = Server(kind, ws_impl, bus, workers, 10)
        try:
            await server.wait_ready()
            result["resume_1000_s"] = statistics.median(
                [await resume_cost(server.port, 1000) for _ in range(5)]
            )
        finally:
            server.stop()
    return result


def _paced_key(clients: int, client: str) -> str:
    return f"paced{clients}/{client}"


class _Rounds:
    """Each configuration's rounds; medians, and ratios paired round by round.

    A ratio is the median over rounds of (this config ÷ the other config in
    the same round): the rounds interleave every configuration, so a machine
    that drifts between rounds moves both sides of each ratio together.
    """

    def __init__(self, configs: list[Config]) -> None:
        self.by_config: dict[Config, list[dict[str, Any]]] = {c: [] for c in configs}

    def has(self, config: Config, key: str) -> bool:
        return all(key in r for r in self.by_config[config])

    def median(self, config: Config, key: str, metric: str) -> float:
        return statistics.median(r[key][metric] for r in self.by_config[config])

    def ratio(self, config: Config, other: Config, key: str, metric: str) -> float:
        pairs = zip(self.by_config[config], self.by_config[other], strict=True)
        return statistics.median(a[key][metric] / b[key][metric] for a, b in pairs)

    def extra(self, config: Config, key: str) -> Any:
        return next((r[key] for r in self.by_config[config] if key in r), None)


def _name(config: Config) -> str:
    kind, ws_impl, bus, workers = config
    return f"{kind} ({ws_impl}, bus={bus}, workers={workers})"


def _print(rounds: _Rounds, configs: list[Config], args: argparse.Namespace) -> None:
    base = configs[0]
    print(
        f"\nfan-out: loads (clients x events) = {args.loads}; median of {args.repeat} rounds,"
        " each round every server in turn; 'x base' is the median of the rounds' ratios"
    )
    for client in args.clients:
        print(f"\nclient: {CLIENTS[client]}")
        print(
            f"{'server':60} {'clients':>7} {'events/s':>10} {'x base':>7}"
            f" {'p50 ms':>8} {'p99 ms':>8} {'x base':>7}"
        )
        for config in configs:
            for clients, _ in args.loads:
                key = f"tp{clients}/{client}"
                print(
                    f"{_name(config):60} {clients:>7}"
                    f" {rounds.median(config, key, 'events_per_s'):>10.0f}"
                    f" {rounds.ratio(config, base, key, 'events_per_s'):>7.2f}"
                    f" {rounds.median(config, key, 'p50_ms'):>8.2f}"
                    f" {rounds.median(config, key, 'p99_ms'):>8.2f}"
                    f" {rounds.ratio(config, base, key, 'p99_ms'):>7.2f}"
                )
    thread = next((c for c in configs if c[0] == "starlette-thread"), None)
    for client in args.clients if args.paced else []:
        print(
            f"\nlatency below saturation: {client} client, queries started evenly at half the"
            " bare Starlette endpoint's throughput with that client in the first round (open loop)"
        )
        print(
            f"{'server':60} {'clients':>7} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}"
            f" {'x base':>7} {'x thread':>8}"
        )
        for config in configs:
            for clients, _ in args.loads:
                key = _paced_key(clients, client)
                if not rounds.has(config, key):
                    continue
                vs_thread = (
                    f"{rounds.ratio(config, thread, key, 'p99_ms'):>8.2f}"
                    if thread and rounds.has(thread, key)
                    else f"{'-':>8}"
                )
                print(
                    f"{_name(config):60} {clients:>7}"
                    f" {rounds.median(config, key, 'events_per_s'):>10.0f}"
                    f" {rounds.median(config, key, 'p50_ms'):>8.2f}"
                    f" {rounds.median(config, key, 'p99_ms'):>8.2f}"
                    f" {rounds.ratio(config, base, key, 'p99_ms'):>7.2f} {vs_thread}"
                )
    base_rss = rounds.extra(base, "rss") or {}
    for config in configs:
        rss = rounds.extra(config, "rss")
        for n, per in (rss or {}).items():
            ratio = f"{per / base_rss[n]:.2f}" if n in base_rss else "-"
            print(
                f"RSS per idle connection  {config[0]:12} {n:>6} conns:"
                f" {per / 1024:7.1f} KiB  (x base {ratio})"
            )
        resume = rounds.extra(config, "resume_1000_s")
        if resume is not None:
            print(f"resume: replay of 1,000 events ({config[2]} bus): {resume * 1000:.1f} ms")


def summarize(rounds: _Rounds, configs: list[Config], args: argparse.Namespace) -> dict[str, Any]:
    """The run's results as plain data (``--json``): what fanout_report.py judges and draws."""
    base = configs[0]
    loads = [f"{clients}x{events}" for clients, events in args.loads]
    metrics = ("events_per_s", "p50_ms", "p90_ms", "p99_ms", "p999_ms")

    def rows(config: Config, prefix: str) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for client in args.clients:
            for (clients, _), load in zip(args.loads, loads, strict=True):
                key = f"{prefix}{clients}/{client}"
                if not rounds.has(config, key) or not rounds.has(base, key):
                    continue
                row = {m: round(rounds.median(config, key, m), 4) for m in metrics}
                row["x_base"] = round(rounds.ratio(config, base, key, "events_per_s"), 4)
                row["p99_x_base"] = round(rounds.ratio(config, base, key, "p99_ms"), 4)
                out.setdefault(client, {})[load] = row
        return out

    base_rss = rounds.extra(base, "rss") or {}
    servers = []
    for config in configs:
        kind, ws_impl, bus, workers = config
        rss = rounds.extra(config, "rss") or {}
        resume = rounds.extra(config, "resume_1000_s")
        servers.append(
            {
                "name": _name(config),
                "kind": kind,
                "ws_impl": ws_impl,
                "bus": bus,
                "workers": workers,
                "saturation": rows(config, "tp"),
                "half_load": rows(config, "paced"),
                "rss_kib": {str(n): round(v / 1024, 2) for n, v in rss.items()},
                "rss_x_base": {
                    str(n): round(v / base_rss[n], 4) for n, v in rss.items() if n in base_rss
                },
                "resume_1000_ms": None if resume is None else round(resume * 1000, 2),
            }
        )
    return {
        "command": " ".join(["bench/fanout.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d"),
        "repeat": args.repeat,
        "bench_threads": BENCH_THREADS,
        "cpus": os.cpu_count(),
        "loads": loads,
        "clients": list(args.clients),
        "servers": servers,
    }


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    """The verdict lines; then the files ``--json`` and ``--docs`` ask for."""
    print(f"\n{fanout_report.verdict_header(results)}:")
    for verdict in fanout_report.verdicts(results):
        print(f"  {verdict.line()}")
    if args.json:
        Path(args.json).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    if args.docs:
        write_docs(results, ROOT / "docs")


def write_docs(results: dict[str, Any], docs: Path) -> None:
    """docs/img/fanout.json, the charts drawn from it, and docs/benchmarks.md's section."""
    from legalstream.docfigures import write_section

    (docs / fanout_report.JSON_FILE).write_bytes(
        orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n"
    )
    (docs / fanout_report.THROUGHPUT_SVG).write_text(fanout_report.throughput_chart(results))
    (docs / fanout_report.LATENCY_SVG).write_text(fanout_report.latency_chart(results))
    write_section(
        docs / "benchmarks.md",
        fanout_report.SECTION,
        fanout_report.markdown(results),
        f".venv/bin/python {results['command']}",
    )
    print(f"written: docs/{fanout_report.JSON_FILE}, the charts, docs/benchmarks.md")


async def driver(args: argparse.Namespace) -> None:
    configs = _configs(args)
    base = configs[0]
    rounds = _Rounds(configs)
    args.paced = {}
    # The load generator's own first run is slow (its first 1,000 connections,
    # allocator growth); keep that out of the first round's baseline.
    clients, events = args.loads[0]
    await _one(base, clients, events, args.clients[0])
    for round_ in range(args.repeat):
        for config in configs:
            last = round_ == args.repeat - 1
            result = await measure_round(config, args, paced=args.paced, extras=last)
            if config == base and not args.paced and not args.ws_impls:
                # Half of what the bare endpoint delivered at saturation with
                # each client, as runs per second.
                args.paced = {
                    _paced_key(clients, client): 0.5
                    * result[f"tp{clients}/{client}"]["events_per_s"]
                    / (events + 3)
                    for clients, events in args.loads
                    for client in args.clients
                }
                result.update(await measure_round(config, args, paced=args.paced, saturation=False))
            rounds.by_config[config].append(result)
    _print(rounds, configs, args)
    if not args.ws_impls:
        report(summarize(rounds, configs, args), args)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="cmd")
    serve = sub.add_parser("serve")
    serve.add_argument(
        "--kind",
        required=True,
        choices=["legalstream", *BARE_APPS, "websockets"],
    )
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--ws-impl", default="websockets-sansio")
    serve.add_argument("--workers", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ws-impl", default="websockets-sansio")
    parser.add_argument("--ws-impls", action="store_true", help="compare uvicorn's implementations")
    parser.add_argument("--bus", default="memory", choices=["memory", "redis"])
    parser.add_argument(
        "--client",
        choices=[*CLIENTS, "both"],
        default="both",
        help="load generator: lean (the servers set the pace) or websockets (it sets the pace)",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--cpu", action="store_true", help="server CPU per connection+run and per event"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--docs",
        action="store_true",
        help="write the results, charts and summary into docs/ (docs/benchmarks.md)",
    )
    parser.add_argument(
        "--docs-from",
        metavar="JSON",
        help="no measuring: draw docs/ again from a run's --json results (docs/img/fanout.json)",
    )
    args = parser.parse_args()
    if args.cmd != "serve":
        args.clients = list(CLIENTS) if args.client == "both" else [args.client]
    if args.cmd == "serve":
        serve_main(args)
        return
    if args.cpu:
        asyncio.run(cpu_driver())
        return
    if args.docs_from:
        write_docs(orjson.loads(Path(args.docs_from).read_bytes()), ROOT / "docs")
        return
    if args.quick:
        args.loads, args.rss, args.repeat, args.resume = [(100, 50)], [500], 1, True
    else:
        args.loads, args.rss, args.resume = [(100, 200), (1000, 50)], [1000, 5000], True
    asyncio.run(driver(args))


if __name__ == "__main__":
    main()
