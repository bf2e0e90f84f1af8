"""20 concurrent runs on different cases and questions: complete, ordered, isolated."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

from agent_support import Recorder, assert_well_formed, request

from legalstream.events import EventType as E
from legalstream.settings import REPO_ROOT


def test_twenty_concurrent_runs_are_isolated(runner, engine):
    questions = [json.loads(line) for line in (REPO_ROOT / "data/eval/questions.jsonl").open()]
    c1 = [q for q in questions if q["case_id"] == 1][:10]
    c2 = [q for q in questions if q["case_id"] == 2][:10]
    chosen = [q for pair in zip(c1, c2, strict=True) for q in pair]
    assert len(chosen) == 20
    barrier = threading.Barrier(20)

    def one(i: int, q: dict) -> tuple[Recorder, object]:
        rec = Recorder()
        barrier.wait()
        out = runner.run(
            request(q["question"], q["case_id"], run_id=f"run-{i}"), rec, threading.Event()
        )
        return rec, out

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda a: one(*a), enumerate(chosen)))

    for q, (rec, out) in zip(chosen, results, strict=True):
        case_id, question = q["case_id"], q["question"]
        assert_well_formed(rec.events)
        assert rec.types[0] == E.AGENT_START and rec.types[-1] == E.AGENT_END
        assert rec.types.count(E.TOOL_START) == rec.types.count(E.TOOL_END) == 1
        # nothing of another run: this run's query, case and hits only
        assert rec.of(E.AGENT_START)[0]["input_data"] == {"query": question, "case_id": case_id}
        rag = rec.of(E.RAG_QUERY_START)[0]["input_data"]
        assert rag["case_id"] == case_id and rag["query"] == " ".join(question.split())
        for hit in rec.of(E.RAG_QUERY_END)[0]["output_data"]["hits"]:
            assert hit["case_id"] == case_id and hit["doc_id"].startswith(f"case-{case_id}/")
        assert rec.of(E.AGENT_END)[0]["output_data"]["output"] == out.answer
        for cit in out.citations:
            assert cit["case_id"] == case_id
            assert cit["quote"] in engine.source_text(cit["doc_id"])
        call_ids = {f["metadata"]["call_id"] for f in rec.of(E.LLM_START)}
        assert {f["metadata"]["call_id"] for f in rec.of(E.LLM_STREAM_CHUNK)} <= call_ids
    all_call_ids = [f["metadata"]["call_id"] for rec, _ in results for f in rec.of(E.LLM_START)]
    assert len(all_call_ids) == len(set(all_call_ids)) == 40
