"""Rank fusion and final selection, deterministic by construction.

Each arm (dense, BM25) is fetched from Qdrant already filtered by case (and by
document when a question is routed); this module only merges the ranked lists.
Qdrant's own RRF breaks ties between equal fused scores in no fixed order, so
the same search could return a different top-k from one run to the next. Here
every ordering is by (score, then document and position): the same inputs always give the
same output, in any process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from legalstream.rag.store import Hit


@dataclass(frozen=True, slots=True)
class Fused:
    point_id: str
    score: float
    chunk_id: str
    doc_id: str


def _key(h: Hit) -> str:
    return str(h[2].get("chunk_id") or h[0])


def tie_key(chunk_id: str) -> tuple[str, int, str]:
    """Order of equal scores: by document, then by position in it ("#2" before "#10")."""
    doc, _, n = chunk_id.rpartition("#")
    return (doc, int(n), "") if n.isdigit() else (chunk_id, -1, chunk_id)


def ranked(hits: Sequence[Hit]) -> list[Hit]:
    """One arm's hits in a stable order: score descending, then chunk id."""
    return sorted(hits, key=lambda h: (-h[1], tie_key(_key(h))))


def rrf(arms: Sequence[Sequence[Hit]], *, k: int, weights: Sequence[float] | None) -> list[Fused]:
    """Weighted reciprocal-rank fusion: score = Σ w_arm / (k + rank_arm).

    Ranks are taken after the stable per-arm ordering, so equal arm scores get
    ranks in chunk-id order, not in whatever order the store returned them.
    """
    weights = list(weights) if weights else [1.0] * len(arms)
    scores: dict[str, float] = {}
    info: dict[str, tuple[str, str]] = {}
    for arm, w in zip(arms, weights, strict=True):
        for rank, h in enumerate(ranked(arm), start=1):
            scores[h[0]] = scores.get(h[0], 0.0) + w / (k + rank)
            info.setdefault(h[0], (_key(h), str(h[2].get("doc_id") or "")))
    fused = [Fused(pid, s, *info[pid]) for pid, s in scores.items()]
    fused.sort(key=lambda f: (-f.score, tie_key(f.chunk_id)))
    return fused


def convex(arms: Sequence[Sequence[Hit]], *, weights: Sequence[float] | None) -> list[Fused]:
    """Weighted sum of min-max normalised arm scores (0 for a hit an arm did not return).

    Unlike RRF, the fused score keeps how far ahead a hit is in its arm, which is
    what a relative cut-off (:func:`cut`) needs to tell a clear answer from a tail.
    """
    weights = list(weights) if weights else [1.0] * len(arms)
    scores: dict[str, float] = {}
    info: dict[str, tuple[str, str]] = {}
    for arm, w in zip(arms, weights, strict=True):
        if not arm:
            continue
        top = max(h[1] for h in arm)
        low = min(h[1] for h in arm)
        span = top - low
        for h in ranked(arm):
            norm = (h[1] - low) / span if span > 0 else 1.0
            scores[h[0]] = scores.get(h[0], 0.0) + w * norm
            info.setdefault(h[0], (_key(h), str(h[2].get("doc_id") or "")))
    fused = [Fused(pid, s, *info[pid]) for pid, s in scores.items()]
    fused.sort(key=lambda f: (-f.score, tie_key(f.chunk_id)))
    return fused


def cut(fused: Sequence[Fused], ratio: float | None) -> list[Fused]:
    """Hits scoring at least ``ratio`` × the best hit's score (None: all of them)."""
    if not fused or ratio is None or fused[0].score <= 0:
        return list(fused)
    floor = fused[0].score * ratio
    return [f for f in fused if f.score >= floor]


def single(arm: Sequence[Hit]) -> list[Fused]:
    return [Fused(h[0], h[1], _key(h), str(h[2].get("doc_id") or "")) for h in ranked(arm)]


def select(fused: Sequence[Fused], k: int, per_doc: int | None) -> list[Fused]:
    """The top ``k``, with at most ``per_doc`` from any one document (None: no cap).

    The cap keeps one long document from filling every slot of a whole-case
    search; when too few documents match to fill ``k`` under the cap, the
    remaining slots go to the next-best hits regardless.
    """
    if per_doc is None:
        return list(fused[:k])
    taken: list[Fused] = []
    overflow: list[Fused] = []
    counts: dict[str, int] = {}
    for f in fused:
        if len(taken) >= k:
            break
        if counts.get(f.doc_id, 0) < per_doc:
            counts[f.doc_id] = counts.get(f.doc_id, 0) + 1
            taken.append(f)
        else:
            overflow.append(f)
    if len(taken) < k:
        taken.extend(overflow[: k - len(taken)])
        taken.sort(key=lambda f: (-f.score, tie_key(f.chunk_id)))
    return taken
