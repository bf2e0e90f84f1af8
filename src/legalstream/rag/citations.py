"""The citation a retrieval hit becomes: everything needed to quote and locate it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Citation:
    chunk_id: str
    doc_id: str
    title: str
    case_id: int
    #: 1-based page for paginated sources (PDF), else None.
    page: int | None
    #: Most specific legal label: "COUNT I — BREACH OF CONTRACT, ¶ 94", "Section 7.2", "Page 42".
    section: str | None
    #: Span of ``quote`` in the document's normalized source text (see RetrievalEngine.source_text).
    char_start: int
    char_end: int
    quote: str
    score: float

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
        )
