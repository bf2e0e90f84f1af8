"""Span metrics of one search, as in LegalBench-RAG (arXiv 2408.10343).

For the top k hits of a search and a question's gold spans:

* evidence recall@k: share of gold spans that overlap a returned span of the same document;
* character recall@k: gold characters covered by returned spans / gold characters;
* character precision@k: gold characters covered / characters returned (union of spans);
* document hit@k: 1 if a hit comes from a gold document.

What a hit returns is read through :func:`returned_spans` only, so that a citation
that grows context spans (its lead-in, its heading) changes that one function.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from legalstream.rag.citations import Citation
from legalstream.rag.evalset import GoldSpan

Span = tuple[int, int]


def returned_spans(citation: Citation) -> list[Span]:
    """The character spans of its document's source text that a hit hands to the reader."""
    return [(citation.char_start, citation.char_end)]


def union(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans covering the same characters (empty spans dropped)."""
    merged: list[Span] = []
    for start, end in sorted(s for s in spans if s[1] > s[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def covered(a: Sequence[Span], b: Sequence[Span]) -> int:
    """Characters in both of two unions."""
    total = i = j = 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        total += max(0, hi - lo)
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def overlaps(span: Span, spans: Sequence[Span]) -> bool:
    return any(min(span[1], e) > max(span[0], s) for s, e in spans)


@dataclass(frozen=True, slots=True)
class SpanScores:
    evidence_recall: float
    char_recall: float
    char_precision: float
    doc_hit: float


#: Pairs of (doc_id, spans) a hit returns; what the metrics consume.
Returned = list[tuple[str, list[Span]]]


def as_returned(hits: Iterable[Citation]) -> Returned:
    return [(c.doc_id, returned_spans(c)) for c in hits]


def score(returned: Returned, gold: Sequence[GoldSpan], k: int) -> SpanScores:
    """The four metrics of the first ``k`` returned hits against ``gold``."""
    by_doc: dict[str, list[Span]] = defaultdict(list)
    for doc_id, spans in returned[:k]:
        by_doc[doc_id].extend(spans)
    got = {d: union(s) for d, s in by_doc.items()}
    gold_by_doc: dict[str, list[Span]] = defaultdict(list)
    for g in gold:
        gold_by_doc[g.doc_id].append((g.start, g.end))
    gold_union = {d: union(s) for d, s in gold_by_doc.items()}

    hit_spans = sum(overlaps((g.start, g.end), got.get(g.doc_id, [])) for g in gold)
    gold_chars = sum(e - s for spans in gold_union.values() for s, e in spans)
    returned_chars = sum(e - s for spans in got.values() for s, e in spans)
    both = sum(covered(spans, got.get(d, [])) for d, spans in gold_union.items())
    return SpanScores(
        evidence_recall=hit_spans / len(gold) if gold else 0.0,
        char_recall=both / gold_chars if gold_chars else 0.0,
        char_precision=both / returned_chars if returned_chars else 0.0,
        doc_hit=float(any(d in got for d in gold_by_doc)),
    )


def mean(scores: Sequence[SpanScores]) -> SpanScores:
    n = len(scores)
    if not n:
        return SpanScores(0.0, 0.0, 0.0, 0.0)
    return SpanScores(
        sum(s.evidence_recall for s in scores) / n,
        sum(s.char_recall for s in scores) / n,
        sum(s.char_precision for s in scores) / n,
        sum(s.doc_hit for s in scores) / n,
    )
