"""A CrewAI event the listener cannot translate: the run goes on, a warning is logged, /metrics counts it."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

from legalstream.app import create_app
from legalstream.client import LegalStreamClient
from support import live_server

QUESTION = "What is the monthly storage charge per pallet under Section 3.2?"


class ShapeChangingEngine:
    """The real engine; each search also emits a CrewAI ``llm_stream_chunk`` without ``call_id``.

    That is what a CrewAI upgrade that renamed the field would hand the listener.
    The search runs inside the run's context, so the run's stream sink receives it.
    """

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def search(self, *args: Any, **kwargs: Any) -> Any:
        from crewai.events.event_bus import crewai_event_bus
        from crewai.events.types.llm_events import LLMStreamChunkEvent

        crewai_event_bus.emit(self, LLMStreamChunkEvent.model_construct(chunk="x"))
        return self._engine.search(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


async def test_untranslatable_event_is_logged_and_counted_on_metrics(base_settings, engine, caplog):
    from legalstream.agent import build_runner

    runner = build_runner(base_settings, ShapeChangingEngine(engine))
    app = create_app(base_settings, runner_factory=lambda svc: runner)
    # app.py binds the built runner's counters the same way.
    app.state.metrics.bind_agent_counters(runner.counters)
    caplog.set_level(logging.WARNING, logger="legalstream.agent.listener")
    with live_server(app, base_settings) as srv:
        async with httpx.AsyncClient(base_url=srv.http) as http:
            before = (await http.get("/metrics")).text
            assert "legalstream_agent_translation_errors_total{" not in before
            async with LegalStreamClient(srv.ws) as client:
                answer = await client.ask(QUESTION, case_id=1)
                assert "$24.50 per pallet per month" in answer.answer  # the run went on
                await client.ask(QUESTION, case_id=1)
            text = (await http.get("/metrics")).text

    counted = re.search(
        r'^legalstream_agent_translation_errors_total\{event_type="llm_stream_chunk"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert counted and float(counted.group(1)) == 2.0, text
    warnings = [
        r
        for r in caplog.records
        if r.name == "legalstream.agent.listener" and r.levelno == logging.WARNING
    ]
    # two failures, one warning: the second falls within the rate limit
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "'llm_stream_chunk'" in warnings[0].getMessage()
    assert warnings[0].exc_info and warnings[0].exc_info[0] is AttributeError


def test_the_warning_is_rate_limited_per_event_type(caplog):
    from legalstream.agent.listener import TranslationErrors

    now = [0.0]
    errors = TranslationErrors(log_every=60.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="legalstream.agent.listener")
    for t in (0.0, 1.0, 59.0, 61.0, 62.0):
        now[0] = t
        try:
            raise AttributeError("call_id")
        except AttributeError:
            errors.record("llm_stream_chunk")
    errors.record("tool_usage_finished")
    assert errors.counts() == {"llm_stream_chunk": 5, "tool_usage_finished": 1}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3, messages
    assert "(1 so far, 0 not logged)" in messages[0]
    assert "(4 so far, 2 not logged)" in messages[1]  # at 61 s: two suppressed since
    assert "'tool_usage_finished'" in messages[2]
