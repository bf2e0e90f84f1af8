"""The CrewAI internals we rely on, telemetry off, and no network during a run."""

from __future__ import annotations

import os
import socket
import threading

from agent_support import Recorder, request


def test_crewai_version_is_pinned(runner):
    import crewai

    from legalstream.agent.crew import CREWAI_VERSION

    assert crewai.__version__ == CREWAI_VERSION


def test_stream_sink_is_inline_and_scoped(runner):
    """add_stream_sink: inline delivery on the emitting thread, only in its own context."""
    import contextvars

    from crewai.events.base_events import BaseEvent
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.stream_context import add_stream_sink, reset_stream_sinks

    class Probe(BaseEvent):
        type: str = "legalstream_probe"

    seen: list[tuple[str, str]] = []

    def scoped():
        token = add_stream_sink(
            lambda src, ev: seen.append((ev.type, threading.current_thread().name))
        )
        try:
            crewai_event_bus.emit(None, Probe())
        finally:
            reset_stream_sinks(token)

    contextvars.copy_context().run(scoped)
    crewai_event_bus.emit(None, Probe())  # outside the scope: not seen
    assert seen == [("legalstream_probe", threading.current_thread().name)]


def test_hook_api_exists(runner):
    from crewai.hooks import HookAborted
    from crewai.hooks.dispatch import InterceptionPoint, register_scoped, scoped_hooks

    assert issubclass(HookAborted, Exception)
    assert InterceptionPoint.PRE_MODEL_CALL and InterceptionPoint.PRE_TOOL_CALL
    with scoped_hooks():
        register_scoped(InterceptionPoint.PRE_MODEL_CALL, lambda ctx: None)


def test_telemetry_is_off_and_storage_is_ours(runner, agent_data):
    assert os.environ["CREWAI_DISABLE_TELEMETRY"] == "true"
    assert os.environ["CREWAI_TRACING_ENABLED"] == "false"
    assert os.environ["OTEL_SDK_DISABLED"] == "true"
    assert os.environ["CREWAI_STORAGE_DIR"] == str((agent_data / "crewai").resolve())
    from crewai.telemetry.telemetry import Telemetry

    assert Telemetry._is_telemetry_disabled()


def test_no_network_during_a_run(runner, monkeypatch):
    attempts: list[object] = []
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
            attempts.append(address)
            raise OSError("network disabled in test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    out = runner.run(
        request("What is the monthly storage charge per pallet under Section 3.2?", 1),
        Recorder(),
        threading.Event(),
    )
    assert out.answer
    assert attempts == []


def test_runs_keep_no_crewai_replay_store(runner):
    """Crews never open CrewAI's kickoff-outputs SQLite store (agent/lean.py)."""
    from pathlib import Path

    from crewai_core.paths import db_storage_path

    store = Path(db_storage_path()) / "latest_kickoff_task_outputs.db"
    existed = store.exists()
    mtime = store.stat().st_mtime_ns if existed else None
    out = runner.run(
        request("What is the Contract Price under the Equipment Supply Agreement?", 2),
        Recorder(),
        threading.Event(),
    )
    assert out.answer
    assert store.exists() == existed
    assert (store.stat().st_mtime_ns if existed else None) == mtime


def test_executor_state_class_is_built_once(runner):
    """CrewAI would build a pydantic class per agent executor; ours is built once."""
    import gc

    from crewai.agents.agent_executor import AgentExecutor, AgentExecutorState
    from crewai.flow.runtime import FlowState

    state_class = AgentExecutor._initial_state_t
    assert issubclass(state_class, FlowState) and issubclass(state_class, AgentExecutorState)

    def per_run_classes() -> int:
        return sum(c.__name__ == "StateWithId" for c in FlowState.__subclasses__())

    gc.disable()  # a collected per-run class would hide from the count
    try:
        before = per_run_classes()
        for _ in range(2):
            runner.run(
                request("What is the monthly storage charge per pallet?", 1),
                Recorder(),
                threading.Event(),
            )
        assert per_run_classes() == before
    finally:
        gc.enable()
