"""The ingest worker of one process: uploaded files, one job at a time, progress on the bus.

``POST /cases/{id}/documents`` queues an :class:`IngestJob` here (a bounded
queue: full means ``ingest_busy``). One task takes the jobs in order and runs
each in ONE worker thread (``engine.ingest_bytes`` per file; the engine
serialises writes anyway, and embedding already uses every core). The
engine's ``on_progress`` callback runs on that thread: it hands each
:class:`~legalstream.rag.progress.IngestProgress` (as its ``to_dict()``) to the event loop, where a
publisher task puts it on the case's bus channel (``case_topic``), so the
progress stream of any worker sees it. A job past its deadline, or running at
shutdown, is stopped at its next progress report (the callback raises, which
aborts the engine's ingest; a document is published wholly or not at all).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import ObjectReceiveStream, ObjectSendStream

from legalstream.bus.base import case_topic
from legalstream.bus.hub import Hub, Subscription
from legalstream.events import Event, EventType

log = logging.getLogger("legalstream.ingest")

#: The engine's report timings an ``ingest_job_done`` carries (for the CLI's summary).
TIMINGS = ("seconds", "parse_seconds", "embed_seconds", "index_seconds")

#: Progress events waiting for the publisher; past it, progress (never a job's end) is dropped.
OUTBOX = 1024


class IngestBusy(Exception):
    """The queue of upload jobs is full."""


class JobStopped(Exception):
    """Raised from the progress callback to stop an ingest (deadline, shutdown)."""


@dataclass(frozen=True, slots=True)
class UploadedFile:
    name: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class IngestJob:
    case_id: int
    files: list[UploadedFile]
    title: str | None = None
    user: str | None = None
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: Set to stop the job at its next progress report; the value says why.
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = "stopped"
    #: The engine's timings, summed over the files: seconds, parse/embed/index_seconds.
    timings: dict[str, float] = field(default_factory=dict)

    def halt(self, reason: str) -> None:
        self.reason = reason
        self.stop.set()


def case_event(kind: EventType, case_id: int, data: dict[str, Any]) -> Event:
    """A case channel event: the payload in ``output_data``, the case in ``metadata``."""
    return Event(type=kind, output_data=data, metadata={"case_id": case_id})


class IngestWorker:
    """A bounded queue of upload jobs and the one task that runs them."""

    def __init__(
        self,
        hub: Hub,
        engine: Callable[[], Any],
        *,
        queue_size: int,
        job_timeout: float,
    ) -> None:
        self._hub = hub
        self._engine = engine
        self._timeout = job_timeout
        self._jobs_in: ObjectSendStream[IngestJob]
        self._jobs_out: ObjectReceiveStream[IngestJob]
        self._jobs_in, self._jobs_out = anyio.create_memory_object_stream[IngestJob](queue_size)
        self._events_in: ObjectSendStream[Event]
        self._events_out: ObjectReceiveStream[Event]
        self._events_in, self._events_out = anyio.create_memory_object_stream[Event](OUTBOX)
        self.current: IngestJob | None = None
        self._closing = False
        self.done_jobs = 0
        #: Open progress streams of this process (ended at shutdown).
        self.streams: set[Subscription] = set()
        #: ``POST /cases`` checks then creates under it (one id is not handed out twice).
        self.case_lock = anyio.Lock()
        #: Set once ``run`` has ended every job and published their ends.
        self.stopped = anyio.Event()

    # -- the endpoint's side -----------------------------------------------------------

    def submit(self, job: IngestJob) -> None:
        """Queue ``job``; raises :class:`IngestBusy` when the queue is full or closing."""
        if self._closing:
            raise IngestBusy("the server is shutting down")
        try:
            self._jobs_in.send_nowait(job)
        except anyio.WouldBlock:
            raise IngestBusy("the ingest queue is full; try again later") from None

    async def publish(self, event: Event) -> None:
        """Put a case event (``case_event``) on the bus, in order with the jobs' progress."""
        await self._send(event)

    # -- the tasks --------------------------------------------------------------------

    async def run(self) -> None:
        """Run jobs and publish their events until cancelled or closed."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._publisher)
            async with self._jobs_out:
                async for job in self._jobs_out:
                    if self._closing:
                        await self._finish(job, None, "not run: the server is shutting down")
                        continue
                    await self._run(job)
            await self._events_in.aclose()
        self.stopped.set()

    async def close(self) -> None:
        """Refuse new jobs, stop the running one, end the queued ones (each is told)."""
        self._closing = True
        if self.current is not None:
            self.current.halt("server shutting down")
        self._jobs_in.close()

    def end_streams(self) -> None:
        """End this process's progress streams (after what they hold is sent)."""
        for sub in list(self.streams):
            sub.end()

    async def _publisher(self) -> None:
        async with self._events_out:
            async for event in self._events_out:
                case_id = (event.metadata or {}).get("case_id")
                try:
                    await self._hub.publish(case_topic(case_id), event)
                except Exception as exc:  # a bus outage loses progress, not the job
                    log.warning("case %s: progress not published: %s", case_id, exc)

    async def _run(self, job: IngestJob) -> None:
        self.current = job
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._deadline, job)
                report = await anyio.to_thread.run_sync(self._ingest, job, self._engine())
                tg.cancel_scope.cancel()
            await self._finish(job, report, None)
        except Exception as exc:
            log.exception("ingest job %s failed", job.job_id)
            await self._finish(job, None, f"ingest failed: {exc}")
        finally:
            self.current = None

    async def _deadline(self, job: IngestJob) -> None:
        await anyio.sleep(self._timeout)
        job.halt(f"the job took longer than {self._timeout:g} s")

    # -- the worker thread ------------------------------------------------------------

    def _ingest(self, job: IngestJob, engine: Any) -> list[dict[str, Any]]:
        """Each file through ``engine.ingest_bytes``; one result per file."""
        results: list[dict[str, Any]] = []
        total = len(job.files)
        for index, upload in enumerate(job.files, start=1):
            if job.stop.is_set():
                results.append(_failed(upload, job, f"not ingested: {job.reason}"))
                continue

            def on_progress(ev: Any, index: int = index) -> None:
                if job.stop.is_set():
                    raise JobStopped(job.reason)
                # One engine call per file: the job's position is this file's of all.
                self._from_thread(job, {**ev.to_dict(), "file_index": index, "files_total": total})

            try:
                report = engine.ingest_bytes(
                    upload.name,
                    upload.data,
                    job.case_id,
                    title=job.title if total == 1 else None,
                    on_progress=on_progress,
                )
            except JobStopped:
                results.append(_failed(upload, job, job.reason))
                stopped = {
                    "name": upload.name,
                    "doc_id": None,
                    "case_id": job.case_id,
                    "phase": "failed",
                    "status": "failed",
                    "error": job.reason,
                    "file_index": index,
                    "files_total": total,
                    "time": time.time(),
                }
                self._from_thread(job, stopped)
                continue
            for key in TIMINGS:
                job.timings[key] = job.timings.get(key, 0.0) + float(getattr(report, key, 0.0))
            for f in report.files:
                results.append(
                    {
                        "name": upload.name,
                        "doc_id": f.doc_id,
                        "status": f.status,
                        "chunks": f.chunks,
                        "error": f.error,
                        "warnings": list(f.warnings),
                        "note": f.note,
                    }
                )
        return results

    def _from_thread(self, job: IngestJob, progress: dict[str, Any]) -> None:
        data = {**progress, "job_id": job.job_id}
        event = case_event(EventType.DOCUMENT_PROGRESS, job.case_id, data)
        try:
            anyio.from_thread.run_sync(self._offer, event)
        except RuntimeError:  # no event loop any more (shutdown)
            job.halt("server shutting down")

    def _offer(self, event: Event) -> None:
        try:
            self._events_in.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass  # progress only; the job's end is sent with backpressure

    # -- the end of a job --------------------------------------------------------------

    async def _finish(
        self, job: IngestJob, results: list[dict[str, Any]] | None, error: str | None
    ) -> None:
        if results is None:
            results = [_failed(f, job, error or "failed") for f in job.files]
        counts = {"ingested": 0, "replaced": 0, "skipped": 0, "failed": 0}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        added = [
            r["doc_id"] for r in results if r["status"] in ("ingested", "replaced") and r["doc_id"]
        ]
        self.done_jobs += 1
        if added:
            changed = {"case_id": job.case_id, "job_id": job.job_id, "added": added, "removed": []}
            await self._send(case_event(EventType.DOCUMENTS_CHANGED, job.case_id, changed))
        done = {
            "job_id": job.job_id,
            "case_id": job.case_id,
            **counts,
            "files": results,
            **{key: round(job.timings.get(key, 0.0), 3) for key in TIMINGS},
            "finished_at": time.time(),
        }
        await self._send(case_event(EventType.INGEST_JOB_DONE, job.case_id, done))

    async def _send(self, event: Event) -> None:
        try:
            await self._events_in.send(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass


def _failed(upload: UploadedFile, job: IngestJob, error: str) -> dict[str, Any]:
    return {
        "name": upload.name,
        "doc_id": None,
        "status": "failed",
        "chunks": 0,
        "error": error,
        "warnings": [],
        "note": None,
    }
