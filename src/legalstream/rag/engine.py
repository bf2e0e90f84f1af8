"""RetrievalEngine: the one object other modules use for case-file retrieval."""

from __future__ import annotations

import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legalstream.rag.citations import Citation
from legalstream.rag.embed import EmbeddingAdapter, make_embedding
from legalstream.rag.ingest import FileResult, Ingestor, IngestReport
from legalstream.rag.store import Bm25Encoder, ChunkStore, Mode, QuerySpec

if TYPE_CHECKING:
    from legalstream.settings import RagSettings

MODES = ("hybrid", "dense", "bm25")


@dataclass(frozen=True, slots=True)
class CaseInfo:
    case_id: int
    documents: int
    chunks: int


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    doc_id: str
    case_id: int
    title: str
    chunks: int
    chars: int
    pages: int | None
    content_hash: str
    source_path: str | None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}  # type: ignore[attr-defined]


class RetrievalEngine:
    """Ingest, search (filtered by case inside Qdrant) and manage case documents.

    ``search`` is synchronous and thread-safe: CrewAI tool calls run it from many
    worker threads at once. Ingest and deletes are serialised by one lock.
    """

    def __init__(
        self,
        store: ChunkStore,
        embedder: EmbeddingAdapter,
        *,
        top_k: int = 5,
        mode: Mode = "hybrid",
        chunk_size: int = 1200,
        chunk_overlap: int = 150,
        prefetch: int = 40,
        rrf_k: int = 10,
        rrf_weights: tuple[float, float] | None = None,
        model_name: str = "minilm-onnx",
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.mode: Mode = mode
        self.prefetch = prefetch
        self.rrf_k = rrf_k
        self.rrf_weights = rrf_weights
        # BM25 length normalisation wants the typical chunk length in tokens (~5.5 chars each).
        self.bm25 = Bm25Encoder(avg_len=max(32.0, chunk_size / 5.5))
        self._ingestor = Ingestor(
            store,
            embedder,
            self.bm25,
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            model_name=model_name,
        )
        self._write = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, rag: RagSettings) -> RetrievalEngine:
        embedder = make_embedding(
            rag.embed_model,
            batch_size=rag.embed_batch_size,
            threads=rag.embed_threads,
        )
        idf_per_case = rag.bm25_idf_per_case
        store: ChunkStore
        if rag.store == "edge":
            from legalstream.rag.edge_store import EdgeStore

            path = Path(rag.data_dir) / "qdrant-edge" / rag.collection
            store = EdgeStore(path, embedder.dim, idf_per_case=idf_per_case)
        else:
            from legalstream.rag.qdrant_store import QdrantStore

            qpath = rag.qdrant_path
            if not rag.qdrant_url and not qpath:
                qpath = str(Path(rag.data_dir) / "qdrant-local")
            store = QdrantStore(
                rag.collection,
                embedder.dim,
                url=rag.qdrant_url,
                api_key=rag.qdrant_api_key,
                path=qpath,
                idf_per_case=idf_per_case,
            )
        return cls(
            store,
            embedder,
            top_k=rag.top_k,
            mode=rag.mode,
            chunk_size=rag.chunk_size,
            chunk_overlap=rag.chunk_overlap,
            prefetch=rag.prefetch,
            rrf_k=rag.rrf_k,
            rrf_weights=rag.rrf_weights,
            model_name=rag.embed_model,
        )

    # search ------------------------------------------------------------------------
    def query_spec(self, query: str, case_id: int, *, k: int | None, mode: str | None) -> QuerySpec:
        mode = mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        k = self.top_k if k is None else int(k)
        if k < 1:
            raise ValueError("k must be at least 1")
        dense = self.embedder.query(query) if mode in ("hybrid", "dense") else None
        sparse = self.bm25.query(query) if mode in ("hybrid", "bm25") else None
        return QuerySpec(
            case_id=int(case_id),
            k=k,
            mode=mode,  # type: ignore[arg-type]
            dense=dense,
            sparse=sparse,
            prefetch=max(self.prefetch, k),
            rrf_k=self.rrf_k,
            rrf_weights=self.rrf_weights,
        )

    def search(
        self, query: str, case_id: int, *, k: int | None = None, mode: str | None = None
    ) -> list[Citation]:
        """Top-k chunks of case ``case_id`` for ``query``; the case filter runs inside Qdrant."""
        if not query or not query.strip():
            return []
        spec = self.query_spec(query, case_id, k=k, mode=mode)
        if spec.mode == "bm25" and spec.sparse is not None and not spec.sparse.indices:
            return []  # only stopwords: BM25 has nothing to match
        return [Citation.from_payload(p, s) for p, s in self.store.query(spec)]

    def retriever(self, case_id: int, *, k: int | None = None, mode: str | None = None) -> Any:
        """A LlamaIndex BaseRetriever bound to one case."""
        from legalstream.rag.retrieve import CaseRetriever

        return CaseRetriever(self, case_id, k=k, mode=mode)

    # documents -----------------------------------------------------------------------
    def ingest_path(
        self, path: str | Path, case_id: int, *, title: str | None = None, progress: bool = False
    ) -> IngestReport:
        with self._write:
            report = self._ingestor.ingest_path(
                Path(path), int(case_id), title=title, progress=progress
            )
            self.store.flush()
            return report

    def cases(self) -> list[CaseInfo]:
        per_case: dict[int, int] = {}
        for doc in self.store.list_documents(None):
            cid = int(doc["case_id"])
            per_case[cid] = per_case.get(cid, 0) + 1
        return [
            CaseInfo(cid, n, self.store.count_chunks(cid)) for cid, n in sorted(per_case.items())
        ]

    def documents(self, case_id: int) -> list[DocumentInfo]:
        docs = [
            DocumentInfo(
                doc_id=str(d["doc_id"]),
                case_id=int(d["case_id"]),
                title=str(d.get("title") or d["doc_id"]),
                chunks=int(d.get("chunks") or 0),
                chars=int(d.get("chars") or 0),
                pages=d.get("pages"),
                content_hash=str(d.get("content_hash") or ""),
                source_path=d.get("source_path"),
            )
            for d in self.store.list_documents(int(case_id))
        ]
        return sorted(docs, key=lambda d: d.doc_id)

    def delete_document(self, case_id: int, doc_id: str) -> int:
        """Remove one document; returns the number of chunks deleted."""
        with self._write:
            n = self.store.delete_document(int(case_id), doc_id)
            self.store.flush()
            return n

    def delete_case(self, case_id: int) -> int:
        """Remove every document of a case; returns the number of chunks deleted."""
        with self._write:
            n = self.store.delete_case(int(case_id))
            self.store.flush()
            return n

    def source_text(self, doc_id: str, case_id: int | None = None) -> str | None:
        """The normalised text a citation's ``char_start:char_end`` indexes into."""
        doc = self.store.get_document(case_id, doc_id)
        return str(doc["source_text"]) if doc and "source_text" in doc else None

    def close(self) -> None:
        with self._write:
            if not self._closed:
                self._closed = True
                self.store.close()

    def __enter__(self) -> RetrievalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def ensure_sample_corpus(engine: RetrievalEngine, sample_dir: Path) -> IngestReport | None:
    """Ingest ``sample_dir`` per its ``cases.toml``; unchanged documents are skipped.

    Returns None when there is no sample corpus to ingest.
    """
    sample_dir = Path(sample_dir)
    manifest = sample_dir / "cases.toml"
    if not manifest.exists():
        return None
    cases = tomllib.loads(manifest.read_text(encoding="utf-8")).get("case", [])
    report = IngestReport()
    for case in cases:
        folder = sample_dir / str(case.get("folder", f"case-{case['id']}"))
        if not folder.is_dir():
            report.files.append(FileResult(str(folder), "failed", error="case folder missing"))
            continue
        report.merge(engine.ingest_path(folder, int(case["id"])))
    return report
