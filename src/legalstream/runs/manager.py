"""RunManager: starts, follows and cancels agent runs; the only door to ``agent/``.

A run is one question answered by an :class:`~legalstream.agent.api.AgentRunner`
in a worker thread. Its events travel::

    worker thread ──emit()──► ThreadBridge ──call_soon_threadsafe──► loop callback
        (numbers them: seq) ──► hub ──► followers (sessions)

On the in-process bus the loop callback publishes the batch itself: a run
costs no task on the event loop, only a queued job for the run threads and
one callback per burst of events. A bus that must await (Redis) gets one
publisher task per run instead, fed by the same callback.

Every run ends with exactly one final frame, whatever its thread does. A
cancel (client, disconnect, shutdown) or the run's timeout sets its
:class:`~legalstream.agent.api.Cancellation` (the runner then cuts its
provider request off) and gives the thread ``runs.cancel_grace_seconds`` to
end the run; a thread that has not by then is stuck in a library call, and
the manager ends the run itself from the event loop: it publishes the final
frame (code ``cancelled`` or ``timeout``), drops whatever that thread emits
later, frees the run's place and per-user count, and writes the thread off
(:meth:`RunThreads.abandon`: a replacement thread takes its place, bounded).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from legalstream.agent.api import (
    AgentRunner,
    Cancellation,
    CheckingRunner,
    RunCancelled,
    RunFailed,
    RunOutcome,
    RunRequest,
)
from legalstream.audit import audit_line
from legalstream.bus.base import Bus, RunRecord, run_topic
from legalstream.events import ErrorCode, Event, EventType, FinalAnswer, Grounding, RunFailure
from legalstream.runs.bridge import REMOTE_BRIDGE_SLOTS, ThreadBridge
from legalstream.runs.ids import RunIds
from legalstream.runs.threads import RunThreads
from legalstream.settings import RunSettings

log = logging.getLogger("legalstream.runs")

AGENT_NAME = "Legal Question Answering Agent"
TASK_NAME = "Answer legal question"


class ServerBusy(Exception):
    """Too many runs are queued in this process."""


@dataclass(slots=True)
class Run:
    request: RunRequest
    connection_id: str | None
    started_at: float = field(default_factory=time.time)
    cancelled: Cancellation = field(default_factory=Cancellation)
    cancel_reason: str | None = None
    #: The final code a cancel gives: ``cancelled``, or ``timeout`` for the watchdog's.
    cancel_code: str = ErrorCode.CANCELLED.value
    #: Ends the run from the loop if its thread has not within the cancel grace.
    force_handle: asyncio.TimerHandle | None = None
    bridge: ThreadBridge | None = None
    status: str = "running"
    seq: int = 0
    final: Event | None = None
    cited_doc_ids: list[str] = field(default_factory=list)
    #: Sessions currently streaming this run (any worker's, for resume grace).
    followers: int = 0
    grace_handle: asyncio.TimerHandle | None = None
    watchdog: asyncio.TimerHandle | None = None
    first_event_at: float | None = None
    #: The asking client's address, for the audit log.
    client_ip: str | None = None
    #: The opening frames (query_received and agent_execution_start, seq 1 and
    #: 2): on the bus by the time start() returns, so that the session sends
    #: them before it answers the connection's next message.
    opening: list[Event] = field(default_factory=list)
    #: Made when somebody waits for the run (most runs nobody does).
    _done: anyio.Event | None = None
    _finished: bool = False
    #: Holds one of RunManager's max_concurrent places.
    _admitted: bool = False
    #: The final event reached the bus (followers and resumes can get it).
    published_final: bool = False
    #: Connections following the run when its final event was published.
    final_followers: int = 0

    @property
    def run_id(self) -> str:
        return self.request.run_id

    @property
    def done(self) -> anyio.Event:
        """Set once the run's final event is on the bus and its record saved."""
        if self._done is None:
            self._done = anyio.Event()
            if self._finished:
                self._done.set()
        return self._done


