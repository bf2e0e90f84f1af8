"""Retrieval benchmark: ingest speed against the embedding model's own, and query latency.

    .venv/bin/python bench/retrieval.py            # ingest + 10k and 100k chunks, local-mode baseline
    .venv/bin/python bench/retrieval.py --quick    # ingest of case 1 + 10k chunks, Edge only (< 1 min)

(1) Ingest, side by side in one run: the sample corpus' chunk texts embedded by
    the model alone (onnxruntime, batch 1 and the engine's batching, best taken
    as the model's raw speed), then the same corpus ingested into a fresh Qdrant
    Edge shard (parse, chunk, embed, BM25, index, publish). Prints chunks/s of
    both and the ratio (target: ingest within 1.3x of the raw model).
(2) Query latency: Qdrant Edge (and, without --quick, qdrant-client local mode
    as the baseline) filled with N synthetic chunks over 100 cases (random unit
    vectors, BM25 vectors of random legal-vocabulary text) plus 17 document
    records per case (for routing), timed on queries filtered by one case:
    engine-only (RetrievalEngine.run with precomputed vectors: both arms, fusion,
    payloads) and end-to-end (RetrievalEngine.search: MiniLM query embedding,
    BM25, routing, store, fusion). Prints p50/p99 and the verdicts against the
    targets (hybrid at 100k: engine p50 < 1.5 ms, end-to-end p50 < 6 ms).
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

from legalstream.rag.chunking import chunk_text  # noqa: E402
from legalstream.rag.edge_store import EdgeStore  # noqa: E402
from legalstream.rag.embed import make_embedding  # noqa: E402
from legalstream.rag.engine import RetrievalEngine  # noqa: E402
from legalstream.rag.ingest import dense_text, path_sources  # noqa: E402
from legalstream.rag.loaders import load_file  # noqa: E402
from legalstream.rag.qdrant_store import QdrantStore  # noqa: E402
from legalstream.rag.store import Bm25Encoder, ChunkPoint  # noqa: E402
from legalstream.settings import RagSettings  # noqa: E402

CASES = 100
DOCS_PER_CASE = 17
MODES = ("dense", "bm25", "hybrid")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def bench_ingest(folders: list[Path], rounds: int) -> None:
    # The texts the engine embeds, parsed and chunked exactly as ingest does.
    texts: list[str] = []
    for folder in folders:
        for src in path_sources(folder):
            assert src.path is not None
            loaded = load_file(src.path)
            for ch in chunk_text(
                loaded.text, page_starts=loaded.page_starts, headings=loaded.headings
            ):
                lead = " ".join(
                    loaded.text[c.char_start : c.char_end]
                    for c in ch.context
                    if c.role == "lead_in"
                )
                texts.append(dense_text(loaded.title, ch, lead))
    # The engine's own batch size (RagSettings.embed_batch_size), and batch 1.
    emb = make_embedding("minilm-onnx", batch_size=RagSettings().embed_batch_size)
    emb.documents(texts[:8])  # model load and first-run costs are not throughput
    batch = f"batch {emb.model.embed_batch_size}, length-sorted"
    raw: dict[str, list[float]] = {"batch 1": [], batch: []}
    ingest: list[float] = []
    chunks = docs = 0
    # Rounds interleave the model alone and the ingest, so load from other
    # processes on the machine falls on both alike; medians are compared.
    for _ in range(rounds):
        t = time.perf_counter()
        for text in texts:
            emb.documents([text])
        raw["batch 1"].append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        emb.documents(texts)
        raw[batch].append(len(texts) / (time.perf_counter() - t))
        with tempfile.TemporaryDirectory() as tmp:
            # The same model instance as the rows above: one warm onnxruntime session.
            eng = RetrievalEngine(EdgeStore(Path(tmp) / "edge", emb.dim), emb)
            t = time.perf_counter()
            chunks = docs = 0
            for i, folder in enumerate(folders, start=1):
                rep = eng.ingest_path(folder, i)
                chunks += rep.chunks
                docs += rep.documents
            ingest.append(chunks / (time.perf_counter() - t))
            eng.close()
    best_name = max(raw, key=lambda k: statistics.median(raw[k]))
    best = statistics.median(raw[best_name])
    speed = statistics.median(ingest)
    ratio = best / speed
    print(
        f"## ingest: {docs} docs, {chunks} chunks ({', '.join(f.name for f in folders)}),"
        f" median of {rounds} interleaved rounds"
    )
    for name, runs in raw.items():
        print(f"  model alone, {name:<26} {statistics.median(runs):7.1f} chunks/s")
    print(f"  ingest (parse+embed+index+publish)  {speed:7.1f} chunks/s")
    print(
        f"  target ingest within 1.3x of the model's raw speed ({best_name}):"
        f" {ratio:.2f}x -> {verdict(ratio <= 1.3)}"
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
        text = " ".join(rnd.choices(vocab, k=40))
        case_id = i % CASES + 1
        pts.append(
            ChunkPoint(
                id=f"00000000-0000-4000-8000-{i:012d}",
                dense=dense[i],
                sparse=bm25.document(text),
                payload={
                    "kind": "chunk", "chunk_id": f"case-{case_id}/doc-{i % DOCS_PER_CASE}#{i}",
                    "case_id": case_id, "doc_id": f"case-{case_id}/doc-{i % DOCS_PER_CASE}",
                    "title": "Synthetic", "page": None, "section": f"Section {i % 50}",
                    "labels": [], "char_start": 0, "char_end": len(text), "text": text,
                    "context": [],
                },
            )
        )  # fmt: skip
    return pts


def add_documents(store: object, vocab: list[str], bm25: Bm25Encoder) -> None:
    rnd = random.Random(3)
    for case_id in range(1, CASES + 1):
        # As the engine records after each ingest: routing reads cards once per generation.
        store.upsert_case(case_id, {"title": f"Case {case_id}", "generation": "bench-1"})  # type: ignore[attr-defined]
        for d in range(DOCS_PER_CASE):
            card = bm25.document(" ".join(rnd.choices(vocab, k=60)))
            store.upsert_document(  # type: ignore[attr-defined]
                case_id,
                f"case-{case_id}/doc-{d}",
                {
                    "title": f"Synthetic {d}",
                    "card": {"indices": card.indices, "values": card.values},
                    "name_terms": card.indices[:6],
                    "source_text": "",
                },
            )


def time_calls(fn, items: list, budget_s: float) -> list[float]:
    out: list[float] = []
    start = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t) * 1000)
        if time.perf_counter() - start > budget_s and len(out) >= 10:
            break
    return out


def bench_queries(n: int, vocab: list[str], nq: int, with_local: bool) -> dict[str, float]:
    emb = make_embedding("minilm-onnx")
    bm25 = Bm25Encoder(avg_len=400 / 5.5)
    t = time.perf_counter()
    pts = synthetic_points(n, emb.dim, vocab, bm25)
    print(
        f"\n## query latency: {n:,} chunks over {CASES} cases (filter: one case,"
        f" {n // CASES} chunks, {DOCS_PER_CASE} documents), k=5"
    )
    print(f"  (synthetic points built in {time.perf_counter() - t:.1f} s)")
    rnd = random.Random(11)
    texts = [" ".join(rnd.choices(vocab, k=rnd.randint(4, 12))) for _ in range(nq)]
    case_ids = [rnd.randint(1, CASES) for _ in range(nq)]
    results: dict[str, dict[str, tuple[float, float, int]]] = {}
    # The query embedding alone, for reading the end-to-end rows: e2e = this + engine + routing.
    emb.query("warm-up")
    lat = time_calls(emb.query, texts, 1e9)
    embed_only = (statistics.median(lat), pct(lat, 99))
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"edge": lambda: EdgeStore(Path(tmp) / "edge", emb.dim)}
        if with_local:
            stores["local"] = lambda: QdrantStore("bench", emb.dim, path=str(Path(tmp) / "local"))
        for name, make in stores.items():
            store = make()
            t = time.perf_counter()
            store.upsert_chunks(pts)
            add_documents(store, vocab, bm25)
            store.flush()
            print(f"  {name:<5} load {time.perf_counter() - t:6.1f} s")
            eng = RetrievalEngine(store, emb, top_k=5)
            # Local mode is pure Python: give it a time budget so 100k finishes.
            budget = 30.0 if name == "local" else 1e9
            res: dict[str, tuple[float, float, int]] = {}
            pairs = list(zip(texts, case_ids, strict=True))
            for m in MODES:
                specs = [eng.query_spec(q, c, k=5, mode=m) for q, c in pairs]
                for s in specs[:5]:
                    eng.run(s)  # warm-up
                lat = time_calls(eng.run, specs, budget)
                res[f"engine {m}"] = (statistics.median(lat), pct(lat, 99), len(lat))
                lat = time_calls(
                    lambda qc, m=m, eng=eng: eng.search(qc[0], qc[1], mode=m), pairs, budget
                )
                res[f"e2e    {m}"] = (statistics.median(lat), pct(lat, 99), len(lat))
            results[name] = res
            store.close()
    head = f"  {'':<14} {'Edge p50':>9} {'p99':>8}"
    if with_local:
        head += f" {'local p50':>10} {'p99':>9} {'local/Edge p50':>15}"
    print(head)
    print(
        f"  {'MiniLM query':<14} {embed_only[0]:8.3f}ms {embed_only[1]:7.3f}ms   (embedding alone)"
    )
    for key in results["edge"]:
        e50, e99, _ = results["edge"][key]
        line = f"  {key:<14} {e50:8.3f}ms {e99:7.3f}ms"
        if with_local:
            l50, l99, ln = results["local"][key]
            line += f" {l50:9.2f}ms {l99:8.2f}ms {l50 / e50:14.0f}x   (local n={ln})"
        print(line)
    return {
        "engine": results["edge"]["engine hybrid"][0],
        "e2e": results["edge"]["e2e    hybrid"][0],
        "embed": embed_only[0],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description="retrieval benchmark")
    ap.add_argument("--quick", action="store_true", help="case 1 ingest and 10k chunks, Edge only")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sample", type=Path, default=ROOT / "data" / "sample")
    args = ap.parse_args()
    folders = sorted(p for p in args.sample.iterdir() if p.is_dir())
    bench_ingest(folders[:1] if args.quick else folders, rounds=2 if args.quick else 3)
    vocab = vocabulary(args.sample)
    sizes = (10_000,) if args.quick else (10_000, 100_000)
    nq = min(args.queries, 150) if args.quick else args.queries
    last: dict[str, float] = {}
    for n in sizes:
        last = bench_queries(n, vocab, nq, with_local=not args.quick)
    scale = f"{sizes[-1]:,}"
    print(f"\n## targets (filtered hybrid at {scale} chunks; the targets are set at 100,000)")
    print(f"  engine p50 {last['engine']:.3f} ms < 1.5 ms: {verdict(last['engine'] < 1.5)}")
    print(
        f"  end-to-end p50 {last['e2e']:.3f} ms < 6 ms: {verdict(last['e2e'] < 6.0)}"
        f" (of which the MiniLM query embedding alone: {last['embed']:.3f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
