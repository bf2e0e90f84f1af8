"""Retrieval over case files: ingest → legal-structure chunks → MiniLM + BM25 → Qdrant.

Other modules code against :class:`RetrievalEngine` and :class:`Citation` only;
which store (Qdrant Edge in process, or a Qdrant server) sits underneath is a
setting.
"""

from legalstream.rag.citations import Citation
from legalstream.rag.engine import (
    CaseInfo,
    DocumentInfo,
    RetrievalEngine,
    ensure_sample_corpus,
)
from legalstream.rag.ingest import FileResult, IngestReport

__all__ = [
    "CaseInfo",
    "Citation",
    "DocumentInfo",
    "FileResult",
    "IngestReport",
    "RetrievalEngine",
    "ensure_sample_corpus",
]
