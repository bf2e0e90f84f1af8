"""The citation a retrieval hit becomes: everything needed to quote and locate it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ContextQuote:
    """Source text a cited unit needs to be read right: a heading above it, its lead-in.

    Like the quote itself, ``quote == source_text[char_start:char_end]``.
    """

    char_start: int
    char_end: int
    quote: str
    #: "heading" | "lead_in"
    role: str


@dataclass(frozen=True, slots=True)
class Citation:
    chunk_id: str
    doc_id: str
    title: str
    case_id: int
    #: 1-based page for paginated sources (PDF), else None.
    page: int | None
    #: Most specific legal label: "COUNT I — BREACH OF CONTRACT · ¶ 94", "5. CONFIDENTIALITY · Section 5.2(a)".
    section: str | None
    #: Span of ``quote`` in the document's normalized source text (see RetrievalEngine.source_text).
    char_start: int
    char_end: int
    #: The retrieved unit: a clause, definition, sub-item, paragraph or transcript exchange.
    quote: str
    score: float
    #: What the unit needs around it, in document order (headings, then its lead-in).
    context: tuple[ContextQuote, ...] = ()
    #: Every label the unit carries: headings above it, "Section 5.2(a)", "¶ 12", a defined term.
    labels: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any], score: float) -> Citation:
        """Build from a stored chunk payload (the store's record of a chunk)."""
        page = payload.get("page")
        return cls(
            chunk_id=str(payload["chunk_id"]),
            doc_id=str(payload["doc_id"]),
            title=str(payload.get("title") or payload["doc_id"]),
            case_id=int(payload["case_id"]),
            page=int(page) if page is not None else None,
            section=payload.get("section") or None,
            char_start=int(payload["char_start"]),
            char_end=int(payload["char_end"]),
            quote=str(payload["text"]),
            score=float(score),
            context=tuple(
                ContextQuote(int(c[0]), int(c[1]), str(c[3]), str(c[2]))
                for c in payload.get("context") or ()
            ),
            labels=tuple(str(x) for x in payload.get("labels") or ()),
        )
