"""Retrieval quality on the sample corpus: ``python -m legalstream.rag.eval``.

For each question of data/eval/questions.jsonl, a hit is a retrieved chunk of
the gold document (file stem) that also carries the gold section: the section
is one of the chunk's labels (heading, "¶ 26", "Section 4.1", "Page 42"), or
its text appears in the chunk. Prints recall@1, recall@5 and MRR (over the top
10) for dense-only, BM25-only and hybrid (RRF inside Qdrant).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from legalstream.rag.citations import Citation
from legalstream.rag.engine import RetrievalEngine, ensure_sample_corpus

MODES = ("dense", "bm25", "hybrid")


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("§", "Section ").replace("¶", "¶ ")).strip().lower()


def is_hit(c: Citation, labels: list[str], gold_doc: str, gold_section: str | None) -> bool:
    name = c.doc_id.rsplit("/", 1)[-1]
    if gold_doc not in (name, name.rsplit(".", 1)[0], c.doc_id):
        return False
    if not gold_section:
        return True
    g = _norm(gold_section)
    normed = [_norm(lbl) for lbl in labels]
    if any(g in lbl for lbl in normed):
        return True
    # "COUNTERCLAIM ¶ 2": a heading label and a paragraph label of the same chunk.
    if any(f"{a} {b}" == g for a in normed for b in normed if a != b):
        return True
    return g in _norm(c.quote) or (c.section is not None and g in _norm(c.section))


@dataclass(slots=True)
class Scores:
    r1: float
    r5: float
    mrr: float
    n: int


def evaluate(
    engine: RetrievalEngine, questions: list[dict[str, Any]], mode: str
) -> tuple[Scores, list[dict[str, Any]]]:
    r1 = r5 = rr = 0.0
    misses: list[dict[str, Any]] = []
    for q in questions:
        rows = engine.search(q["question"], int(q["case_id"]), k=10, mode=mode)
        rank = None
        for i, c in enumerate(rows):
            if is_hit(c, list(c.labels), q["gold_doc"], q.get("gold_section")):
                rank = i + 1
                break
        if rank == 1:
            r1 += 1
        if rank is not None and rank <= 5:
            r5 += 1
        if rank is not None:
            rr += 1 / rank
        else:
            misses.append(q)
    n = max(1, len(questions))
    return Scores(r1 / n, r5 / n, rr / n, len(questions)), misses


def main(argv: list[str] | None = None) -> int:
    from legalstream.settings import REPO_ROOT, RagSettings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=Path, default=REPO_ROOT / "data" / "sample")
    ap.add_argument(
        "--questions", type=Path, default=REPO_ROOT / "data" / "eval" / "questions.jsonl"
    )
    ap.add_argument("--store", choices=["edge", "qdrant"], default="edge")
    ap.add_argument(
        "--verbose", "-v", action="store_true", help="list the questions each mode missed"
    )
    args = ap.parse_args(argv)
    questions = [
        json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()
    ]
    with tempfile.TemporaryDirectory() as tmp:
        settings = RagSettings(data_dir=Path(tmp), store=args.store, qdrant_path=None)
        engine = RetrievalEngine.from_settings(settings)
        try:
            report = ensure_sample_corpus(engine, args.sample)
            if report is None or not report.ok:
                print(
                    f"sample corpus failed to ingest: {report and report.failed}", file=sys.stderr
                )
                return 1
            print(
                f"corpus: {report.documents} documents, {report.chunks} chunks; {len(questions)} questions"
            )
            print(f"{'mode':<8} {'recall@1':>9} {'recall@5':>9} {'MRR':>7}")
            results = {}
            for mode in MODES:
                s, misses = evaluate(engine, questions, mode)
                results[mode] = s
                print(f"{mode:<8} {s.r1:>9.3f} {s.r5:>9.3f} {s.mrr:>7.3f}")
                if args.verbose:
                    for q in misses:
                        print(
                            f"    miss {q['id']}: {q['question']} [{q['gold_doc']} {q.get('gold_section')}]"
                        )
        finally:
            engine.close()
    h = results["hybrid"]
    ok = h.r5 >= 0.9 and h.r5 >= max(results["dense"].r5, results["bm25"].r5)
    print("target (hybrid recall@5 >= 0.9 and >= each arm):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
