"""File bytes → clean, normalised source text (+ heading spans, page offsets, title).

One loader per format; each raises :class:`LoadError` with a reason a person can
act on ("no extractable text (scanned PDF?)"), which ingest reports per file.

The stored text is what a reader of the document sees, nothing else: DOCX and
HTML headings are plain lines whose spans are passed to the chunker as
metadata (no synthesised ``#`` markers); a Markdown file keeps its own ``#``
lines, which are its source. PDF running headers, footers, page numbers and
layout spacing are removed (:mod:`pdf_text`); HTML navigation, banners, footers
and asides are dropped. Library warnings about a file (pypdf's) are collected
into :attr:`Loaded.warnings` rather than printed.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from legalstream.rag.chunking import Heading, normalize_text
from legalstream.rag.pdf_text import clean_pages

SUPPORTED = {".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"}
#: Files larger than this are refused rather than read into memory.
MAX_BYTES = 200 * 1024 * 1024
#: Marks a heading line inside a loader's raw text until its span is recorded.
_H_OPEN, _H_MID, _H_CLOSE = "\x01", "\x02", "\x03"


class LoadError(Exception):
    """The file can't be ingested; the message says why."""


@dataclass(slots=True)
class Loaded:
    text: str
    title: str
    #: "pdf" | "docx" | "html" | "markdown" | "text"
    kind: str
    page_starts: list[int] | None = None
    #: Heading lines known from the format's structure (DOCX styles, HTML <h1>-<h6>).
    headings: list[Heading] = field(default_factory=list)
    #: What the parsing library said about this file (pypdf warnings), one line each.
    warnings: list[str] = field(default_factory=list)


def file_kind(name: str) -> str | None:
    """The loader a file name selects, or None when the type is not supported."""
    suffix = Path(name).suffix.lower()
    if suffix not in SUPPORTED:
        return None
    return {
        ".pdf": "pdf",
        ".docx": "docx",
        ".html": "html",
        ".htm": "html",
        ".md": "markdown",
        ".markdown": "markdown",
    }.get(suffix, "text")


def load_file(path: Path) -> Loaded:
    """Read and parse one file from disk (see :func:`load_bytes`)."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise LoadError(f"unsupported file type {suffix or '(none)'}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LoadError(f"unreadable: {exc.strerror or exc}") from exc
    if size == 0:
        raise LoadError("empty file")
    if size > MAX_BYTES:
        raise LoadError(f"file too large ({size} bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"unreadable: {exc.strerror or exc}") from exc
    return load_bytes(path.name, data)


def load_bytes(name: str, data: bytes) -> Loaded:
    """Parse a document from its file name (which selects the format) and bytes."""
    kind = file_kind(name)
    if kind is None:
        raise LoadError(f"unsupported file type {Path(name).suffix or '(none)'}")
    if not data:
        raise LoadError("empty file")
    if len(data) > MAX_BYTES:
        raise LoadError(f"file too large ({len(data)} bytes)")
    stem = Path(name).stem
    with _collect_library_warnings() as said:
        try:
            if kind == "pdf":
                loaded = _load_pdf(data, stem)
            elif kind == "docx":
                loaded = _load_docx(data, stem)
            elif kind == "html":
                loaded = _load_html(data, stem)
            else:
                loaded = _load_text(data, stem, kind)
        except LoadError:
            raise
        except Exception as exc:  # parsers raise anything on corrupt input
            detail = f": {said[0]}" if said and not str(exc) else f": {exc}"
            raise LoadError(f"corrupt or unparsable {kind.upper()}{detail}") from exc
    loaded.warnings.extend(said)
    if not loaded.text.strip():
        raise LoadError("no text content")
    return loaded


# library warnings --------------------------------------------------------------------
_collector = threading.local()


class _PerThreadCollector(logging.Handler):
    """Routes a parsing library's log records to the loading thread's list.

    Installed once on the library's logger; records logged while no load runs on
    the thread are dropped (only loaders use these libraries).
    """

    def emit(self, record: logging.LogRecord) -> None:
        sink = getattr(_collector, "sink", None)
        if sink is not None:
            sink.append(record.getMessage())


_handler = _PerThreadCollector(level=logging.WARNING)
for _name in ("pypdf",):
    _logger = logging.getLogger(_name)
    _logger.addHandler(_handler)
    # Not passed on to the root logger: a file's warnings belong in its ingest result.
    _logger.propagate = False


@contextmanager
def _collect_library_warnings() -> Iterator[list[str]]:
    sink: list[str] = []
    _collector.sink = sink
    try:
        yield sink
    finally:
        _collector.sink = None


# formats -----------------------------------------------------------------------------
def _default_title(stem: str) -> str:
    return re.sub(r"[-_]+", " ", stem).strip().title()


def _md_title(text: str) -> str | None:
    m = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _first_line_title(text: str) -> str | None:
    """A contract's first line is usually its title ("MUTUAL NON-DISCLOSURE AGREEMENT")."""
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if len(line) <= 100 and not line.endswith((".", ",", ";", ":")):
            return line
        return None
    return None


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError("binary data in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Legacy Windows exports are the usual non-UTF-8 legal text; cp1252 decodes them.
        return data.decode("cp1252", errors="replace")


def _load_text(data: bytes, stem: str, kind: str) -> Loaded:
    text = normalize_text(_decode(data))
    title = _md_title(text) if kind == "markdown" else None
    return Loaded(text, title or _first_line_title(text) or _default_title(stem), kind)


def _load_pdf(data: bytes, stem: str) -> Loaded:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception as exc:
            raise LoadError("encrypted PDF") from exc
    pages = clean_pages([normalize_text(page.extract_text() or "") for page in reader.pages])
    parts: list[str] = []
    page_starts: list[int] = []
    offset = 0
    for page_text in pages:
        # Pages are joined with one newline: a clause that runs over a page break
        # stays one paragraph; each page is normalised on its own, so offsets hold.
        page_starts.append(offset)
        parts.append(page_text)
        offset += len(page_text) + 1
    text = "\n".join(parts)
    if not text.strip():
        raise LoadError("no extractable text (scanned PDF? OCR is not supported)")
    meta_title = None
    try:
        meta_title = reader.metadata.title if reader.metadata else None
    except Exception:
        meta_title = None
    title = (meta_title or "").strip() or _first_line_title(text) or _default_title(stem)
    return Loaded(text, title, "pdf", page_starts)


def _heading_marker(level: int, text: str) -> str:
    return f"{_H_OPEN}{level}{_H_MID}{text}{_H_CLOSE}"


def _extract_headings(raw: str) -> tuple[str, list[Heading]]:
    """Normalise ``raw`` and turn its heading markers into spans of the clean text."""
    text = normalize_text(raw)
    out: list[str] = []
    headings: list[Heading] = []
    pos = 0
    length = 0
    for m in re.finditer(f"{_H_OPEN}(\\d){_H_MID}(.*?){_H_CLOSE}", text, re.DOTALL):
        out.append(text[pos : m.start()])
        length += m.start() - pos
        body = m.group(2)
        headings.append(Heading(length, length + len(body), int(m.group(1)), body))
        out.append(body)
        length += len(body)
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), headings


