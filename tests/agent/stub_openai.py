"""A local OpenAI-compatible chat-completions server for the provider-path tests.

Stateless and safe under concurrency: the behaviour is chosen by the request's
``model`` and by the conversation so far.

* ``stub-tools``: no tool result yet -> a tool call of ``rag_legal_retrieval_tool``
  with the user's question; after the tool result -> a final answer that
  quotes the first retrieved passage's first line, cited ``[1]``.
* ``stub-nocite``: like ``stub-tools`` but the answer has no ``[n]`` marker.
* ``stub-500``: HTTP 500 with an OpenAI error body.
* ``stub-slow``: sleeps ``SLOW_SECONDS`` before answering (client timeout test).
* ``stub-malformed``: HTTP 200 with a body that is not JSON (or, streaming,
  an SSE event that is not JSON).

Both plain JSON and SSE streaming (``"stream": true``) are served. Every
request is recorded in ``StubServer.requests``.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
import uuid
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

SLOW_SECONDS = 5.0
TOOL = "rag_legal_retrieval_tool"


def _question(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        match = re.search(r"^Question: (.*)$", str(content), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return "the question"


def _tool_result(messages: list[dict[str, Any]]) -> str | None:
    for m in reversed(messages):
        if m.get("role") == "tool":
            return str(m.get("content") or "")
    return None


def _first_passage_line(observation: str) -> str:
    for line in observation.splitlines():
        if line.startswith("> ") and len(line) > 12:
            return line[2:].strip()
    return "The record is silent."


def decide(model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"tool_call": {...}}`` or ``{"content": str}`` for a scripted model."""
    result = _tool_result(messages)
    if result is None:
        args = json.dumps({"query": _question(messages)})
        return {
            "tool_call": {"id": "call_" + uuid.uuid4().hex[:12], "name": TOOL, "arguments": args}
        }
    line = _first_passage_line(result)
    if model.endswith("nocite"):
        return {"content": f"According to the record: {line}"}
    return {"content": f"According to the record: {line} [1]"}


def _message(decision: dict[str, Any]) -> dict[str, Any]:
    if "tool_call" in decision:
        tc = decision["tool_call"]
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": tc["id"],
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": tc["arguments"]},
                }
            ],
        }
    return {"role": "assistant", "content": decision["content"]}


USAGE = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}


def _completion(model: str, decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": _message(decision),
                "finish_reason": "tool_calls" if "tool_call" in decision else "stop",
            }
        ],
        "usage": USAGE,
    }


def _sse_chunks(model: str, decision: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-" + uuid.uuid4().hex[:16], "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}  # fmt: skip

    def chunk(
        delta: dict[str, Any], finish: str | None = None, usage: Any = None
    ) -> dict[str, Any]:
        body = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage is not None:
            body["usage"] = usage
        return body

    out = [chunk({"role": "assistant", "content": ""})]
    if "tool_call" in decision:
        tc = decision["tool_call"]
        out.append(chunk({"tool_calls": [{"index": 0, "id": tc["id"], "type": "function",
                                          "function": {"name": tc["name"], "arguments": ""}}]}))  # fmt: skip
        args = tc["arguments"]
        for i in range(0, len(args), 12):
            out.append(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 12]}}]})
            )
        out.append(chunk({}, "tool_calls"))
    else:
        for word in re.findall(r"\S+\s*", decision["content"]):
            out.append(chunk({"content": word}))
        out.append(chunk({}, "stop"))
    out.append({**base, "choices": [], "usage": USAGE})
    return out


class StubServer:
    """The stub on a free port, served by uvicorn in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.port = _free_port()
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="stub-openai", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def count(self, model: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.get("model") == model)

    def start(self) -> StubServer:
        self._thread.start()
        deadline = time.time() + 10
        while not self._server.started:
            if time.time() > deadline:
                raise RuntimeError("stub server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
        model = str(body.get("model", ""))
        stream = bool(body.get("stream"))
        if model.endswith("500"):
            return JSONResponse(
                {"error": {"message": "stub internal error", "type": "server_error", "code": None}},
                status_code=500,
            )
        if model.endswith("slow"):
            await asyncio.sleep(SLOW_SECONDS)
        if model.endswith("malformed"):
            if stream:
                return StreamingResponse(
                    _aiter([b"data: {this is not json\n\n"]), media_type="text/event-stream"
                )
            return Response(b"{this is not json", media_type="application/json")
        decision = decide(model, body.get("messages", []))
        if not stream:
            return JSONResponse(_completion(model, decision))
        frames = [f"data: {json.dumps(c)}\n\n".encode() for c in _sse_chunks(model, decision)]
        frames.append(b"data: [DONE]\n\n")
        return StreamingResponse(_aiter(frames), media_type="text/event-stream")


async def _aiter(frames: list[bytes]) -> Any:
    for frame in frames:
        yield frame
        await asyncio.sleep(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
