"""A local OpenAI-compatible chat-completions server for the exact provider-path cases.

Stateless and safe under concurrency: the behaviour is chosen by the request's
``model`` (its name, after any ``openai/`` prefix) and by the conversation so far.
The run's first retrieval is made by the crew itself, so the first request a
model sees already holds the tool result.

Answers (after the tool result; ``<line>`` is the first retrieved passage's first line):

* ``stub-tools``: "According to the record: <line> [1]" (grounded).
* ``stub-nocite``: the same without a marker (uncited, every time).
* ``stub-invent``: an invented date cited to [1], every time (unsupported).
* ``stub-fixes``: invented at first; the corrective retry gets the grounded answer.
* ``stub-badmarker``: cites [9], a passage the run never retrieved.
* ``stub-length``: a cited answer with ``finish_reason: "length"`` (truncated).
* ``stub-json`` / ``stub-tag`` / ``stub-react`` / ``stub-native``: first ask for a
  second search (as a ```json block, a ``<tool_call>`` tag, ReAct ``Action:`` lines,
  or a native tool call), then answer like ``stub-tools``.

Failures:

* ``stub-500``: HTTP 500 with an OpenAI error body.
* ``stub-slow``: sleeps ``SLOW_SECONDS`` before the headers.
* ``stub-hang``: never answers (headers never come).
* ``stub-stall``: streams a few chunks, then nothing, forever.
* ``stub-trickle``: one chunk every ``TRICKLE_SECONDS``, forever.
* ``stub-malformed``: HTTP 200 with a body that is not JSON (or, streaming, an
  SSE event that is not JSON).

Plain JSON and SSE streaming (``"stream": true``) are served. Every request
is recorded in ``StubServer.requests``; for the endless ones the server also
records when it saw the client go (``StubServer.disconnects``).
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
TRICKLE_SECONDS = 0.5
TOOL = "rag_legal_retrieval_tool"
INVENTED = "The storage agreement was signed on March 14, 2022 [1]."


def _question(messages: list[dict[str, Any]]) -> str:
    for m in messages:
        content = m.get("content") or ""
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        match = re.search(r"^Question: (.*)$", str(content), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return "the question"


def _text(m: dict[str, Any]) -> str:
    content = m.get("content") or ""
    if isinstance(content, list):
        content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    """Tool results in the conversation: native tool messages, or ReAct observations."""
    out = [_text(m) for m in messages if m.get("role") == "tool"]
    out += [_text(m) for m in messages if m.get("role") == "user" and "Passage [" in _text(m)]
    return out


def _first_passage_line(observation: str) -> str:
    """The first sentence of the first passage (a passage is a whole clause or paragraph)."""
    for line in observation.splitlines():
        if line.startswith("> ") and len(line) > 12:
            text = line[2:].strip()
            # Up to the first full stop that ends a sentence (not a paragraph number's).
            match = re.search(r"(?<!^\d)(?<!^\d\d)\.\s+(?=[A-Z])", text)
            return text[: match.start() + 1] if match else text
    return "The record is silent."


def decide(model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"tool_call": {...}}``, ``{"content": str}`` (and ``finish``) for a scripted model."""
    results = _tool_results(messages)
    correcting = any("could not be verified" in _text(m) for m in messages)
    question = _question(messages)
    if not results:  # only without the crew's forced retrieval (never, today)
        return {"tool_call": _call({"query": question})}
    line = _first_passage_line(results[-1])
    answer = f"According to the record: {line} [1]"
    kind = model.removeprefix("stub-")
    if kind in ("json", "tag", "react", "native") and len(results) < 2:
        args = {"query": f"{question} (second search)"}
        if kind == "native":
            return {"tool_call": _call(args)}
        if kind == "json":
            body = json.dumps({"name": TOOL, "arguments": args})
            return {"content": f"I will search again.\n```json\n{body}\n```"}
        if kind == "tag":
            return {"content": f"<tool_call>{json.dumps({'name': TOOL, 'arguments': args})}"
                    "</tool_call>"}  # fmt: skip
        return {"content": f"Thought: one more search\nAction: {TOOL}\n"
                f"Action Input: {json.dumps(args)}"}  # fmt: skip
    if kind == "nocite":
        return {"content": f"According to the record: {line}"}
    if kind == "invent" or (kind == "fixes" and not correcting):
        return {"content": INVENTED}
    if kind == "badmarker":
        return {"content": f"According to the record: {line} [9]"}
    if kind == "length":
        return {"content": answer, "finish": "length"}
    return {"content": answer}


