from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, live_server


@pytest.fixture
def tmp_settings(tmp_path: Path) -> Settings:
    return Settings(rag={"data_dir": tmp_path / "data", "ingest_sample_on_start": False})


@pytest.fixture
def scripted() -> ScriptedRunner:
    return ScriptedRunner(steps=2, delay=0.001)


@pytest.fixture
def server(tmp_settings: Settings, scripted: ScriptedRunner):
    """The real app on real uvicorn, with the scripted producer in place of CrewAI."""
    app = create_app(tmp_settings, runner_factory=lambda svc: scripted)
    with live_server(app, tmp_settings) as srv:
        yield srv


# A real Redis (127.0.0.1:6379 or one we start) with a key prefix per test.
from redis_fixture import redis_bus_settings, redis_prefix, redis_url  # noqa: E402, F401
