"""Fixtures of the agent tests: real CrewAI (imported once), real engine on a tmp dir."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from legalstream.settings import Settings


@pytest.fixture(scope="session")
def agent_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agent-data")


@pytest.fixture(scope="session")
def base_settings(agent_data: Path) -> Settings:
    return Settings(rag={"data_dir": agent_data, "ingest_sample_on_start": False}, llm="offline")


@pytest.fixture(scope="session")
def engine(base_settings: Settings) -> Any:
    from legalstream.rag.engine import RetrievalEngine, ensure_sample_corpus

    eng = RetrievalEngine.from_settings(base_settings.rag)
    ensure_sample_corpus(eng, base_settings.rag.sample_corpus)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def runner(base_settings: Settings, engine: Any) -> Any:
    """The offline runner; its construction imports crewai, once for the session."""
    from legalstream.agent import build_runner

    return build_runner(base_settings, engine)


@pytest.fixture(scope="session")
def stub() -> Any:
    from stub_openai import StubServer

    server = StubServer().start()
    yield server
    server.stop()
