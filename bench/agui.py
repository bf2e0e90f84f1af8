"""AG-UI dialect cost: encoding a run as AG-UI over SSE against the seed's frames, and resume.

    .venv/bin/python bench/agui.py

(1) Per run event, on runs shaped like the real agent's (a retrieval round,
    then an answer streamed token by token): the seed's frame encoding
    (``Event.encoded`` plus the connection id, what ``/ws/query`` pays) as the
    baseline, and AG-UI translation plus SSE encoding (what ``POST /agui``
    pays). Medians of rounds; the ratio is AG-UI / seed.
(2) Resume: translating a run again from seq 1 up to its last event (what
    ``GET /agui/runs/{id}`` does before it sends anything), for runs of 100,
    1,000 and 10,000 events (``bus.history_per_run``'s default).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from legalstream.dialects.agui import AguiStream, AguiTranslator, Position, sse_many  # noqa: E402
from legalstream.events import Event, EventType  # noqa: E402

RUN = "0" * 32
ROUNDS = 7


def run_events(tokens: int) -> list[Event]:
    events: list[Event] = []
    t = 1_800_000_000.0

    def add(type_: EventType, **fields) -> None:
        nonlocal t
        t += 0.001
        events.append(Event(type=type_, run_id=RUN, seq=len(events) + 1, timestamp=t, **fields))

    add(EventType.QUERY_RECEIVED, input_data={"query": "q", "case_id": 1})
    add(EventType.AGENT_EXECUTION_START)
    add(EventType.AGENT_START)
    add(EventType.THINKING_START, metadata={"step": 1})
    add(EventType.LLM_START, metadata={"model": "offline/extractive", "call_id": "c1"})
    for word in "Thought: I will search the case documents first.\nAction: rag\n".split(" "):
        add(
            EventType.LLM_STREAM_CHUNK,
            output_data={"chunk": word + " "},
            metadata={"call_id": "c1"},
        )
    add(EventType.LLM_END, metadata={"model": "offline/extractive", "usage": {"total_tokens": 9}})
    add(EventType.THINKING_END, metadata={"step": 1})
    add(EventType.TOOL_START, tool_name="RAG Legal Retrieval Tool", input_data={"query": "q"})
    hits = [{"chunk_id": f"c#{i}", "doc_id": "d", "quote": "text " * 40} for i in range(5)]
    add(EventType.RAG_QUERY_START, input_data={"query": "q", "case_id": 1})
    add(EventType.RAG_QUERY_END, output_data={"count": 5, "hits": hits})
    add(EventType.TOOL_END, output_data={"result": "Passage [1] ..." * 50})
    add(EventType.THINKING_START, metadata={"step": 2})
    add(EventType.LLM_START, metadata={"model": "offline/extractive", "call_id": "c2"})
    add(
        EventType.LLM_STREAM_CHUNK,
        output_data={"chunk": "Final Answer: "},
        metadata={"call_id": "c2"},
    )
    while len(events) < tokens - 4:
        add(EventType.LLM_STREAM_CHUNK, output_data={"chunk": "word "}, metadata={"call_id": "c2"})
    add(EventType.LLM_END, metadata={"model": "offline/extractive"})
    add(EventType.THINKING_END, metadata={"step": 2})
    add(EventType.AGENT_END)
    add(EventType.AGENT_EXECUTION_COMPLETE, output_data={"answer": "a", "citations": hits[:2]})
    return events


def fresh(events: list[Event]) -> list[Event]:
    """Copies without their cached encoding (each round pays for it)."""
    return [
        Event(**{k: getattr(e, k) for k in Event.__dataclass_fields__ if k != "_encoded"})
        for e in events
    ]


def per_event_us(events: list[Event]) -> tuple[float, float]:
    seed, agui = [], []
    for _ in range(ROUNDS):
        batch = fresh(events)
        start = time.perf_counter()
        for event in batch:
            event.frame_for("c" * 32)
        seed.append((time.perf_counter() - start) / len(batch) * 1e6)
        batch = fresh(events)
        start = time.perf_counter()
        stream = AguiStream(AguiTranslator(RUN, "thread"))
        for event in batch:
            sse_many(stream.feed(event))
        agui.append((time.perf_counter() - start) / len(batch) * 1e6)
    return statistics.median(seed), statistics.median(agui)


def resume_ms(events: list[Event]) -> float:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        stream = AguiStream(AguiTranslator(RUN, "thread"), Position(events[-2].seq or 0))
        for event in events[:-1]:
            stream.feed(event)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    print(f"(1) encoding cost per run event (median of {ROUNDS} rounds)")
    print(f"{'events':>8} {'seed frame us':>14} {'AG-UI SSE us':>13} {'ratio':>6}")
    for n in (100, 1000):
        seed, agui = per_event_us(run_events(n))
        print(f"{n:>8} {seed:>14.2f} {agui:>13.2f} {agui / seed:>6.1f}")
    print("(2) resume: translate the run again up to its end, before sending")
    print(f"{'events':>8} {'ms':>8}")
    for n in (100, 1000, 10_000):
        print(f"{n:>8} {resume_ms(run_events(n)):>8.1f}")


if __name__ == "__main__":
    main()
