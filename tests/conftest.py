from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# CrewAI's environment, from the module that owns it, before anything imports crewai:
# telemetry off, and its storage (importing crewai creates it) in a temp dir.
_CREWAI_STORAGE = tempfile.mkdtemp(prefix="legalstream-tests-crewai-")
atexit.register(shutil.rmtree, _CREWAI_STORAGE, ignore_errors=True)
from legalstream.agent import env as crewai_env  # noqa: E402

crewai_env.configure(storage_dir=_CREWAI_STORAGE)

from legalstream.app import create_app  # noqa: E402
from legalstream.settings import Settings  # noqa: E402
from support import ScriptedRunner, live_server  # noqa: E402


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
