"""Clean source text: what a reader sees, no markup, no page furniture (issue 17)."""

import io
from pathlib import Path

import docx
import pytest

from legalstream.rag import RetrievalEngine
from legalstream.rag.loaders import LoadError, load_bytes, load_file

from .conftest import write_pdf

HEADER = "CONFIDENTIAL  —  Alder/Quill Lease"


def _lease_pdf(path: Path) -> Path:
    return write_pdf(
        path,
        [
            [
                HEADER,
                "COMMERCIAL LEASE",
                "3. Rent",
                "3.1  Base  Rent.  Tenant shall pay four thousand dollars per month.",
                "3.2 Rent is due on the first day of each month.",
                "Page 1 of 2",
            ],
            [
                HEADER,
                "4. Insurance",
                "4.1 Tenant shall insure the contents of the premises against fire.",
                "Page 2 of 2",
            ],
        ],
    )


def test_pdf_running_headers_page_numbers_and_spacing_are_removed(tmp_path: Path) -> None:
    loaded = load_file(_lease_pdf(tmp_path / "lease.pdf"))
    assert "CONFIDENTIAL" not in loaded.text
    assert "Page 1 of 2" not in loaded.text and "Page 2 of 2" not in loaded.text
    assert "3.1 Base Rent. Tenant shall pay" in loaded.text
    assert "  " not in loaded.text
    assert loaded.page_starts is not None and len(loaded.page_starts) == 2
    assert loaded.text[loaded.page_starts[1] :].startswith("4. Insurance")


def test_pdf_citations_carry_sections(engine: RetrievalEngine, tmp_path: Path) -> None:
    folder = tmp_path / "case-8"
    folder.mkdir()
    _lease_pdf(folder / "lease.pdf")
    assert engine.ingest_path(folder, 8).ok
    hit = engine.search("insure the contents against fire", 8, k=1)[0]
    assert hit.page == 2
    assert hit.section == "4. Insurance · Section 4.1"
    src = engine.source_text(hit.doc_id, 8) or ""
    assert src[hit.char_start : hit.char_end] == hit.quote
    for c in hit.context:
        assert src[c.char_start : c.char_end] == c.quote


def _docx_bytes() -> bytes:
    d = docx.Document()
    d.core_properties.title = "Supply Agreement"
    d.add_heading("Supply Agreement", level=0)
    d.add_heading("Payment", level=1)
    d.add_paragraph(
        "Buyer shall pay each invoice within thirty days of receipt.", style="List Number"
    )
    d.add_paragraph("Late amounts bear interest at one percent per month.", style="List Number")
    table = d.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "Price"
    table.rows[0].cells[1].text = "$12,000"
    d.add_heading("Delivery", level=1)
    d.add_paragraph("Seller delivers to the Buyer's dock in Duluth.")
    out = io.BytesIO()
    d.save(out)
    return out.getvalue()


def test_docx_headings_are_metadata_not_markup() -> None:
    loaded = load_bytes("supply.docx", _docx_bytes())
    assert "#" not in loaded.text
    assert loaded.text.splitlines()[:2] == ["Supply Agreement", "Payment"]
    # Word's automatic numbers are part of what the reader sees.
    assert "1. Buyer shall pay" in loaded.text and "2. Late amounts" in loaded.text
    # A table stays where it is in the document, not at the end.
    assert loaded.text.index("Price | $12,000") < loaded.text.index("Delivery")
    assert [(h.text, h.level) for h in loaded.headings] == [
        ("Supply Agreement", 1),
        ("Payment", 2),
        ("Delivery", 2),
    ]
    for h in loaded.headings:
        assert loaded.text[h.start : h.end] == h.text


def test_html_page_furniture_is_dropped() -> None:
    page = (
        "<html><head><title>Order</title></head><body>"
        "<header>Clerk's Office Portal</header><nav><a href='/'>Home</a> | Filings</nav>"
        "<div role='navigation'>Skip to results</div>"
        "<main><h1>Order on Motion</h1><h2>V. CONCLUSION</h2>"
        "<p>The motion is <b>denied</b>.</p></main>"
        "<aside>Related cases</aside><footer>© County Court</footer></body></html>"
    )
    loaded = load_bytes("order.html", page.encode())
    for junk in ("Portal", "Home", "Skip to results", "Related cases", "County Court", "#"):
        assert junk not in loaded.text
    lines = [line for line in loaded.text.splitlines() if line]
    assert lines == ["Order on Motion", "V. CONCLUSION", "The motion is denied."]
    assert [h.text for h in loaded.headings] == ["Order on Motion", "V. CONCLUSION"]


def test_markdown_keeps_its_own_headings() -> None:
    loaded = load_bytes("memo.md", b"# Memo\n\n## Facts\n\nThe alarm was in bypass.\n")
    assert loaded.text.startswith("# Memo") and loaded.title == "Memo"


def test_pdf_warnings_go_into_the_result(
    engine: RetrievalEngine, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "case-9"
    folder.mkdir()
    (folder / "fake.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n")
    (folder / "good.md").write_text("# Good\n\nThe alarm was in bypass.\n", encoding="utf-8")
    # Readable, but pypdf has to repair its cross-reference table and says so.
    bent = write_pdf(tmp_path / "bent.pdf", ["The compressor tripped at 6:40 p.m."]).read_bytes()
    (folder / "bent.pdf").write_bytes(bent.replace(b"startxref\n", b"startxref\n9"))
    report = engine.ingest_path(folder, 9)
    fake = next(f for f in report.files if f.path.endswith("fake.pdf"))
    assert fake.status == "failed" and fake.error
    repaired = next(f for f in report.files if f.path.endswith("bent.pdf"))
    assert repaired.status == "ingested"
    assert any("startxref" in w for w in repaired.warnings)
    assert any("startxref" in w for w in engine.documents(9)[0].warnings)
    out, err = capfd.readouterr()
    assert "startxref" not in err and "startxref" not in out
    with pytest.raises(LoadError):
        load_bytes("fake.pdf", b"%PDF-1.4 nothing")
