"""The engine API the HTTP layer calls: cases, uploads with progress, documents."""

from pathlib import Path

import pytest

from legalstream.rag import IngestProgress, RetrievalEngine
from legalstream.rag.engine import UnknownCase, UnknownDocument
from legalstream.rag.store import KIND_CHUNK, ChunkPoint, chunk_point_id

from .conftest import AGREEMENT_2, COMPLAINT_1, write_docx


def test_cases_have_titles_and_can_be_created_checked_and_deleted(
    engine: RetrievalEngine,
) -> None:
    assert not engine.case_exists(3)
    with pytest.raises(UnknownCase):
        engine.case(3)
    info = engine.create_case(3, "Alder Row v. Quill Books")
    assert (info.case_id, info.title, info.documents) == (3, "Alder Row v. Quill Books", 0)
    assert engine.case_exists(3)
    engine.ingest_bytes("complaint.md", COMPLAINT_1.encode(), 3)
    engine.ingest_bytes("agreement.md", AGREEMENT_2.encode(), 4)  # a case with no record
    cases = {c.case_id: c for c in engine.cases()}
    assert cases[3].title == "Alder Row v. Quill Books" and cases[3].documents == 1
    assert cases[4].title is None and cases[4].documents == 1 and engine.case_exists(4)
    # Retitling keeps the documents and the creation time.
    again = engine.create_case(3, "Alder Row Properties v. Quill Books")
    assert again.title == "Alder Row Properties v. Quill Books"
    assert again.created_at == info.created_at and again.documents == 1
    assert engine.delete_case(3) > 0
    assert not engine.case_exists(3)
    assert [c.case_id for c in engine.cases()] == [4]


def test_upload_with_progress_then_list_get_and_delete(
    engine: RetrievalEngine, tmp_path: Path
) -> None:
    events: list[IngestProgress] = []
    data = write_docx(tmp_path / "declaration.docx").read_bytes()
    report = engine.ingest_bytes("declaration.docx", data, 6, on_progress=events.append)
    assert report.ok and report.files[0].doc_id == "case-6/declaration.docx"
    phases = [e.phase for e in events]
    assert phases[0] == "parsing" and phases[-1] == "done"
    assert phases.index("embedding") < phases.index("indexing") < phases.index("done")
    embedding = [e for e in events if e.phase == "embedding"]
    assert embedding[-1].chunks_done == embedding[-1].chunks_total == report.chunks
    assert embedding[-1].eta_seconds == 0.0
    assert (
        events[-1].status == "ingested" and events[-1].to_dict()["doc_id"] == report.files[0].doc_id
    )

    [doc] = engine.documents(6)
    assert doc.doc_id == "case-6/declaration.docx"
    assert doc.title == "Declaration of Sandra Whitlock"
    assert (doc.file_type, doc.size_bytes, doc.chunks) == ("docx", len(data), report.chunks)
    assert doc.ingested_at and doc.content_hash and doc.source_name == "declaration.docx"
    full = engine.document(6, doc.doc_id)
    assert full.info == doc and "Declared Value Form DV-7" in full.text
    hit = engine.search("Declared Value Form DV-7", 6, k=1)[0]
    assert full.text[hit.char_start : hit.char_end] == hit.quote

    # The same name again replaces the document; unchanged bytes are skipped.
    assert engine.ingest_bytes("declaration.docx", data, 6).files[0].status == "skipped"
    assert engine.delete_document(6, doc.doc_id) == report.chunks
    with pytest.raises(UnknownDocument):
        engine.document(6, doc.doc_id)


def test_a_failed_upload_reports_its_reason(engine: RetrievalEngine) -> None:
    events: list[IngestProgress] = []
    report = engine.ingest_bytes("scan.pdf", b"%PDF-1.4 garbage", 6, on_progress=events.append)
    assert not report.ok and "corrupt" in (report.failed[0].error or "")
    assert events[-1].phase == "failed" and events[-1].error == report.failed[0].error
    unsupported = engine.ingest_bytes("photo.png", b"\x89PNG", 6)
    assert "unsupported" in (unsupported.failed[0].error or "")
    with pytest.raises(ValueError):
        engine.ingest_bytes("../", b"x", 6)


def test_documents_stored_under_the_old_id_scheme_are_replaced(
    engine: RetrievalEngine, tmp_path: Path
) -> None:
    # A store written before ids carried the file extension: "case-4/memo".
    old_hash = "0" * 32
    engine.store.upsert_chunks(
        [
            ChunkPoint(
                id=chunk_point_id(4, "case-4/memo", old_hash, 0),
                dense=engine.embedder.query("the compressor failed"),
                sparse=engine.bm25.document("the compressor failed"),
                payload={
                    "kind": KIND_CHUNK,
                    "chunk_id": "case-4/memo#0",
                    "case_id": 4,
                    "doc_id": "case-4/memo",
                    "title": "Memo",
                    "char_start": 0,
                    "char_end": 21,
                    "text": "the compressor failed",
                    "content_hash": old_hash,
                },
            )
        ]
    )
    engine.store.upsert_document(
        4, "case-4/memo", {"title": "Memo", "content_hash": old_hash, "chunks": 1}
    )
    folder = tmp_path / "case-4"
    folder.mkdir()
    (folder / "memo.md").write_text("# Memo\n\n1. The compressor failed.\n", encoding="utf-8")
    report = engine.ingest_path(folder, 4)
    assert [f.status for f in report.files] == ["replaced"]
    assert "case-4/memo" in (report.files[0].note or "")
    assert [d.doc_id for d in engine.documents(4)] == ["case-4/memo.md"]
    assert engine.store.count_chunks(4, "case-4/memo") == 0
    assert engine.ingest_path(folder, 4).files[0].status == "skipped"
