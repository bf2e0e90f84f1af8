"""Run one eval set: ingest it twice, search every question, score, check repeatability.

Two settings, each in its own cases of one engine (Qdrant Edge on a temp dir):

* ``within``: each document in a case of its own, the question searched in its gold
  document's case (what LegalBench-RAG calls document-level retrieval);
* ``whole``: the set's own cases (the contract set: all contracts in one case; the
  sample set: its two cases), split by whether the question names its document.

Every search runs twice in this process and once more in a second process that opens
the same store; a query whose top-k chunk ids differ between runs counts as not repeatable.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legalstream.rag.citations import Citation
from legalstream.rag.engine import RetrievalEngine
from legalstream.rag.evalmetrics import Returned, SpanScores, as_returned, mean, score
from legalstream.rag.evalset import EvalSet, GoldSpan, Question, resolve

if TYPE_CHECKING:
    from legalstream.settings import RagSettings

MODES = ("dense", "bm25", "hybrid")
#: Cut-offs reported; every search fetches the largest and the rest are its prefixes.
KS = (1, 4, 5, 8, 16)
SETTINGS = ("within", "whole")
#: Rows of the report: a setting, or the whole-case setting's questions split by naming.
GROUPS = ("within", "whole", "whole:names", "whole:unnamed")
#: A second process gets this long to replay every search of a set.
REPLAY_TIMEOUT_S = 600.0

#: (setting, mode, question id)
Key = tuple[str, str, str]


@dataclass(slots=True)
class Searched:
    """One search's result: chunk ids (for repeatability) and what the hits return."""

    chunk_ids: list[str]
    returned: Returned


@dataclass(slots=True)
class SetReport:
    name: str
    documents: int
    chunks: dict[str, int]
    questions: int
    names_document: int
    modes: tuple[str, ...]
    #: group -> mode -> k -> mean scores over the group's questions
    scores: dict[str, dict[str, dict[int, SpanScores]]]
    #: mode -> {"queries", "same_process", "second_process"} (differing queries)
    repeat: dict[str, dict[str, int | None]]
    problems: list[str]
    #: group -> questions scored in it (those with at least one resolved gold span)
    counts: dict[str, int]
    ingest_seconds: float
    search_seconds: float
    #: (setting, mode, question id) -> per-question scores at each k
    per_question: dict[Key, dict[int, SpanScores]] = field(default_factory=dict)
    #: mode -> (recall@1, recall@5, MRR) of the legacy section-label eval (sample set)
    legacy: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def eval_settings(rag: RagSettings, data_dir: Path) -> RagSettings:
    """``rag`` on a store under ``data_dir`` only: never a Qdrant server's collections."""
    return rag.model_copy(
        update={
            "data_dir": data_dir,
            "qdrant_path": None,
            "qdrant_url": None,
            "qdrant_api_key": None,
        }
    )


def case_for(evalset: EvalSet, q: Question, setting: str) -> int:
    return evalset.within_doc_case(q.doc_id) if setting == "within" else q.case_id


def search_all(
    engine: RetrievalEngine, evalset: EvalSet, modes: Sequence[str]
) -> dict[Key, Searched]:
    out: dict[Key, Searched] = {}
    k = max(KS)
    for setting in SETTINGS:
        for mode in modes:
            for q in evalset.questions:
                hits = engine.search(q.question, case_for(evalset, q, setting), k=k, mode=mode)
                out[setting, mode, q.id] = Searched([h.chunk_id for h in hits], as_returned(hits))
    return out


def group_of(q: Question, setting: str) -> list[str]:
    if setting == "within":
        return ["within"]
    return ["whole", "whole:names" if q.names_document else "whole:unnamed"]


