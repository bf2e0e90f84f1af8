"""The provider path end to end against a local OpenAI-compatible stub server.

Retrieval always comes first (the crew makes the call; the model's first request
already holds the passages), tool calls written as text are executed, every answer
is checked and an ungrounded one gets one corrective retry, and every failure of
the server gives exactly one ``llm_error`` and ``llm_failed``.
"""

from __future__ import annotations

import threading

import pytest
from agent_support import Recorder, assert_well_formed, request

from legalstream.agent.api import RunFailed
from legalstream.events import EventType as E

QUESTION = "What did Meridian admit about the compressor in Chamber 3B?"


def provider_runner(
    base_settings, engine, stub, model: str, stream: bool = True, timeout: float = 5.0, **opts
):
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
                    **opts,
                }
            ),
        }
    )
    return build_runner(settings, engine)


def _run(base_settings, engine, stub, model, stream=True, **kw):
    rec = Recorder()
    before = stub.count(model)
    out = provider_runner(base_settings, engine, stub, model, stream, **kw).run(
        request(QUESTION, 1), rec, threading.Event()
    )
    return out, rec, stub.count(model) - before


@pytest.mark.parametrize("stream", [False, True])
def test_retrieval_comes_first_then_a_grounded_answer(base_settings, engine, stub, stream):
    out, rec, requests = _run(base_settings, engine, stub, "stub-tools", stream)
    assert requests == 1  # the retrieval needed no model call
    first = stub.of("stub-tools")[-1]["messages"]
    assert any(m.get("role") == "tool" and "Passage [1]" in str(m.get("content")) for m in first)
    assert_well_formed(rec.events)
    types = rec.types
    # the crew's own retrieval: an action, then the tool and retrieval events, before any LLM call
    assert types.index(E.AGENT_ACTION) < types.index(E.TOOL_START) < types.index(E.RAG_QUERY_START)
    assert types.index(E.AGENT_OBSERVATION) < types.index(E.LLM_START)
    assert rec.of(E.AGENT_ACTION)[0]["output_data"]["forced"] is True
    assert rec.of(E.TOOL_START)[0]["input_data"] == {"query": QUESTION}
    assert types.count(E.LLM_START) == types.count(E.LLM_END) == 1
    assert (E.LLM_STREAM_CHUNK in types) is stream
    end = rec.of(E.LLM_END)[0]
    assert end["metadata"]["model"] == "stub-tools"
    assert end["metadata"]["usage"]["total_tokens"] == 150
    assert out.answer.endswith("[1]")
    assert out.grounding["grounded"] is True and out.failure_code is None
    assert [c["marker"] for c in out.citations] == [1]
    first_hit = rec.of(E.RAG_QUERY_END)[0]["output_data"]["hits"][0]
    cit = out.citations[0]
    assert cit["chunk_id"] == first_hit["chunk_id"]
    assert cit["quote"] in out.answer and cit["passage"] == first_hit["quote"]
    source = engine.source_text(cit["doc_id"])
    assert source[cit["char_start"] : cit["char_end"]] == cit["quote"]


@pytest.mark.parametrize("model", ["stub-json", "stub-tag", "stub-react", "stub-native"])
def test_tool_calls_written_as_text_are_executed(base_settings, engine, stub, model):
    out, rec, requests = _run(base_settings, engine, stub, model)
    assert requests == 2
    searches = [f["input_data"]["query"] for f in rec.of(E.RAG_QUERY_START)]
    assert searches == [QUESTION, f"{QUESTION} (second search)"]
    assert_well_formed(rec.events)
    assert out.grounding["grounded"] is True, out.grounding
    assert "```" not in out.answer and "tool_call" not in out.answer


