"""RunManager and its worker threads, without a server: admission, cancellation
of a waiting run, what a run costs the event loop, and the bounded hand-off
from a run's thread to the loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from legalstream.agent.api import RunCancelled, RunOutcome, RunRequest
from legalstream.bus import open_bus
from legalstream.events import Event, EventType
from legalstream.runs import Run, RunManager
from legalstream.runs.bridge import BRIDGE_SLOTS, REMOTE_BRIDGE_SLOTS, ThreadBridge
from legalstream.runs.threads import RunThreads
from legalstream.settings import BusSettings, RunSettings


class GatedRunner:
    """Each run emits one event, then blocks until ``release`` (or its cancellation)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.active = 0
        self.most_active = 0
        self.started: list[str] = []
        self._lock = threading.Lock()

    def run(self, request: RunRequest, emit: Any, cancelled: threading.Event) -> RunOutcome:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            self.started.append(request.run_id)
        try:
            emit(EventType.THINKING_START, action="think")
            while not self.release.wait(0.01):
                if cancelled.is_set():
                    raise RunCancelled
            return RunOutcome(answer="ok")
        finally:
            with self._lock:
                self.active -= 1


async def _wait(predicate: Any, within: float = 5.0) -> None:
    with anyio.fail_after(within):
        while not predicate():
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def manager(max_concurrent: int) -> AsyncIterator[tuple[RunManager, GatedRunner]]:
    """A RunManager on a memory bus, bound as the app's lifespan binds it, and its runner."""
    runner = GatedRunner()
    bus = open_bus(BusSettings(), worker="test")
    runs = RunManager(bus, lambda: runner, RunSettings(max_concurrent=max_concurrent))
    async with anyio.create_task_group() as tg:
        runs.bind(tg)
        try:
            yield runs, runner
        finally:
            runner.release.set()
            await runs.shutdown(1.0)
            tg.cancel_scope.cancel()


async def test_at_most_max_concurrent_runs_execute_the_rest_wait_in_order():
    async with manager(2) as (runs, runner):
        await _admission(runs, runner)


async def _admission(runs: RunManager, runner: GatedRunner) -> None:
    started = [await runs.start(query=f"q{i}", case_id=1) for i in range(5)]
    await _wait(lambda: runner.active == 2)
    await anyio.sleep(0.2)
    assert runner.active == 2 and len(runner.started) == 2
    runner.release.set()
    for run in started:
        with anyio.fail_after(5):
            await run.done.wait()
        assert run.status == "complete"
    assert runner.most_active == 2
    assert runner.started == [run.run_id for run in started]  # first come, first served


async def test_a_cancelled_waiting_run_ends_cancelled_without_running():
    async with manager(1) as (runs, runner):
        await _cancel_waiting(runs, runner)


async def _cancel_waiting(runs: RunManager, runner: GatedRunner) -> None:
    first = await runs.start(query="q1", case_id=1)
    waiting = await runs.start(query="q2", case_id=1)
    await _wait(lambda: runner.active == 1)
    assert runs.cancel(waiting.run_id, "changed my mind")
    runner.release.set()
    with anyio.fail_after(5):
        await waiting.done.wait()
    assert waiting.status == "cancelled"
    assert waiting.final is not None and waiting.final.error == "changed my mind"
    assert waiting.run_id not in runner.started
    with anyio.fail_after(5):
        await first.done.wait()
    assert first.status == "complete"


async def test_a_run_costs_the_event_loop_no_task():
    # On the in-process bus a run is a thread job plus loop callbacks: many
    # runs in flight leave the loop's task count where it was.
    async with manager(20) as (runs, runner):
        await _no_task(runs, runner)


async def _no_task(runs: RunManager, runner: GatedRunner) -> None:
    before = len(asyncio.all_tasks())
    started = [await runs.start(query=f"q{i}", case_id=1) for i in range(20)]
    # Each has had its thread emit an event, and the event is on the bus.
    await _wait(lambda: runner.active == 20 and all(run.seq >= 3 for run in started))
    assert len(asyncio.all_tasks()) == before
    runner.release.set()
    for run in started:
        with anyio.fail_after(5):
            await run.done.wait()


def test_run_threads_bound_concurrency_and_reuse_threads():
    threads = RunThreads(3)
    lock = threading.Lock()
    state = {"active": 0, "most": 0, "done": 0}
    names: set[str] = set()
    finished = threading.Event()

    def job(n: int) -> None:
        with lock:
            state["active"] += 1
            state["most"] = max(state["most"], state["active"])
            names.add(threading.current_thread().name)
        time.sleep(0.02)
        with lock:
            state["active"] -= 1
            state["done"] += 1
            if state["done"] == 12:
                finished.set()

    for n in range(12):
        threads.submit(job, n)
    assert finished.wait(10)
    assert state["most"] == 3
    assert len(names) == 3
    assert all(t.daemon for t in threading.enumerate() if t.name.startswith("legalstream-run"))
    threads.shutdown()


async def test_the_thread_bridge_holds_at_most_its_slots_and_loses_nothing():
    """A bus that has not published yet makes the *thread* wait at the bound;
    once it publishes, every event arrives, in order, in batches."""
    assert BRIDGE_SLOTS < REMOTE_BRIDGE_SLOTS
    slots, total = 8, 50
    run = Run(RunRequest(run_id="r", query="q", case_id=1), connection_id=None)
    received: list[int] = []
    unreleased: list[int] = []

    def deliver(bridge: ThreadBridge, batch: list[Event], count: int) -> None:
        received.extend(event.seq for event in batch)
        unreleased.append(count)  # not published yet: slots stay taken

    bridge = ThreadBridge(asyncio.get_running_loop(), run, deliver, slots)
    emitted = 0

    def produce() -> None:
        nonlocal emitted
        for n in range(1, total + 1):
            bridge.emit_from_thread(Event(type=EventType.LLM_STREAM_CHUNK, seq=n))
            emitted = n

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    await _wait(lambda: len(received) == slots)
    await anyio.sleep(0.1)
    assert emitted == slots and thread.is_alive()  # waiting for a slot, not queueing
    while thread.is_alive() or unreleased:
        while unreleased:
            bridge.release(unreleased.pop())
        await anyio.sleep(0.005)
    thread.join(1)
    await _wait(lambda: len(received) == total)
    assert received == list(range(1, total + 1))
