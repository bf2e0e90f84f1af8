"""Offline answers on the sample corpus: correct, cited, quotes verbatim, same case."""

from __future__ import annotations

import json
import re
import threading

import pytest
from agent_support import Recorder, request

from legalstream.settings import REPO_ROOT

QUESTIONS = {q["id"]: q for q in map(json.loads, (REPO_ROOT / "data/eval/questions.jsonl").open())}
#: Questions whose gold passage the retrieval finds and the extractive backend answers.
CHOSEN = ["c1-q01", "c1-q03", "c1-q05", "c1-q14", "c1-q30", "c2-q03", "c2-q09", "c2-q23"]


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


@pytest.mark.parametrize("qid", CHOSEN)
def test_offline_answer_is_correct_and_cited(runner, engine, qid):
    q = QUESTIONS[qid]
    rec = Recorder()
    out = runner.run(request(q["question"], q["case_id"]), rec, threading.Event())
    for needle in q["answer_contains"]:
        assert _norm(needle) in _norm(out.answer), (needle, out.answer)
    # every statement ends with a marker, every marker is a citation of this run
    statements = re.split(r"(?<=\])\s+", out.answer.strip())
    assert all(re.search(r"\[\d+\]$", s) for s in statements), out.answer
    markers = {int(m) for m in re.findall(r"\[(\d+)\]", out.answer)}
    assert markers == {c["marker"] for c in out.citations}
    retrieved = {h["chunk_id"] for f in rec.of("rag_query_end") for h in f["output_data"]["hits"]}
    for cit in out.citations:
        assert cit["chunk_id"] in retrieved
        assert cit["case_id"] == q["case_id"]
        assert cit["title"] and cit["doc_id"]
        assert cit["section"] or cit["page"] is not None
        source = engine.source_text(cit["doc_id"])
        assert source[cit["char_start"] : cit["char_end"]] == cit["quote"]
    # the statements themselves are verbatim from their cited passage
    by_marker = {c["marker"]: c for c in out.citations}
    for statement in statements:
        text, marker = re.match(r"(.*) \[(\d+)\]$", statement).groups()
        assert _norm(text) in _norm(by_marker[int(marker)]["quote"])


def test_unanswerable_question_says_so(runner):
    out = runner.run(request("Zyzzyva quokka xylophone?", 1), Recorder(), threading.Event())
    assert "do not contain" in out.answer
    assert all(c["case_id"] == 1 for c in out.citations)


def test_retrieval_failure_is_reported(base_settings):
    from legalstream.agent import build_runner
    from legalstream.agent.api import RunFailed

    class Broken:
        def search(self, *a, **k):
            raise RuntimeError("store unavailable")

    rec = Recorder()
    with pytest.raises(RunFailed) as info:
        build_runner(base_settings, Broken()).run(request("What?", 1), rec, threading.Event())
    assert info.value.code == "retrieval_failed"
    end = rec.of("rag_query_end")[0]
    assert "store unavailable" in end["error"]
    assert rec.types.count("llm_start") == 1  # no LLM call after the failed retrieval
