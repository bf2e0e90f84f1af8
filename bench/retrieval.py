"""Retrieval benchmark: ingest throughput and filtered query latency.

    .venv/bin/python bench/retrieval.py            # 10k and 100k chunks
    .venv/bin/python bench/retrieval.py --quick    # 10k only

(1) Ingests the sample corpus (data/sample) into a fresh Qdrant Edge shard:
    docs/s, chunks/s and the parse / embed / index split.
(2) Fills Qdrant Edge and qdrant-client local mode (the baseline, same run)
    with N synthetic chunks over 100 cases (random unit vectors; BM25 vectors of
    random legal-vocabulary text) and times queries filtered by one case:
    engine-only (store query with precomputed vectors) and end-to-end
    (RetrievalEngine.search: MiniLM query embedding + BM25 + store), for dense,
    bm25 and hybrid. Prints p50/p99 and the local-mode/Edge ratio.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from legalstream.rag.edge_store import EdgeStore  # noqa: E402
from legalstream.rag.embed import make_embedding  # noqa: E402
from legalstream.rag.engine import RetrievalEngine, ensure_sample_corpus  # noqa: E402
from legalstream.rag.qdrant_store import QdrantStore  # noqa: E402
from legalstream.rag.store import Bm25Encoder, ChunkPoint  # noqa: E402
from legalstream.settings import RagSettings  # noqa: E402

CASES = 100
MODES = ("dense", "bm25", "hybrid")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def bench_ingest(sample: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        eng = RetrievalEngine.from_settings(RagSettings(data_dir=Path(tmp)))
        eng.embedder.query("warm-up")  # model load is a start-up cost, not ingest
        t = time.perf_counter()
        rep = ensure_sample_corpus(eng, sample)
        wall = time.perf_counter() - t
        eng.close()
    if rep is None:
        print("no sample corpus")
        return
    print(f"## ingest: sample corpus ({rep.documents} docs, {rep.chunks} chunks), Qdrant Edge")
    print(
        f"  {wall:.2f} s  = {rep.documents / wall:.2f} docs/s, {rep.chunks / wall:.1f} chunks/s;"
        f" parse {rep.parse_seconds:.2f} s, embed {rep.embed_seconds:.2f} s,"
        f" index {rep.index_seconds:.3f} s"
    )


def vocabulary(sample: Path) -> list[str]:
    words: set[str] = set()
    for p in sample.rglob("*.md"):
        words.update(w.lower() for w in re.findall(r"[A-Za-z][A-Za-z'-]{2,}", p.read_text()))
    return sorted(words) or ["alarm", "warehouse", "liability", "breach", "contract"]


def synthetic_points(
    n: int, dim: int, vocab: list[str], bm25: Bm25Encoder, seed: int = 7
) -> list[ChunkPoint]:
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    dense = rng.standard_normal((n, dim)).astype(np.float32)
    dense /= np.linalg.norm(dense, axis=1, keepdims=True)
    pts = []
    for i in range(n):
        text = " ".join(rnd.choices(vocab, k=120))
        case_id = i % CASES + 1
        pts.append(
            ChunkPoint(
                id=f"00000000-0000-4000-8000-{i:012d}",
                dense=dense[i],
                sparse=bm25.document(text),
                payload={
                    "kind": "chunk", "chunk_id": f"syn-{i}", "case_id": case_id,
                    "doc_id": f"case-{case_id}/doc-{i % 17}", "title": "Synthetic",
                    "page": None, "section": f"¶ {i % 50}", "labels": [],
                    "char_start": 0, "char_end": len(text), "text": text,
                },
            )
        )  # fmt: skip
    return pts


def time_calls(fn, queries: list, budget_s: float, max_n: int) -> list[float]:
    out: list[float] = []
    start = time.perf_counter()
    for q in queries[:max_n]:
        t = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - t) * 1000)
        if time.perf_counter() - start > budget_s and len(out) >= 10:
            break
    return out


def bench_queries(n: int, vocab: list[str], nq: int) -> None:
    emb = make_embedding("minilm-onnx")
    bm25 = Bm25Encoder(avg_len=1200 / 5.5)
    t = time.perf_counter()
    pts = synthetic_points(n, emb.dim, vocab, bm25)
    print(
        f"\n## query latency: {n:,} chunks over {CASES} cases (filter: one case, {n // CASES} chunks), k=5"
    )
    print(f"  (synthetic points built in {time.perf_counter() - t:.1f} s)")
    rnd = random.Random(11)
    texts = [" ".join(rnd.choices(vocab, k=rnd.randint(4, 12))) for _ in range(nq)]
    case_ids = [rnd.randint(1, CASES) for _ in range(nq)]
    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {
            "edge": EdgeStore(Path(tmp) / "edge", emb.dim),
            "local": QdrantStore("bench", emb.dim, path=str(Path(tmp) / "local")),
        }
        for name, store in stores.items():
            t = time.perf_counter()
            store.upsert_chunks(pts)
            store.flush()
            print(f"  {name:<5} load {time.perf_counter() - t:6.1f} s")
            eng = RetrievalEngine(store, emb, top_k=5)
            specs = {
                m: [eng.query_spec(q, c, k=5, mode=m) for q, c in zip(texts, case_ids, strict=True)]
                for m in MODES
            }
            # Local mode is pure Python: give it a time budget so 100k finishes.
            budget = 60.0 if name == "local" else 1e9
            res: dict[str, tuple[float, float, int]] = {}
            for m in MODES:
                for s in specs[m][:5]:
                    store.query(s)  # warm-up
                lat = time_calls(store.query, specs[m], budget, nq)
                res[f"engine {m}"] = (statistics.median(lat), pct(lat, 99), len(lat))
                pairs = list(zip(texts, case_ids, strict=True))
                lat = time_calls(
                    lambda qc, m=m, eng=eng: eng.search(qc[0], qc[1], mode=m), pairs, budget, nq
                )
                res[f"e2e    {m}"] = (statistics.median(lat), pct(lat, 99), len(lat))
            results[name] = res
            store.close()
    print(
        f"  {'':<14} {'Edge p50':>9} {'p99':>8} {'local p50':>10} {'p99':>9} {'local/Edge p50':>15}"
    )
    for key in results["edge"]:
        e50, e99, _ = results["edge"][key]
        l50, l99, ln = results["local"][key]
        print(
            f"  {key:<14} {e50:8.3f}ms {e99:7.3f}ms {l50:9.2f}ms {l99:8.2f}ms {l50 / e50:14.0f}x   (local n={ln})"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description="retrieval benchmark")
    ap.add_argument("--quick", action="store_true", help="10k chunks only")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sample", type=Path, default=ROOT / "data" / "sample")
    args = ap.parse_args()
    bench_ingest(args.sample)
    vocab = vocabulary(args.sample)
    for n in (10_000,) if args.quick else (10_000, 100_000):
        bench_queries(n, vocab, args.queries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
