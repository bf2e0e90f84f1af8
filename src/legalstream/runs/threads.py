"""The worker threads runs execute in."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("legalstream.runs")


class RunThreads:
    """The worker threads runs execute in: at most ``size``, first come first served.

    Not a ``ThreadPoolExecutor``: a run needs no future (its result travels as
    its final event), and these threads are daemons, so a run stuck in a
    provider call cannot hold up the process's exit once graceful shutdown
    has given up on it.

    A thread stuck in a job the run manager has given up on is *abandoned*
    (:meth:`abandon`): it stops counting toward ``size`` and, if jobs are
    waiting, a replacement starts, so capacity is not lost to a thread that
    may never come back. At most ``max_abandoned`` threads are written off at
    once (past that, a stuck thread keeps its place: threads stay bounded at
    ``size + max_abandoned``). One that does come back rejoins when there is
    room, and ends otherwise.
    """

    def __init__(self, size: int, *, max_abandoned: int | None = None) -> None:
        self._size = max(1, size)
        self._max_abandoned = self._size if max_abandoned is None else max(0, max_abandoned)
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        #: Threads that count toward ``size``.
        self._threads = 0
        #: Threads waiting for a job nobody has promised them yet.
        self._idle = 0
        #: Jobs queued while every thread was busy; the next thread to finish takes one.
        self._unclaimed = 0
        self._started = 0
        self._closed = False
        #: Threads written off while in a job, still in it.
        self._abandoned: set[threading.Thread] = set()
        #: Since start: threads written off; of those, threads that came back; refusals.
        self.abandoned_total = 0
        self.returned_total = 0
        self.refused_total = 0

    @property
    def stuck(self) -> int:
        """Threads written off that have not come back (yet)."""
        with self._lock:
            return len(self._abandoned)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(*args)``; never blocks (callers bound what they submit)."""
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
                start = False
            elif self._threads < self._size:
                self._threads += 1
                start = True
            else:
                self._unclaimed += 1
                start = False
            self._jobs.put((fn, args))
        if start:
            self._start()

    def abandon(self, thread: threading.Thread) -> bool:
        """Write off ``thread``, stuck in its job: a replacement may take its place.

        Returns False (and changes nothing) when ``max_abandoned`` threads are
        written off already, or ``thread`` is not one of ours in a job.
        """
        with self._lock:
            if thread in self._abandoned or not getattr(thread, "_legalstream_busy", False):
                return False
            if len(self._abandoned) >= self._max_abandoned:
                self.refused_total += 1
                return False
            self._abandoned.add(thread)
            self.abandoned_total += 1
            self._threads -= 1
            start = False
            if self._unclaimed > 0 and not self._closed:
                self._unclaimed -= 1
                self._threads += 1
                start = True
        if start:
            self._start()
        return True

    def _start(self) -> None:
        self._started += 1
        name = f"legalstream-run-{self._started}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        me = threading.current_thread()
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            me._legalstream_busy = True  # type: ignore[attr-defined]
            try:
                fn(*args)
            except BaseException:  # jobs report their own errors; keep the thread
                log.exception("run thread job failed")
            finally:
                me._legalstream_busy = False  # type: ignore[attr-defined]
            del job, fn, args  # hold nothing of a finished run while idle
            with self._lock:
                if me in self._abandoned:
                    self._abandoned.discard(me)
                    self.returned_total += 1
                    if self._closed or self._threads >= self._size:
                        return  # its replacement has its place
                    self._threads += 1
                if self._unclaimed > 0:
                    self._unclaimed -= 1
                else:
                    self._idle += 1

    def shutdown(self) -> None:
        """End the threads once they are idle (a running job finishes first)."""
        with self._lock:
            self._closed = True
            threads, self._threads, self._idle = self._threads, 0, 0
        for _ in range(threads):
            self._jobs.put(None)
