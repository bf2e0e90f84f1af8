"""Real engine on a temp dir; small documents of every supported type made on the fly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from legalstream.rag import RetrievalEngine
from legalstream.settings import RagSettings

COMPLAINT_1 = """# Complaint

## NATURE OF THE ACTION

1. This action arises from the destruction of frozen seafood stored in a refrigerated warehouse in Kent, Washington.

2. The compressor serving freezer Chamber 3B failed over a weekend and the remote alarm had been left in bypass mode.

## COUNT I — BREACH OF CONTRACT

14. Meridian breached Section 4.1 of the Agreement by failing to keep the chamber at or below -10°F.

15. Bluewater suffered damages of $1,284,600 as a direct result of the breach.

## COUNT II — GROSS NEGLIGENCE

16. Leaving the alarm in bypass for sixty-one hours was an extreme departure from ordinary care.
"""

AGREEMENT_2 = """# Supply Agreement

## Section 7. Warranties

7.1 Seller warrants that the cheese-aging refrigeration units will be free of defects for twenty-four months.

7.2 Limitation of Liability. Seller's liability shall not exceed the purchase price of the units.

## Section 9. Cure Period

9.1 Buyer shall give written notice of breach, and Seller shall have thirty (30) days to cure.
"""


def write_pdf(path: Path, pages: list[str] | list[list[str]]) -> Path:
    """A minimal valid PDF (Helvetica), written by hand: one text line per page, or
    a list of lines per page (each line as written, double spaces included)."""
    objs: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content_id = 4 + 2 * i
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R"
            f" /Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        lines = [text] if isinstance(text, str) else text
        shown = " T* ".join(
            "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj"
            for ln in lines
        )
        stream = f"BT /F1 11 Tf 14 TL 50 740 Td {shown} ET".encode()
        objs.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objs, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def write_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.core_properties.title = "Declaration of Sandra Whitlock"
    d.add_heading("Declaration of Sandra Whitlock", level=0)
    d.add_heading("Declared Value", level=1)
    d.add_paragraph(
        "3. On January 9, 2023 I sent Declared Value Form DV-7 declaring $7.25 per pound."
    )
    d.add_paragraph("4. Meridian accepted the form in writing on January 17, 2023.")
    d.save(str(path))
    return path


def write_html(path: Path) -> Path:
    path.write_text(
        "<html><head><title>Order on Motion</title><style>p{color:red}</style></head><body>"
        "<h1>Order on Motion</h1><h2>V. CONCLUSION</h2>"
        "<p>The motion is <b>denied</b>. Jury trial is set for <i>March 3, 2025</i>.</p>"
        "<script>var x = 'never indexed';</script></body></html>",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def settings(tmp_path: Path) -> RagSettings:
    return RagSettings(data_dir=tmp_path / "data", chunk_size=400, chunk_overlap=60)


@pytest.fixture
def engine(settings: RagSettings) -> Iterator[RetrievalEngine]:
    eng = RetrievalEngine.from_settings(settings)
    yield eng
    eng.close()


@pytest.fixture
def two_cases(tmp_path: Path) -> tuple[Path, Path]:
    c1 = tmp_path / "case-1"
    c2 = tmp_path / "case-2"
    c1.mkdir()
    c2.mkdir()
    (c1 / "complaint.md").write_text(COMPLAINT_1, encoding="utf-8")
    (c2 / "supply-agreement.md").write_text(AGREEMENT_2, encoding="utf-8")
    return c1, c2