def run_set(
    evalset: EvalSet,
    rag: RagSettings,
    modes: Sequence[str] = MODES,
    *,
    second_process: bool = True,
    legacy: bool = False,
) -> SetReport:
    """Ingest ``evalset`` into a temp dir, search, score; the temp dir is removed after."""
    with tempfile.TemporaryDirectory(prefix=f"legalstream-eval-{evalset.name}-") as tmp:
        settings = eval_settings(rag, Path(tmp))
        engine = RetrievalEngine.from_settings(settings)
        try:
            t0 = time.perf_counter()
            chunks = {}
            problems: list[str] = []
            gold: dict[str, dict[str, list[GoldSpan]]] = {}
            for setting in SETTINGS:
                within = setting == "within"
                report = evalset.ingest(engine, within_doc=within)
                problems += [f"ingest {f.path}: {f.error}" for f in report.failed]
                chunks[setting] = report.chunks
                res = resolve(evalset, evalset.source_texts(engine, within_doc=within))
                problems += [f"{setting}: {p}" for p in res.problems]
                gold[setting] = res.spans
            ingest_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            first = search_all(engine, evalset, modes)
            second = search_all(engine, evalset, modes)
            search_s = (time.perf_counter() - t1) / 2
            legacy_scores = legacy_table(engine, evalset, modes) if legacy else {}
        finally:
            engine.close()
        # The store is closed, so the second process owns it alone.
        third = replay_in_subprocess(settings, evalset, modes) if second_process else None

    per_question: dict[Key, dict[int, SpanScores]] = {}
    grouped: dict[str, dict[str, list[dict[int, SpanScores]]]] = {
        g: {m: [] for m in modes} for g in GROUPS
    }
    by_id = {q.id: q for q in evalset.questions}
    for (setting, mode, qid), searched in first.items():
        q = by_id[qid]
        spans = gold[setting].get(qid) or []
        if not spans:
            continue  # reported in problems
        per_k = {k: score(searched.returned, spans, k) for k in KS}
        per_question[setting, mode, qid] = per_k
        for g in group_of(q, setting):
            grouped[g][mode].append(per_k)
    scores = {
        g: {m: {k: mean([pq[k] for pq in rows]) for k in KS} for m, rows in by_mode.items()}
        for g, by_mode in grouped.items()
    }
    repeat: dict[str, dict[str, int | None]] = {}
    for mode in modes:
        keys = [key for key in first if key[1] == mode]
        repeat[mode] = {
            "queries": len(keys),
            "same_process": sum(first[k].chunk_ids != second[k].chunk_ids for k in keys),
            "second_process": (
                None if third is None else sum(first[k].chunk_ids != third.get(k) for k in keys)
            ),
        }
    return SetReport(
        name=evalset.name,
        documents=len(evalset.documents),
        chunks=chunks,
        questions=len(evalset.questions),
        names_document=sum(q.names_document for q in evalset.questions),
        modes=tuple(modes),
        scores=scores,
        repeat=repeat,
        problems=problems,
        counts={g: len(grouped[g][modes[0]]) if modes else 0 for g in GROUPS},
        ingest_seconds=ingest_s,
        search_seconds=search_s,
        per_question=per_question,
        legacy=legacy_scores,
    )


# the second process ----------------------------------------------------------------------


def replay_in_subprocess(
    settings: RagSettings, evalset: EvalSet, modes: Sequence[str]
) -> dict[Key, list[str]] | None:
    """Every search of the set again, in a fresh interpreter on the same (closed) store.

    Returns None, and says why on stderr, when the second process fails or times out.
    """
    jobs = [
        {
            "key": [setting, mode, q.id],
            "query": q.question,
            "case_id": case_for(evalset, q, setting),
            "mode": mode,
        }
        for setting in SETTINGS
        for mode in modes
        for q in evalset.questions
    ]
    data_dir = Path(settings.data_dir)
    spec = data_dir / "replay-in.json"
    out = data_dir / "replay-out.json"
    spec.write_text(
        json.dumps({"rag": settings.model_dump(mode="json"), "k": max(KS), "jobs": jobs})
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "legalstream.rag.evalrun", str(spec), str(out)],
            capture_output=True,
            text=True,
            timeout=REPLAY_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"second process timed out after {REPLAY_TIMEOUT_S:.0f} s", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"second process failed ({proc.returncode}): {proc.stderr[-2000:]}", file=sys.stderr)
        return None
    rows = json.loads(out.read_text())
    return {(r["key"][0], r["key"][1], r["key"][2]): r["chunk_ids"] for r in rows}


def replay_main(argv: Sequence[str]) -> int:
    """``python -m legalstream.rag.evalrun IN OUT``: run IN's searches, write chunk ids to OUT."""
    from legalstream.settings import RagSettings

    spec: dict[str, Any] = json.loads(Path(argv[0]).read_text())
    rag = RagSettings.model_validate(spec["rag"])
    engine = RetrievalEngine.from_settings(rag)
    try:
        rows = [
            {
                "key": job["key"],
                "chunk_ids": [
                    h.chunk_id
                    for h in engine.search(
                        job["query"], int(job["case_id"]), k=int(spec["k"]), mode=job["mode"]
                    )
                ],
            }
            for job in spec["jobs"]
        ]
    finally:
        engine.close()
    Path(argv[1]).write_text(json.dumps(rows))
    return 0


# the sample set's first metric --------------------------------------------------------------


def _norm(s: str) -> str:
    return re.sub(r"\s+", " ", s.replace("§", "Section ").replace("¶", "¶ ")).strip().lower()


def legacy_is_hit(c: Citation, labels: list[str], gold_doc: str, gold_section: str | None) -> bool:
    """A chunk of the gold document (file stem) that carries the gold section: one of its
    labels ("¶ 26", "Section 4.1", a heading) or its text contains it."""
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


def legacy_table(
    engine: RetrievalEngine, evalset: EvalSet, modes: Sequence[str]
) -> dict[str, tuple[float, float, float]]:
    """recall@1, recall@5 and MRR over the top 10, a hit being a chunk of the gold document
    that carries the gold section: the sample set's first metric, kept so docs can compare.

    """
    out = {}
    for mode in modes:
        r1 = r5 = rr = 0.0
        for q in evalset.questions:
            rank = None
            for i, c in enumerate(engine.search(q.question, q.case_id, k=10, mode=mode), start=1):
                if legacy_is_hit(c, list(c.labels), q.gold_doc or "", q.gold_section):
                    rank = i
                    break
            r1 += rank == 1
            r5 += rank is not None and rank <= 5
            rr += 1 / rank if rank else 0.0
        n = max(1, len(evalset.questions))
        out[mode] = (r1 / n, r5 / n, rr / n)
    return out


if __name__ == "__main__":
    raise SystemExit(replay_main(sys.argv[1:]))
