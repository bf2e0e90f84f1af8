"""Ingestion: sources → clause-level chunks → dense + BM25 vectors → the store.

A document's identity is ``(case_id, doc_id)``, with ``doc_id`` unique per
source file: ``<folder>/<path of the file inside it>`` ("case-1/complaint.md",
"case-5/lease.pdf" next to "case-5/lease.docx"). Its content hash (normalised
text + pipeline parameters + embedding model) decides skip vs replace.

One ingest call first parses every file (so the total chunk count is known for
progress), then embeds and writes one document at a time. A document's chunks
are written pending, its record written, then the chunks published in one
update and the previous version's chunks deleted: a search sees a document
wholly or not at all. A file that fails is reported and the batch goes on.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from legalstream.rag.chunking import Chunk, chunk_text
from legalstream.rag.embed import EmbeddingAdapter
from legalstream.rag.loaders import SUPPORTED, Loaded, LoadError, load_bytes, load_file
from legalstream.rag.progress import Eta, IngestProgress, ProgressCallback, Status
from legalstream.rag.router import card_text, name_text
from legalstream.rag.store import (
    KIND_CHUNK,
    Bm25Encoder,
    ChunkPoint,
    ChunkStore,
    SparseVec,
    chunk_point_id,
    staging_case,
)

#: Bumped when chunking or payload layout changes, so re-ingest re-chunks everything.
PIPELINE_VERSION = "3"
#: Document ids are "<folder>/<file name>" from this scheme on (1: "<folder>/<stem>").
ID_SCHEME = 2
#: Chunks embedded between two progress reports.
EMBED_SLICE = 64


@dataclass(slots=True)
class FileResult:
    path: str
    status: Status
    doc_id: str | None = None
    chunks: int = 0
    error: str | None = None
    #: What the parsing library said about the file (pypdf warnings), one line each.
    warnings: list[str] = field(default_factory=list)
    #: Why a replacement happened when it is not the same file changing (e.g. an old id).
    note: str | None = None


@dataclass(slots=True)
class IngestReport:
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    parse_seconds: float = 0.0
    embed_seconds: float = 0.0
    index_seconds: float = 0.0

    @property
    def documents(self) -> int:
        """Documents written (new or replaced)."""
        return sum(f.status in ("ingested", "replaced") for f in self.files)

    @property
    def chunks(self) -> int:
        return sum(f.chunks for f in self.files if f.status in ("ingested", "replaced"))

    @property
    def skipped(self) -> int:
        return sum(f.status == "skipped" for f in self.files)

    @property
    def replaced(self) -> int:
        return sum(f.status == "replaced" for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def merge(self, other: IngestReport) -> None:
        self.files.extend(other.files)
        self.seconds += other.seconds
        self.parse_seconds += other.parse_seconds
        self.embed_seconds += other.embed_seconds
        self.index_seconds += other.index_seconds


@dataclass(slots=True)
class Source:
    """One file to ingest: from disk (``path``) or uploaded (``data``)."""

    name: str
    doc_id: str
    path: Path | None = None
    data: bytes | None = None
    #: The id this file had under the previous id scheme, replaced on re-ingest.
    legacy_id: str | None = None


def iter_files(path: Path) -> Iterator[Path]:
    """The file itself, or every non-hidden file under a folder, in a stable order."""
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            rel = p.relative_to(path)
            # A broken symlink is listed too, so it is reported rather than silently missing.
            if (p.is_file() or p.is_symlink()) and not any(
                part.startswith(".") for part in rel.parts
            ):
                yield p
    else:
        yield path


def path_sources(path: Path) -> list[Source]:
    """Sources for a file or a folder; ids are unique per file by construction."""
    if path.is_dir():
        root = path.name or "root"
        return [
            Source(
                name=f.relative_to(path).as_posix(),
                doc_id=f"{root}/{f.relative_to(path).as_posix()}",
                path=f,
                legacy_id=f"{f.parent.name or 'root'}/{f.stem}",
            )
            for f in iter_files(path)
        ]
    parent = path.parent.name or "root"
    return [Source(path.name, make_doc_id(path), path=path, legacy_id=f"{parent}/{path.stem}")]


def make_doc_id(path: Path) -> str:
    """The id of a file ingested on its own or as a direct child of an ingested folder."""
    return f"{path.parent.name or 'root'}/{path.name}"


def upload_doc_id(case_id: int, name: str) -> str:
    """The id of a file uploaded under ``name`` into a case: as if in folder ``case-<id>``."""
    clean = Path(name.replace("\\", "/")).name.strip()
    if not clean or clean in (".", ".."):
        raise ValueError(f"not a usable file name: {name!r}")
    return f"case-{case_id}/{clean}"


def bm25_text(title: str, chunk: Chunk, lead_in: str) -> str:
    # A context header: a clause ("(b) fourteen days after notice") says nothing
    # about which document or section it is from; its header does. The labels let
    # "Section 7.2" or "¶ 26" in a question match the clause itself.
    head = " — ".join([title, *chunk.path[-2:]])
    if chunk.labels:
        head += f" ({', '.join(lbl for lbl in chunk.labels if lbl not in chunk.path)})"
    return f"{head}\n{lead_in}\n{chunk.text}" if lead_in else f"{head}\n{chunk.text}"


def dense_text(title: str, chunk: Chunk, lead_in: str) -> str:
    # Dense vectors read the unit with its nearest heading and lead-in: a sub-item
    # alone ("(c) within thirty days") has no meaning to embed.
    heading = chunk.path[-1] if chunk.path else title
    body = f"{lead_in} {chunk.text}" if lead_in else chunk.text
    return f"{heading}: {body}"


@dataclass(slots=True)
class _Prepared:
    source: Source
    loaded: Loaded
    title: str
    content_hash: str
    chunks: list[Chunk]
    existing: dict[str, Any] | None
    legacy: dict[str, Any] | None
    size_bytes: int


class Ingestor:
    def __init__(
        self,
        store: ChunkStore,
        embedder: EmbeddingAdapter,
        bm25: Bm25Encoder,
        *,
        chunk_size: int,
        chunk_overlap: int,
        model_name: str,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.bm25 = bm25
        self.chunk_size = chunk_size
        self._params = f"{PIPELINE_VERSION}|{chunk_size}|{chunk_overlap}|{model_name}"

    def ingest(
        self,
        sources: list[Source],
        case_id: int,
        *,
        title: str | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> IngestReport:
        """Ingest ``sources`` into ``case_id``; ``title`` applies when there is one source."""
        started = time.perf_counter()
        report = IngestReport()
        total = len(sources)

        def emit(i: int, src: Source, **kw: Any) -> None:
            if on_progress is not None:
                on_progress(
                    IngestProgress(
                        name=src.name,
                        doc_id=src.doc_id,
                        case_id=case_id,
                        file_index=i + 1,
                        files_total=total,
                        **kw,
                    )
                )

        prepared: list[tuple[int, _Prepared]] = []
        results: dict[int, FileResult] = {}
        for i, src in enumerate(sources):
            emit(i, src, phase="parsing")
            t0 = time.perf_counter()
            outcome = self._prepare(src, case_id, title if total == 1 else None)
            report.parse_seconds += time.perf_counter() - t0
            if isinstance(outcome, FileResult):
                results[i] = outcome
                emit(
                    i,
                    src,
                    phase="failed" if outcome.status == "failed" else "done",
                    status=outcome.status,
                    chunks_total=outcome.chunks,
                    chunks_done=outcome.chunks,
                    error=outcome.error,
                    warnings=tuple(outcome.warnings),
                )
            else:
                prepared.append((i, outcome))

        all_total = sum(len(p.chunks) for _, p in prepared)
        all_done = 0
        for i, p in prepared:
            src = p.source
            try:
                result = self._write(
                    p,
                    case_id,
                    report,
                    lambda done, n, eta, i=i, src=src, base=all_done: emit(
                        i,
                        src,
                        phase="embedding",
                        chunks_done=done,
                        chunks_total=n,
                        eta_seconds=eta,
                        all_chunks_done=base + done,
                        all_chunks_total=all_total,
                    ),
                    lambda n, i=i, src=src, base=all_done: emit(
                        i,
                        src,
                        phase="indexing",
                        chunks_done=n,
                        chunks_total=n,
                        all_chunks_done=base + n,
                        all_chunks_total=all_total,
                    ),
                )
            except Exception as exc:
                # The store refused a write (disk full, server gone): this file failed.
                result = FileResult(
                    _display(src), "failed", src.doc_id, error=f"{type(exc).__name__}: {exc}"
                )
            all_done += len(p.chunks)
            results[i] = result
            emit(
                i,
                src,
                phase="failed" if result.status == "failed" else "done",
                status=result.status,
                chunks_done=result.chunks,
                chunks_total=result.chunks,
                error=result.error,
                warnings=tuple(result.warnings),
                all_chunks_done=all_done,
                all_chunks_total=all_total,
            )
        report.files.extend(results[i] for i in sorted(results))
        report.seconds = time.perf_counter() - started
        return report

    def _prepare(self, src: Source, case_id: int, title: str | None) -> _Prepared | FileResult:
        shown = _display(src)
        try:
            if src.path is not None:
                if Path(src.path).suffix.lower() not in SUPPORTED:
                    raise LoadError(f"unsupported file type {src.path.suffix or '(none)'}")
                loaded = load_file(src.path)
                size = src.path.stat().st_size
            else:
                loaded = load_bytes(src.name, src.data or b"")
                size = len(src.data or b"")
        except LoadError as exc:
            return FileResult(shown, "failed", src.doc_id, error=str(exc))
        except OSError as exc:
            return FileResult(shown, "failed", src.doc_id, error=f"unreadable: {exc}")
        doc_title = title or loaded.title
        content_hash = hashlib.sha256(
            f"{self._params}|{doc_title}\n{loaded.text}".encode()
        ).hexdigest()[:32]
        existing = self.store.get_document(case_id, src.doc_id)
        legacy = None
        if src.legacy_id and src.legacy_id != src.doc_id:
            old = self.store.get_document(case_id, src.legacy_id)
            legacy = old if old and not old.get("id_scheme") else None
        if existing and existing.get("content_hash") == content_hash and legacy is None:
            return FileResult(
                shown,
                "skipped",
                src.doc_id,
                chunks=int(existing.get("chunks", 0)),
                warnings=loaded.warnings,
            )
        chunks = chunk_text(
            loaded.text,
            chunk_size=self.chunk_size,
            page_starts=loaded.page_starts,
            headings=loaded.headings,
        )
        if not chunks:
            return FileResult(shown, "failed", src.doc_id, error="no text content")
        return _Prepared(src, loaded, doc_title, content_hash, chunks, existing, legacy, size)

    def _embed(self, texts: list[str], progress: Any) -> np.ndarray:
        # Longest first in slices, so each slice pads to similar lengths and the
        # progress report (and ETA) comes at a steady pace.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), self.embedder.dim), dtype=np.float32)
        eta = Eta(len(texts))
        done = 0
        progress(0, len(texts), None)
        for s in range(0, len(order), EMBED_SLICE):
            idx = order[s : s + EMBED_SLICE]
            out[idx] = self.embedder.documents([texts[j] for j in idx])
            done += len(idx)
            progress(done, len(texts), eta.remaining(done))
        return out

    def _write(
        self,
        p: _Prepared,
        case_id: int,
        report: IngestReport,
        on_embedded: Any,
        on_indexing: Any,
    ) -> FileResult:
        src, loaded, title = p.source, p.loaded, p.title
        doc_id = src.doc_id
        text = loaded.text
        t1 = time.perf_counter()
        lead_ins = [
            " ".join(text[c.char_start : c.char_end] for c in ch.context if c.role == "lead_in")
            for ch in p.chunks
        ]
        dense = self._embed(
            [dense_text(title, ch, li) for ch, li in zip(p.chunks, lead_ins, strict=True)],
            on_embedded,
        )
        sparse = [
            self.bm25.document(bm25_text(title, ch, li))
            for ch, li in zip(p.chunks, lead_ins, strict=True)
        ]
        card = self.bm25.document(card_text(title, src.name, text))
        names = sorted(set(self.bm25.query(name_text(title, src.name, text)).indices))
        t2 = time.perf_counter()
        report.embed_seconds += t2 - t1
        on_indexing(len(p.chunks))
        source_path = str(src.path) if src.path is not None else None
        points = [
            ChunkPoint(
                id=chunk_point_id(case_id, doc_id, p.content_hash, ch.index),
                dense=dense[n],
                sparse=sparse[n],
                payload={
                    "kind": KIND_CHUNK,
                    "chunk_id": f"{doc_id}#{ch.index}",
                    # Invisible to searches until publish_chunks sets the real case id.
                    "case_id": staging_case(case_id),
                    "doc_id": doc_id,
                    "title": title,
                    "page": ch.page,
                    "section": ch.section,
                    "heading": ch.heading,
                    "labels": ch.labels,
                    "unit": ch.kind,
                    "char_start": ch.char_start,
                    "char_end": ch.char_end,
                    "text": ch.text,
                    "context": [
                        [c.char_start, c.char_end, c.role, text[c.char_start : c.char_end]]
                        for c in ch.context
                    ],
                    "content_hash": p.content_hash,
                },
            )
            for n, ch in enumerate(p.chunks)
        ]
        self.store.upsert_chunks(points)
        self.store.upsert_document(
            case_id,
            doc_id,
            {
                "title": title,
                "content_hash": p.content_hash,
                "chunks": len(points),
                "chars": len(text),
                "pages": len(loaded.page_starts) if loaded.page_starts else None,
                "source_path": source_path,
                "source_name": src.name,
                "file_type": loaded.kind,
                "size_bytes": p.size_bytes,
                "source_text": text,
                "ingested_at": time.time(),
                "id_scheme": ID_SCHEME,
                "card": {"indices": card.indices, "values": card.values},
                "name_terms": names,
                "warnings": loaded.warnings,
            },
        )
        # The switch: the new version becomes searchable in one update, then the
        # old version's chunks go.
        self.store.publish_chunks(case_id, doc_id, p.content_hash)
        self.store.delete_chunks(case_id, doc_id, except_hash=p.content_hash)
        note = None
        if p.legacy is not None and src.legacy_id:
            self.store.delete_document(case_id, src.legacy_id)
            note = f"replaces {src.legacy_id} (stored under the previous id scheme)"
        elif p.existing and p.existing.get("source_path") not in (None, source_path):
            note = f"replaces the version from {p.existing.get('source_path')}"
        report.index_seconds += time.perf_counter() - t2
        status: Status = "replaced" if (p.existing or p.legacy) else "ingested"
        return FileResult(
            _display(src),
            status,
            doc_id,
            chunks=len(points),
            warnings=list(loaded.warnings),
            note=note,
        )


def _display(src: Source) -> str:
    return str(src.path) if src.path is not None else src.name


def card_vector(payload: dict[str, Any]) -> SparseVec | None:
    card = payload.get("card")
    if not card:
        return None
    return SparseVec(list(card["indices"]), list(card["values"]))
