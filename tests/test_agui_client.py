"""The real AG-UI client against the real agent.

``@ag-ui/client``'s ``HttpAgent`` (node, tests/js/agui_http_agent.mjs) asks a
question of the real app — retrieval engine on the sample corpus and the
CrewAI agent with the offline LLM — over ``POST /agui``, and gets the answer
and its citations; the same run's SSE events, read in Python, are all
``ag-ui-protocol`` models.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest

from agui_support import assert_valid, parse_sse, run_input, verify_streams
from legalstream.app import create_app
from legalstream.settings import Settings
from node_tools import run_node
from support import LiveServer

QUESTION = "What was the defendant's response?"


@pytest.fixture(scope="module")
def real_server():
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(rag={"data_dir": Path(tmp)}, runs={"resume_grace_seconds": 10.0})
        # Loading the engine and ingesting the sample corpus takes a while on a busy machine.
        srv = LiveServer(create_app(settings), settings).start(timeout=240)
        try:
            yield srv
        finally:
            srv.stop()


def test_http_agent_gets_the_answer_and_citations(real_server):
    code, out, log = run_node(
        "agui_http_agent.mjs", QUESTION, "1", env={"LEGALSTREAM_HTTP": real_server.http}
    )
    assert code == 0 and out, log
    assert out["invalid"] == [] and out["runError"] is None
    result = out["result"]
    assert result["answer"] and result["citations"]
    for citation in result["citations"]:
        assert citation["doc_id"].startswith("case-1/") and citation["quote"]
    # The answer streamed token by token became the agent's assistant message.
    answers = [m for m in out["newMessages"] if m["role"] == "assistant" and m.get("content")]
    assert answers[-1]["content"] == result["answer"]
    tools = [m for m in out["newMessages"] if m["role"] == "tool"]
    assert tools and "Passage [1]" in tools[0]["content"]
    retrieval = out["custom"]["legalstream.retrieval"][0]
    assert retrieval["case_id"] == 1 and retrieval["hits"]
    assert out["custom"]["legalstream.citations"][0]["citations"] == result["citations"]
    for kind in ("REASONING_MESSAGE_CONTENT", "TEXT_MESSAGE_CONTENT", "TOOL_CALL_RESULT"):
        assert kind in out["events"]


def test_real_agent_events_are_ag_ui_models_and_resume_mid_answer(real_server):
    response = httpx.post(f"{real_server.http}/agui", json=run_input(QUESTION), timeout=120)
    assert response.status_code == 200
    events = parse_sse(response.content)
    for _, event in events:
        assert_valid(event)
    assert events[-1][1]["type"] == "RUN_FINISHED"
    # A cut inside the streamed answer: the resumed stream re-opens the message.
    run_id = response.headers["x-run-id"]
    cut = next(i for i, (_, e) in enumerate(events) if e["type"] == "TEXT_MESSAGE_CONTENT") + 2
    resumed = parse_sse(
        httpx.get(
            f"{real_server.http}/agui/runs/{run_id}",
            headers={"Last-Event-ID": events[cut][0]},
            params={"threadId": "thread-1"},
            timeout=30,
        ).content
    )
    prelude = [e for eid, e in resumed if eid == events[cut][0]]
    assert "TEXT_MESSAGE_START" in [e["type"] for e in prelude]
    assert resumed[len(prelude) :] == events[cut + 1 :]
    verify_streams([[e for _, e in events], [e for _, e in resumed]])
