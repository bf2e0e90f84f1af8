"""Where the seed's client's latency comes from at saturation.

With the seed's client (``websockets``, one ``recv()`` per frame) the
client, not the server, sets the pace at fan-out's loads. This script runs
fan-out's saturation measurement with that client against the bare Starlette
endpoint and legalstream, in turn, and breaks every chunk frame's
publish-to-receive latency down by the connection's place in the order the
queries were sent. A latency that grows with that place, with the server
finishing first, is a queue in front of the client: the server outran it.

    python bench/client_queue.py                  # 1,000 clients x 50 events, 2 rounds
    python bench/client_queue.py --clients 100 --events 200 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import fanout
import orjson


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else 0.0


async def measure(kind: str, clients: int, events: int) -> dict[str, Any]:
    """One saturation measurement; chunk latencies grouped by tenth of the connections."""
    server = fanout.Server(kind, "websockets-sansio", "memory", 1, events)
    try:
        await server.wait_ready()
        await fanout.throughput(server.port, min(clients, 10), 10, "websockets")  # warm-up
        conns = await fanout._connect_all(server.port, clients, "websockets")
        by_tenth: list[list[float]] = [[] for _ in range(10)]
        start = time.time()

        async def drive(i: int, ws: Any) -> None:
            await ws.send(fanout._query(events))
            while True:
                frame = orjson.loads(await ws.recv())
                if frame["type"] == "llm_stream_chunk":
                    by_tenth[i * 10 // clients].append(time.time() - frame["timestamp"])
                if frame["type"] in fanout._Tally.FINAL:
                    return

        await asyncio.gather(*(drive(i, ws) for i, ws in enumerate(conns)))
        total = time.time() - start
        await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)
    finally:
        server.stop()
    every = [latency for tenth in by_tenth for latency in tenth]
    return {
        "total_ms": total * 1000,
        "p99_ms": _ms(every, 0.99),
        "p50_by_tenth": [_ms(tenth, 0.5) for tenth in by_tenth],
    }


async def driver(args: argparse.Namespace) -> None:
    print(f"seed's client, {args.clients} x {args.events}, saturation")
    print(
        f"{'server':12} {'round':>5} {'total ms':>9} {'p99 ms':>7}  p50 ms by tenth of connections"
    )
    for round_ in range(1, args.rounds + 1):
        for kind in ("starlette", "legalstream"):
            r = await measure(kind, args.clients, args.events)
            tenths = " ".join(f"{v:4.0f}" for v in r["p50_by_tenth"])
            print(f"{kind:12} {round_:>5} {r['total_ms']:>9.0f} {r['p99_ms']:>7.1f}  {tenths}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(driver(parser.parse_args()))


if __name__ == "__main__":
    main()
