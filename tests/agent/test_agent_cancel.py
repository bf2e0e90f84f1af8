"""Cooperative cancellation: no LLM or tool call starts after the flag; RunCancelled."""

from __future__ import annotations

import threading
import time

import pytest
from agent_support import Recorder, request

from legalstream.agent.api import RunCancelled
from legalstream.events import EventType as E

QUESTION = "What is the monthly storage charge per pallet under Section 3.2?"


class CountingEngine:
    def __init__(self, engine):
        self.engine = engine
        self.calls = 0

    def search(self, *args, **kwargs):
        self.calls += 1
        return self.engine.search(*args, **kwargs)

    def source_text(self, doc_id):
        return self.engine.source_text(doc_id)


def _run_in_thread(runner, rec, cancelled):
    box: dict = {}

    def target():
        try:
            box["outcome"] = runner.run(request(QUESTION, 1), rec, cancelled)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


@pytest.mark.parametrize("trigger", [E.TOOL_START, E.AGENT_OBSERVATION, E.LLM_STREAM_CHUNK])
def test_cancel_mid_run(base_settings, engine, trigger):
    from legalstream.agent import build_runner

    counting = CountingEngine(engine)
    runner = build_runner(base_settings, counting)
    cancelled = threading.Event()
    after: list[E] = []

    def on_event(type_, fields):
        if cancelled.is_set():
            after.append(type_)
        elif type_ == trigger:
            cancelled.set()

    rec = Recorder(on_event=on_event)
    thread, box = _run_in_thread(runner, rec, cancelled)
    thread.join(timeout=10)
    assert not thread.is_alive(), "run thread did not end"
    assert isinstance(box.get("error"), RunCancelled), box
    assert after == []  # nothing forwarded once cancelled
    assert rec.types.count(E.LLM_START) <= 1  # the second LLM call never started
    if trigger == E.TOOL_START:
        # the tool had already started; the engine ran once at most, no second LLM call
        assert counting.calls <= 1
    if trigger == E.LLM_STREAM_CHUNK:
        assert counting.calls == 0  # cancelled in the first LLM call: the tool never ran


def test_cancel_stops_llm_calls_and_tools(base_settings, engine, monkeypatch):
    """Count real LLM.call and tool invocations after the flag is set."""
    from legalstream.agent import build_runner
    from legalstream.agent.offline_llm import OfflineExtractiveLLM

    calls: list[tuple[str, bool]] = []
    cancelled = threading.Event()
    original = OfflineExtractiveLLM._respond

    def spy(self, messages):
        calls.append(("llm", cancelled.is_set()))
        return original(self, messages)

    monkeypatch.setattr(OfflineExtractiveLLM, "_respond", spy)
    counting = CountingEngine(engine)
    runner = build_runner(base_settings, counting)
    rec = Recorder(on_event=lambda t, f: cancelled.set() if t == E.RAG_QUERY_END else None)
    started = time.perf_counter()
    with pytest.raises(RunCancelled):
        runner.run(request(QUESTION, 1), rec, cancelled)
    assert time.perf_counter() - started < 5
    assert calls == [("llm", False)]
    assert counting.calls == 1


def test_cancelled_before_start(runner):
    cancelled = threading.Event()
    cancelled.set()
    rec = Recorder()
    with pytest.raises(RunCancelled):
        runner.run(request(QUESTION, 1), rec, cancelled)
    assert rec.events == []
