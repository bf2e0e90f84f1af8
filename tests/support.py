"""Test helpers: a real uvicorn server on a free port, and a scripted producer.

``ScriptedRunner`` is a test producer for protocol tests: it publishes a fixed
shape of run events through the real run machinery (thread, bridge, bus,
session) so protocol behaviour can be tested fast and deterministically. The
real CrewAI agent is tested end to end in tests/agent and tests/test_e2e_*.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import uvicorn

from legalstream.agent.api import RunCancelled, RunFailed, RunOutcome, RunRequest
from legalstream.events import EventType
from legalstream.server.runner import uvicorn_config
from legalstream.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedRunner:
    """Emits a run-shaped sequence of events; ``steps`` tool rounds, ``delay`` between events."""

    def __init__(
        self,
        steps: int = 2,
        delay: float = 0.0,
        chunks: int = 5,
        fail: str | None = None,
        chunk_bytes: int = 0,
    ):
        self.steps = steps
        self.padding = "x" * chunk_bytes
        self.delay = delay
        self.chunks = chunks
        self.fail = fail
        self.active = 0
        self.calls_after_cancel = 0
        self._lock = threading.Lock()

    def _check(self, cancelled: threading.Event) -> None:
        if cancelled.is_set():
            raise RunCancelled

    def run(self, request: RunRequest, emit: Any, cancelled: threading.Event) -> RunOutcome:
        with self._lock:
            self.active += 1
        try:
            agent = "Legal Question Answering Agent"
            emit(EventType.AGENT_START, agent_name=agent)
            for i in range(self.steps):
                self._check(cancelled)
                emit(EventType.THINKING_START, metadata={"step": i})
                emit(EventType.LLM_START, metadata={"model": "scripted"})
                time.sleep(self.delay)
                emit(EventType.LLM_END, metadata={"model": "scripted"})
                emit(EventType.THINKING_END, metadata={"step": i})
                self._check(cancelled)
                emit(
                    EventType.AGENT_ACTION,
                    action="tool_usage",
                    tool_name="RAG Legal Retrieval Tool",
                )
                emit(
                    EventType.TOOL_START,
                    tool_name="RAG Legal Retrieval Tool",
                    input_data={"query": request.query},
                )
                emit(
                    EventType.RAG_QUERY_START,
                    input_data={"query": request.query, "case_id": request.case_id},
                )
                time.sleep(self.delay)
                emit(EventType.RAG_QUERY_END, output_data={"hits": []})
                emit(
                    EventType.TOOL_END,
                    tool_name="RAG Legal Retrieval Tool",
                    output_data={"hits": 0},
                )
                emit(EventType.AGENT_OBSERVATION, output_data={"observation": "..."})
            if self.fail:
                emit(EventType.LLM_ERROR, error=self.fail)
                raise RunFailed("llm_failed", self.fail)
            for c in range(self.chunks):
                self._check(cancelled)
                emit(EventType.LLM_STREAM_CHUNK, output_data={"chunk": f"part{c} {self.padding}"})
                time.sleep(self.delay)
            emit(EventType.AGENT_END, agent_name=agent)
            answer = f"Scripted answer to: {request.query}"
            return RunOutcome(
                answer=answer, citations=[{"doc_id": f"case-{request.case_id}/x", "quote": "q"}]
            )
        finally:
            with self._lock:
                self.active -= 1


class LiveServer:
    """uvicorn serving an app in a background thread, on a free port."""

    def __init__(self, app: Any, settings: Settings, **overrides: Any) -> None:
        self.port = free_port()
        self.settings = settings
        config = uvicorn_config(
            settings, app, host="127.0.0.1", port=self.port, log_level="warning", **overrides
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/query"

    def start(self, timeout: float = 60.0) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.contextmanager
def live_server(app: Any, settings: Settings, **overrides: Any) -> Iterator[LiveServer]:
    server = LiveServer(app, settings, **overrides).start()
    try:
        yield server
    finally:
        server.stop()


async def recv_json(ws: Any, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame; it must validate against docs/asyncapi.json's schema of its type."""
    import asyncio

    frame = orjson.loads(await asyncio.wait_for(ws.recv(), timeout))
    check_frame(frame)
    return frame


_FRAME_VALIDATORS: dict[str, Any] = {}


def check_frame(frame: dict[str, Any]) -> None:
    """``frame`` is one of the server frames the AsyncAPI document describes."""
    if not _FRAME_VALIDATORS:
        from jsonschema import Draft7Validator

        from legalstream.server.asyncapi import asyncapi_document

        messages = asyncapi_document()["components"]["messages"]
        for name, message in messages.items():
            if name.startswith("frame."):
                payload = message["payload"]
                _FRAME_VALIDATORS[payload["properties"]["type"]["const"]] = Draft7Validator(payload)
    validator = _FRAME_VALIDATORS.get(frame.get("type"))  # type: ignore[arg-type]
    assert validator is not None, f"frame type {frame.get('type')!r} is not in docs/asyncapi.json"
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(frame)
    ]
    assert not errors, (
        f"{frame.get('type')} frame breaks its AsyncAPI schema: {errors[:5]}\n{frame}"
    )


async def collect_run(ws: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Frames until (and including) the first final frame."""
    frames = []
    while True:
        frame = await recv_json(ws, timeout)
        frames.append(frame)
        if frame["type"] in ("agent_execution_complete", "agent_execution_error"):
            return frames
