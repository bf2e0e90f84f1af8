"""The provider path end to end against a local OpenAI-compatible stub server."""

from __future__ import annotations

import threading

import pytest
from agent_support import Recorder, assert_well_formed, request

from legalstream.agent.api import RunFailed
from legalstream.events import EventType as E

QUESTION = "What did Meridian admit about the compressor in Chamber 3B?"


def _runner(base_settings, engine, stub, model: str, stream: bool, timeout: float = 2.0):
    from legalstream.agent import build_runner

    settings = base_settings.model_copy(
        update={
            "llm": f"openai/{model}",
            "llm_options": base_settings.llm_options.model_copy(
                update={
                    "base_url": stub.base_url,
                    "api_key": "sk-stub",
                    "stream": stream,
                    "timeout": timeout,
                    "max_retries": 0,
                }
            ),
        }
    )
    return build_runner(settings, engine)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_then_cited_answer(base_settings, engine, stub, stream):
    before = stub.count("stub-tools")
    rec = Recorder()
    out = _runner(base_settings, engine, stub, "stub-tools", stream).run(
        request(QUESTION, 1), rec, threading.Event()
    )
    assert stub.count("stub-tools") - before == 2
    assert_well_formed(rec.events)
    types = rec.types
    assert types.index(E.AGENT_ACTION) < types.index(E.TOOL_START) < types.index(E.RAG_QUERY_START)
    assert types.count(E.LLM_START) == types.count(E.LLM_END) == 2
    assert (E.LLM_STREAM_CHUNK in types) is stream
    for end in rec.of(E.LLM_END):
        assert end["metadata"]["model"] == "stub-tools"
        assert end["metadata"]["usage"]["total_tokens"] == 150
    assert out.answer.endswith("[1]")
    assert [c["marker"] for c in out.citations] == [1]
    first_hit = rec.of(E.RAG_QUERY_END)[0]["output_data"]["hits"][0]
    assert out.citations[0]["chunk_id"] == first_hit["chunk_id"]


def test_uncited_answer_cites_retrieved_chunks(base_settings, engine, stub):
    rec = Recorder()
    out = _runner(base_settings, engine, stub, "stub-nocite", True).run(
        request(QUESTION, 1), rec, threading.Event()
    )
    hits = rec.of(E.RAG_QUERY_END)[0]["output_data"]["hits"]
    assert [c["chunk_id"] for c in out.citations] == [h["chunk_id"] for h in hits]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["stub-500", "stub-slow", "stub-malformed"])
def test_llm_failures(base_settings, engine, stub, model, stream):
    before = stub.count(model)
    rec = Recorder()
    runner = _runner(base_settings, engine, stub, model, stream, timeout=0.5)
    with pytest.raises(RunFailed) as info:
        runner.run(request(QUESTION, 1), rec, threading.Event())
    assert info.value.code == "llm_failed"
    assert stub.count(model) - before == 1  # no retries
    errors = rec.of(E.LLM_ERROR)
    assert len(errors) == 1 and errors[0]["error"]
    assert rec.types.index(E.LLM_START) < rec.types.index(E.LLM_ERROR)
    assert E.TOOL_START not in rec.types
    assert_well_formed(rec.events)