def test_uncited_answer_is_retried_once_then_reported_ungrounded(base_settings, engine, stub):
    out, rec, requests = _run(base_settings, engine, stub, "stub-nocite")
    assert requests == 2  # the answer and one corrective retry
    assert out.failure_code == "ungrounded_answer"
    assert out.grounding["grounded"] is False and out.grounding["retried"] is True
    assert {p["kind"] for p in out.grounding["problems"]} == {"uncited", "no_citation"}
    assert out.citations == []
    retry = stub.of("stub-nocite")[-1]["messages"]
    assert any("could not be verified" in str(m.get("content")) for m in retry)
    checks = [f for f in rec.of(E.AGENT_OBSERVATION) if f.get("action") == "grounding_check"]
    assert len(checks) == 1 and checks[0]["output_data"]["grounding"]["grounded"] is False
    assert len(rec.of(E.RAG_QUERY_START)) == 1  # the retry reads the passages it was given
    assert_well_formed(rec.events)


def test_invented_fact_is_unsupported(base_settings, engine, stub):
    out, _rec, requests = _run(base_settings, engine, stub, "stub-invent")
    assert requests == 2
    assert out.failure_code == "ungrounded_answer"
    assert [p["kind"] for p in out.grounding["problems"]][:1] == ["unsupported"]
    assert out.answer == "The storage agreement was signed on March 14, 2022 [1]."


def test_corrective_retry_can_fix_an_answer(base_settings, engine, stub):
    out, _rec, requests = _run(base_settings, engine, stub, "stub-fixes")
    assert requests == 2
    assert out.failure_code is None and out.grounding["retried"] is True
    assert out.answer.startswith("According to the record:")


def test_marker_of_a_passage_never_retrieved(base_settings, engine, stub):
    out, _rec, _requests = _run(base_settings, engine, stub, "stub-badmarker")
    assert out.failure_code == "ungrounded_answer"
    assert any(
        p["kind"] == "unknown_marker" and p["marker"] == 9 for p in out.grounding["problems"]
    )
    assert out.metadata["unknown_markers"] == [9]


@pytest.mark.parametrize("stream", [False, True])
def test_truncated_answer_is_flagged(base_settings, engine, stub, stream):
    out, rec, requests = _run(base_settings, engine, stub, "stub-length", stream)
    assert requests == 2
    assert out.failure_code == "truncated_answer"
    assert out.grounding["finish_reason"] == "length"
    assert rec.of(E.LLM_END)[-1]["metadata"]["finish_reason"] == "length"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["stub-500", "stub-slow", "stub-malformed"])
def test_llm_failures(base_settings, engine, stub, model, stream):
    before = stub.count(model)
    rec = Recorder()
    runner = provider_runner(base_settings, engine, stub, model, stream, timeout=0.5)
    with pytest.raises(RunFailed) as info:
        runner.run(request(QUESTION, 1), rec, threading.Event())
    assert info.value.code == "llm_failed"
    assert stub.count(model) - before == 1  # no retries
    errors = rec.of(E.LLM_ERROR)
    assert len(errors) == 1 and errors[0]["error"]
    assert rec.types.index(E.LLM_START) < rec.types.index(E.LLM_ERROR)
    assert rec.types.count(E.TOOL_START) == 1  # the crew's retrieval, before the model
    assert_well_formed(rec.events)


def test_base_url_without_an_api_key(base_settings, engine, stub, monkeypatch):
    """Issue 16: LEGALSTREAM_LLM=openai/<model> plus a base_url failed with
    "OPENAI_API_KEY is required" on every query."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    out, _rec, requests = _run(base_settings, engine, stub, "stub-tools", api_key=None)
    assert requests == 1 and out.failure_code is None


def test_a_provider_that_needs_a_key_and_has_none_is_a_config_problem(
    base_settings, engine, monkeypatch
):
    from legalstream.agent import build_runner

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = base_settings.model_copy(update={"llm": "openai/gpt-4o-mini"})
    problem = build_runner(settings, engine).problem()
    assert problem and "API key" in problem and "base_url" in problem
    assert build_runner(base_settings, engine).problem() is None
