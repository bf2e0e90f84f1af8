"""Chunking that follows legal structure, down to the clause.

The retrieval unit is small: one clause ("7.2 …", "12. …", "(b) …"), one
definition, one paragraph, one question-and-answer exchange of a transcript.
Structure is read line by line, so a contract written one clause per line with
no blank lines is understood as well as one with blank lines and headings:

* headings: Markdown ``#`` lines, heading spans the loader knows (DOCX styles,
  HTML ``<h1>``–``<h6>``), "ARTICLE 5 …" / "Section 7. Warranties" / "5. CONFIDENTIALITY"
  title lines, ALL-CAPS captions and transcript "Page N" lines;
* a unit starts at a numbered line, a definition, a transcript question, after a
  blank line or a heading, or after a line that ends a sentence; other lines
  continue the unit (hard-wrapped PDF text);
* a lead-in ("Each party shall:") is kept with its items when they fit one unit;
  when they don't, every item carries the lead-in as context;
* a definition is one unit with its term (and its items);
* every unit carries labels ("Section 5.2(a)", "¶ 12", ``"Affiliate"``), the
  heading path it sits under, and context spans (nearest headings, its lead-in)
  that a reader needs to understand it.

Every chunk and every context span is a contiguous span of the source text, so a
citation's quote is always ``source_text[char_start:char_end]``.
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
_PAGE_HEADING = re.compile(r"^Page\s+(\d+)$", re.IGNORECASE)
_KEYWORD_HEADING = re.compile(
    r"^(?:COUNT|ARTICLE|Article|PART|Part|CHAPTER|SCHEDULE|Schedule|EXHIBIT|Exhibit|ANNEX|Annex"
    r"|APPENDIX|Appendix|SECTION|Section)\s+([\dIVXLC]+)[.:]?(?:\s+(.*))?$"
)
_NUMBERED_TITLE = re.compile(r"^(\d{1,3}(?:\.\d{1,3})*)\.?\s+(\S.*)$")
_SECTION_CLAUSE = re.compile(
    r"^(?:Section|SECTION|Sec\.|§)\s*(\d{1,3}(?:\.\d{1,3})*)((?:\([a-zA-Z0-9]{1,5}\))*)[.:]?"
    # A clause number is followed by its title or text, not by "of the Agreement provides".
    r"(?=$|\s+[^a-z\s])"
)
_DOTTED_CLAUSE = re.compile(r"^(\d{1,3}(?:\.\d{1,3})+)\.?((?:\([a-zA-Z0-9]{1,5}\))*)(?=\s|$)")
_TOP_CLAUSE = re.compile(r"^(?:¶\s*)?(\d{1,4})\.((?:\([a-zA-Z0-9]{1,5}\))*)(?=\s|$)")
_PARA_SIGN = re.compile(r"^¶\s*(\d{1,4})(?=\s|$)")
_ITEM = re.compile(
    r"^(?:\(([a-zA-Z]{1,2}|[ivxlcdmIVXLCDM]{1,6}|\d{1,2})\)|([a-z]|[ivx]{1,5})[.)])(?=\s)"
)
_BULLET = re.compile(r"^[-•*–▪◦]\s+\S")
_DEFINITION = re.compile(
    r"^(?:[\d.()a-zA-Z]{1,12}\s+)?[\"“]([^\"”]{1,80})[\"”]"
    r"(?:\s+(?:or|and)\s+[\"“][^\"”]{1,40}[\"”])?(?:\s*\([^)]{0,40}\))?,?\s+"
    r"(?:shall\s+|will\s+|also\s+)?(?:means?|mean|has the meaning|have the meaning|includes?"
    r"|refers? to|is defined|shall have the meaning|shall include|denotes?)\b",
    re.IGNORECASE,
)
_TRANSCRIPT_LINE = re.compile(r"^\d{1,2}\s+(?:(Q)|(A)|[A-Z])")
_TRANSCRIPT_QA = re.compile(r"^\d{1,2}\s+[QA]\.\s")
_SENTENCE_END = re.compile(r"[.!?;:][\"”’')\]]*$")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])[\"”’')\]]*\s+(?=[A-Z(\"“])")
#: Longest run of transcript exchanges (and of joined fragments) in one unit.
EXCHANGE_RUN = 800
_SMALL_WORDS = {
    "a", "an", "and", "as", "at", "by", "for", "in", "of", "on", "or", "the", "to", "with",
    "upon", "under", "from", "into", "its", "no",
}  # fmt: skip


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


@dataclass(frozen=True, slots=True)
class Heading:
    """A heading line of the source text known from the file format (DOCX, HTML)."""

    start: int
    end: int
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class ContextSpan:
    """Text a unit needs to be understood: a heading above it, or its lead-in."""

    char_start: int
    char_end: int
    role: str  # "heading" | "lead_in"


@dataclass(slots=True)
class Chunk:
    index: int
    char_start: int
    char_end: int
    text: str
    #: Display label, most specific last: "5. CONFIDENTIALITY · Section 5.2(a)".
    section: str | None
    #: Deepest heading above the chunk.
    heading: str | None
    #: Every label the chunk covers (headings and clause labels), for matching.
    labels: list[str] = field(default_factory=list)
    page: int | None = None
    #: "clause" | "definition" | "item" | "group" | "exchange" | "text"
    kind: str = "text"
    context: list[ContextSpan] = field(default_factory=list)
    #: Heading path, outermost first (document title excluded when other headings exist).
    path: list[str] = field(default_factory=list)


# line classification ------------------------------------------------------------------
@dataclass(slots=True)
class _Line:
    start: int
    end: int
    text: str
    heading_level: int = 0  # 0: not a heading
    heading_text: str = ""


@dataclass(slots=True)
class _Unit:
    start: int
    end: int
    kind: str  # clause | definition | item | exchange | text
    label: str | None = None  # "Section 5.2", "¶ 12", "(a)"-qualified, ...
    term: str | None = None  # a definition's term
    item_type: str | None = None  # an item's marker type (letter, roman, number, ...)
    heads: list[tuple[int, str, int, int]] = field(default_factory=list)  # (level, text, s, e)
    extra_labels: list[str] = field(default_factory=list)
    context: list[ContextSpan] = field(default_factory=list)
    ends_lead_in: bool = False


def _lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    pos = 0
    for raw in text.split("\n"):
        start = pos
        end = pos + len(raw)
        pos = end + 1
        lead = len(raw) - len(raw.lstrip())
        out.append(_Line(start + lead, end, raw.strip()))
    return out


def _is_caps(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    if len(letters) < 4 or len(line) > 120 or line.endswith((",", ";", ":")):
        return False
    return sum(c.isupper() for c in letters) / len(letters) > 0.9


def _is_title_words(rest: str) -> bool:
    """A short title ("Limitation of Liability", "CONFIDENTIALITY"), not a sentence."""
    rest = rest.strip().rstrip(".")
    if not rest or len(rest) > 70 or rest.endswith((",", ";", ":")) or ". " in rest:
        return False
    words = [w for w in re.findall(r"[A-Za-z][A-Za-z'’-]*", rest)]
    if not words:
        return False
    significant = [w for w in words if w.lower() not in _SMALL_WORDS]
    if not significant:
        return False
    return sum(w[0].isupper() for w in significant) / len(significant) >= 0.8


def _heading_of(line: _Line, transcript: bool) -> tuple[int, str] | None:
    t = line.text
    if m := _MD_HEADING.match(t):
        return len(m.group(1)), m.group(2).strip()
    if m := _PAGE_HEADING.match(t):
        return 6, f"Page {m.group(1)}"
    if transcript and _TRANSCRIPT_LINE.match(t):
        return None
    if (m := _KEYWORD_HEADING.match(t)) and len(t) <= 120:
        rest = m.group(2) or ""
        if not rest or _is_title_words(rest) or _is_caps(rest):
            return 7, t
    if (m := _NUMBERED_TITLE.match(t)) and not _DEFINITION.match(t):
        rest = m.group(2)
        if _is_title_words(rest) and len(rest) <= 60:
            depth = m.group(1).count(".")
            return 7 + depth, t
    if _is_caps(t) and not _ITEM.match(t) and not _DEFINITION.match(t):
        return 9, t
    return None


# unit labels --------------------------------------------------------------------------
def _item_type(marker: str, prev_of_type: dict[str, str]) -> str:
    if marker.isdigit():
        return "number"
    lower = marker.lower()
    is_roman = bool(re.fullmatch(r"[ivxlcdm]+", lower))
    letter_before = prev_of_type.get("upper" if marker.isupper() else "letter")
    if is_roman and len(marker) == 1 and letter_before is not None:
        # "(i)" right after "(h)" is the letter i, not roman one.
        if ord(lower) == ord(letter_before.lower()) + 1:
            return "upper" if marker.isupper() else "letter"
    if is_roman and (len(marker) > 1 or lower in "iv" or lower in "x"):
        return "roman_upper" if marker.isupper() else "roman"
    return "upper" if marker.isupper() else "letter"


class _Labeller:
    """Tracks the clause numbering around each unit to give it a full label."""

    def __init__(self, dotted_doc: bool) -> None:
        self.dotted_doc = dotted_doc
        self.clause: str | None = None  # "Section 5.2" / "¶ 12"
        self.items: list[tuple[str, str]] = []  # (type, marker) stack
        self.last_marker: dict[str, str] = {}

    def reset(self) -> None:
        self.clause = None
        self.items = []
        self.last_marker = {}

    def clause_label(self, number: str, suffix: str, explicit_section: bool) -> str:
        if "." in number or explicit_section or self.dotted_doc:
            label = f"Section {number}"
        else:
            label = f"¶ {number}"
        self.clause = label
        self.items = []
        self.last_marker = {}
        if suffix:
            for marker in re.findall(r"\(([^)]+)\)", suffix):
                self.item_label(marker)
            return label + suffix
        return label

    def item_label(self, marker: str) -> str:
        kind = _item_type(marker, self.last_marker)
        for i, (t, _) in enumerate(self.items):
            if t == kind:
                del self.items[i:]
                break
        self.items.append((kind, marker))
        self.last_marker[kind.split("_")[0] if kind.startswith("roman") else kind] = marker
        suffix = "".join(f"({m})" for _, m in self.items)
        return f"{self.clause}{suffix}" if self.clause else suffix

    def item_depth(self) -> int:
        return len(self.items)


def _label_unit(unit: _Unit, first_line: str, labeller: _Labeller) -> None:
    t = first_line
    if m := _SECTION_CLAUSE.match(t):
        unit.kind, unit.label = "clause", labeller.clause_label(m.group(1), m.group(2), True)
    elif m := _DOTTED_CLAUSE.match(t):
        unit.kind, unit.label = "clause", labeller.clause_label(m.group(1), m.group(2), False)
    elif m := _TOP_CLAUSE.match(t):
        unit.kind, unit.label = "clause", labeller.clause_label(m.group(1), m.group(2), False)
    elif m := _PARA_SIGN.match(t):
        unit.kind, unit.label = "clause", labeller.clause_label(m.group(1), "", False)
    elif m := _ITEM.match(t):
        marker = m.group(1) or m.group(2)
        unit.kind, unit.label = "item", labeller.item_label(marker)
        unit.item_type = labeller.items[-1][0]
    elif _BULLET.match(t):
        unit.kind = "item"
        unit.item_type = "bullet"
        unit.label = labeller.clause
    if m := _DEFINITION.match(t):
        unit.term = m.group(1).strip()
        if unit.kind != "item":
            unit.kind = "definition"


def _starts_unit(line: _Line, transcript: bool) -> bool:
    t = line.text
    if transcript and _TRANSCRIPT_LINE.match(t):
        return bool(re.match(r"^\d{1,2}\s+(?!A\.)", t))  # a new exchange; answers continue
    return bool(
        _SECTION_CLAUSE.match(t)
        or _DOTTED_CLAUSE.match(t)
        or _TOP_CLAUSE.match(t)
        or _PARA_SIGN.match(t)
        or _ITEM.match(t)
        or _BULLET.match(t)
        or _DEFINITION.match(t)
    )


# chunking -----------------------------------------------------------------------------
def chunk_text(
    text: str,
    *,
    chunk_size: int = 1200,
    chunk_overlap: int = 0,
    page_starts: Sequence[int] | None = None,
    headings: Sequence[Heading] | None = None,
) -> list[Chunk]:
    """Chunk normalised ``text`` into clause-level units.

    ``chunk_size`` caps a unit: a lead-in with its items is one unit only when it
    fits; a longer unit is cut at sentence ends. ``page_starts[i]`` is the offset
    where page i+1 begins. ``headings`` are heading spans known from the format.
    ``chunk_overlap`` is accepted for settings compatibility and not used: units
    carry context spans instead of repeated text.
    """
    del chunk_overlap
    lines = _lines(text)
    transcript = sum(1 for ln in lines if _TRANSCRIPT_QA.match(ln.text)) >= 3
    dotted_doc = (
        sum(1 for ln in lines if _DOTTED_CLAUSE.match(ln.text) or _SECTION_CLAUSE.match(ln.text))
        >= 2
    )
    known = {(h.start, h.end): h for h in headings or ()}
    known_starts = {h.start: h for h in headings or ()}
    for ln in lines:
        if not ln.text:
            continue
        h = known.get((ln.start, ln.end)) or known_starts.get(ln.start)
        if h is not None:
            ln.heading_level, ln.heading_text = h.level, h.text
        elif found := _heading_of(ln, transcript):
            ln.heading_level, ln.heading_text = found

    units = _units(lines, transcript, dotted_doc)
    units = _group_lead_ins(units, chunk_size)
    units = _merge_small(units, chunk_size, page_starts)
    pieces = _split_oversize(text, units, chunk_size)
    return _chunks(text, pieces, page_starts)


def _units(lines: list[_Line], transcript: bool, dotted_doc: bool) -> list[_Unit]:
    heads: list[tuple[int, str, int, int]] = []  # (level, text, start, end), outermost first
    labeller = _Labeller(dotted_doc)
    units: list[_Unit] = []
    current: _Unit | None = None
    prev: _Line | None = None
    for ln in lines:
        if not ln.text:
            current = None
            prev = None
            continue
        if ln.heading_level:
            current = None
            prev = None
            heads = [h for h in heads if h[0] < ln.heading_level]
            heads.append((ln.heading_level, ln.heading_text, ln.start, ln.end))
            labeller.reset()
            continue
        new = (
            current is None
            or _starts_unit(ln, transcript)
            or (
                not transcript
                and prev is not None
                and _SENTENCE_END.search(prev.text) is not None
                and (ln.text[:1].isupper() or ln.text[:1] in '"“(')
            )
        )
        if new or current is None:
            current = _Unit(ln.start, ln.end, "exchange" if transcript else "text")
            current.heads = list(heads)
            if not transcript:
                _label_unit(current, ln.text, labeller)
            units.append(current)
        else:
            current.end = ln.end
        current.ends_lead_in = ln.text.endswith((":", "—", ":-"))
        prev = ln
    return units


def _group_lead_ins(units: list[_Unit], size: int) -> list[_Unit]:
    """Keep a lead-in with its items when they fit; else give each item its lead-in."""
    out: list[_Unit] = []
    i = 0
    while i < len(units):
        u = units[i]
        j = i + 1
        if u.ends_lead_in and u.kind != "item":
            while j < len(units) and units[j].kind == "item" and units[j].heads == u.heads:
                j += 1
        if j == i + 1:
            out.append(u)
            i += 1
            continue
        items = units[i + 1 : j]
        if items[-1].end - u.start <= size:
            merged = _Unit(u.start, items[-1].end, "group" if u.kind != "definition" else u.kind)
            merged.label, merged.term, merged.heads = u.label, u.term, u.heads
            merged.extra_labels = [it.label for it in items if it.label and it.label != u.label]
            out.append(merged)
        else:
            lead = ContextSpan(u.start, u.end, "lead_in")
            out.append(u)
            sub_lead: ContextSpan | None = None
            for it in items:
                it.context = [lead] + ([sub_lead] if sub_lead else [])
                if u.term and not it.term:
                    it.term = u.term
                out.append(it)
                # A nested lead-in ("(a) the following:") is context for its own items.
                sub_lead = ContextSpan(it.start, it.end, "lead_in") if it.ends_lead_in else None
        i = j
    return out


def _merge_small(units: list[_Unit], size: int, page_starts: Sequence[int] | None) -> list[_Unit]:
    """Join runs of short unlabelled units (captions, transcript exchanges, signature lines)."""
    target = min(size, EXCHANGE_RUN)
    out: list[_Unit] = []
    for u in units:
        last = out[-1] if out else None
        if last is not None and page_starts:
            # Never across a page break: a merged unit would cite one page for two.
            if bisect.bisect_right(page_starts, last.start) != bisect.bisect_right(
                page_starts, u.start
            ):
                out.append(u)
                continue
        mergeable = u.kind in ("text", "exchange") and not u.label and not u.term
        if (
            last is not None
            and mergeable
            and last.kind == u.kind
            and not last.label
            and not last.term
            and last.heads == u.heads
            and u.end - last.start <= target
            # Fragments ("By: ____", "Date: May 2, 2024", "v.") join their neighbours;
            # full sentences stay units of their own; transcript exchanges are read
            # in runs (an answer often needs the questions before it).
            and (u.kind == "exchange" or last.end - last.start < 60 or u.end - u.start < 60)
        ):
            last.end = u.end
            continue
        out.append(u)
    return out


def _split_oversize(text: str, units: list[_Unit], size: int) -> list[_Unit]:
    out: list[_Unit] = []
    for u in units:
        if u.end - u.start <= size:
            out.append(u)
            continue
        for s, e in _sentence_cuts(text, u.start, u.end, size):
            piece = _Unit(s, e, u.kind, u.label, u.term, u.item_type, u.heads)
            piece.extra_labels, piece.context = u.extra_labels, u.context
            out.append(piece)
    return out


def _sentence_cuts(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """Split an oversize span into pieces of at most ``size`` at sentence ends."""
    body = text[start:end]
    bounds = [start] + [start + m.end() for m in _SENTENCE_SPLIT.finditer(body)] + [end]
    pieces: list[tuple[int, int]] = []
    cur = start
    last_ok = start
    for b in bounds[1:]:
        if b - cur > size and last_ok > cur:
            pieces.append((cur, last_ok))
            cur = last_ok
        while b - cur > size:  # one sentence longer than a unit: cut at whitespace
            cut = text.rfind(" ", cur + size // 2, cur + size)
            cut = cut if cut > cur else cur + size
            pieces.append((cur, cut))
            cur = cut
            while cur < end and text[cur].isspace():
                cur += 1
        last_ok = b
    if cur < end:
        pieces.append((cur, end))
    out = []
    for s, e in pieces:
        while e > s and text[e - 1].isspace():
            e -= 1
        if text[s:e].strip():
            out.append((s, e))
    return out


def _chunks(text: str, units: list[_Unit], page_starts: Sequence[int] | None) -> list[Chunk]:
    chunks: list[Chunk] = []
    for u in units:
        heads = u.heads
        # The document title (level 1) is context only when nothing more specific is.
        named = [h for h in heads if h[0] > 1] or heads
        path = [h[1] for h in named]
        heading = path[-1] if path else None
        page_head = next((h for h in path if _PAGE_HEADING.match(h)), None)
        if page_head and heading != page_head:
            heading = f"{page_head} › {heading}"
        labels = list(path)
        unit_labels = [lbl for lbl in [u.label, *u.extra_labels] if lbl]
        labels.extend(lbl for lbl in unit_labels if lbl not in labels)
        if u.term:
            labels.append(f'"{u.term}"')
        specific = _range_label(unit_labels)
        if u.term and not specific:
            specific = f'"{u.term}"'
        if heading and specific:
            section: str | None = f"{heading} · {specific}"
        else:
            section = specific or heading
        page = None
        if page_starts:
            page = max(1, bisect.bisect_right(page_starts, u.start))
            if not section:
                section = f"Page {page}"
            labels.append(f"Page {page}")
        context = [ContextSpan(h[2], h[3], "heading") for h in named[-2:]]
        context.extend(c for c in u.context if c.char_end <= u.start)
        chunks.append(
            Chunk(
                index=len(chunks),
                char_start=u.start,
                char_end=u.end,
                text=text[u.start : u.end],
                section=section,
                heading=heading,
                labels=labels,
                page=page,
                kind=u.kind,
                context=context,
                path=path,
            )
        )
    if not chunks and text.strip():
        # Only headings (a one-line document): the whole text is the unit.
        s = len(text) - len(text.lstrip())
        e = len(text.rstrip())
        chunks.append(Chunk(0, s, e, text[s:e], None, None, [], 1 if page_starts else None))
    return chunks


def _range_label(labels: list[str]) -> str | None:
    if not labels:
        return None
    if len(labels) == 1:
        return labels[0]
    first, last = labels[0], labels[-1]
    kind, _, a = first.partition(" ")
    kind2, _, b = last.partition(" ")
    if kind == kind2 and a and b and "(" not in a + b:
        return f"{kind} {a}–{b}"
    if last.startswith(first):
        return f"{first}–{last[len(first) :]}"
    return f"{first}–{last}"


class LegalNodeParser(NodeParser):
    """LlamaIndex face of :func:`chunk_text`: Documents in, TextNodes with spans out.

    Expects ``doc.text`` already normalised, ``doc.metadata["page_starts"]`` for
    paginated sources and ``doc.metadata["headings"]`` (``Heading`` tuples) when
    the format knows its headings.
    """

    chunk_size: int = 1200
    chunk_overlap: int = 0

    @classmethod
    def class_name(cls) -> str:
        return "LegalNodeParser"

    def _parse_nodes(
        self, nodes: Sequence[BaseNode], show_progress: bool = False, **kwargs: Any
    ) -> list[BaseNode]:
        out: list[BaseNode] = []
        for doc in nodes:
            text = doc.get_content()
            meta = doc.metadata or {}
            headings = [Heading(*h) for h in meta.get("headings") or ()]
            for c in chunk_text(
                text,
                chunk_size=self.chunk_size,
                page_starts=meta.get("page_starts"),
                headings=headings,
            ):
                node = TextNode(
                    text=c.text,
                    start_char_idx=c.char_start,
                    end_char_idx=c.char_end,
                    metadata={
                        "chunk_index": c.index,
                        "section": c.section,
                        "heading": c.heading,
                        "path": c.path,
                        "labels": c.labels,
                        "page": c.page,
                        "kind": c.kind,
                        "context": [[s.char_start, s.char_end, s.role] for s in c.context],
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
                        "context",
                        "path",
                        "kind",
                    ],
                )
                out.append(node)
        return out
