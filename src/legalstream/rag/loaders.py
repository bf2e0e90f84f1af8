"""File → normalised text (+ page offsets, title) as a LlamaIndex Document.

One loader per format; each raises :class:`LoadError` with a reason a person can
act on ("no extractable text (scanned PDF?)"), which ingest reports per file.
Markdown-style ``#`` headings are synthesised from DOCX heading styles and HTML
``<h1>``–``<h6>`` so one chunker handles every format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from llama_index.core.schema import Document

from legalstream.rag.chunking import normalize_text

SUPPORTED = {".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm"}
#: Files larger than this are refused rather than read into memory.
MAX_BYTES = 200 * 1024 * 1024


class LoadError(Exception):
    """The file can't be ingested; the message says why."""


@dataclass(slots=True)
class Loaded:
    text: str
    title: str
    page_starts: list[int] | None = None

    def to_document(self, **metadata: object) -> Document:
        meta = {"title": self.title, **metadata}
        if self.page_starts:
            meta["page_starts"] = self.page_starts
        return Document(text=self.text, metadata=meta)


def load_file(path: Path) -> Loaded:
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
        if suffix == ".pdf":
            loaded = _load_pdf(path)
        elif suffix == ".docx":
            loaded = _load_docx(path)
        elif suffix in (".html", ".htm"):
            loaded = _load_html(path)
        else:
            loaded = _load_text(path)
    except LoadError:
        raise
    except OSError as exc:
        raise LoadError(f"unreadable: {exc.strerror or exc}") from exc
    except Exception as exc:  # parsers raise anything on corrupt input
        raise LoadError(f"corrupt or unparsable {suffix[1:].upper()}: {exc}") from exc
    if not loaded.text.strip():
        raise LoadError("no text content")
    return loaded


def _default_title(path: Path) -> str:
    return re.sub(r"[-_]+", " ", path.stem).strip().title()


def _md_title(text: str) -> str | None:
    m = re.search(r"^#\s+(.+)$", text, re.MULTILINE)
    return m.group(1).strip() if m else None


def _decode(data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError("binary data in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Legacy Windows exports are the usual non-UTF-8 legal text; cp1252 decodes them.
        return data.decode("cp1252", errors="replace")


def _load_text(path: Path) -> Loaded:
    text = normalize_text(_decode(path.read_bytes()))
    return Loaded(text, _md_title(text) or _default_title(path))


def _load_pdf(path: Path) -> Loaded:
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception as exc:
            raise LoadError("encrypted PDF") from exc
    parts: list[str] = []
    page_starts: list[int] = []
    offset = 0
    for page in reader.pages:
        # Each page is normalised on its own so page offsets survive normalisation.
        page_text = normalize_text(page.extract_text() or "")
        page_starts.append(offset)
        parts.append(page_text)
        offset += len(page_text) + 2
    text = "\n\n".join(parts)
    if not text.strip():
        raise LoadError("no extractable text (scanned PDF? OCR is not supported)")
    meta_title = None
    try:
        meta_title = reader.metadata.title if reader.metadata else None
    except Exception:
        meta_title = None
    return Loaded(text, (meta_title or "").strip() or _default_title(path), page_starts)


def _load_docx(path: Path) -> Loaded:
    import docx

    document = docx.Document(str(path))
    lines: list[str] = []
    for para in document.paragraphs:
        txt = para.text.strip()
        if not txt:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        m = re.match(r"Heading (\d)", style)
        if style == "Title":
            lines.append(f"# {txt}")
        elif m:
            lines.append(f"{'#' * min(6, int(m.group(1)) + 1)} {txt}")
        else:
            lines.append(txt)
    for table in document.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells]
            if any(cells):
                lines.append(" | ".join(cells))
    text = normalize_text("\n\n".join(lines))
    title = (document.core_properties.title or "").strip()
    return Loaded(text, title or _md_title(text) or _default_title(path))


_BLOCK_TAGS = [
    "p", "div", "li", "pre", "blockquote", "tr", "table", "section", "article",
    "br", "ol", "ul", "dd", "dt", "header", "footer",
]  # fmt: skip


def _load_html(path: Path) -> Loaded:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(_decode(path.read_bytes()), "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if soup.title:
        soup.title.decompose()
    for level in range(1, 7):
        for h in soup.find_all(f"h{level}"):
            h.replace_with(f"\n\n{'#' * level} {h.get_text(' ', strip=True)}\n\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    raw = soup.get_text()
    raw = re.sub(r"[ \t\u00a0]+", " ", raw)
    raw = "\n".join(line.strip() for line in raw.split("\n"))
    text = normalize_text(raw)
    return Loaded(text, title or _md_title(text) or _default_title(path))