def _call(args: dict[str, Any]) -> dict[str, Any]:
    return {"id": "call_" + uuid.uuid4().hex[:12], "name": TOOL, "arguments": json.dumps(args)}


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


def _finish(decision: dict[str, Any]) -> str:
    return "tool_calls" if "tool_call" in decision else decision.get("finish", "stop")


def _completion(model: str, decision: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": _message(decision), "finish_reason": _finish(decision)}
        ],
        "usage": USAGE,
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _sse_chunks(model: str, decision: dict[str, Any]) -> list[dict[str, Any]]:
    out = [_chunk(model, {"role": "assistant", "content": ""})]
    if "tool_call" in decision:
        tc = decision["tool_call"]
        out.append(_chunk(model, {"tool_calls": [{"index": 0, "id": tc["id"], "type": "function",
                                                  "function": {"name": tc["name"], "arguments": ""}}]}))  # fmt: skip
        args = tc["arguments"]
        for i in range(0, len(args), 12):
            out.append(
                _chunk(
                    model,
                    {"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 12]}}]},
                )
            )
    else:
        for word in re.findall(r"\S+\s*", decision["content"]):
            out.append(_chunk(model, {"content": word}))
    out.append(_chunk(model, {}, _finish(decision)))
    out.append({**out[0], "choices": [], "usage": USAGE})
    return out


def _sse(frame: dict[str, Any] | str) -> bytes:
    return f"data: {frame if isinstance(frame, str) else json.dumps(frame)}\n\n".encode()


class StubServer:
    """The stub on a free port, served by uvicorn in a daemon thread."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        #: (model, monotonic time) when an endless request's client went away.
        self.disconnects: list[tuple[str, float]] = []
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

    def of(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if r.get("model") == model]

    def disconnected(self, model: str) -> list[float]:
        with self._lock:
            return [t for m, t in self.disconnects if m == model]

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

    async def _endless(self, model: str, request: Request, frames: Any) -> Any:
        """Yield ``frames`` (an async iterator) until the client goes; record when it did."""
        try:
            async for frame in frames:
                yield frame
        finally:
            with self._lock:
                self.disconnects.append((model, time.monotonic()))

    async def _watch_disconnect(self, model: str, request: Request) -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(0.02)
        with self._lock:
            self.disconnects.append((model, time.monotonic()))

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
        if model.endswith("hang"):
            await self._watch_disconnect(model, request)
            return Response(status_code=499)
        if model.endswith(("stall", "trickle")):
            return StreamingResponse(
                self._endless(model, request, _endless_frames(model)),
                media_type="text/event-stream",
            )
        if model.endswith("malformed"):
            if stream:
                return StreamingResponse(
                    _aiter([b"data: {this is not json\n\n"]), media_type="text/event-stream"
                )
            return Response(b"{this is not json", media_type="application/json")
        decision = decide(model, body.get("messages", []))
        if not stream:
            return JSONResponse(_completion(model, decision))
        frames = [_sse(c) for c in _sse_chunks(model, decision)]
        frames.append(_sse("[DONE]"))
        return StreamingResponse(_aiter(frames), media_type="text/event-stream")


async def _endless_frames(model: str) -> Any:
    yield _sse(_chunk(model, {"role": "assistant", "content": ""}))
    n = 0
    while True:
        if model.endswith("stall") and n >= 3:
            await asyncio.sleep(3600)
        n += 1
        yield _sse(_chunk(model, {"content": f"word{n} "}))
        await asyncio.sleep(TRICKLE_SECONDS)


async def _aiter(frames: list[bytes]) -> Any:
    for frame in frames:
        yield frame
        await asyncio.sleep(0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
