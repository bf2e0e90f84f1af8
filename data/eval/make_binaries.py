"""Regenerate the eval set's .docx and .pdf contracts from binary-sources/*.txt.

    .venv/bin/python data/eval/make_binaries.py          # writes data/eval/contracts/

The generated files are committed; this script is how they were made, so the set
can be rebuilt or extended. Source markup, one paragraph per line:

    # Title            Word "Title" style / bold centred PDF title
    ## Heading         Word "Heading 1" / bold PDF line
    @ item text        Word "List Number" (Word numbers it; the number is not in the text)
    anything else      a body paragraph ("(a) ..." lines are indented in the PDF)

PDFs get a running header and a "Page N of M" footer on every page, as contracts
exported from a document system do; the loaders are expected to strip them, so no
gold quote may come from them. Needs python-docx (a main dependency), fpdf2 (a dev
dependency) and the DejaVu fonts (Debian: fonts-dejavu-core) for the PDFs' Unicode text.
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "binary-sources"
OUT = HERE / "contracts"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
#: Fixed so that regenerating an unchanged source gives the same document metadata.
STAMP = dt.datetime(2025, 2, 1, 9, 0, tzinfo=dt.UTC)

#: stem -> (format, running header for PDFs)
DOCUMENTS: dict[str, tuple[str, str]] = {
    "harbor-corvid-mutual-nda": ("pdf", "CONFIDENTIAL — Harbor/Corvid Mutual NDA"),
    "cedar-hollow-industrial-lease": (
        "pdf",
        "Cedar Hollow Logistics Park — Building C — Lease (Pinecrest Home Goods Co.)",
    ),
    "alcott-third-ember-coffee-supply": (
        "pdf",
        "Alcott Highlands / Third Ember — Green Coffee Supply Agreement — EXECUTION VERSION",
    ),
    "quillfeather-marlowe-mutual-nda": ("docx", ""),
    "stonebridge-kestrel-msa": ("docx", ""),
    "cobaltwave-greaves-software-licence": ("docx", ""),
}


def parse(source: Path) -> list[tuple[str, str]]:
    """(kind, text) per non-empty line: kind is title, heading, item or body."""
    out: list[tuple[str, str]] = []
    for raw in source.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("## "):
            out.append(("heading", line[3:].strip()))
        elif line.startswith("# "):
            out.append(("title", line[2:].strip()))
        elif line.startswith("@ "):
            out.append(("item", line[2:].strip()))
        else:
            out.append(("body", line))
    return out


def make_docx(paras: list[tuple[str, str]], dest: Path) -> None:
    import docx

    document = docx.Document()
    title = next((t for k, t in paras if k == "title"), dest.stem)
    props = document.core_properties
    props.title = title
    props.author = "legalstream eval set"
    props.created = props.modified = STAMP.replace(tzinfo=None)
    for kind, text in paras:
        if kind == "title":
            document.add_paragraph(text, style="Title")
        elif kind == "heading":
            document.add_paragraph(text, style="Heading 1")
        elif kind == "item":
            document.add_paragraph(text, style="List Number")
        else:
            document.add_paragraph(text, style="Normal")
    document.save(str(dest))
    _fix_zip_times(dest)


def _fix_zip_times(path: Path) -> None:
    """Rewrite a .docx (a zip) with fixed entry times, so a rebuild is byte-identical."""
    import zipfile

    with zipfile.ZipFile(path) as src:
        entries = [(info.filename, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=STAMP.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            out.writestr(info, data)


def make_pdf(paras: list[tuple[str, str]], header: str, dest: Path) -> None:
    from fpdf import FPDF

    class ContractPDF(FPDF):
        def header(self) -> None:
            self.set_font("DejaVu", size=8)
            self.cell(0, 6, header, align="C", new_x="LMARGIN", new_y="NEXT")
            self.ln(3)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("DejaVu", size=8)
            self.cell(0, 6, f"Page {self.page_no()} of {{nb}}", align="C")

    pdf = ContractPDF(format="Letter")
    pdf.set_creation_date(STAMP)
    pdf.add_font("DejaVu", "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font("DejaVu", "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    title = next((t for k, t in paras if k == "title"), dest.stem)
    pdf.set_title(title)
    pdf.set_author("legalstream eval set")
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.set_margins(22, 16, 22)
    pdf.add_page()
    for kind, text in paras:
        if kind == "title":
            pdf.set_font("DejaVu", "B", 13)
            pdf.multi_cell(0, 7, text, align="C", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
            continue
        bold = kind == "heading" or (text.isupper() and len(text) < 80)
        pdf.set_font("DejaVu", "B" if bold else "", 10)
        indent = 8 if text.startswith("(") or kind == "item" else 0
        pdf.set_x(pdf.l_margin + indent)
        pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)
    pdf.output(str(dest))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for stem, (fmt, header) in DOCUMENTS.items():
        paras = parse(SOURCES / f"{stem}.txt")
        dest = args.out / f"{stem}.{fmt}"
        if fmt == "docx":
            make_docx(paras, dest)
        else:
            make_pdf(paras, header, dest)
        print(f"wrote {dest.relative_to(args.out.parent) if args.out == OUT else dest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