class RunManager:
    """Owns run ids, seq numbers and the worker threads of this process."""

    def __init__(
        self,
        bus: Bus,
        runner_factory: Callable[[], AgentRunner],
        settings: RunSettings,
        *,
        on_finish: Callable[[Run], None] | None = None,
        on_events: Callable[[list[Event]], None] | None = None,
        ids: RunIds | None = None,
    ) -> None:
        #: Makes run ids and recognises this deployment's own (runs/ids.py).
        self.ids = ids or RunIds(b"")
        self._hub = bus.hub
        self._records = bus.records
        # A session on another worker may follow or cancel a run of ours.
        self._control = bus.control
        # The in-process bus publishes without awaiting: a run then needs no task.
        self._inline = bus.hub.inline
        self._runner_factory = runner_factory
        self._runner: AgentRunner | None = None
        self._runner_lock = threading.Lock()
        self._settings = settings
        self._threads = RunThreads(
            settings.max_concurrent, max_abandoned=settings.max_stuck_threads
        )
        #: Runs holding one of the max_concurrent places: from being handed to a
        #: thread until their final event is published.
        self._admitted = 0
        #: Runs waiting for a place, first come first served.
        self._waiting: deque[ThreadBridge] = deque()
        self._runs: dict[str, Run] = {}
        self._tg: TaskGroup | None = None
        self._on_finish = on_finish
        #: Called with each published batch of run events, in seq order (metrics).
        self._on_events = on_events
        #: Runs going in this process, per user (the per-user concurrency limit).
        self._per_user: dict[str, int] = {}
        self.started = 0
        bus.control.on_message(self._on_remote_control)

    # -- lifecycle ----------------------------------------------------------

    def bind(self, task_group: TaskGroup) -> None:
        self._tg = task_group

    @property
    def built_runner(self) -> AgentRunner | None:
        """The agent runner if it was built already (never builds it)."""
        return self._runner

    def runner(self) -> AgentRunner:
        """The process's agent runner, built on first use (importing CrewAI is slow)."""
        with self._runner_lock:
            if self._runner is None:
                self._runner = self._runner_factory()
            return self._runner

    async def shutdown(self, grace: float) -> None:
        """Let running runs finish for ``grace`` seconds, then cancel the rest."""
        with anyio.move_on_after(grace):
            for run in list(self._runs.values()):
                await run.done.wait()
        for run in list(self._runs.values()):
            self.cancel(run.run_id, "server shutting down")
        with anyio.move_on_after(max(grace, 5.0)):
            for run in list(self._runs.values()):
                await run.done.wait()
        self._threads.shutdown()

    # -- queries ------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    @property
    def active(self) -> int:
        return len(self._runs)

    @property
    def threads(self) -> RunThreads:
        """The run threads (``/metrics`` reads the stuck and abandoned counts)."""
        return self._threads

    def runner_problem(self) -> str | None:
        """Why the built agent runner cannot work (``/ready``), or None."""
        runner = self._runner
        if isinstance(runner, CheckingRunner):
            try:
                return runner.problem()
            except Exception as exc:  # a broken check must not break /ready
                return f"{type(exc).__name__}: {exc}"
        return None

    def active_for(self, user: str) -> int:
        """Runs of one user going in this process (per-user concurrency limit)."""
        return self._per_user.get(user, 0)

    # -- starting -----------------------------------------------------------

    async def start(
        self,
        *,
        query: str,
        case_id: Any,
        stream_thinking: bool = True,
        user: str = "anonymous",
        connection_id: str | None = None,
        client_ip: str | None = None,
    ) -> Run:
        """Create a run, publish its first frames and queue it for a worker thread."""
        if self._tg is None:
            raise RuntimeError("RunManager is not bound to a task group (lifespan not running)")
        if len(self._runs) >= self._settings.max_concurrent + self._settings.max_queued:
            raise ServerBusy("too many runs queued; try again shortly")
        run_id = self.ids.new()
        request = RunRequest(run_id, query, case_id, stream_thinking, user)
        run = Run(request=request, connection_id=connection_id, client_ip=client_ip)
        meta = {"query": query, "case_id": case_id, "stream_thinking": stream_thinking}
        ack = self._event(run, EventType.QUERY_RECEIVED, input_data=meta, seq=1)
        start = self._event(
            run,
            EventType.AGENT_EXECUTION_START,
            action="kickoff",
            input_data={"query": query, "case_id": case_id},
            seq=2,
        )
        run.opening = [ack, start]
        loop = asyncio.get_running_loop()
        topic = run_topic(run_id)
        if self._inline:
            self._hub.open_run_now(topic, run.opening, self._record(run))
            self._number(run, run.opening)
            bridge = ThreadBridge(loop, run, self._publish_now)
        else:
            # The run's record and its opening frames: one round trip.
            await self._hub.open_run(topic, run.opening, self._record(run))
            self._number(run, run.opening)
            bridge = ThreadBridge(loop, run, self._to_publisher, REMOTE_BRIDGE_SLOTS)
            send, receive = anyio.create_memory_object_stream[tuple[list[Event], int]](
                REMOTE_BRIDGE_SLOTS + 1
            )
            bridge.inbox = send
            self._tg.start_soon(self._publisher, bridge, receive)
        run.bridge = bridge
        self._runs[run_id] = run
        self._per_user[user] = self._per_user.get(user, 0) + 1
        self.started += 1
        timeout = self._settings.timeout_seconds
        run.watchdog = loop.call_later(
            timeout, self.cancel, run_id, f"run exceeded {timeout:g} s", ErrorCode.TIMEOUT
        )
        self._waiting.append(bridge)
        self._admit()
        return run

    def _admit(self) -> None:
        """Hand waiting runs to the threads while fewer than max_concurrent are in flight.

        A place is given back when a run's final event is *published*, not when
        its thread returns: a thread that outran the loop does not start the
        next run while its events still wait for the loop. Events then never
        pile up between the threads and the bus (at most max_concurrent runs'
        worth), and they go out about as soon as they are made.
        """
        limit = max(1, self._settings.max_concurrent)
        while self._waiting and self._admitted < limit:
            bridge = self._waiting.popleft()
            bridge.run._admitted = True
            self._admitted += 1
            self._threads.submit(self._execute, bridge)

    def _event(self, run: Run, type_: EventType, **fields: Any) -> Event:
        fields.setdefault("agent_name", AGENT_NAME)
        fields.setdefault("task", TASK_NAME)
        return Event(type=type_, run_id=run.run_id, **fields)

    def _execute(self, bridge: ThreadBridge) -> None:
        """A run, in its worker thread, from the first step to its final event."""
        run = bridge.run
        req = run.request
        if bridge.abandoned:  # ended by the manager while it waited for a thread
            return
        bridge.thread = threading.current_thread()

        def emit(type_: EventType, **fields: Any) -> None:
            bridge.emit_from_thread(self._event(run, type_, **fields))

        try:
            if run.cancelled.is_set():  # cancelled while it waited for a thread
                raise RunCancelled
            # The first run builds the runner (imports CrewAI: seconds), once.
            runner = self._runner or self.runner()
            outcome: RunOutcome = runner.run(req, emit, run.cancelled)
            if run.cancelled.is_set():
                raise RunCancelled
            final = self._final_answer(run, outcome)
        except RunCancelled:
            final = self._final_error(run, run.cancel_code, run.cancel_reason)
        except RunFailed as exc:
            if run.cancelled.is_set():
                final = self._final_error(run, run.cancel_code, run.cancel_reason)
            else:
                final = self._final_error(run, exc.code, exc.message)
        except Exception as exc:
            log.exception("run %s failed", run.run_id)
            final = self._final_error(run, ErrorCode.AGENT_FAILED, f"{type(exc).__name__}: {exc}")
        try:
            bridge.emit_from_thread(final)
        except RuntimeError:  # the event loop is gone (the process is exiting)
            pass
        finally:
            bridge.thread_done = True

    def _final_answer(self, run: Run, outcome: RunOutcome) -> Event:
        """The final frame of a run that answered: complete, or the draft of a failed check."""
        req = run.request
        answer = FinalAnswer(outcome.answer, outcome.citations, outcome.grounding).to_payload()
        code = outcome.failure_code
        if code is None:
            return self._event(
                run,
                EventType.AGENT_EXECUTION_COMPLETE,
                action="final_answer",
                output_data=answer,
                metadata={"query": req.query, "case_id": req.case_id, **outcome.metadata},
            )
        check = Grounding.from_payload(outcome.grounding)
        if code is ErrorCode.TRUNCATED_ANSWER:
            message = (
                "The answer was cut off at the model's token limit; it is delivered as an "
                "unverified draft in output_data."
            )
        else:
            message = (
                f"The answer could not be verified against the case documents ({check.summary()});"
                " it is delivered as an unverified draft in output_data."
            )
        return self._event(
            run,
            EventType.AGENT_EXECUTION_ERROR,
            action="final_answer",
            output_data=answer,
            error=message,
            metadata={
                **RunFailure(req.query, req.case_id, str(code)).to_payload(),
                **{k: v for k, v in outcome.metadata.items() if k not in ("query", "case_id")},
            },
            code=str(code),
        )

    def _final_error(self, run: Run, code: str, message: str | None) -> Event:
        req = run.request
        return self._event(
            run,
            EventType.AGENT_EXECUTION_ERROR,
            error=message or "run cancelled",
            metadata=RunFailure(req.query, req.case_id, str(code)).to_payload(),
            code=str(code),
        )

    # -- publishing ---------------------------------------------------------

    def _number(self, run: Run, events: list[Event]) -> bool:
        """Give a batch its seq numbers; True when it holds the final event."""
        seq = run.seq
        final = False
        for event in events:
            if event.seq is None:
                seq += 1
                event.seq = seq
            else:  # numbered at start (the opening frames)
                seq = max(seq, event.seq)
            if event.is_final:
                final = True
                self._settle(run, event)
        run.seq = seq
        if run.first_event_at is None and seq > 2:
            run.first_event_at = time.time()
        if self._on_events is not None:
            self._on_events(events)
        return final

    def _settle(self, run: Run, final: Event) -> None:
        """Record how the run ended, from its final event."""
        run.final = final
        if final.type is EventType.AGENT_EXECUTION_COMPLETE:
            run.status = "complete"
        elif final.code == ErrorCode.CANCELLED:
            run.status = "cancelled"
        else:
            run.status = "error"
        if final.output_data:  # an answer, or the draft of one that failed its check
            cited = FinalAnswer.from_payload(final.output_data).cited()
            run.cited_doc_ids = sorted({c.doc_id for c in cited if c.doc_id})

    def _publish_now(self, bridge: ThreadBridge, events: list[Event], from_thread: int) -> None:
        """In-process bus: number and publish a batch from the bridge's loop callback."""
        run = bridge.run
        if run.published_final:  # a written-off thread's late batch
            bridge.release(from_thread)
            return
        final = self._number(run, events)
        topic = run_topic(run.run_id)
        try:
            if final:
                run.final_followers = run.followers  # they detach as the final reaches them
                self._hub.finish_run_now(topic, events, self._record(run))
                run.published_final = True
            else:
                self._hub.publish_now(topic, events)
        except Exception:
            log.exception("bus publish failed for run %s", run.run_id)
        bridge.release(from_thread)
        if final:
            self._finish(run)

    def _to_publisher(self, bridge: ThreadBridge, events: list[Event], from_thread: int) -> None:
        # Never blocks: each batch holds at least one of the bridge's slots, and
        # the inbox has room for as many batches as there are slots, plus the
        # one batch the manager may add when it ends a run itself.
        assert bridge.inbox is not None
        bridge.inbox.send_nowait((events, from_thread))

    async def _publisher(
        self, bridge: ThreadBridge, receive: MemoryObjectReceiveStream[tuple[list[Event], int]]
    ) -> None:
        """A bus that awaits (Redis): number the run's batches and publish them in order."""
        run = bridge.run
        topic = run_topic(run.run_id)
        closed = False
        try:
            async with receive:
                async for events, from_thread in receive:
                    final = self._number(run, events)
                    try:
                        # One call per batch: one Redis round trip, not one per
                        # event; the last also closes the topic and saves the run.
                        if final:
                            run.final_followers = run.followers
                            await self._hub.finish_run(topic, events, self._record(run))
                            closed = run.published_final = True
                        else:
                            await self._hub.publish_many(topic, events)
                    except Exception:
                        log.exception("bus publish failed for run %s", run.run_id)
                    # Slots come back only once published: a slow bus slows the
                    # worker thread, never the loop, and nothing piles up.
                    bridge.release(from_thread)
                    if final:
                        break
        finally:
            with anyio.CancelScope(shield=True):
                if not closed:
                    try:
                        await self._hub.close_topic(topic)
                        await self._records.save(self._record(run))
                    except Exception:
                        log.exception("closing run %s on the bus failed", run.run_id)
                self._finish(run)

    def _finish(self, run: Run) -> None:
        if run._finished:
            return
        if run._admitted:
            run._admitted = False
            self._admitted -= 1
            self._admit()
        elif run.bridge is not None and run.bridge in self._waiting:
            self._waiting.remove(run.bridge)  # ended before it got a thread
        for handle in (run.grace_handle, run.watchdog, run.force_handle):
            if handle is not None:
                handle.cancel()
        if self._runs.pop(run.run_id, None) is not None:
            user = run.request.user
            left = self._per_user.get(user, 1) - 1
            if left > 0:
                self._per_user[user] = left
            else:
                self._per_user.pop(user, None)
        run._finished = True
        if run._done is not None:
            run._done.set()
        duration = time.time() - run.started_at
        audit_line(
            "query",
            {
                "user": run.request.user,
                "client_ip": run.client_ip,
                "run_id": run.run_id,
                "case_id": run.request.case_id,
                "outcome": run.status,
                "duration_s": round(duration, 4),
                "cited_doc_ids": run.cited_doc_ids,
                "connection_id": run.connection_id,
                # How the run ended (outcome) and whether anybody could get it:
                # its final event stored on the bus, and who followed it then.
                "published": run.published_final,
                "followers": run.final_followers,
            },
        )
        if self._on_finish is not None:
            self._on_finish(run)

    def _record(self, run: Run) -> RunRecord:
        final = run.final.to_dict() if run.final is not None else None
        return RunRecord(
            run_id=run.run_id,
            query=run.request.query,
            case_id=run.request.case_id,
            user=run.request.user,
            status=run.status,
            started_at=run.started_at,
            ended_at=time.time() if run.final is not None else None,
            event_count=run.seq,
            final=final,
        )

    # -- cancelling and following -------------------------------------------

    def cancel(
        self,
        run_id: str,
        reason: str = "cancelled by client",
        code: str = ErrorCode.CANCELLED.value,
    ) -> bool:
        """Stop a run: its runner aborts what it waits for; its final frame comes within the grace.

        ``code`` is the final frame's code: ``cancelled``, or ``timeout`` (the watchdog's).
        """
        run = self._runs.get(run_id)
        if run is None:
            return self._control.send("cancel", run_id, reason)
        if run.final is not None:
            return False
        if not run.cancelled.is_set():
            run.cancel_reason = reason
            run.cancel_code = str(code)
            run.cancelled.set()
            grace = max(0.0, self._settings.cancel_grace_seconds)
            loop = asyncio.get_running_loop()
            run.force_handle = loop.call_later(grace, self._end_stuck_run, run)
        return True

    def _end_stuck_run(self, run: Run) -> None:
        """A cancelled run whose thread did not end it in time: end it here, on the loop."""
        bridge = run.bridge
        if run.final is not None or run._finished or bridge is None:
            return
        pending, final_handed = bridge.abandon()
        events = list(pending)
        if not final_handed:  # else its own final frame is among the pending events
            thread = bridge.thread
            if thread is not None and thread.is_alive() and not bridge.thread_done:
                written_off = self._threads.abandon(thread)
                log.warning(
                    "run %s: its thread %s did not end within %.1f s of the %s; the run is "
                    "ended without it%s",
                    run.run_id,
                    thread.name,
                    self._settings.cancel_grace_seconds,
                    run.cancel_code,
                    "" if written_off else " (stuck-thread limit reached: no replacement)",
                )
            events.append(self._final_error(run, run.cancel_code, run.cancel_reason))
        if not events:
            return
        if self._inline:
            self._publish_now(bridge, events, len(pending))
        else:
            assert bridge.inbox is not None
            bridge.inbox.send_nowait((events, len(pending)))

    def attach(self, run_id: str) -> None:
        run = self._runs.get(run_id)
        if run is None:
            self._control.send("attach", run_id)
            return
        run.followers += 1
        if run.grace_handle is not None:
            run.grace_handle.cancel()
            run.grace_handle = None

    def detach(self, run_id: str) -> None:
        """A follower went away; cancel once nobody follows after the grace period."""
        run = self._runs.get(run_id)
        if run is None:
            self._control.send("detach", run_id)
            return
        run.followers = max(0, run.followers - 1)
        if run.followers:
            return
        grace = self._settings.resume_grace_seconds
        if grace <= 0:
            self.cancel(run_id, "client disconnected")
            return
        loop = asyncio.get_running_loop()
        run.grace_handle = loop.call_later(
            grace, lambda: run.followers == 0 and self.cancel(run_id, "client disconnected")
        )

    def _on_remote_control(self, op: str, run_id: str, reason: str | None) -> None:
        """Another worker's session attached to, detached from or cancelled a run of ours."""
        if run_id not in self._runs:
            return
        if op == "attach":
            self.attach(run_id)
        elif op == "detach":
            self.detach(run_id)
        elif op == "cancel":
            self.cancel(run_id, reason or "cancelled by client")
