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
    """

    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        #: Threads waiting for a job nobody has promised them yet.
        self._idle = 0
        #: Jobs queued while every thread was busy; the next thread to finish takes one.
        self._unclaimed = 0

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Queue ``fn(*args)``; never blocks (callers bound what they submit)."""
        start = False
        with self._lock:
            if self._idle > 0:
                self._idle -= 1
            elif self._threads < self._size:
                self._threads += 1
                start = True
            else:
                self._unclaimed += 1
            self._jobs.put((fn, args))
        if start:
            name = f"legalstream-run-{self._threads}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args = job
            try:
                fn(*args)
            except BaseException:  # jobs report their own errors; keep the thread
                log.exception("run thread job failed")
            del job, fn, args  # hold nothing of a finished run while idle
            with self._lock:
                if self._unclaimed > 0:
                    self._unclaimed -= 1
                else:
                    self._idle += 1

    def shutdown(self) -> None:
        """End the threads once they are idle (a running job finishes first)."""
        with self._lock:
            threads, self._threads, self._idle = self._threads, 0, 0
        for _ in range(threads):
            self._jobs.put(None)
