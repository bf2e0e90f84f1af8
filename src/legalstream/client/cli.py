"""``legalstream query`` and ``legalstream probe``: a run, or a few, printed live with rich.

Built on :class:`legalstream.client.library.LegalStreamClient`; frame types and
payloads are read with :mod:`legalstream.events`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import Counter
from typing import Any

import orjson
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from legalstream.client.library import ConnectionLost, LegalStreamClient, RunError
from legalstream.events import (
    FINAL_TYPES,
    UNVERIFIED_CODES,
    EventType,
    FinalAnswer,
    LLMCallEnd,
    LLMCallStart,
    RagQuery,
    RagResult,
    RagTiming,
    StreamChunk,
    ToolTiming,
    error_code,
)

__all__ = ["PROBE_QUERIES", "probe_command", "query_command"]


_STYLES: dict[str, str] = {
    EventType.QUERY_RECEIVED: "bold cyan",
    EventType.AGENT_EXECUTION_START: "cyan",
    EventType.AGENT_EXECUTION_COMPLETE: "bold green",
    EventType.AGENT_EXECUTION_ERROR: "bold red",
    EventType.THINKING_START: "magenta",
    EventType.THINKING_END: "magenta",
    EventType.TOOL_START: "yellow",
    EventType.TOOL_END: "yellow",
    EventType.RAG_QUERY_START: "blue",
    EventType.RAG_QUERY_END: "blue",
    EventType.LLM_START: "green",
    EventType.LLM_END: "green",
    EventType.LLM_ERROR: "red",
    EventType.ERROR: "red",
    EventType.RESUME_FAILED: "red",
}


def _detail(frame: dict[str, Any]) -> str:
    """A one-line summary of a frame for the terminal."""
    kind = frame.get("type")
    inp = frame.get("input_data") or {}
    out = frame.get("output_data") or {}
    meta = frame.get("metadata") or {}
    if frame.get("error"):
        return str(frame["error"])[:200]
    match kind:
        case EventType.QUERY_RECEIVED:
            return f"case {inp.get('case_id')}: {inp.get('query')}"
        case EventType.TOOL_START | EventType.AGENT_ACTION:
            return f"{frame.get('tool_name') or ''} {orjson.dumps(inp).decode()[:160]}"
        case EventType.TOOL_END:
            elapsed = ToolTiming.from_payload(meta).elapsed_ms
            return f"{frame.get('tool_name') or ''} ({_or(elapsed, '?')} ms)"
        case EventType.RAG_QUERY_START:
            return f"search: {RagQuery.from_payload(inp).query}"[:200]
        case EventType.RAG_QUERY_END:
            result = RagResult.from_payload(out)
            titles = ", ".join(
                f"[{_or(c.marker, i + 1)}] {c.title or c.doc_id}"
                for i, c in enumerate(result.citations()[:3])
            )
            elapsed = RagTiming.from_payload(meta).elapsed_ms
            return f"{result.count} hits ({_or(elapsed, '?')} ms) {titles}"[:200]
        case EventType.LLM_START:
            start = LLMCallStart.from_payload(meta)
            return f"{_or(start.model, '')} step {_or(start.step, '')}"
        case EventType.LLM_END:
            end = LLMCallEnd.from_payload(meta)
            return f"{_or(end.model, '')} tokens {_or(end.tokens.total_tokens, '?')}"
        case EventType.THINKING_END:
            return str(out.get("thought") or "")[:200]
        case EventType.RESUME_FAILED:
            return f"lost {meta.get('lost')}"
    return ""


def _failure(exc: BaseException) -> str:
    """What went wrong connecting, and what to do about it, in one line."""
    from websockets.exceptions import InvalidStatus

    status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
    if status is None and isinstance(exc, ConnectionLost) and " HTTP 401" in str(exc):
        status = 401  # the token was traded for a ticket, and refused
    text = escape(f"{type(exc).__name__}: {exc}")
    if status == 401:
        return (
            f"{text}. The server wants a valid token (auth mode jwt): pass --token <JWT> "
            "or set LEGALSTREAM_TOKEN"
        )
    if status == 403:
        return f"{text}. The server refused this client (its Origin, or the token's scopes)"
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return f"{text}. Is the server running? Start it with make run (legalstream serve)"
    return text


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def query_command(
    url: str,
    question: str,
    case_id: int,
    *,
    token: str | None = None,
    as_json: bool = False,
    stream_thinking: bool = True,
) -> int:
    """``legalstream query``: print a run live; exit 0 on an answer, 1 on a run error,
    3 on an answer that failed its grounding check (printed as unverified)."""
    try:
        return asyncio.run(_query(url, question, case_id, token, as_json, stream_thinking))
    except KeyboardInterrupt:
        return 130


async def _query(
    url: str, question: str, case_id: int, token: str | None, as_json: bool, stream_thinking: bool
) -> int:
    console = Console(stderr=False, highlight=False)
    err = Console(stderr=True)
    try:
        async with LegalStreamClient(url, token=token, stream_thinking=stream_thinking) as client:
            stream = client.query(question, case_id)
            in_chunks = False
            try:
                async for frame in stream:
                    if as_json:
                        sys.stdout.write(orjson.dumps(frame).decode() + "\n")
                        sys.stdout.flush()
                        continue
                    kind = frame["type"]
                    if kind == EventType.LLM_STREAM_CHUNK:
                        chunk = StreamChunk.from_payload(frame.get("output_data")).chunk
                        console.print(chunk, end="", style="dim", markup=False)
                        in_chunks = True
                        continue
                    if in_chunks:
                        console.print()
                        in_chunks = False
                    if kind in FINAL_TYPES:
                        _print_final(console, frame)
                        continue
                    style = _STYLES.get(kind, "white")
                    seq = frame.get("seq")
                    console.print(
                        f"[dim]{seq:>4}[/] [{style}]{kind:<24}[/] "
                        if seq
                        else f"     [{style}]{kind:<24}[/] ",
                        end="",
                    )
                    console.print(_detail(frame), markup=False)
            except (KeyboardInterrupt, asyncio.CancelledError):
                if stream.run_id:
                    with contextlib.suppress(Exception):
                        await client.cancel(stream.run_id)
                raise
            final = stream.final or {}
            if final.get("type") == EventType.AGENT_EXECUTION_COMPLETE:
                return 0
            return 3 if error_code(final) in UNVERIFIED_CODES else 1
    except RunError as exc:
        err.print(f"[red]refused:[/] {exc}")
        return 1
    except Exception as exc:  # connection and handshake failures (websockets, OSError)
        err.print(f"[red]connection to {url} failed:[/] {_failure(exc)}", markup=True)
        return 2


def _print_final(console: Any, frame: dict[str, Any]) -> None:
    code = error_code(frame)
    unverified = frame["type"] == EventType.AGENT_EXECUTION_ERROR and code in UNVERIFIED_CODES
    if frame["type"] == EventType.AGENT_EXECUTION_ERROR and not unverified:
        console.print(Panel(str(frame.get("error")), title=f"error: {code}", border_style="red"))
        return
    out = FinalAnswer.from_payload(frame.get("output_data"))
    if unverified:
        # Delivered, clearly marked: never printed as if it were a verified answer.
        console.print(f"[bold yellow]UNVERIFIED ({code}):[/] {frame.get('error')}", highlight=False)
        console.print(Panel(out.answer, title=f"unverified answer ({code})", border_style="yellow"))
    else:
        console.print(Panel(out.answer, title="answer", border_style="green"))
        check = out.check
        if check is not None:
            console.print(f"[dim]{check.summary()}[/]")
    citations = out.cited()
    if citations:
        table = Table(title="citations", show_lines=True, expand=True)
        for col in ("#", "document", "section / page", "quote"):
            table.add_column(col, overflow="fold")
        for i, c in enumerate(citations, 1):
            where = " · ".join(str(x) for x in (c.section, f"p. {c.page}" if c.page else None) if x)
            quote = c.quote
            table.add_row(
                str(_or(c.marker, i)),
                f"{c.title}\n[dim]{c.doc_id}[/]",
                where,
                quote if len(quote) < 400 else quote[:400] + "…",
            )
        console.print(table)


PROBE_QUERIES = (
    "What was the defendant's response?",
    "What does the storage agreement say about temperature?",
)


def probe_command(
    url: str, case_id: int, *, token: str | None = None, queries: list[str] | None = None
) -> int:
    """``legalstream probe``: connect, run test queries, print events and a summary."""
    try:
        return asyncio.run(_probe(url, case_id, token, list(queries or PROBE_QUERIES)))
    except KeyboardInterrupt:
        return 130


async def _probe(url: str, case_id: int, token: str | None, queries: list[str]) -> int:
    console = Console(highlight=False)
    t0 = time.perf_counter()
    by_type: Counter[str] = Counter()
    results: list[dict[str, Any]] = []
    try:
        client = LegalStreamClient(url, token=token, reconnect=False)
        hello = await client.connect()
    except Exception as exc:
        console.print(f"[red]connection to {url} failed:[/] {_failure(exc)}")
        return 2
    connect_s = time.perf_counter() - t0
    console.print(
        f"[green]connected[/] {url} in {connect_s * 1000:.1f} ms "
        f"(connection {hello.get('connection_id')})"
    )
    try:
        for question in queries:
            console.rule(f"[bold]{question}")
            sent = time.perf_counter()
            first: float | None = None
            first_agent: float | None = None
            count = 0
            final: dict[str, Any] = {}
            try:
                async for frame in client.query(question, case_id):
                    now = time.perf_counter() - sent
                    count += 1
                    kind = frame["type"]
                    by_type[kind] += 1
                    if first is None:
                        first = now
                    if first_agent is None and kind not in (
                        EventType.QUERY_RECEIVED,
                        EventType.AGENT_EXECUTION_START,
                    ):
                        first_agent = now
                    if kind == EventType.LLM_STREAM_CHUNK:
                        continue  # counted, not printed
                    style = _STYLES.get(kind, "white")
                    console.print(f"[dim]{now * 1000:8.1f} ms[/] [{style}]{kind:<24}[/] ", end="")
                    console.print(_detail(frame), markup=False)
                    final = frame
            except RunError as exc:
                console.print(f"[red]refused:[/] {exc}")
                final = {"type": "error", "error": str(exc)}
            total = time.perf_counter() - sent
            out = FinalAnswer.from_payload(final.get("output_data"))
            console.print(
                f"[bold]{count} events[/] · time to first event {_ms(first)} · "
                f"first agent event {_ms(first_agent)} · total {_ms(total)}"
            )
            results.append(
                {
                    "query": question,
                    "status": "complete"
                    if final.get("type") == EventType.AGENT_EXECUTION_COMPLETE
                    else "failed",
                    "events": count,
                    "first": first,
                    "first_agent": first_agent,
                    "total": total,
                    "citations": len(out.citations),
                }
            )
    finally:
        await client.close()

    console.rule("[bold]summary")
    # Numbers only, so the table fits 80 columns; the questions follow it in full.
    runs = Table(title="runs", box=box.SIMPLE_HEAD)
    runs.add_column("#", justify="right", no_wrap=True)
    runs.add_column("status", no_wrap=True)
    for col in ("events", "first event", "first agent event", "total", "citations"):
        runs.add_column(col, justify="right", no_wrap=True)
    for i, r in enumerate(results, 1):
        runs.add_row(
            str(i),
            f"[green]{r['status']}[/]" if r["status"] == "complete" else f"[red]{r['status']}[/]",
            str(r["events"]),
            _ms(r["first"]),
            _ms(r["first_agent"]),
            _ms(r["total"]),
            str(r["citations"]),
        )
    console.print(runs)
    for i, r in enumerate(results, 1):
        console.print(f"{i:>3}: {r['query']}", markup=False, overflow="fold")
    types = Table(title="events by type")
    types.add_column("type")
    types.add_column("count", justify="right")
    for kind, n in sorted(by_type.items(), key=lambda kv: (-kv[1], kv[0])):
        types.add_row(kind, str(n))
    types.add_row("[bold]total", f"[bold]{sum(by_type.values())}")
    console.print(types)
    console.print(
        f"connect {connect_s * 1000:.1f} ms · total {(time.perf_counter() - t0):.3f} s · "
        f"{sum(1 for r in results if r['status'] == 'complete')}/{len(results)} runs complete"
    )
    return 0 if results and all(r["status"] == "complete" for r in results) else 1


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f} ms"