def _load_docx(data: bytes, stem: str) -> Loaded:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    from legalstream.rag.docx_numbering import Numbering

    document = docx.Document(io.BytesIO(data))
    numbering = Numbering(document)
    lines: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            txt = " ".join(para.text.split())
            if not txt:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            label = numbering.label(para)
            if label:
                txt = f"{label} {txt}"
            m = re.match(r"Heading (\d)", style)
            if style == "Title":
                lines.append(_heading_marker(1, txt))
            elif m:
                lines.append(_heading_marker(min(6, int(m.group(1)) + 1), txt))
            else:
                lines.append(txt)
        elif tag == "tbl":
            for row in Table(child, document).rows:
                cells = [" ".join(c.text.split()) for c in row.cells]
                if any(cells):
                    lines.append(" | ".join(cells))
    text, headings = _extract_headings("\n".join(lines))
    title = (document.core_properties.title or "").strip()
    first = next((h.text for h in headings if h.level == 1), None)
    return Loaded(
        text,
        title or first or _first_line_title(text) or _default_title(stem),
        "docx",
        headings=headings,
    )


_BLOCK_TAGS = [
    "p", "div", "li", "pre", "blockquote", "tr", "table", "section", "article",
    "br", "ol", "ul", "dd", "dt", "main",
]  # fmt: skip
#: Page furniture, not document content.
_BOILERPLATE_TAGS = ["script", "style", "noscript", "template", "nav", "header", "footer", "aside"]
_BOILERPLATE_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search"}


def _load_html(data: bytes, stem: str) -> Loaded:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(data), "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    for tag in soup(_BOILERPLATE_TAGS):
        tag.decompose()
    for tag in soup.find_all(attrs={"role": True}):
        if str(tag.get("role", "")).lower() in _BOILERPLATE_ROLES and not tag.decomposed:
            tag.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            text = " ".join(h.get_text(" ", strip=True).split())
            h.replace_with(f"\n\n{_heading_marker(level, text)}\n\n" if text else "")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    raw = soup.get_text()
    raw = re.sub(r"[ \t\u00a0]+", " ", raw)
    raw = "\n".join(line.strip() for line in raw.split("\n"))
    text, headings = _extract_headings(raw)
    first = next((h.text for h in headings if h.level == 1), None)
    return Loaded(
        text,
        title or first or _first_line_title(text) or _default_title(stem),
        "html",
        headings=headings,
    )
