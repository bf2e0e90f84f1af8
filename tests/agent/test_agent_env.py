"""CrewAI's environment (agent/env.py): telemetry off, storage ours, no network during a run."""

from __future__ import annotations

import os
import socket
import threading

from agent_support import Recorder, request

from legalstream.agent import env


def test_configure_switches_every_telemetry_variable_off(monkeypatch):
    for name in env.TELEMETRY_OFF:
        monkeypatch.setenv(name, "on")
    env.configure()
    assert {name: os.environ[name] for name in env.TELEMETRY_OFF} == {
        "CREWAI_DISABLE_TELEMETRY": "true",
        "CREWAI_DISABLE_TRACKING": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "OTEL_SDK_DISABLED": "true",
    }


def test_configure_with_telemetry_leaves_the_operators_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("CREWAI_DISABLE_TELEMETRY", "false")
    monkeypatch.setenv("CREWAI_STORAGE_DIR", "unchanged")
    env.configure(storage_dir=tmp_path / "crewai", telemetry=True)
    assert os.environ["CREWAI_DISABLE_TELEMETRY"] == "false"
    assert os.environ["CREWAI_STORAGE_DIR"] == str((tmp_path / "crewai").resolve())
    assert (tmp_path / "crewai").is_dir()


def test_telemetry_is_off_and_storage_is_ours(runner, agent_data):
    assert os.environ["CREWAI_DISABLE_TELEMETRY"] == "true"
    assert os.environ["CREWAI_DISABLE_TRACKING"] == "true"
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
