"""Retrieval quality on the eval sets: ``python -m legalstream.rag.eval`` (``make eval``).

Two sets: ``sample`` (data/sample, 59 questions of data/eval/questions.jsonl) and
``contracts`` (data/eval/contracts, data/eval/contract_questions.jsonl). For each,
evidence recall, character recall, character precision and document hit at k = 1, 4,
8, 16 (rag/evalmetrics.py), for dense, BM25 and hybrid search, within one document and
over the whole case (rag/evalrun.py); repeatability across runs and processes; and one
line per target of issue 19. Exits 0 whether or not targets are met: it reports.
Engine settings come from config/default.toml and LEGALSTREAM_RAG__* as for the service.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from legalstream.rag.evalmetrics import SpanScores
from legalstream.rag.evalrun import MODES, SetReport, run_set
from legalstream.rag.evalset import EvalSet, load_contract_set, load_sample_set

TABLE_KS = (1, 4, 8, 16)
GROUP_TITLES = {
    "within": "within one document (each document its own case)",
    "whole": "whole case, all questions",
    "whole:names": "whole case, questions naming their document",
    "whole:unnamed": "whole case, questions not naming their document",
}
METRICS = (
    ("evidence recall", "evidence_recall"),
    ("char recall", "char_recall"),
    ("char precision", "char_precision"),
    ("doc hit", "doc_hit"),
)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    met: bool | None  # None: not measured in this run
    figure: str


def targets(report: SetReport, mode: str) -> list[Target]:
    """Issue 19's targets for ``mode`` (the engine's configured search mode)."""
    out = []
    if mode in report.modes:
        named = report.scores["whole:names"][mode][8]
        out.append(
            Target(
                f"whole case, questions naming the document ({mode}): "
                "evidence recall@8 >= 0.9 and char precision@8 >= 0.25",
                named.evidence_recall >= 0.9 and named.char_precision >= 0.25,
                f"{named.evidence_recall:.3f}, {named.char_precision:.3f}",
            )
        )
        within = report.scores["within"][mode][5]
        out.append(
            Target(
                f"within one document ({mode}): evidence recall@5 >= 0.95",
                within.evidence_recall >= 0.95,
                f"{within.evidence_recall:.3f}",
            )
        )
    same = sum(int(r["same_process"] or 0) for r in report.repeat.values())
    queries = sum(int(r["queries"] or 0) for r in report.repeat.values())
    other = [r["second_process"] for r in report.repeat.values()]
    measured_other = all(x is not None for x in other)
    differ_other = sum(int(x or 0) for x in other)
    out.append(
        Target(
            "identical results across runs (all modes; same process, second process)",
            (same == 0 and differ_other == 0) if measured_other else None,
            f"{same} / {differ_other if measured_other else 'not run'} of {queries} queries differ",
        )
    )
    return out


def format_report(report: SetReport, target_mode: str) -> str:
    lines = [
        f"## {report.name} set: {report.documents} documents, {report.questions} questions "
        f"({report.names_document} name their document); chunks: "
        f"{report.chunks.get('whole', 0)} whole-case, {report.chunks.get('within', 0)} within-document; "
        f"ingest {report.ingest_seconds:.1f} s, one pass of searches {report.search_seconds:.1f} s",
    ]
    if report.problems:
        lines.append(
            f"PROBLEMS ({len(report.problems)}): questions with them are scored on what resolved"
        )
        lines += [f"  {p}" for p in report.problems[:20]]
    if report.legacy:
        lines += [
            "",
            "legacy metric, whole case (a hit = a chunk of the gold document carrying the gold section)",
            f"{'mode':<8} {'recall@1':>9} {'recall@5':>9} {'MRR':>7}",
        ]
        for mode, (r1, r5, mrr) in report.legacy.items():
            lines.append(f"{mode:<8} {r1:>9.3f} {r5:>9.3f} {mrr:>7.3f}")
    head_k = " ".join(f"{'@' + str(k):>5}" for k in TABLE_KS)
    for group, title in GROUP_TITLES.items():
        n = report.counts[group]
        lines += ["", f"{title} (n={n})"]
        lines.append(
            f"{'':<8}" + "".join(f" | {name:<{6 * len(TABLE_KS) - 1}}" for name, _ in METRICS)
        )
        lines.append(f"{'mode':<8}" + f" | {head_k}" * len(METRICS))
        for mode in report.modes:
            row = report.scores[group][mode]
            cells = [
                " ".join(f"{getattr(row[k], attr):>5.3f}"[-5:] for k in TABLE_KS)
                for _, attr in METRICS
            ]
            lines.append(f"{mode:<8}" + "".join(f" | {c}" for c in cells))
    lines += ["", "repeatability (queries whose top-16 chunk ids differ from the first run)"]
    for mode, r in report.repeat.items():
        other = "not run" if r["second_process"] is None else r["second_process"]
        lines.append(
            f"  {mode:<7} same process {r['same_process']}, second process {other}, of {r['queries']}"
        )
    lines += ["", f"targets of issue 19 ({report.name} set):"]
    for t in targets(report, target_mode):
        state = "not run" if t.met is None else ("met" if t.met else "NOT met")
        lines.append(f"  [{state}] {t.name}: {t.figure}")
    return "\n".join(lines)


def to_json(report: SetReport, target_mode: str) -> dict[str, Any]:
    def scores(s: SpanScores) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(s).items()}

    return {
        "set": report.name,
        "documents": report.documents,
        "chunks": report.chunks,
        "questions": report.questions,
        "names_document": report.names_document,
        "ingest_seconds": round(report.ingest_seconds, 2),
        "search_seconds": round(report.search_seconds, 2),
        "problems": report.problems,
        "counts": report.counts,
        "scores": {
            g: {m: {str(k): scores(s) for k, s in by_k.items()} for m, by_k in by_mode.items()}
            for g, by_mode in report.scores.items()
        },
        "repeat": report.repeat,
        "legacy": {
            m: dict(zip(("recall@1", "recall@5", "mrr"), v, strict=True))
            for m, v in report.legacy.items()
        },
        "targets": [asdict(t) for t in targets(report, target_mode)],
        "per_question": {
            f"{s}/{m}/{qid}": {str(k): scores(v) for k, v in by_k.items()}
            for (s, m, qid), by_k in report.per_question.items()
        },
    }


def load_sets(args: argparse.Namespace) -> list[EvalSet]:
    sets = []
    if args.set in ("sample", "all"):
        sets.append(load_sample_set(args.sample, args.questions))
    if args.set in ("contracts", "all"):
        sets.append(load_contract_set(args.contracts, args.contract_questions))
    if args.limit:
        sets = [s.subset(q.id for q in s.questions[: args.limit]) for s in sets]
    return sets


def main(argv: Sequence[str] | None = None) -> int:
    from legalstream.settings import REPO_ROOT, Settings

    data = REPO_ROOT / "data"
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--set", choices=["sample", "contracts", "all"], default="all")
    ap.add_argument(
        "--mode", action="append", choices=list(MODES), help="repeatable; default: all three"
    )
    ap.add_argument("--json", type=Path, help="also write every figure (and per question) here")
    ap.add_argument("--store", choices=["edge", "qdrant"], help="default: the configured store")
    ap.add_argument("--limit", type=int, default=0, help="only the first N questions of each set")
    ap.add_argument(
        "--no-second-process", action="store_true", help="skip the cross-process repeat"
    )
    ap.add_argument("--verbose", "-v", action="store_true", help="list misses at k=8 per question")
    ap.add_argument("--sample", type=Path, default=data / "sample")
    ap.add_argument("--questions", type=Path, default=data / "eval" / "questions.jsonl")
    ap.add_argument("--contracts", type=Path, default=data / "eval" / "contracts")
    ap.add_argument(
        "--contract-questions", type=Path, default=data / "eval" / "contract_questions.jsonl"
    )
    args = ap.parse_args(argv)
    rag = Settings().rag
    if args.store:
        rag = rag.model_copy(update={"store": args.store})
    modes = tuple(dict.fromkeys(args.mode or MODES))
    started = time.perf_counter()
    reports = []
    for evalset in load_sets(args):
        report = run_set(
            evalset,
            rag,
            modes,
            second_process=not args.no_second_process,
            legacy=evalset.name == "sample",
        )
        reports.append(report)
        print(format_report(report, rag.mode), flush=True)
        if args.verbose:
            print(format_misses(report, evalset))
        print(flush=True)
    print(f"eval finished in {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "settings": rag.model_dump(mode="json"),
                    "sets": [to_json(r, rag.mode) for r in reports],
                },
                indent=1,
            )
        )
    return 0


def format_misses(report: SetReport, evalset: EvalSet) -> str:
    by_id = {q.id: q for q in evalset.questions}
    lines = ["misses (evidence recall@8 < 1):"]
    for (setting, mode, qid), by_k in sorted(report.per_question.items()):
        if by_k[8].evidence_recall < 1:
            q = by_id[qid]
            lines.append(
                f"  {setting:<6} {mode:<6} {qid}: ev@8 {by_k[8].evidence_recall:.2f} "
                f"doc@8 {by_k[8].doc_hit:.0f} [{q.doc_id}] {q.question[:90]}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
