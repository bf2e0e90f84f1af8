"""RetrievalEngine: the one object other modules use for case-file retrieval.

Every method is synchronous and safe to call from worker threads (a server runs
them with ``anyio.to_thread.run_sync``). Searches run concurrently; ingests and
deletes are serialised by one lock. Long ingests report progress through a
callback (:mod:`legalstream.rag.progress`).
"""

from __future__ import annotations

import math
import threading
import time
import tomllib
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from legalstream.rag import fusion
from legalstream.rag.citations import Citation
from legalstream.rag.embed import EmbeddingAdapter, make_embedding
from legalstream.rag.ingest import (
    FileResult,
    Ingestor,
    IngestReport,
    Source,
    card_vector,
    path_sources,
    upload_doc_id,
)
from legalstream.rag.progress import ProgressCallback
from legalstream.rag.router import DocumentRouter, Route, doc_type, role_route
from legalstream.rag.store import ArmQuery, Bm25Encoder, ChunkStore, Mode, QuerySpec

if TYPE_CHECKING:
    from legalstream.settings import RagSettings

MODES = ("hybrid", "dense", "bm25")


class UnknownCase(LookupError):
    """The case does not exist (no title recorded and no documents)."""


class UnknownDocument(LookupError):
    """The document is not in the case."""


@dataclass(frozen=True, slots=True)
class CaseInfo:
    case_id: int
    documents: int
    chunks: int
    title: str | None = None
    created_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    #: "pdf" | "docx" | "html" | "markdown" | "text"
    file_type: str | None = None
    #: Size of the file as ingested.
    size_bytes: int | None = None
    #: Unix time of the last write of this document.
    ingested_at: float | None = None
    #: The file's name as given (upload name, or its path inside the ingested folder).
    source_name: str | None = None
    #: What the parsing library said about the file.
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_payload(cls, d: dict[str, Any]) -> DocumentInfo:
        return cls(
            doc_id=str(d["doc_id"]),
            case_id=int(d["case_id"]),
            title=str(d.get("title") or d["doc_id"]),
            chunks=int(d.get("chunks") or 0),
            chars=int(d.get("chars") or 0),
            pages=d.get("pages"),
            content_hash=str(d.get("content_hash") or ""),
            source_path=d.get("source_path"),
            file_type=d.get("file_type"),
            size_bytes=d.get("size_bytes"),
            ingested_at=d.get("ingested_at"),
            source_name=d.get("source_name"),
            warnings=tuple(d.get("warnings") or ()),
        )


@dataclass(frozen=True, slots=True)
class DocumentText:
    """One document's metadata and the source text its citations index into."""

    info: DocumentInfo
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.info.to_dict(), "text": self.text}


