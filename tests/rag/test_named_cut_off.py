"""A question routed to the one document it names (of several) gets the stricter
score cut-off (``named_min_score_ratio``); other searches keep ``min_score_ratio``."""

from __future__ import annotations

from pathlib import Path

import pytest

from legalstream.rag.engine import RetrievalEngine
from legalstream.rag.store import QuerySpec


@pytest.fixture
def specs(
    engine: RetrievalEngine, two_cases: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> list[QuerySpec]:
    c1, c2 = two_cases
    assert engine.ingest_path(c1, 3).ok and engine.ingest_path(c2, 3).ok  # two documents
    assert engine.ingest_path(c1, 4).ok  # one document
    seen: list[QuerySpec] = []
    run = engine.run

    def recording(spec: QuerySpec):  # type: ignore[no-untyped-def]
        seen.append(spec)
        return run(spec)

    monkeypatch.setattr(engine, "run", recording)
    return seen


QUESTION = "What does the complaint allege about the compressor?"


def test_a_question_naming_one_of_several_documents_is_cut_off_harder(engine, specs):
    assert engine.named_min_score_ratio is not None and engine.min_score_ratio is not None
    assert engine.named_min_score_ratio > engine.min_score_ratio
    engine.search(QUESTION, 3)
    assert specs[-1].doc_ids is not None and len(specs[-1].doc_ids) == 1
    assert specs[-1].min_score_ratio == engine.named_min_score_ratio


def test_other_searches_keep_the_whole_case_cut_off(engine, specs):
    engine.search(QUESTION, 4)  # a one-document case: routing chose nothing
    assert specs[-1].min_score_ratio == engine.min_score_ratio
    engine.search("What happened next?", 3)  # names no document
    assert specs[-1].doc_ids is None
    assert specs[-1].min_score_ratio == engine.min_score_ratio
    engine.search(QUESTION, 3, cut_off=False)  # a reader that wants all k
    assert specs[-1].min_score_ratio is None
