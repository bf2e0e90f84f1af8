"""What the engine needs from a vector store, and the pieces both stores share.

Three kinds of point live in one collection:

* chunk points: named vectors ``dense`` (MiniLM, cosine) and ``bm25`` (sparse
  term weights, IDF applied by Qdrant at query time), payload = citation fields;
* one document point per document, without vectors, whose payload holds the
  document's normalised source text, metadata and content hash. Keeping it in
  the store (not in a side file) means a Qdrant server deployment has no local state;
* one case point per case that was created with a title, without vectors.

Every read is filtered by ``case_id`` inside Qdrant (payload index), never after
the fact in Python. A chunk is written under its case's staging id
(:func:`staging_case`, which no search asks for) and only becomes searchable
when its document is published: one filtered payload update sets the real case
id on all its chunks, so a search that runs during an ingest sees a document
wholly or not at all. Keeping visibility in ``case_id`` itself costs searches
nothing: a second filter condition would take the planner off the principal
``case_id`` index (bench/retrieval.py measured ~10x on a 10k-chunk store).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

DENSE = "dense"
SPARSE = "bm25"
KIND_CHUNK = "chunk"
KIND_DOC = "doc"
KIND_CASE = "case"
#: Payload fields of a document point that listings leave out (they can be large).
HEAVY_FIELDS = ["source_text"]
Mode = Literal["hybrid", "dense", "bm25"]

_NS = uuid.UUID("6f0c3c1e-7a57-4b8e-9a53-6c9f3f1d2a10")


def chunk_point_id(case_id: int, doc_id: str, content_hash: str, index: int) -> str:
    # The content hash is part of the id, so a changed document's new chunks are
    # written next to the old ones and the old ones deleted after publishing.
    return str(uuid.uuid5(_NS, f"chunk:{case_id}:{doc_id}:{content_hash}:{index}"))


def staging_case(case_id: int) -> int:
    """Where a case's chunks wait until their document is published (never a real case)."""
    if case_id < 0:
        raise ValueError(f"case ids are non-negative, not {case_id}")
    return -1 - case_id


def doc_point_id(case_id: int, doc_id: str) -> str:
    return str(uuid.uuid5(_NS, f"doc:{case_id}:{doc_id}"))


def case_point_id(case_id: int) -> str:
    return str(uuid.uuid5(_NS, f"case:{case_id}"))


@dataclass(slots=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(slots=True)
class ChunkPoint:
    id: str
    dense: np.ndarray
    sparse: SparseVec
    payload: dict[str, Any]


@dataclass(slots=True)
class ArmQuery:
    """One ranked list to fetch: the case's chunks by dense or by BM25 similarity."""

    using: Literal["dense", "bm25"]
    dense: np.ndarray | None = None
    sparse: SparseVec | None = None


@dataclass(slots=True)
class QuerySpec:
    case_id: int
    k: int
    mode: Mode
    dense: np.ndarray | None
    sparse: SparseVec | None
    #: Candidates each arm fetches before fusion.
    prefetch: int
    rrf_k: int
    #: RRF weights of the (dense, bm25) arms; None weighs them equally.
    rrf_weights: tuple[float, float] | None = None
    #: Restrict the search to these documents of the case (document routing).
    doc_ids: list[str] | None = None
    #: At most this many hits of one document (None: no cap).
    per_doc: int | None = None
    #: Drop hybrid hits under this share of the best fused score (None: keep k).
    min_score_ratio: float | None = None


#: One candidate of an arm: (point id, score).
Hit = tuple[str, float]


class ChunkStore(Protocol):
    """A Qdrant collection seen as the engine needs it (Edge and server implement it)."""

    def upsert_chunks(self, points: list[ChunkPoint]) -> None: ...
    def publish_chunks(self, case_id: int, doc_id: str, content_hash: str) -> None: ...
    def upsert_document(self, case_id: int, doc_id: str, payload: dict[str, Any]) -> None: ...
    def get_document(self, case_id: int | None, doc_id: str) -> dict[str, Any] | None: ...
    def list_documents(
        self, case_id: int | None, fields: list[str] | None = None
    ) -> list[dict[str, Any]]: ...
    def upsert_case(self, case_id: int, payload: dict[str, Any]) -> None: ...
    def get_case(self, case_id: int) -> dict[str, Any] | None: ...
    def list_cases(self) -> list[dict[str, Any]]: ...
    def count_chunks(self, case_id: int, doc_id: str | None = None) -> int: ...
    def delete_chunks(self, case_id: int, doc_id: str, except_hash: str | None = None) -> int: ...
    def delete_document(self, case_id: int, doc_id: str) -> int: ...
    def delete_case(self, case_id: int) -> int: ...
    def search_arms(
        self, case_id: int, arms: list[ArmQuery], limit: int, doc_ids: list[str] | None
    ) -> list[list[Hit]]: ...
    def payloads(self, ids: list[str]) -> dict[str, dict[str, Any]]: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


class Bm25Encoder:
    """BM25 term weights for Qdrant sparse vectors (Qdrant's own BM25, from qdrant_edge).

    Documents get saturated, length-normalised term frequencies; queries get 1.0
    per distinct term; the collection's IDF modifier supplies IDF at query time,
    which together is BM25. The same vectors go to Edge and to a Qdrant server.
    """

    def __init__(self, avg_len: float = 200.0) -> None:
        from qdrant_edge import Bm25, Bm25Config

        self._bm25 = Bm25(Bm25Config(language="english", avg_len=avg_len))

    def document(self, text: str) -> SparseVec:
        v = self._bm25.embed_document(text)
        return SparseVec(list(v.indices), list(v.values))

    def query(self, text: str) -> SparseVec:
        v = self._bm25.embed_query(text)
        return SparseVec(list(v.indices), list(v.values))
