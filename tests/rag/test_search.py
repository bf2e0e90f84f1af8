import threading
from pathlib import Path

import pytest

from legalstream.rag import RetrievalEngine
from legalstream.settings import RagSettings

from .conftest import COMPLAINT_1

# Each query's best match is in case 2; searched in case 1 it must still only see case 1.
CASE_2_QUERIES = [
    "cheese-aging refrigeration units warranty",
    "twenty-four months free of defects",
    "Seller's liability shall not exceed the purchase price",
    "thirty days to cure after written notice",
    "Section 9. Cure Period",
    "supply agreement warranties",
    "Buyer shall give written notice of breach",
    "7.2 Limitation of Liability purchase price",
    "cure period for the seller",
    "defects in the units",
]


@pytest.fixture
def loaded(engine: RetrievalEngine, two_cases: tuple[Path, Path]) -> RetrievalEngine:
    c1, c2 = two_cases
    assert engine.ingest_path(c1, 1).ok
    assert engine.ingest_path(c2, 2).ok
    return engine


@pytest.mark.parametrize("mode", ["hybrid", "dense", "bm25"])
def test_case_isolation(loaded: RetrievalEngine, mode: str) -> None:
    for q in CASE_2_QUERIES:
        assert loaded.search(q, 2, k=1, mode=mode)[0].case_id == 2
        hits = loaded.search(q, 1, k=10, mode=mode)
        assert all(h.case_id == 1 and h.doc_id.startswith("case-1/") for h in hits), q
    assert loaded.search("cheese", 99) == []  # unknown case: nothing, not everything


def test_modes(loaded: RetrievalEngine) -> None:
    # BM25 nails the exact figure; dense finds the paraphrase; hybrid gets both.
    assert "$1,284,600" in loaded.search("1,284,600", 1, k=1, mode="bm25")[0].quote
    para = "which temperature was the chamber supposed to stay at"
    assert "-10°F" in loaded.search(para, 1, k=1, mode="dense")[0].quote
    hybrid = loaded.search(para, 1, k=3, mode="hybrid")
    assert any("-10°F" in h.quote for h in hybrid)
    assert "$1,284,600" in loaded.search("1,284,600", 1, k=1, mode="hybrid")[0].quote
    scores = [h.score for h in hybrid]
    assert scores == sorted(scores, reverse=True)
    assert len(loaded.search("alarm", 1, k=2)) == 2
    assert loaded.search("   ", 1) == []
    with pytest.raises(ValueError):
        loaded.search("alarm", 1, mode="fuzzy")


def test_llamaindex_retriever(loaded: RetrievalEngine) -> None:
    nodes = loaded.retriever(2, k=2).retrieve("cure period after notice")
    assert nodes and nodes[0].node.metadata["case_id"] == 2
    assert "thirty (30) days" in nodes[0].node.get_content()


def test_delete_document_and_case(loaded: RetrievalEngine) -> None:
    before = {c.case_id: c.chunks for c in loaded.cases()}
    assert loaded.delete_document(2, "case-2/supply-agreement.md") == before[2]
    assert loaded.search("cheese warranty", 2) == []
    assert loaded.source_text("case-2/supply-agreement.md") is None
    assert loaded.delete_document(2, "case-2/supply-agreement.md") == 0
    # The case stays (with no documents) until it is deleted itself.
    assert [(c.case_id, c.documents) for c in loaded.cases()] == [(1, 1), (2, 0)]
    assert loaded.delete_case(2) == 0
    assert loaded.delete_case(1) == before[1]
    assert loaded.cases() == []


def test_concurrent_searches_and_ingest(loaded: RetrievalEngine, tmp_path: Path) -> None:
    errors: list[BaseException] = []
    extra = tmp_path / "case-1" / "extra.md"

    def searcher(i: int) -> None:
        try:
            for j in range(15):
                q = CASE_2_QUERIES[(i + j) % len(CASE_2_QUERIES)]
                mode = ("hybrid", "dense", "bm25")[j % 3]
                assert all(h.case_id == 1 for h in loaded.search(q, 1, mode=mode))
                assert loaded.search(q, 2, k=1, mode=mode)[0].case_id == 2
        except BaseException as exc:
            errors.append(exc)

    def writer() -> None:
        try:
            for n in range(5):
                extra.write_text(
                    f"# Extra\n\n{n}. The alarm log shows entry {n}.\n", encoding="utf-8"
                )
                assert loaded.ingest_path(extra, 1).ok
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(12)]
    threads.append(threading.Thread(target=writer))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert "entry 4" in loaded.search("alarm log entry", 1, k=1, mode="bm25")[0].quote


def test_persists_across_reopen(settings: RagSettings, two_cases: tuple[Path, Path]) -> None:
    with RetrievalEngine.from_settings(settings) as eng:
        eng.ingest_path(two_cases[0], 1)
    with RetrievalEngine.from_settings(settings) as eng:
        assert eng.cases()[0].documents == 1
        assert eng.ingest_path(two_cases[0], 1).skipped == 1
        assert eng.search("bypass", 1, k=1)[0].doc_id == "case-1/complaint.md"


@pytest.mark.parametrize("location", ["memory", "path"])
def test_qdrant_client_local_mode(
    tmp_path: Path, two_cases: tuple[Path, Path], location: str
) -> None:
    qpath = ":memory:" if location == "memory" else str(tmp_path / "qdrant")
    settings = RagSettings(data_dir=tmp_path, store="qdrant", qdrant_path=qpath, chunk_size=400)
    with RetrievalEngine.from_settings(settings) as eng:
        assert eng.ingest_path(two_cases[0], 1).ok
        assert eng.ingest_path(two_cases[1], 2).ok
        assert eng.ingest_path(two_cases[1], 2).skipped == 1
        for mode in ("hybrid", "dense", "bm25"):
            for q in CASE_2_QUERIES[:4]:
                assert all(h.case_id == 1 for h in eng.search(q, 1, mode=mode))
            hit = eng.search("thirty days to cure", 2, k=1, mode=mode)[0]
            assert hit.doc_id == "case-2/supply-agreement.md"
            src = eng.source_text(hit.doc_id) or ""
            assert src[hit.char_start : hit.char_end] == hit.quote
        assert {c.case_id: c.documents for c in eng.cases()} == {1: 1, 2: 1}
        assert eng.delete_case(2) > 0
        assert [c.case_id for c in eng.cases()] == [1]
        assert COMPLAINT_1.splitlines()[0] in (eng.source_text("case-1/complaint.md") or "")
