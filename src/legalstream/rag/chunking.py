"""Chunking that follows legal structure.

Blocks are the paragraphs of the normalised source text (split on blank lines).
Each block is classified: a heading (Markdown ``#``, an ALL-CAPS caption line,
"COUNT I", "ARTICLE IV", "Section 7."), a numbered paragraph ("12." → ``¶ 12``),
a numbered subsection ("7.2 …" → ``Section 7.2``) or plain text. Chunks never
straddle a heading, whole sections are kept in one chunk when they fit, and a
section that doesn't fit is packed paragraph by paragraph with a tail of the
previous chunk repeated as overlap. Only a paragraph longer than a chunk is cut,
at sentence boundaries.

Every chunk is a contiguous span of the source text, so a citation's quote is
always ``source_text[char_start:char_end]``.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.node_parser import NodeParser
from llama_index.core.schema import BaseNode, TextNode

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_NUMBERED_PARA = re.compile(r"^(?:¶\s*)?(\d{1,4})\.(?!\d)\s+\S")
_SUBSECTION = re.compile(r"^(?:Section\s+|§\s*)?(\d{1,3}(?:\.\d{1,3})+)\.?\s+\S", re.IGNORECASE)
_KEYWORD_HEADING = re.compile(
    r"^(?:COUNT|ARTICLE|PART|CHAPTER|SCHEDULE|EXHIBIT|Section)\s+[\dIVXLC]+[.:]?(?:\s|$)",
)
_PAGE_HEADING = re.compile(r"^Page\s+(\d+)$", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=\S)")
_BLANK = re.compile(r"\n[ \t]*\n")


def normalize_text(text: str) -> str:
    """The one canonical form every span refers to.

    NFC, ``\\n`` line ends, no trailing spaces, no runs of more than one blank
    line, no leading/trailing blank lines. Applied before chunking and stored as
    the document's source text.
    """
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\x00", "").replace("\u00a0", " ").replace("\f", "\n\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip("\n")


@dataclass(slots=True)
class Block:
    start: int
    end: int
    kind: str  # "heading" | "para" | "text"
    level: int = 0  # heading level (1 = document title)
    label: str | None = None  # "¶ 12" / "Section 7.2" for paras; heading text for headings


@dataclass(slots=True)
class Chunk:
    index: int
    char_start: int
    char_end: int
    text: str
    #: Display label, most specific first: "COUNT I — BREACH OF CONTRACT · ¶ 94–96".
    section: str | None
    #: Deepest heading above the chunk (context for embedding and display).
    heading: str | None
    #: Every label the chunk covers (headings and paragraph labels), for matching.
    labels: list[str] = field(default_factory=list)
    page: int | None = None


def _is_caps_heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    if len(letters) < 4 or len(line) > 120 or line.endswith((",", ";")):
        return False
    return sum(c.isupper() for c in letters) / len(letters) > 0.9


def _split_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    pos = 0
    for m in [*_BLANK.finditer(text), None]:
        end = m.start() if m else len(text)
        seg_start = pos
        pos = m.end() if m else len(text)
        # A Markdown heading line directly followed by text (no blank line) is its own block.
        line_start = seg_start
        while line_start < end:
            nl = text.find("\n", line_start, end)
            line_end = end if nl == -1 else nl
            line = text[line_start:line_end].strip()
            if line_start > seg_start and _MD_HEADING.match(line):
                blocks.append(_classify(text, seg_start, line_start - 1))
                seg_start = line_start
            elif line_start == seg_start and _MD_HEADING.match(line) and line_end < end:
                blocks.append(_classify(text, seg_start, line_end))
                seg_start = line_end + 1
            line_start = line_end + 1
        if text[seg_start:end].strip():
            blocks.append(_classify(text, seg_start, end))
    return [b for b in blocks if b.end > b.start]


def _classify(text: str, start: int, end: int) -> Block:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    body = text[start:end]
    first = body.split("\n", 1)[0].strip()
    single_line = "\n" not in body
    if m := _MD_HEADING.match(first):
        return Block(start, end, "heading", len(m.group(1)), m.group(2).strip())
    if single_line and (m := _PAGE_HEADING.match(first)):
        return Block(start, end, "heading", 6, f"Page {m.group(1)}")
    # Headings found by shape rank below Markdown ones: inside a Markdown file an
    # ALL-CAPS line is a sub-heading; in a PDF they are the only headings anyway.
    if single_line and len(first) <= 120 and _KEYWORD_HEADING.match(first):
        return Block(start, end, "heading", 7, first)
    if m := _SUBSECTION.match(first):
        return Block(start, end, "para", label=f"Section {m.group(1)}")
    if m := _NUMBERED_PARA.match(first):
        return Block(start, end, "para", label=f"¶ {m.group(1)}")
    if single_line and _is_caps_heading(first):
        return Block(start, end, "heading", 8, first)
    return Block(start, end, "text")


def _range_label(labels: list[str]) -> str | None:
    if not labels:
        return None
    if len(labels) == 1:
        return labels[0]
    first, last = labels[0], labels[-1]
    kind, _, a = first.partition(" ")
    kind2, _, b = last.partition(" ")
    if kind == kind2:
        return f"{kind} {a}–{b}"
    return f"{first}–{last}"


def _sentence_cuts(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Split an oversize span into pieces of at most ``size`` at sentence ends."""
    bounds = [start] + [start + m.end() for m in _SENTENCE_END.finditer(text[start:end])] + [end]
    pieces: list[tuple[int, int]] = []
    cur = start
    last_ok = start
    for b in bounds[1:]:
        if b - cur > size and last_ok > cur:
            pieces.append((cur, last_ok))
            cur = last_ok
        while b - cur > size:  # one sentence longer than a chunk: cut at whitespace
            cut = text.rfind(" ", cur + size // 2, cur + size)
            cut = cut if cut > cur else cur + size
            pieces.append((cur, cut))
            cur = cut
            while cur < end and text[cur].isspace():
                cur += 1
        last_ok = b
    if cur < end:
        pieces.append((cur, end))
    return [(s, _rstrip(text, s, e)) for s, e in pieces if text[s:e].strip()]


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def _overlap_start(text: str, start: int, end: int, overlap: int) -> int:
    """Start of a sentence-aligned tail of ``text[start:end]`` no longer than ``overlap``."""
    if overlap <= 0 or end <= start:
        return end
    # Never the whole previous chunk: the overlap is a tail, starting after its first character.
    lo = max(start + 1, end - overlap)
    m = _SENTENCE_END.search(text, lo, end)
    return m.end() if m and m.end() < end else end


def chunk_text(
    text: str,
    *,
    chunk_size: int = 1200,
    chunk_overlap: int = 150,
    page_starts: Sequence[int] | None = None,
) -> list[Chunk]:
    """Chunk normalised ``text``; ``page_starts[i]`` is the offset where page i+1 begins."""
    blocks = _split_blocks(text)
    heads: dict[int, str] = {}  # level -> heading text; the current heading path
    groups: list[tuple[dict[int, str], list[Block]]] = []  # blocks under one heading
    current: list[Block] = []
    pending_heads: list[Block] = []
    cur_page = 0
    for b in blocks:
        if page_starts:
            # A PDF page break ends a chunk, so every citation has one page.
            page = bisect.bisect_right(page_starts, b.start)
            if page != cur_page and current:
                groups.append((dict(heads), current))
                current = []
            cur_page = page
        if b.kind == "heading":
            if current:
                groups.append((dict(heads), current))
                current = []
            for lvl in [lvl for lvl in heads if lvl >= b.level]:
                del heads[lvl]
            heads[b.level] = b.label or ""
            pending_heads.append(b)
            continue
        if pending_heads:
            # Headings ride with the first block after them, so a section starts with its title.
            current.extend(pending_heads)
            pending_heads = []
        current.append(b)
    if pending_heads:
        current.extend(pending_heads)
    if current:
        groups.append((dict(heads), current))

    chunks: list[Chunk] = []
    for path, group in groups:
        heading = path[max(path)] if path else None
        # A deposition's "Page 42" stays in the label even under a deeper caption.
        page_head = next((h for h in path.values() if _PAGE_HEADING.match(h)), None)
        if page_head and heading != page_head:
            heading = f"{page_head} › {heading}"
        head_labels = [path[k] for k in sorted(path) if k > 1 or len(path) == 1]
        for start, end, para_labels in _pack(text, group, chunk_size, chunk_overlap):
            labels = head_labels + para_labels
            specific = _range_label(para_labels)
            if heading and specific:
                section: str | None = f"{heading} · {specific}"
            else:
                section = specific or heading
            page = None
            if page_starts:
                page = bisect.bisect_right(page_starts, start)
                page = max(page, 1)
                if not section:
                    section = f"Page {page}"
                labels.append(f"Page {page}")
            chunks.append(
                Chunk(len(chunks), start, end, text[start:end], section, heading, labels, page)
            )
    return chunks


def _pack(
    text: str, group: list[Block], size: int, overlap: int
) -> list[tuple[int, int, list[str]]]:
    """Greedy paragraph packing within one heading's blocks."""
    # Paragraph label carried over to "(b) …" continuation blocks of a numbered subsection.
    labelled: list[tuple[int, int, str | None]] = []
    group_kinds: list[str] = []
    last_label: str | None = None
    for b in group:
        if b.kind == "para":
            last_label = b.label
        elif b.kind == "heading":
            last_label = None
        label = last_label if b.kind != "heading" else None
        if b.end - b.start > size:
            cuts = _sentence_cuts(text, b.start, b.end, size)
            labelled.extend((s, e, label) for s, e in cuts)
            group_kinds.extend(b.kind for _ in cuts)
        else:
            labelled.append((b.start, b.end, label))
            group_kinds.append(b.kind)

    overlap = min(overlap, size // 2)
    out: list[tuple[int, int, list[str]]] = []
    i = 0
    prev_end: int | None = None
    while i < len(labelled):
        start = labelled[i][0]
        if prev_end is not None:
            start = min(start, _overlap_start(text, out[-1][0], prev_end, overlap))
            while start < labelled[i][0] and text[start].isspace():
                start += 1
        end = labelled[i][1]
        labels = [labelled[i][2]] if labelled[i][2] else []
        # A heading never ends a chunk: it always takes the block after it along.
        only_heads = group_kinds[i] == "heading"
        j = i + 1
        while j < len(labelled) and (labelled[j][1] - start <= size or only_heads):
            only_heads = only_heads and group_kinds[j] == "heading"
            end = labelled[j][1]
            if labelled[j][2] and labelled[j][2] not in labels:
                labels.append(labelled[j][2])
            j += 1
        out.append((start, end, labels))
        prev_end = end
        i = j
    return out


class LegalNodeParser(NodeParser):
    """LlamaIndex face of :func:`chunk_text`: Documents in, TextNodes with spans out.

    Expects ``doc.text`` already normalised and ``doc.metadata["page_starts"]``
    for paginated sources.
    """

    chunk_size: int = 1200
    chunk_overlap: int = 150

    @classmethod
    def class_name(cls) -> str:
        return "LegalNodeParser"

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        out: list[BaseNode] = []
        for doc in nodes:
            text = doc.get_content()
            page_starts = (doc.metadata or {}).get("page_starts")
            for c in chunk_text(
                text,
                chunk_size=self.chunk_size,
                chunk_overlap=self.chunk_overlap,
                page_starts=page_starts,
            ):
                node = TextNode(
                    text=c.text,
                    start_char_idx=c.char_start,
                    end_char_idx=c.char_end,
                    metadata={
                        "chunk_index": c.index,
                        "section": c.section,
                        "heading": c.heading,
                        "labels": c.labels,
                        "page": c.page,
                        # Our own span: NodeParser's post-processing re-derives
                        # start_char_idx with str.find, which can land on an
                        # earlier identical passage.
                        "char_start": c.char_start,
                        "char_end": c.char_end,
                    },
                    excluded_embed_metadata_keys=[
                        "labels",
                        "chunk_index",
                        "page",
                        "char_start",
                        "char_end",
                    ],
                )
                out.append(node)
        return out
