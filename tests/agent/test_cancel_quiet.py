"""A cancelled run is a normal event: nothing at warning or above, no CrewAI warnings printed.

CrewAI reports a run that legalstream stopped (its ``HookAborted`` unwinding the
agent) with ``Error executing listener call_llm_and_parse: run cancelled`` at
ERROR and ``[CrewAIEventsBus] Warning: Event pairing mismatch`` on the console;
crewai_ext (section 7) drops exactly those while the run's stop reason is set.
"""

from __future__ import annotations

import logging
import threading

from agent_support import Recorder, request

from legalstream.agent import crewai_ext
from legalstream.agent.api import RunCancelled
from legalstream.events import EventType as E

NOISE = ("Error executing listener", "Event pairing mismatch", "CrewAIEventsBus")


def test_a_cancelled_run_logs_nothing_at_warning_or_above(base_settings, engine, caplog, capfd):
    from legalstream.agent import build_runner

    runner = build_runner(base_settings, engine)
    cancelled = threading.Event()

    def on_event(type_, fields):
        if type_ == E.LLM_STREAM_CHUNK:
            cancelled.set()  # mid-answer, as a client's cancel arrives

    box: dict = {}

    def target():
        try:
            runner.run(request("Who signed the storage agreement?", 1), rec, cancelled)
        except BaseException as exc:
            box["error"] = exc

    rec = Recorder(on_event=on_event)
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG):
        thread = threading.Thread(target=target)
        thread.start()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), RunCancelled), box
    loud = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in caplog.records]
    loud = [line for line in loud if " WARNING:" in line or " ERROR:" in line or "CRITICAL" in line]
    assert not loud, loud
    printed = capfd.readouterr()
    for noise in NOISE:
        assert noise not in printed.out + printed.err, printed


def test_unpaired_events_still_warn_while_a_run_goes_on(capfd):
    from crewai.events import event_context

    with crewai_ext._quiet_once_stopped(lambda: None):
        event_context.handle_mismatch("task_failed", "agent_execution_started", "task_started")
    assert "Event pairing mismatch" in capfd.readouterr().out
    with crewai_ext._quiet_once_stopped(lambda: "run cancelled"):
        event_context.handle_mismatch("task_failed", "agent_execution_started", "task_started")
    assert "Event pairing mismatch" not in capfd.readouterr().out


def test_listener_errors_still_log_while_a_run_goes_on(caplog):
    log = logging.getLogger(crewai_ext.LISTENER_LOGGER)
    with caplog.at_level(logging.ERROR, logger=crewai_ext.LISTENER_LOGGER):
        with crewai_ext._quiet_once_stopped(lambda: None):
            log.error("Error executing listener call_llm_and_parse: boom")
        with crewai_ext._quiet_once_stopped(lambda: "run cancelled"):
            log.error("Error executing listener call_llm_and_parse: run cancelled")
    assert [r.getMessage() for r in caplog.records] == [
        "Error executing listener call_llm_and_parse: boom"
    ]


def test_what_the_quieting_relies_on_in_crewai():
    """crewai_ext section 7 reads these CrewAI internals; an upgrade that moves them fails here."""
    import inspect

    from crewai.events import event_context
    from crewai.flow import runtime

    assert isinstance(
        event_context._event_context_config.get(None), event_context.EventContextConfig | None
    )
    assert event_context.MismatchBehavior.SILENT
    for name in ("max_stack_depth", "mismatch_behavior", "empty_pop_behavior"):
        assert hasattr(event_context.EventContextConfig(), name), (
            f"EventContextConfig.{name} is gone"
        )
    for func in (event_context.handle_mismatch, event_context.handle_empty_pop):
        assert "_event_context_config.get()" in inspect.getsource(func), func.__name__
    assert runtime.logger.name == crewai_ext.LISTENER_LOGGER
    assert 'logger.error(f"Error executing listener {listener_name}: {e}")' in inspect.getsource(
        runtime
    ), "crewai.flow.runtime no longer logs failed listeners as crewai_ext expects"
