"""One run's event stream: the exact sequence, the fields, the hand-off thread."""

from __future__ import annotations

import threading

from agent_support import Recorder, assert_well_formed, request

from legalstream.events import EventType as E

QUESTION = "Under Section 4.3, within how many hours must the Warehouse notify the Customer of a Temperature Excursion?"


def _collapse(types: list[E]) -> list[E]:
    out: list[E] = []
    for t in types:
        if t == E.LLM_STREAM_CHUNK and out and out[-1] == E.LLM_STREAM_CHUNK:
            continue
        out.append(t)
    return out


def test_typical_run_sequence(runner):
    rec = Recorder()
    outcome = runner.run(request(QUESTION, 1), rec, threading.Event())
    assert _collapse(rec.types) == [
        E.AGENT_START,
        E.THINKING_START, E.LLM_START, E.LLM_STREAM_CHUNK, E.LLM_END, E.THINKING_END,
        E.AGENT_ACTION,
        E.TOOL_START, E.RAG_QUERY_START, E.RAG_QUERY_END, E.TOOL_END,
        E.AGENT_OBSERVATION,
        E.THINKING_START, E.LLM_START, E.LLM_STREAM_CHUNK, E.LLM_END, E.THINKING_END,
        E.AGENT_END,
    ]  # fmt: skip
    assert_well_formed(rec.events)
    assert "four (4) hours" in outcome.answer

    # fields
    start = rec.of(E.RAG_QUERY_START)[0]["input_data"]
    assert (
        start["case_id"] == 1 and start["k"] == 10 and "Section 4.3" in start["query"]
    )  # 2 x top_k offline
    hits = rec.of(E.RAG_QUERY_END)[0]["output_data"]["hits"]
    assert hits and all(h["case_id"] == 1 for h in hits)
    assert [h["marker"] for h in hits] == list(range(1, len(hits) + 1))
    action = rec.of(E.AGENT_ACTION)[0]
    assert action["input_data"] == rec.of(E.TOOL_START)[0]["input_data"]
    assert action["output_data"]["thought"]
    assert rec.of(E.TOOL_END)[0]["output_data"]["result"].startswith("Retrieved")
    assert rec.of(E.AGENT_OBSERVATION)[0]["output_data"]["observation"].startswith("Retrieved")
    for end in rec.of(E.LLM_END):
        assert end["metadata"]["model"] == "offline/extractive"
        assert end["metadata"]["usage"]["total_tokens"] > 0

    # the chunks of each LLM call add up to its response
    calls: dict[str, str] = {}
    for f in rec.of(E.LLM_STREAM_CHUNK):
        calls[f["metadata"]["call_id"]] = (
            calls.get(f["metadata"]["call_id"], "") + f["output_data"]["chunk"]
        )
    for end in rec.of(E.LLM_END):
        assert calls[end["metadata"]["call_id"]] == end["output_data"]["response"]
    assert rec.of(E.AGENT_END)[0]["output_data"]["output"] == outcome.answer


def test_events_are_emitted_inline_on_crewai_threads(runner):
    """The sink hands off on the emitting thread: never the event-bus pool."""
    threads: set[str] = set()
    rec = Recorder(on_event=lambda t, f: threads.add(threading.current_thread().name))
    runner.run(request(QUESTION, 1), rec, threading.Event())
    assert not any(name.startswith("CrewAISyncHandler") for name in threads), threads


def test_no_stream_option_emits_no_chunks(base_settings, engine):
    from legalstream.agent import build_runner

    settings = base_settings.model_copy(
        update={"llm_options": base_settings.llm_options.model_copy(update={"stream": False})}
    )
    rec = Recorder()
    build_runner(settings, engine).run(request(QUESTION, 1), rec, threading.Event())
    assert E.LLM_STREAM_CHUNK not in rec.types
    assert_well_formed(rec.events)


def test_question_with_braces_and_newlines(runner):
    rec = Recorder()
    out = runner.run(
        request("What is {the} monthly storage charge\nper pallet under Section 3.2?", 1),
        rec,
        threading.Event(),
    )
    assert "$24.50 per pallet per month" in out.answer
    assert_well_formed(rec.events)
