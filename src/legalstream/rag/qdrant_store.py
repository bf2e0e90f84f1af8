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
    KIND_CASE,
    KIND_CHUNK,
    KIND_DOC,
    SPARSE,
    ArmQuery,
    ChunkPoint,
    Hit,
    case_point_id,
    doc_point_id,
    staging_case,
)


def _match(key: str, value: Any) -> m.FieldCondition:
    return m.FieldCondition(key=key, match=m.MatchValue(value=value))


def _both(case_id: int) -> m.FieldCondition:
    """A case's published and staged points."""
    return m.FieldCondition(key="case_id", match=m.MatchAny(any=[case_id, staging_case(case_id)]))


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
        #: Points per upsert request (a document's chunks may take several).
        self.upsert_batch = 512
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
            n = self.upsert_batch
            for i in range(0, len(structs), n):
                self._call(self.client.upsert, self.collection, structs[i : i + n], wait=True)

    def upsert_document(self, case_id: int, doc_id: str, payload: dict[str, Any]) -> None:
        body = {**payload, "kind": KIND_DOC, "case_id": case_id, "doc_id": doc_id}
        point = m.PointStruct(id=doc_point_id(case_id, doc_id), vector={}, payload=body)
        with self._write:
            self._call(self.client.upsert, self.collection, [point], wait=True)

    def publish_chunks(self, case_id: int, doc_id: str, content_hash: str) -> None:
        flt = m.Filter(
            must=[
                _match("case_id", staging_case(case_id)),
                _match("doc_id", doc_id),
                _match("content_hash", content_hash),
                _match("kind", KIND_CHUNK),
            ]
        )
        with self._write:
            self._call(
                self.client.set_payload,
                self.collection,
                {"case_id": case_id},
                points=m.FilterSelector(filter=flt),
                wait=True,
            )

    def upsert_case(self, case_id: int, payload: dict[str, Any]) -> None:
        body = {**payload, "kind": KIND_CASE, "case_id": case_id}
        point = m.PointStruct(id=case_point_id(case_id), vector={}, payload=body)
        with self._write:
            self._call(self.client.upsert, self.collection, [point], wait=True)

    def _delete(self, flt: m.Filter) -> int:
        n = self._call(self.client.count, self.collection, count_filter=flt, exact=True).count
        if n:
            self._call(self.client.delete, self.collection, m.FilterSelector(filter=flt), wait=True)
        return n

    def delete_chunks(self, case_id: int, doc_id: str, except_hash: str | None = None) -> int:
        # Staged chunks too: those of an ingest that never finished.
        must = [_both(case_id), _match("doc_id", doc_id), _match("kind", KIND_CHUNK)]
        must_not = [_match("content_hash", except_hash)] if except_hash else None
        with self._write:
            return self._delete(m.Filter(must=must, must_not=must_not))

    def delete_document(self, case_id: int, doc_id: str) -> int:
        # The document record goes first: listings stop showing it before its chunks go.
        with self._write:
            self._call(
                self.client.delete,
                self.collection,
                m.PointIdsList(points=[doc_point_id(case_id, doc_id)]),
                wait=True,
            )
        return self.delete_chunks(case_id, doc_id)

    def delete_case(self, case_id: int) -> int:
        n = self.count_chunks(case_id)
        with self._write:
            self._delete(m.Filter(must=[_both(case_id)]))
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

    def _scroll(self, flt: m.Filter, with_payload: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            recs, offset = self._call(
                self.client.scroll,
                self.collection,
                scroll_filter=flt,
                limit=256,
                offset=offset,
                with_payload=with_payload,
            )
            out.extend(dict(r.payload or {}) for r in recs)
            if offset is None:
                return out

    def list_documents(
        self, case_id: int | None, fields: list[str] | None = None
    ) -> list[dict[str, Any]]:
        must = [_match("kind", KIND_DOC)]
        if case_id is not None:
            must.append(_match("case_id", case_id))
        selector: Any = fields if fields else m.PayloadSelectorExclude(exclude=HEAVY_FIELDS)
        return self._scroll(m.Filter(must=must), selector)

    def get_case(self, case_id: int) -> dict[str, Any] | None:
        recs = self._call(
            self.client.retrieve, self.collection, [case_point_id(case_id)], with_payload=True
        )
        return dict(recs[0].payload or {}) if recs else None

    def list_cases(self) -> list[dict[str, Any]]:
        return self._scroll(m.Filter(must=[_match("kind", KIND_CASE)]), True)

    def count_chunks(self, case_id: int, doc_id: str | None = None) -> int:
        must = [_match("case_id", case_id), _match("kind", KIND_CHUNK)]
        if doc_id is not None:
            must.append(_match("doc_id", doc_id))
        res = self._call(
            self.client.count, self.collection, count_filter=m.Filter(must=must), exact=True
        )
        return int(res.count)

    def search_arms(
        self, case_id: int, arms: list[ArmQuery], limit: int, doc_ids: list[str] | None
    ) -> list[list[Hit]]:
        case = m.Filter(must=[_match("case_id", case_id)])
        must: list[Any] = [_match("case_id", case_id)]
        if doc_ids:
            must.append(m.FieldCondition(key="doc_id", match=m.MatchAny(any=list(doc_ids))))
        flt = m.Filter(must=must)
        requests = []
        for arm in arms:
            if arm.using == DENSE:
                assert arm.dense is not None
                query: Any = arm.dense.tolist()
                params = None
            else:
                assert arm.sparse is not None
                query = m.SparseVector(indices=arm.sparse.indices, values=arm.sparse.values)
                params = (
                    m.SearchParams(idf=m.IdfCorpusParams(corpus=case))
                    if self.idf_per_case
                    else None
                )
            requests.append(
                m.QueryRequest(
                    query=query,
                    using=arm.using,
                    filter=flt,
                    params=params,
                    limit=limit,
                    with_payload=False,
                )
            )
        results = self._call(self.client.query_batch_points, self.collection, requests)
        return [[(str(p.id), float(p.score)) for p in r.points] for r in results]

    def payloads(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        recs = self._call(self.client.retrieve, self.collection, list(ids), with_payload=True)
        return {str(r.id): dict(r.payload or {}) for r in recs}

    def optimize(self) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.client.close()
