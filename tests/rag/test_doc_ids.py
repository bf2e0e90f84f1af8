"""Document ids are unique per source file (issue 15, item 10)."""

from pathlib import Path

from legalstream.rag import RetrievalEngine

from .conftest import write_docx, write_pdf


def test_same_stem_different_extension_are_two_documents(
    engine: RetrievalEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "case-5"
    folder.mkdir()
    write_pdf(folder / "lease.pdf", ["Base Rent is four thousand dollars per month."])
    write_docx(folder / "lease.docx")
    report = engine.ingest_path(folder, 5)
    assert report.ok, report.failed
    ids = [f.doc_id for f in report.files]
    assert len(set(ids)) == 2, ids
    assert [f.status for f in report.files] == ["ingested", "ingested"]
    assert len(engine.documents(5)) == 2
    # Re-ingest: both unchanged, nothing embedded again.
    again = engine.ingest_path(folder, 5)
    assert [f.status for f in again.files] == ["skipped", "skipped"]
