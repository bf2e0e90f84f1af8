from pathlib import Path

from legalstream.rag import RetrievalEngine

from .conftest import COMPLAINT_1, write_docx, write_html, write_pdf


def _check_spans(engine: RetrievalEngine, hits: list) -> None:
    for h in hits:
        src = engine.source_text(h.doc_id)
        assert src is not None
        assert src[h.char_start : h.char_end] == h.quote


def test_every_file_type(engine: RetrievalEngine, tmp_path: Path) -> None:
    folder = tmp_path / "case-7"
    folder.mkdir()
    (folder / "complaint.md").write_text(COMPLAINT_1, encoding="utf-8")
    (folder / "notes.txt").write_text(
        "Witness list: Daniel Okafor, Luis Ferreira.\n", encoding="utf-8"
    )
    write_pdf(
        folder / "log.pdf",
        ["Temperature log page one: minus eleven.", "Page two: the chamber reached 36 degrees."],
    )
    write_docx(folder / "declaration.docx")
    write_html(folder / "order.html")
    report = engine.ingest_path(folder, 7)
    assert report.ok, report.failed
    assert report.documents == 5
    docs = {d.doc_id: d for d in engine.documents(7)}
    assert set(docs) == {
        f"case-7/{n}"
        for n in ("complaint.md", "notes.txt", "log.pdf", "declaration.docx", "order.html")
    }
    assert docs["case-7/log.pdf"].pages == 2
    assert docs["case-7/declaration.docx"].title == "Declaration of Sandra Whitlock"

    pdf = engine.search("chamber reached 36 degrees", 7, k=1, mode="bm25")[0]
    assert pdf.doc_id == "case-7/log.pdf" and pdf.page == 2
    docx = engine.search("Declared Value Form DV-7", 7, k=1)[0]
    assert (
        docx.doc_id == "case-7/declaration.docx"
        and docx.section
        and "Declared Value" in docx.section
    )
    html = engine.search("when is the jury trial set", 7, k=1)[0]
    assert html.doc_id == "case-7/order.html" and "March 3, 2025" in html.quote
    assert "never indexed" not in (engine.source_text("case-7/order.html") or "")
    _check_spans(engine, [pdf, docx, html])


def test_bad_files_are_reported_and_skipped(engine: RetrievalEngine, tmp_path: Path) -> None:
    folder = tmp_path / "case-3"
    folder.mkdir()
    (folder / "good.md").write_text("# Good\n\n1. The alarm was in bypass.\n", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    (folder / "blank.md").write_text("\n\n   \n", encoding="utf-8")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    (folder / "corrupt.docx").write_bytes(b"PK\x03\x04 broken zip")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02\x03" * 100)
    (folder / "image.png").write_bytes(b"\x89PNG\r\n")
    (folder / "dangling.md").symlink_to(folder / "does-not-exist.md")
    report = engine.ingest_path(folder, 3)
    assert not report.ok
    assert report.documents == 1
    errors = {Path(f.path).name: f.error for f in report.failed}
    assert set(errors) == {
        "empty.txt",
        "blank.md",
        "corrupt.pdf",
        "corrupt.docx",
        "binary.txt",
        "image.png",
        "dangling.md",
    }
    assert errors["empty.txt"] == "empty file"
    assert "unsupported" in (errors["image.png"] or "")
    assert "corrupt" in (errors["corrupt.pdf"] or "")
    assert "unreadable" in (errors["dangling.md"] or "")
    assert engine.search("alarm bypass", 3)[0].doc_id == "case-3/good.md"


def test_reingest_skips_unchanged_and_replaces_changed(
    engine: RetrievalEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "case-4"
    folder.mkdir()
    doc = folder / "memo.md"
    doc.write_text("# Memo\n\n1. The compressor failed on Saturday.\n", encoding="utf-8")
    first = engine.ingest_path(folder, 4)
    assert [f.status for f in first.files] == ["ingested"]
    again = engine.ingest_path(folder, 4)
    assert [f.status for f in again.files] == ["skipped"] and again.chunks == 0
    doc.write_text("# Memo\n\n1. The evaporator fan failed on Sunday.\n", encoding="utf-8")
    changed = engine.ingest_path(folder, 4)
    assert [f.status for f in changed.files] == ["replaced"]
    assert engine.cases()[0].chunks == changed.chunks  # old chunks are gone
    hits = engine.search("compressor Saturday", 4, mode="bm25")
    assert all("compressor" not in h.quote for h in hits)
    assert "evaporator" in engine.search("evaporator fan", 4)[0].quote
    assert "evaporator" in (engine.source_text("case-4/memo.md") or "")


def test_chunk_metadata_and_spans(engine: RetrievalEngine, two_cases: tuple[Path, Path]) -> None:
    c1, _ = two_cases
    engine.ingest_path(c1 / "complaint.md", 1, title="Bluewater Complaint")
    hit = engine.search("gross negligence alarm bypass sixty-one hours", 1, k=1)[0]
    assert hit.case_id == 1
    assert hit.doc_id == "case-1/complaint.md"
    assert hit.title == "Bluewater Complaint"
    assert hit.section == "COUNT II — GROSS NEGLIGENCE · ¶ 16"
    assert hit.page is None
    assert hit.chunk_id.startswith("case-1/complaint.md#")
    d = hit.to_dict()
    assert set(d) == {
        "chunk_id",
        "doc_id",
        "title",
        "case_id",
        "page",
        "section",
        "char_start",
        "char_end",
        "quote",
        "score",
        "context",
        "labels",
    }
    assert d["context"][-1]["quote"] == "## COUNT II — GROSS NEGLIGENCE"
    _check_spans(engine, engine.search("breach damages", 1, k=10))


def test_missing_path(engine: RetrievalEngine, tmp_path: Path) -> None:
    report = engine.ingest_path(tmp_path / "nope", 1)
    assert not report.ok and report.failed[0].error == "no such file or folder"
