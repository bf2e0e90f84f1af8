"""Retrieval over case files: ingest → legal-structure chunks → MiniLM + BM25 → Qdrant.

Other modules code against :class:`RetrievalEngine` and :class:`Citation` only;
which store (Qdrant Edge in process, or a Qdrant server) sits underneath is a
setting.
"""

from legalstream.rag.citations import Citation, ContextQuote
from legalstream.rag.engine import (
    CaseInfo,
    DocumentInfo,
    DocumentText,
    RetrievalEngine,
    UnknownCase,
    UnknownDocument,
    ensure_sample_corpus,
)
from legalstream.rag.ingest import FileResult, IngestReport
from legalstream.rag.progress import IngestProgress, ProgressCallback

__all__ = [
    "CaseInfo",
    "Citation",
    "ContextQuote",
    "DocumentInfo",
    "DocumentText",
    "FileResult",
    "IngestProgress",
    "IngestReport",
    "ProgressCallback",
    "RetrievalEngine",
    "UnknownCase",
    "UnknownDocument",
    "ensure_sample_corpus",
]
