"""The eval sets: their shape, and every gold quote resolving once after a real ingest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from legalstream.rag import RetrievalEngine
from legalstream.rag.evalset import (
    EvalSet,
    find_quote,
    load_contract_set,
    load_sample_set,
    resolve,
)
from legalstream.settings import REPO_ROOT, RagSettings

EVAL = REPO_ROOT / "data" / "eval"


@pytest.fixture(scope="module")
def contracts() -> EvalSet:
    return load_contract_set(EVAL / "contracts", EVAL / "contract_questions.jsonl")


@pytest.fixture(scope="module")
def sample() -> EvalSet:
    return load_sample_set(REPO_ROOT / "data" / "sample", EVAL / "questions.jsonl")


@pytest.fixture(scope="module")
def ingested(
    tmp_path_factory: pytest.TempPathFactory, contracts: EvalSet, sample: EvalSet
) -> Iterator[RetrievalEngine]:
    """Both sets ingested as the eval's whole-case setting does (Qdrant Edge on a temp dir).

    Large chunks: the source text does not depend on chunking, and MiniLM's cost is per
    chunk (its window is 256 tokens), so this keeps the ingest to a few seconds.
    """
    data = tmp_path_factory.mktemp("evalset")
    engine = RetrievalEngine.from_settings(
        RagSettings(data_dir=data, chunk_size=20_000, chunk_overlap=0)
    )
    try:
        for evalset in (contracts, sample):
            report = evalset.ingest(engine, within_doc=False)
            assert report.ok, report.failed
        yield engine
    finally:
        engine.close()


def test_contract_set_shape(contracts: EvalSet) -> None:
    files = [p for p, _ in contracts.documents.values()]
    assert len(files) >= 25
    suffixes = Counter(p.suffix for p in files)
    assert suffixes[".docx"] >= 3 and suffixes[".pdf"] >= 3 and suffixes[".md"] >= 1
    qs = contracts.questions
    assert len(qs) >= 120
    assert len({q.id for q in qs}) == len(qs)
    assert sum(q.names_document for q in qs) * 2 >= len(qs)
    assert sum(not q.names_document for q in qs) >= 40
    kinds = Counter(q.kind for q in qs)
    for kind in ("definition", "lead-in item", "terminology-variant"):
        assert kinds[kind] >= 5, kind
    # Every contract is asked about.
    assert {q.doc_id for q in qs} == set(contracts.documents)


def test_sample_set_keeps_its_fields(sample: EvalSet) -> None:
    assert len(sample.questions) == 59
    assert all(q.gold_section and q.quotes for q in sample.questions)


@pytest.mark.parametrize("which", ["contracts", "sample"])
def test_every_gold_quote_resolves_exactly_once(
    ingested: RetrievalEngine, which: str, request: pytest.FixtureRequest
) -> None:
    evalset: EvalSet = request.getfixturevalue(which)
    res = resolve(evalset, evalset.source_texts(ingested, within_doc=False))
    assert res.problems == []
    assert sum(len(v) for v in res.spans.values()) == sum(len(q.quotes) for q in evalset.questions)
    texts = evalset.source_texts(ingested, within_doc=False)
    for q in evalset.questions[:40]:
        for span in res.spans[q.id]:
            got = texts[span.doc_id][span.start : span.end]  # type: ignore[index]
            assert " ".join(got.split()) == " ".join(q.quotes[res.spans[q.id].index(span)].split())


def test_find_quote_exact_whitespace_blind_ambiguous_missing() -> None:
    text = "1.1 The Term is two (2) years.\n1.2 The Term\nmay  renew. The Term is two (2) years."
    assert find_quote(text, "1.1 The Term is two (2) years.") == [(0, 30)]
    # A quote typed on one line matches text that wraps and double-spaces.
    [(start, end)] = find_quote(text, "The Term may renew.")
    assert text[start:end] == "The Term\nmay  renew."
    assert len(find_quote(text, "The Term is two (2) years.")) == 2
    assert find_quote(text, "three years") == []
    assert find_quote(text, "   ") == []


def test_contract_sources_of_binaries_are_kept() -> None:
    """The .docx/.pdf contracts are generated from binary-sources/ by make_binaries.py."""
    sources = {p.stem for p in (EVAL / "binary-sources").glob("*.txt")}
    binaries = {p.stem for p in (EVAL / "contracts").iterdir() if p.suffix in (".pdf", ".docx")}
    assert sources == binaries
    assert (EVAL / "make_binaries.py").is_file()
    assert not list(Path(EVAL / "contracts").glob("*.py"))


def test_make_binaries_rebuilds_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_binaries", EVAL / "make_binaries.py")
    assert spec and spec.loader
    make_binaries = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_binaries)
    if not (make_binaries.FONT_DIR / "DejaVuSans.ttf").exists():
        # The PDFs need Debian's fonts-dejavu-core; the .docx files are still compared.
        make_binaries.DOCUMENTS = {
            k: v for k, v in make_binaries.DOCUMENTS.items() if v[0] == "docx"
        }
    assert make_binaries.main(["--out", str(tmp_path)]) == 0
    built = sorted(tmp_path.iterdir())
    assert built
    for path in built:
        assert path.read_bytes() == (EVAL / "contracts" / path.name).read_bytes(), path.name
