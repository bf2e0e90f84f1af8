"""Scale-out path: a Qdrant server (or cluster) through qdrant-client.

Same collection layout and queries as :mod:`edge_store`, expressed in
qdrant-client's models. ``path=`` / ``":memory:"`` gives qdrant-client's local
mode, which the tests use and the benchmark compares against.
"""

from __future__ import annotations

import threading
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client import models as m

from legalstream.rag.store import (
    DENSE,
    HEAVY_FIELDS,
    KIND_CHUNK,
    KIND_DOC,
    SPARSE,
    ChunkPoint,
    QuerySpec,
    doc_point_id,
)


def _match(key: str, value: Any) -> m.FieldCondition:
    return m.FieldCondition(key=key, match=m.MatchValue(value=value))


class QdrantStore:
    def __init__(
        self,
        collection: str,
        dim: int,
        *,
        url: str | None = None,
        api_key: str | None = None,
        path: str | None = None,
        idf_per_case: bool = True,
    ) -> None:
        if url:
            self.client = QdrantClient(url=url, api_key=api_key)
        elif path == ":memory:":
            self.client = QdrantClient(location=":memory:")
        else:
            self.client = QdrantClient(path=path)
        self.local = not url
        # Local mode doesn't implement IDF over a filtered corpus; a server does.
        self.idf_per_case = idf_per_case and not self.local
        self.collection = collection
        # qdrant-client local mode is not thread-safe (it's pure Python over dicts);
        # a server connection is, so only local mode serialises every call.
        self._lock: threading.Lock | None = threading.Lock() if self.local else None
        self._write = threading.Lock()
        if not self.client.collection_exists(collection):
            self.client.create_collection(
                collection,
                vectors_config={DENSE: m.VectorParams(size=dim, distance=m.Distance.COSINE)},
                sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
            )
            if not self.local:
                self.client.create_payload_index(
                    collection,
                    "case_id",
                    m.IntegerIndexParams(
                        type=m.IntegerIndexType.INTEGER, lookup=True, range=False, is_principal=True
                    ),
                )
                for name in ("doc_id", "kind", "content_hash"):
                    self.client.create_payload_index(collection, name, m.PayloadSchemaType.KEYWORD)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._lock is None:
            return fn(*args, **kwargs)
        with self._lock:
            return fn(*args, **kwargs)

    # writes ------------------------------------------------------------------------
    def upsert_chunks(self, points: list[ChunkPoint]) -> None:
        structs = [
            m.PointStruct(
                id=p.id,
                vector={
                    DENSE: p.dense.tolist(),
                    SPARSE: m.SparseVector(indices=p.sparse.indices, values=p.sparse.values),
                },
                payload=p.payload,
            )
            for p in points
        ]
        with self._write:
            for i in range(0, len(structs), 512):
                self._call(self.client.upsert, self.collection, structs[i : i + 512], wait=True)

    def upsert_document(self, case_id: int, doc_id: str, payload: dict[str, Any]) -> None:
        body = {**payload, "kind": KIND_DOC, "case_id": case_id, "doc_id": doc_id}
        point = m.PointStruct(id=doc_point_id(case_id, doc_id), vector={}, payload=body)
        with self._write:
            self._call(self.client.upsert, self.collection, [point], wait=True)

    def _delete(self, flt: m.Filter) -> int:
        n = self._call(self.client.count, self.collection, count_filter=flt, exact=True).count
        if n:
            self._call(self.client.delete, self.collection, m.FilterSelector(filter=flt), wait=True)
        return n

    def delete_chunks(self, case_id: int, doc_id: str, except_hash: str | None = None) -> int:
        must = [_match("case_id", case_id), _match("doc_id", doc_id), _match("kind", KIND_CHUNK)]
        must_not = [_match("content_hash", except_hash)] if except_hash else None
        with self._write:
            return self._delete(m.Filter(must=must, must_not=must_not))

    def delete_document(self, case_id: int, doc_id: str) -> int:
        n = self.delete_chunks(case_id, doc_id)
        with self._write:
            self._call(
                self.client.delete,
                self.collection,
                m.PointIdsList(points=[doc_point_id(case_id, doc_id)]),
                wait=True,
            )
        return n

    def delete_case(self, case_id: int) -> int:
        n = self.count_chunks(case_id)
        with self._write:
            self._delete(m.Filter(must=[_match("case_id", case_id)]))
        return n

    # reads -------------------------------------------------------------------------
    def get_document(self, case_id: int | None, doc_id: str) -> dict[str, Any] | None:
        if case_id is not None:
            recs = self._call(
                self.client.retrieve,
                self.collection,
                [doc_point_id(case_id, doc_id)],
                with_payload=True,
            )
        else:
            flt = m.Filter(must=[_match("kind", KIND_DOC), _match("doc_id", doc_id)])
            recs, _ = self._call(
                self.client.scroll, self.collection, scroll_filter=flt, limit=1, with_payload=True
            )
        return dict(recs[0].payload or {}) if recs else None

    def list_documents(self, case_id: int | None) -> list[dict[str, Any]]:
        must = [_match("kind", KIND_DOC)]
        if case_id is not None:
            must.append(_match("case_id", case_id))
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            recs, offset = self._call(
                self.client.scroll,
                self.collection,
                scroll_filter=m.Filter(must=must),
                limit=256,
                offset=offset,
                with_payload=m.PayloadSelectorExclude(exclude=HEAVY_FIELDS),
            )
            out.extend(dict(r.payload or {}) for r in recs)
            if offset is None:
                return out

    def count_chunks(self, case_id: int, doc_id: str | None = None) -> int:
        must = [_match("case_id", case_id), _match("kind", KIND_CHUNK)]
        if doc_id is not None:
            must.append(_match("doc_id", doc_id))
        res = self._call(
            self.client.count, self.collection, count_filter=m.Filter(must=must), exact=True
        )
        return int(res.count)

    def query(self, spec: QuerySpec) -> list[tuple[dict[str, Any], float]]:
        case = m.Filter(must=[_match("case_id", spec.case_id)])
        dense = spec.dense.tolist() if spec.dense is not None else None
        sparse = (
            m.SparseVector(indices=spec.sparse.indices, values=spec.sparse.values)
            if spec.sparse is not None
            else None
        )
        sparse_params = (
            m.SearchParams(idf=m.IdfCorpusParams(corpus=case))
            if self.idf_per_case and sparse is not None
            else None
        )
        if spec.mode == "hybrid" and dense is not None and sparse is not None:
            res = self._call(
                self.client.query_points,
                self.collection,
                prefetch=[
                    m.Prefetch(query=dense, using=DENSE, limit=spec.prefetch, filter=case),
                    m.Prefetch(
                        query=sparse,
                        using=SPARSE,
                        limit=spec.prefetch,
                        filter=case,
                        params=sparse_params,
                    ),
                ],
                query=m.RrfQuery(
                    rrf=m.Rrf(
                        k=spec.rrf_k,
                        weights=list(spec.rrf_weights) if spec.rrf_weights else None,
                    )
                ),
                query_filter=case,
                limit=spec.k,
                with_payload=True,
            )
        elif spec.mode == "bm25" and sparse is not None:
            res = self._call(
                self.client.query_points,
                self.collection,
                query=sparse,
                using=SPARSE,
                query_filter=case,
                search_params=sparse_params,
                limit=spec.k,
                with_payload=True,
            )
        elif dense is not None:
            res = self._call(
                self.client.query_points,
                self.collection,
                query=dense,
                using=DENSE,
                query_filter=case,
                limit=spec.k,
                with_payload=True,
            )
        else:
            raise ValueError(f"mode {spec.mode!r} needs its query vector")
        return [(dict(p.payload or {}), float(p.score)) for p in res.points]

    def optimize(self) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.client.close()
