"""Qdrant Edge: the real Qdrant engine in process, one shard on a local directory.

Measured (tests/rag/test_threads.py, bench/retrieval.py): EdgeShard reads are
safe from many threads at once, so queries take no Python lock; writes are
serialised by a lock so a document's "write new chunks, delete old ones" steps
from two ingests never interleave.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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


def _match(key: str, value: Any) -> qe.FieldCondition:
    return qe.FieldCondition(key, match=qe.MatchValue(value))


class EdgeStore:
    def __init__(
        self, path: Path, dim: int, *, idf_per_case: bool = True, search_threads: int | None = 1
    ) -> None:
        self.path = Path(path)
        self.idf_per_case = idf_per_case
        self._write = threading.Lock()
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            # One search thread per shard: a case-filtered query touches ~1k points,
            # so a pool only adds hand-offs, and its idle spinning competes with
            # onnxruntime's query embedding on small machines (bench/retrieval.py).
            max_search_threads=search_threads,
        )
        if self.path.exists() and any(self.path.iterdir()):
            # Passing the config checks the stored vectors match (e.g. the embedding's
            # dimension) and applies the search-thread setting.
            self.shard = qe.EdgeShard.load(str(self.path), config)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.shard = qe.EdgeShard.create(str(self.path), config)
        self._ensure_indexes()

    def _ensure_indexes(self) -> None:
        have = set(self.shard.info().payload_schema)
        wanted: dict[str, Any] = {
            # case_id is in every query's filter: the principal field, so storage is laid out by it.
            "case_id": qe.IntegerIndexParams(lookup=True, range=False, is_principal=True),
            "doc_id": qe.PayloadSchemaType.Keyword,
            "kind": qe.PayloadSchemaType.Keyword,
            "content_hash": qe.PayloadSchemaType.Keyword,
        }
        for name, schema in wanted.items():
            if name not in have:
                self.shard.update(qe.UpdateOperation.create_field_index(name, schema))

    # writes ------------------------------------------------------------------------
    def upsert_chunks(self, points: list[ChunkPoint]) -> None:
        ops = [
            qe.Point(
                p.id,
                {
                    DENSE: p.dense.tolist(),
                    SPARSE: qe.SparseVector(p.sparse.indices, p.sparse.values),
                },
                p.payload,
            )
            for p in points
        ]
        with self._write:
            for i in range(0, len(ops), 512):
                self.shard.update(qe.UpdateOperation.upsert_points(ops[i : i + 512]))

    def upsert_document(self, case_id: int, doc_id: str, payload: dict[str, Any]) -> None:
        body = {**payload, "kind": KIND_DOC, "case_id": case_id, "doc_id": doc_id}
        with self._write:
            self.shard.update(
                qe.UpdateOperation.upsert_points(
                    [qe.Point(doc_point_id(case_id, doc_id), {}, body)]
                )
            )

    def delete_chunks(self, case_id: int, doc_id: str, except_hash: str | None = None) -> int:
        must = [_match("case_id", case_id), _match("doc_id", doc_id), _match("kind", KIND_CHUNK)]
        must_not = [_match("content_hash", except_hash)] if except_hash else None
        flt = qe.Filter(must=must, must_not=must_not)
        with self._write:
            n = self.shard.count(qe.CountRequest(filter=flt, exact=True))
            if n:
                self.shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        return n

    def delete_document(self, case_id: int, doc_id: str) -> int:
        n = self.delete_chunks(case_id, doc_id)
        with self._write:
            self.shard.update(qe.UpdateOperation.delete_points([doc_point_id(case_id, doc_id)]))
        return n

    def delete_case(self, case_id: int) -> int:
        n = self.count_chunks(case_id)
        with self._write:
            flt = qe.Filter(must=[_match("case_id", case_id)])
            self.shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        return n

    # reads -------------------------------------------------------------------------
    def get_document(self, case_id: int | None, doc_id: str) -> dict[str, Any] | None:
        if case_id is not None:
            recs = self.shard.retrieve([doc_point_id(case_id, doc_id)], True, False)
            return dict(recs[0].payload or {}) if recs else None
        flt = qe.Filter(must=[_match("kind", KIND_DOC), _match("doc_id", doc_id)])
        recs, _ = self.shard.scroll(qe.ScrollRequest(limit=1, filter=flt, with_payload=True))
        return dict(recs[0].payload or {}) if recs else None

    def list_documents(self, case_id: int | None) -> list[dict[str, Any]]:
        must = [_match("kind", KIND_DOC)]
        if case_id is not None:
            must.append(_match("case_id", case_id))
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            recs, offset = self.shard.scroll(
                qe.ScrollRequest(
                    offset=offset,
                    limit=256,
                    filter=qe.Filter(must=must),
                    with_payload=qe.PayloadSelector.Exclude(HEAVY_FIELDS),
                )
            )
            out.extend(dict(r.payload or {}) for r in recs)
            if offset is None:
                return out

    def count_chunks(self, case_id: int, doc_id: str | None = None) -> int:
        must = [_match("case_id", case_id), _match("kind", KIND_CHUNK)]
        if doc_id is not None:
            must.append(_match("doc_id", doc_id))
        return self.shard.count(qe.CountRequest(filter=qe.Filter(must=must), exact=True))

    def query(self, spec: QuerySpec) -> list[tuple[dict[str, Any], float]]:
        case = qe.Filter(must=[_match("case_id", spec.case_id)])
        dense = sparse = None
        if spec.dense is not None:
            dense = qe.Query.Nearest(spec.dense.tolist(), using=DENSE)
        sparse_params = None
        if spec.sparse is not None:
            sparse = qe.Query.Nearest(
                qe.SparseVector(spec.sparse.indices, spec.sparse.values), using=SPARSE
            )
            if self.idf_per_case:
                # IDF over this case's chunks only: another case's vocabulary never
                # shifts the ranking here (and no statistics leak across cases).
                sparse_params = qe.SearchParams(idf=qe.IdfParams(corpus=case))
        if spec.mode == "hybrid" and dense is not None and sparse is not None:
            req = qe.QueryRequest(
                limit=spec.k,
                prefetches=[
                    qe.Prefetch(limit=spec.prefetch, query=dense, filter=case),
                    qe.Prefetch(
                        limit=spec.prefetch, query=sparse, filter=case, params=sparse_params
                    ),
                ],
                query=qe.Fusion.Rrf(
                    k=spec.rrf_k,
                    weights=list(spec.rrf_weights) if spec.rrf_weights else None,
                ),
                filter=case,
                with_payload=True,
            )
        elif spec.mode == "bm25" and sparse is not None:
            req = qe.QueryRequest(
                limit=spec.k, query=sparse, filter=case, params=sparse_params, with_payload=True
            )
        elif dense is not None:
            req = qe.QueryRequest(limit=spec.k, query=dense, filter=case, with_payload=True)
        else:
            raise ValueError(
                f"mode {spec.mode!r} needs a {'sparse' if spec.mode == 'bm25' else 'dense'} vector"
            )
        return [(dict(p.payload or {}), float(p.score)) for p in self.shard.query(req)]

    def optimize(self) -> None:
        with self._write:
            self.shard.optimize()

    def flush(self) -> None:
        with self._write:
            self.shard.flush()

    def close(self) -> None:
        with self._write:
            self.shard.flush()
            self.shard.close()
