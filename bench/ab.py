"""A/B: legalstream from two source trees, interleaved, on the fan-out workload.

On a noisy 2-core machine a change is only visible against the code before
it measured in the same minute. This starts the server from each tree in
turn (``src`` directories; "" is this checkout), repeat times, and prints
medians per load:

    git worktree add /tmp/before HEAD~1
    python bench/ab.py --a /tmp/before/src --b "" --loads 1000x1 1000x50 100x200

Environment settings (``LEGALSTREAM_*``, ``BENCH_THREADS``) apply to both;
``--a-threads``/``--b-threads`` give each arm its own ``BENCH_THREADS``;
``--bus redis --workers 2`` measures the Redis bus; ``--bare`` adds the bare
Starlette endpoint as a third arm, so each round also gives issue 2's ratio;
``--extras`` also times, per legalstream arm and round, a resume that replays
1,000 events and the first-event latency of runs asked one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fanout

#: The --bare arm's name in ``trees``: not a source tree but fanout's bare endpoint.
BARE = "bare Starlette"


async def one(
    args: argparse.Namespace, src: str, clients: int, events: int, threads: int
) -> dict[str, float]:
    if src == BARE:
        server = fanout.Server("starlette", "websockets-sansio", "memory", 1, events)
    else:
        os.environ["BENCH_EXTRA_PATH"] = f"{src}{os.pathsep}" if src else ""
        server = fanout.Server(
            "legalstream", "websockets-sansio", args.bus, args.workers, events, threads
        )
    try:
        await server.wait_ready()
        await fanout.throughput(server.port, min(clients, 10), 10, args.client)  # warm-up
        result = await fanout.throughput(server.port, clients, events, args.client)
        if args.extras and src != BARE:
            result["resume_1000_ms"] = 1000 * statistics.median(
                [await fanout.resume_cost(server.port, 1000) for _ in range(3)]
            )
            result["first_event_ms"] = await first_event_ms(server.port, 30)
        return result
    finally:
        server.stop()


async def first_event_ms(port: int, runs: int) -> float:
    """Median ms from sending a query to its first agent event (after the two opening frames)."""
    from websockets.asyncio.client import connect

    times: list[float] = []
    async with connect(f"ws://127.0.0.1:{port}/ws/query", max_size=None) as ws:
        await ws.recv()
        for _ in range(runs):
            start = time.perf_counter()
            await ws.send(orjson.dumps({"query": "bench 20", "case_id": 1}).decode())
            first = None
            while True:
                frame = orjson.loads(await ws.recv())
                if first is None and (frame.get("seq") or 0) >= 3:
                    first = time.perf_counter() - start
                if frame["type"] in fanout._Tally.FINAL:
                    break
            assert first is not None
            times.append(first)
    return 1000 * statistics.median(times)


async def main(args: argparse.Namespace) -> None:
    trees = {"a": args.a, "b": args.b}
    if args.bare:
        trees["bare"] = BARE
    for load in args.loads:
        clients, events = (int(x) for x in load.split("x"))
        results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.repeat):
            for name, src in trees.items():
                threads = args.b_threads if name == "b" else args.a_threads
                results[name].append(await one(args, src, clients, events, threads))
        base = statistics.median(r["events_per_s"] for r in results["a"])
        if args.extras:
            base_resume = statistics.median(r["resume_1000_ms"] for r in results["a"])
            base_first = statistics.median(r["first_event_ms"] for r in results["a"])
        bare = results.get("bare")
        bare_tp = statistics.median(r["events_per_s"] for r in bare) if bare else None
        bare_p99 = statistics.median(r["p99_ms"] for r in bare) if bare else None
        for name, runs in results.items():
            med: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{name} ({trees[name] or 'this checkout'}) {clients} x {events}:"
                f" {med['events_per_s']:9.0f} events/s ({med['events_per_s'] / base:.2f}x a)"
                f"  p50 {med['p50_ms']:6.2f} ms  p99 {med['p99_ms']:6.2f} ms"
                + (
                    f"  resume 1,000 {med['resume_1000_ms']:.1f} ms"
                    f" ({med['resume_1000_ms'] / base_resume:.2f}x a),"
                    f" first event {med['first_event_ms']:.2f} ms"
                    f" ({med['first_event_ms'] / base_first:.2f}x a)"
                    if "resume_1000_ms" in med
                    else ""
                )
                + (
                    f"  (x bare: {med['events_per_s'] / bare_tp:.2f} events/s,"
                    f" {med['p99_ms'] / bare_p99:.2f} p99)"
                    if bare_tp and bare_p99
                    else ""
                ),
                flush=True,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--a", required=True, help="src/ of the first tree ('' = this checkout)")
    parser.add_argument("--b", default="", help="src/ of the second tree ('' = this checkout)")
    parser.add_argument("--loads", nargs="+", default=["1000x50", "100x200"])
    parser.add_argument("--client", choices=list(fanout.CLIENTS), default="lean")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bus", choices=["memory", "redis"], default="memory")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bare", action="store_true", help="also measure bare Starlette")
    parser.add_argument(
        "--extras", action="store_true", help="also time a 1,000-event resume and first events"
    )
    parser.add_argument("--a-threads", type=int, default=fanout.BENCH_THREADS, help="run threads")
    parser.add_argument("--b-threads", type=int, default=fanout.BENCH_THREADS, help="run threads")
    asyncio.run(main(parser.parse_args()))
