"""Clean text out of a PDF: running headers and footers, page numbers, spacing artefacts.

pypdf returns each page's text as the page shows it, including the lines every
page repeats ("CONFIDENTIAL — Harbor/Corvid Mutual NDA", "Page 2 of 5") and the
double spaces its layout analysis leaves between words ("3.1  Base  Rent.").
None of that is the document's content, so it never reaches the stored source
text that citations quote.
"""

from __future__ import annotations

import re
from collections import Counter

#: Lines a page opens or closes with that are only a page number.
_PAGE_NUMBER = re.compile(
    r"^(?:page\s+)?[-–—(\[]?\s*\d{1,4}\s*[-–—)\]]?(?:\s*(?:of|/)\s*\d{1,4})?$"
    r"|^page\s+[ivxlc]+$",
    re.IGNORECASE,
)
_SPACES = re.compile(r"[ \t\u00a0]{2,}")
#: How many lines at the top and at the bottom of a page may be running headers/footers.
_EDGE_LINES = 3


def _signature(line: str) -> str:
    # Page numbers and dates inside a running header change from page to page.
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def clean_line(line: str) -> str:
    """One line as a reader sees it: no layout runs of spaces, no edge whitespace."""
    return _SPACES.sub(" ", line).strip()


def clean_pages(pages: list[str]) -> list[str]:
    """Each page's text with running headers/footers and page-number lines removed.

    A line near the top or bottom of a page is a running header/footer when the
    same line (digits ignored) sits near an edge of at least half the pages (and
    of at least two). Page-number lines ("3", "Page 3 of 9", "- 3 -") are dropped
    at the edges of any page, even a single-page PDF.
    """
    split = [[clean_line(line) for line in p.split("\n")] for p in pages]
    split = [[line for line in lines if line] for lines in split]
    counts: Counter[str] = Counter()
    for lines in split:
        edges = set(lines[:_EDGE_LINES]) | set(lines[-_EDGE_LINES:])
        counts.update({_signature(line) for line in edges})
    threshold = max(2, (len(pages) + 1) // 2)
    running = {sig for sig, n in counts.items() if n >= threshold}
    out: list[str] = []
    for lines in split:
        n = len(lines)
        keep = []
        for i, line in enumerate(lines):
            at_edge = i < _EDGE_LINES or i >= n - _EDGE_LINES
            if at_edge and (_signature(line) in running or _PAGE_NUMBER.match(line)):
                continue
            keep.append(line)
        out.append("\n".join(keep))
    return out
