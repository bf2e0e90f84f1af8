"""Qdrant Edge: the real Qdrant engine in process, one shard on a local directory.

EdgeShard reads are safe from many threads at once (tests/rag/test_visibility.py
searches from many threads during ingests), so queries take no Python lock;
writes are serialised by a lock so a document's "write pending chunks, publish,
delete old ones" steps from two ingests never interleave.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import qdrant_edge as qe

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


def _match(key: str, value: Any) -> qe.FieldCondition:
    return qe.FieldCondition(key, match=qe.MatchValue(value))


def _both(case_id: int) -> qe.FieldCondition:
    """A case's published and staged points."""
    return qe.FieldCondition("case_id", match=qe.MatchAny([case_id, staging_case(case_id)]))


class StoreLocked(RuntimeError):
    """Another process has the store open (Qdrant Edge allows one)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"the store {path} is in use by another process (a `legalstream serve` on this "
            "data directory?): stop it, or let the command go through it (--url)"
        )
        self.path = path


def store_in_use(path: Path) -> bool:
    """Whether another process holds the store's WAL lock (what opening it would fail on)."""
    wal = Path(path) / "wal"
    if not wal.is_dir():
        return False
    fd = os.open(wal, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


class EdgeStore:
    def __init__(
        self, path: Path, dim: int, *, idf_per_case: bool = True, search_threads: int | None = 1
    ) -> None:
        self.path = Path(path)
        self.idf_per_case = idf_per_case
        self._write = threading.Lock()
        #: Points per upsert request (a document's chunks may take several).
        self.upsert_batch = 512
        config = qe.EdgeConfig(
            vectors={DENSE: qe.EdgeVectorParams(size=dim, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            # One search thread per shard: a case-filtered query touches ~1k points,
            # so a pool only adds hand-offs, and its idle spinning competes with
            # onnxruntime's query embedding on small machines (bench/retrieval.py).
            max_search_threads=search_threads,
        )
        try:
            if self.path.exists() and any(self.path.iterdir()):
                # Passing the config checks the stored vectors match (e.g. the embedding's
                # dimension) and applies the search-thread setting.
                self.shard = qe.EdgeShard.load(str(self.path), config)
            else:
                self.path.mkdir(parents=True, exist_ok=True)
                self.shard = qe.EdgeShard.create(str(self.path), config)
        except Exception as exc:
            # "failed to open WAL …: Kind(WouldBlock)": the WAL's lock is another process's.
            if "WouldBlock" in str(exc):
                raise StoreLocked(self.path) from None
            raise
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
            n = self.upsert_batch
            for i in range(0, len(ops), n):
                self.shard.update(qe.UpdateOperation.upsert_points(ops[i : i + n]))

    def publish_chunks(self, case_id: int, doc_id: str, content_hash: str) -> None:
        flt = qe.Filter(
            must=[
                _match("case_id", staging_case(case_id)),
                _match("doc_id", doc_id),
                _match("content_hash", content_hash),
                _match("kind", KIND_CHUNK),
            ]
        )
        with self._write:
            self.shard.update(qe.UpdateOperation.set_payload_by_filter(flt, {"case_id": case_id}))

    def upsert_document(self, case_id: int, doc_id: str, payload: dict[str, Any]) -> None:
        body = {**payload, "kind": KIND_DOC, "case_id": case_id, "doc_id": doc_id}
        with self._write:
            self.shard.update(
                qe.UpdateOperation.upsert_points(
                    [qe.Point(doc_point_id(case_id, doc_id), {}, body)]
                )
            )

    def upsert_case(self, case_id: int, payload: dict[str, Any]) -> None:
        body = {**payload, "kind": KIND_CASE, "case_id": case_id}
        with self._write:
            self.shard.update(
                qe.UpdateOperation.upsert_points([qe.Point(case_point_id(case_id), {}, body)])
            )

    def delete_chunks(self, case_id: int, doc_id: str, except_hash: str | None = None) -> int:
        # Staged chunks too: those of an ingest that never finished.
        must = [_both(case_id), _match("doc_id", doc_id), _match("kind", KIND_CHUNK)]
        must_not = [_match("content_hash", except_hash)] if except_hash else None
        flt = qe.Filter(must=must, must_not=must_not)
        with self._write:
            n = self.shard.count(qe.CountRequest(filter=flt, exact=True))
            if n:
                self.shard.update(qe.UpdateOperation.delete_points_by_filter(flt))
        return n

    def delete_document(self, case_id: int, doc_id: str) -> int:
        # The document record goes first: listings stop showing it before its chunks go.
        with self._write:
            self.shard.update(qe.UpdateOperation.delete_points([doc_point_id(case_id, doc_id)]))
        return self.delete_chunks(case_id, doc_id)

    def delete_case(self, case_id: int) -> int:
        n = self.count_chunks(case_id)
        with self._write:
            flt = qe.Filter(must=[_both(case_id)])
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

    def _scroll(self, flt: qe.Filter, selector: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = None
        while True:
            recs, offset = self.shard.scroll(
                qe.ScrollRequest(offset=offset, limit=256, filter=flt, with_payload=selector)
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
        selector = (
            qe.PayloadSelector.Include(fields)
            if fields
            else qe.PayloadSelector.Exclude(HEAVY_FIELDS)
        )
        return self._scroll(qe.Filter(must=must), selector)

    def get_case(self, case_id: int) -> dict[str, Any] | None:
        recs = self.shard.retrieve([case_point_id(case_id)], True, False)
        return dict(recs[0].payload or {}) if recs else None

    def list_cases(self) -> list[dict[str, Any]]:
        return self._scroll(qe.Filter(must=[_match("kind", KIND_CASE)]), True)

    def count_chunks(self, case_id: int, doc_id: str | None = None) -> int:
        must = [_match("case_id", case_id), _match("kind", KIND_CHUNK)]
        if doc_id is not None:
            must.append(_match("doc_id", doc_id))
        return self.shard.count(qe.CountRequest(filter=qe.Filter(must=must), exact=True))

    def search_arms(
        self, case_id: int, arms: list[ArmQuery], limit: int, doc_ids: list[str] | None
    ) -> list[list[Hit]]:
        case = qe.Filter(must=[_match("case_id", case_id)])
        must = [_match("case_id", case_id)]
        if doc_ids:
            must.append(qe.FieldCondition("doc_id", match=qe.MatchAny(list(doc_ids))))
        flt = qe.Filter(must=must)
        requests = []
        for arm in arms:
            if arm.using == DENSE:
                assert arm.dense is not None
                query = qe.Query.Nearest(arm.dense.tolist(), using=DENSE)
                params = None
            else:
                assert arm.sparse is not None
                query = qe.Query.Nearest(
                    qe.SparseVector(arm.sparse.indices, arm.sparse.values), using=SPARSE
                )
                # IDF over this case's chunks only: another case's vocabulary never
                # shifts the ranking here (and no statistics leak across cases).
                params = (
                    qe.SearchParams(idf=qe.IdfParams(corpus=case)) if self.idf_per_case else None
                )
            requests.append(
                qe.QueryRequest(
                    limit=limit, query=query, filter=flt, params=params, with_payload=False
                )
            )
        if len(requests) == 1:
            results = [self.shard.query(requests[0])]
        else:
            results = self.shard.query_batch(qe.QueryBatchRequest(requests))
        return [[(str(p.id), float(p.score)) for p in r] for r in results]

    def payloads(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        recs = self.shard.retrieve(list(ids), True, False)
        return {str(r.id): dict(r.payload or {}) for r in recs}

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
