"""Rank fusion and final selection, deterministic by construction.

Each arm (dense, BM25) is fetched from Qdrant already filtered by case (and by
document when a question is routed), as point ids and scores; this module only
merges the ranked lists. Qdrant's own RRF breaks ties between equal fused
scores in no fixed order, so the same search could return a different top-k
from one run to the next. Here every ordering ends in a stable key (the point
id while fusing, then the document and the unit's position in it): the same
inputs always give the same output, in any process.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: One candidate: (point id, score).
Scored = tuple[str, float]


def ranked(hits: Sequence[Scored]) -> list[Scored]:
    """Hits in a stable order: score descending, then point id."""
    return sorted(hits, key=lambda h: (-h[1], h[0]))


def rrf(
    arms: Sequence[Sequence[Scored]], *, k: int, weights: Sequence[float] | None
) -> list[Scored]:
    """Weighted reciprocal-rank fusion: score = Σ w_arm / (k + rank_arm).

    Ranks are taken after the stable per-arm ordering, so equal arm scores get
    ranks in point-id order, not in whatever order the store returned them.
    """
    weights = list(weights) if weights else [1.0] * len(arms)
    scores: dict[str, float] = {}
    for arm, w in zip(arms, weights, strict=True):
        for rank, (pid, _) in enumerate(ranked(arm), start=1):
            scores[pid] = scores.get(pid, 0.0) + w / (k + rank)
    return ranked(list(scores.items()))


def convex(arms: Sequence[Sequence[Scored]], *, weights: Sequence[float] | None) -> list[Scored]:
    """Weighted sum of min-max normalised arm scores (0 for a hit an arm did not return).

    Unlike RRF, the fused score keeps how far ahead a hit is in its arm, which is
    what a relative cut-off (:func:`cut`) needs to tell a clear answer from a tail.
    """
    weights = list(weights) if weights else [1.0] * len(arms)
    scores: dict[str, float] = {}
    for arm, w in zip(arms, weights, strict=True):
        if not arm:
            continue
        top = max(s for _, s in arm)
        low = min(s for _, s in arm)
        span = top - low
        for pid, s in arm:
            norm = (s - low) / span if span > 0 else 1.0
            scores[pid] = scores.get(pid, 0.0) + w * norm
    return ranked(list(scores.items()))


def cut(fused: Sequence[Scored], ratio: float | None, *, keep: int = 1) -> list[Scored]:
    """Hits scoring at least ``ratio`` × the best hit's score (None: all of them),
    and never fewer than the first ``keep``."""
    if not fused or ratio is None or fused[0][1] <= 0:
        return list(fused)
    floor = fused[0][1] * ratio
    return [f for i, f in enumerate(fused) if i < keep or f[1] >= floor]


def position_key(chunk_id: str) -> tuple[str, int, str]:
    """Order of equal scores among final hits: document, then position ("#2" before "#10")."""
    doc, _, n = chunk_id.rpartition("#")
    return (doc, int(n), "") if n.isdigit() else (chunk_id, -1, chunk_id)


def select(
    fused: Sequence[Scored],
    payloads: dict[str, dict[str, Any]],
    k: int,
    per_doc: int | None,
) -> list[tuple[dict[str, Any], float]]:
    """The top ``k`` as (payload, score), with at most ``per_doc`` from one document.

    The cap (None: no cap) keeps one long document from filling every slot of a
    whole-case search; when too few documents match to fill ``k`` under the cap,
    the remaining slots go to the next-best hits regardless.
    """
    rows = [(payloads[pid], score) for pid, score in fused if pid in payloads]
    rows.sort(key=lambda r: (-r[1], position_key(str(r[0].get("chunk_id", "")))))
    if per_doc is None:
        return rows[:k]
    taken: list[tuple[dict[str, Any], float]] = []
    overflow: list[tuple[dict[str, Any], float]] = []
    counts: dict[str, int] = {}
    for row in rows:
        if len(taken) >= k:
            break
        doc = str(row[0].get("doc_id"))
        if counts.get(doc, 0) < per_doc:
            counts[doc] = counts.get(doc, 0) + 1
            taken.append(row)
        else:
            overflow.append(row)
    if len(taken) < k:
        taken.extend(overflow[: k - len(taken)])
        taken.sort(key=lambda r: (-r[1], position_key(str(r[0].get("chunk_id", "")))))
    return taken
