"""Ingest progress, reported per document through a callback.

The engine calls ``on_progress(IngestProgress)`` on the ingesting thread at
each phase of each document (parsing → embedding, with chunks done of total
and an ETA → indexing → done, or failed with the reason). The callback must
return quickly and must not call back into the engine; a server hands the
event to its event loop (e.g. ``loop.call_soon_threadsafe``) and publishes it
from there. An exception raised by the callback is not caught: it aborts the
ingest, which is how a caller cancels one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Phase = Literal["parsing", "embedding", "indexing", "done", "failed"]
Status = Literal["ingested", "replaced", "skipped", "failed"]


@dataclass(frozen=True, slots=True)
class IngestProgress:
    #: The file's name as given (upload name, or path relative to the ingested folder).
    name: str
    doc_id: str | None
    case_id: int
    phase: Phase
    #: Set when the phase is "done" or "failed".
    status: Status | None = None
    #: This document's chunks embedded so far, of its total (known after parsing).
    chunks_done: int = 0
    chunks_total: int = 0
    #: Seconds left for this document's embedding, from the rate so far; None before any.
    eta_seconds: float | None = None
    error: str | None = None
    #: Warnings the parsing library gave about this file.
    warnings: tuple[str, ...] = ()
    #: Chunks embedded so far and to embed in the whole ingest call (all its files).
    all_chunks_done: int = 0
    all_chunks_total: int = 0
    #: Position of this file in the ingest call (1-based) and number of files.
    file_index: int = 1
    files_total: int = 1
    time: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["warnings"] = list(self.warnings)
        return data


ProgressCallback = Callable[[IngestProgress], None]


class Eta:
    """Remaining time from the rate so far (chunks per second since the start)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.started = time.perf_counter()

    def remaining(self, done: int) -> float | None:
        if done <= 0 or self.total <= 0:
            return None
        elapsed = time.perf_counter() - self.started
        return max(0.0, elapsed / done * (self.total - done))