class RetrievalEngine:
    """Ingest, search (filtered by case inside Qdrant) and manage cases and documents."""

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
        route_documents: bool = True,
        per_doc_share: float | None = 0.5,
        router: DocumentRouter | None = None,
        fusion_method: str = "convex",
        fusion_weights: tuple[float, float] | None = (1.0, 1.0),
        min_score_ratio: float | None = 0.4,
        named_min_score_ratio: float | None = 0.5,
        min_results: int = 1,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.top_k = top_k
        self.mode: Mode = mode
        self.prefetch = prefetch
        self.rrf_k = rrf_k
        self.rrf_weights = rrf_weights
        self.route_documents = route_documents
        #: In a whole-case search, at most this share of k (rounded up) from one document.
        self.per_doc_share = per_doc_share
        self.router = router or DocumentRouter()
        self.fusion_method = fusion_method
        self.fusion_weights = fusion_weights
        #: Hybrid hits below this share of the best hit's fused score are not returned.
        self.min_score_ratio = min_score_ratio
        #: The same, for a question routed to the one document it names: there the
        #: answer is a clause or two, and its neighbours are what costs precision.
        self.named_min_score_ratio = named_min_score_ratio
        #: The cut-off never leaves fewer hits than this (when there are that many).
        self.min_results = min_results
        # BM25 length normalisation wants the typical unit length in tokens (~5.5 chars each).
        self.bm25 = Bm25Encoder(avg_len=max(32.0, min(chunk_size, 400) / 5.5))
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
        # case_id -> (generation token, cards, naming terms): routing reads a case's
        # cards once per change of its documents, not on every query.
        #: case id -> (generation, cards, naming terms, document types)
        self._cards: OrderedDict[
            int, tuple[str, list[tuple[str, Any]], dict[str, Any], dict[str, str | None]]
        ] = OrderedDict()

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
            route_documents=rag.route_documents,
            fusion_method=rag.fusion,
            fusion_weights=rag.fusion_weights,
            min_score_ratio=rag.min_score_ratio,
            named_min_score_ratio=rag.named_min_score_ratio,
        )

    # search ------------------------------------------------------------------------
    def query_spec(
        self,
        query: str,
        case_id: int,
        *,
        k: int | None,
        mode: str | None,
        doc_ids: list[str] | None = None,
    ) -> QuerySpec:
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
            prefetch=max(self.prefetch, 2 * k),
            rrf_k=self.rrf_k,
            rrf_weights=self.rrf_weights,
            doc_ids=doc_ids,
            min_score_ratio=self.min_score_ratio,
        )

    def route(self, query: str, case_id: int) -> Route:
        """The document of ``case_id`` that ``query`` names (by its words, or its role)."""
        cards, names, types = self._case_cards(int(case_id))
        route = self.router.route(self.bm25.query(query), cards, names)
        if route.doc_id is None:
            by_role = role_route(query, types)
            if by_role is not None:
                doc_id, words = by_role
                naming = frozenset(self.bm25.query(words).indices)
                return Route(doc_id, route.best, route.second, naming)
        return route

    def _case_cards(
        self, case_id: int
    ) -> tuple[list[tuple[str, Any]], dict[str, Any], dict[str, str | None]]:
        # Every document write bumps the case record's generation token (in any
        # process sharing the store), so a cached copy is used only while current.
        record = self.store.get_case(case_id)
        generation = str(record.get("generation")) if record and record.get("generation") else ""
        cached = self._cards.get(case_id)
        if cached is not None and generation and cached[0] == generation:
            return cached[1], cached[2], cached[3]
        cards = []
        names: dict[str, frozenset[int]] = {}
        types: dict[str, str | None] = {}
        docs = self.store.list_documents(case_id, fields=["doc_id", "card", "name_terms", "title"])
        for d in docs:
            vec = card_vector(d)
            if vec is not None:
                cards.append((str(d["doc_id"]), vec))
                names[str(d["doc_id"])] = frozenset(d.get("name_terms") or ())
                types[str(d["doc_id"])] = doc_type(str(d.get("title") or ""))
        cards.sort()
        if generation:
            self._cards[case_id] = (generation, cards, names, types)
            self._cards.move_to_end(case_id)
            while len(self._cards) > 1024:
                self._cards.popitem(last=False)
        return cards, names, types

    def _touch(self, case_id: int) -> None:
        """Record that the case's documents changed (a new generation token)."""
        record = self.store.get_case(case_id) or {"created_at": time.time(), "title": None}
        record = {k: v for k, v in record.items() if k not in ("kind", "case_id")}
        self.store.upsert_case(case_id, {**record, "generation": uuid.uuid4().hex})

    def search(
        self,
        query: str,
        case_id: int,
        *,
        k: int | None = None,
        mode: str | None = None,
        doc_ids: list[str] | None = None,
        cut_off: bool = True,
    ) -> list[Citation]:
        """Up to k units of case ``case_id`` for ``query``, best first.

        Fewer than k when the rest score below ``min_score_ratio`` of the best
        (hybrid), unless ``cut_off`` is False (a reader that weighs the passages
        itself, such as the offline answerer, wants all k). The case filter (and ``doc_ids``, when given) runs inside Qdrant. Without
        ``doc_ids``, a query that names one document of the case is answered from
        that document; otherwise no document fills more than its share of k. The
        same query on the same data returns the same list, in any process.
        """
        if not query or not query.strip():
            return []
        naming: frozenset[int] = frozenset()
        routed = False
        if doc_ids is None and self.route_documents:
            route = self.route(query, case_id)
            if route.doc_id is not None:
                doc_ids = [route.doc_id]
                naming = route.naming_terms
                # Chosen among several (a one-document case names nothing).
                routed = len(self._case_cards(int(case_id))[0]) > 1
        elif doc_ids is not None and len(doc_ids) == 1:
            naming = self._naming_terms(query, case_id, doc_ids[0])
        if naming:
            # Inside the named document its name, parties and title words only
            # match its preamble: the rest of the question finds the clause.
            query = self._without_terms(query, naming)
        spec = self.query_spec(query, case_id, k=k, mode=mode, doc_ids=doc_ids)
        if not cut_off:
            spec.min_score_ratio = None
        elif routed:
            spec.min_score_ratio = self.named_min_score_ratio
        if doc_ids is None and self.per_doc_share is not None:
            spec.per_doc = max(1, math.ceil(spec.k * self.per_doc_share))
        return self.run(spec)

    def _naming_terms(self, query: str, case_id: int, doc_id: str) -> frozenset[int]:
        _, names, _ = self._case_cards(int(case_id))
        return frozenset(self.bm25.query(query).indices) & names.get(doc_id, frozenset())

    def _without_terms(self, query: str, terms: frozenset[int]) -> str:
        if not terms:
            return query
        words = query.split()
        kept = " ".join(w for w in words if not (set(self.bm25.query(w).indices) & terms))
        # A question that is nothing but the document's name keeps its words.
        return kept if self.bm25.query(kept).indices else query

    def run(self, spec: QuerySpec) -> list[Citation]:
        """Execute a prepared query: arms from the store, fused and selected here."""
        arms: list[ArmQuery] = []
        if spec.mode in ("hybrid", "dense") and spec.dense is not None:
            arms.append(ArmQuery("dense", dense=spec.dense))
        if spec.mode in ("hybrid", "bm25") and spec.sparse is not None and spec.sparse.indices:
            arms.append(ArmQuery("bm25", sparse=spec.sparse))
        if not arms:
            return []  # only stopwords for BM25: nothing to match
        results = self.store.search_arms(spec.case_id, arms, spec.prefetch, spec.doc_ids)
        if len(arms) == 2:
            if self.fusion_method == "convex":
                fused = fusion.convex(results, weights=self.fusion_weights)
            else:
                fused = fusion.rrf(results, k=spec.rrf_k, weights=spec.rrf_weights)
            fused = fusion.cut(fused, spec.min_score_ratio, keep=self.min_results)
        else:
            fused = fusion.ranked(results[0])
        # Payloads for a few more than k: enough for the per-document cap to
        # choose among, far fewer than the arms' candidates.
        candidates = fused[: spec.k * 3 if spec.per_doc is not None else spec.k + 4]
        payloads = self.store.payloads([pid for pid, _ in candidates])
        return [
            Citation.from_payload(payload, score)
            for payload, score in fusion.select(candidates, payloads, spec.k, spec.per_doc)
        ]

    def retriever(self, case_id: int, *, k: int | None = None, mode: str | None = None) -> Any:
        """A LlamaIndex BaseRetriever bound to one case."""
        from legalstream.rag.retrieve import CaseRetriever

        return CaseRetriever(self, case_id, k=k, mode=mode)

    # cases -------------------------------------------------------------------------
    def create_case(self, case_id: int, title: str | None = None) -> CaseInfo:
        """Record a case (or retitle it). Idempotent; documents are untouched."""
        with self._write:
            existing = self.store.get_case(int(case_id)) or {}
            self.store.upsert_case(
                int(case_id),
                {
                    "title": title if title is not None else existing.get("title"),
                    "created_at": existing.get("created_at") or time.time(),
                    "generation": existing.get("generation") or uuid.uuid4().hex,
                },
            )
            self.store.flush()
        return self.case(int(case_id))

    def case_exists(self, case_id: int) -> bool:
        """True when the case was created or has documents."""
        cid = int(case_id)
        return self.store.get_case(cid) is not None or bool(
            self.store.list_documents(cid, fields=["doc_id"])
        )

    def case(self, case_id: int) -> CaseInfo:
        """One case's title and counts; raises :class:`UnknownCase`."""
        cid = int(case_id)
        record = self.store.get_case(cid)
        docs = self.store.list_documents(cid, fields=["doc_id"])
        if record is None and not docs:
            raise UnknownCase(f"no case {cid}")
        record = record or {}
        return CaseInfo(
            cid,
            len(docs),
            self.store.count_chunks(cid),
            record.get("title"),
            record.get("created_at"),
        )

    def cases(self) -> list[CaseInfo]:
        """Every case with a record or documents, by case id."""
        per_case: dict[int, int] = {}
        for doc in self.store.list_documents(None, fields=["case_id"]):
            cid = int(doc["case_id"])
            per_case[cid] = per_case.get(cid, 0) + 1
        records = {int(c["case_id"]): c for c in self.store.list_cases()}
        return [
            CaseInfo(
                cid,
                per_case.get(cid, 0),
                self.store.count_chunks(cid) if per_case.get(cid) else 0,
                records.get(cid, {}).get("title"),
                records.get(cid, {}).get("created_at"),
            )
            for cid in sorted(set(per_case) | set(records))
        ]

    def delete_case(self, case_id: int) -> int:
        """Remove a case: its record and every document; returns the chunks deleted."""
        with self._write:
            n = self.store.delete_case(int(case_id))
            self.store.flush()
            return n

    # documents -----------------------------------------------------------------------
    def ingest_path(
        self,
        path: str | Path,
        case_id: int,
        *,
        title: str | None = None,
        progress: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Ingest a file or every file under a folder into ``case_id``.

        ``title`` names the document when ``path`` is one file. ``progress=True``
        draws a terminal progress bar (CLI); ``on_progress`` gets per-document
        :class:`~legalstream.rag.progress.IngestProgress` events.
        """
        path = Path(path)
        if not path.exists() and not path.is_symlink():
            report = IngestReport()
            report.files.append(FileResult(str(path), "failed", error="no such file or folder"))
            return report
        return self._ingest(path_sources(path), int(case_id), title, progress, on_progress)

    def ingest_bytes(
        self,
        name: str,
        data: bytes,
        case_id: int,
        *,
        title: str | None = None,
        doc_id: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Ingest one uploaded file; ``name`` (its file name) selects the format.

        Its id is ``case-<case_id>/<name>`` unless ``doc_id`` is given: uploading
        a file of the same name into the same case replaces it.
        """
        source = Source(name, doc_id or upload_doc_id(int(case_id), name), data=data)
        return self._ingest([source], int(case_id), title, False, on_progress)

    def _ingest(
        self,
        sources: list[Source],
        case_id: int,
        title: str | None,
        progress: bool,
        on_progress: ProgressCallback | None,
    ) -> IngestReport:
        callback = on_progress
        bar = None
        if progress:
            from legalstream.rag.progress_bar import ChunkProgressBar

            bar = ChunkProgressBar()
            callback = bar.chain(on_progress)
        try:
            with self._write:
                report: IngestReport | None = None
                try:
                    report = self._ingestor.ingest(
                        sources, case_id, title=title, on_progress=callback
                    )
                finally:
                    # Only a write makes a case: a batch of failed files leaves none behind.
                    if report is None or report.documents:
                        self._touch(case_id)
                self.store.flush()
        finally:
            if bar is not None:
                bar.close()
        return report

    def documents(self, case_id: int) -> list[DocumentInfo]:
        """The case's documents, by id (no source text)."""
        docs = [DocumentInfo.from_payload(d) for d in self.store.list_documents(int(case_id))]
        return sorted(docs, key=lambda d: d.doc_id)

    def document(self, case_id: int, doc_id: str) -> DocumentText:
        """One document's metadata and source text; raises :class:`UnknownDocument`."""
        d = self.store.get_document(int(case_id), doc_id)
        if d is None:
            raise UnknownDocument(f"no document {doc_id!r} in case {case_id}")
        return DocumentText(DocumentInfo.from_payload(d), str(d.get("source_text") or ""))

    def delete_document(self, case_id: int, doc_id: str) -> int:
        """Remove one document; returns the number of chunks deleted."""
        with self._write:
            n = self.store.delete_document(int(case_id), doc_id)
            self._touch(int(case_id))
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


def ensure_sample_corpus(
    engine: RetrievalEngine,
    sample_dir: Path,
    *,
    on_progress: ProgressCallback | None = None,
) -> IngestReport | None:
    """Ingest ``sample_dir`` per its ``cases.toml`` (titles included); unchanged documents skip.

    ``on_progress`` gets each document's progress (as ``ingest_path`` gives it).
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
        cid = int(case["id"])
        title = case.get("title")
        record = engine.store.get_case(cid)
        if record is None or (title and record.get("title") != title):
            engine.create_case(cid, title)
        report.merge(engine.ingest_path(folder, cid, on_progress=on_progress))
    return report
