"""Prometheus metrics for one app: ``GET /metrics``.

Every app gets its own :class:`~prometheus_client.CollectorRegistry` (never the
process-global one), so several apps in one process — tests, an app mounted
twice — do not clash.

The hot path stays cheap: the per-event counters (published and delivered,
by type) are plain integers on the event loop thread, read by a collector at
scrape time, because ``Counter.inc()`` takes a lock per call and these run
once per frame. The other counters are bound to their label values once. Gauges that describe current state (open connections,
send-queue depth, active runs) are computed at scrape time from the live
registry instead of being maintained on every frame.

LLM and retrieval latency are derived from the events themselves as the run
publisher hands them to the bus: ``llm_start``→``llm_end``/``llm_error``
(matched by ``metadata.call_id``, read with the payload classes of
:mod:`legalstream.events`) and ``rag_query_start``→``rag_query_end`` (matched
per run, in order). No agent code is involved. The agent's own counters (CrewAI
events it could not translate) are read from the runner at scrape time through
:meth:`Metrics.bind_agent_counters`.

docs/operations.md describes each metric and gives alert rules.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from legalstream.events import Event, EventType, LLMCallEnd, LLMCallError, LLMCallStart

if TYPE_CHECKING:
    from legalstream.agent.api import AgentCounters
    from legalstream.runs import Run
    from legalstream.server.state import Services

__all__ = ["Metrics"]

log = logging.getLogger(__name__)

_NS = "legalstream"

#: Seconds; runs of the offline agent take ~0.1-2 s, hosted LLMs 5-60 s.
RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
FIRST_EVENT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LLM_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
RETRIEVAL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

_OUTCOMES = ("complete", "error", "cancelled")
_SLOW_REASONS = ("send_buffer_full", "fell_behind_run")


class EventTypeCounter:
    """A counter by event ``type`` kept as plain ints (loop thread only)."""

    def __init__(self, name: str, documentation: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.counts: dict[EventType, int] = dict.fromkeys(EventType, 0)
        registry.register(self)

    def count(self, events: list[Event]) -> None:
        counts = self.counts
        for event in events:
            counts[event.type] += 1

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=["type"])

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for type_, n in list(self.counts.items()):
            family.add_metric([type_.value], n)
        yield family


class AgentCounterCollector:
    """The agent runner's counters (``AgentRunner.counters()``), read at scrape time.

    ``legalstream_agent_translation_errors_total{event_type}``: CrewAI events the
    agent could not translate into protocol events (a changed event shape).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._read: Callable[[], AgentCounters] | None = None
        registry.register(self)

    def bind(self, read: Callable[[], AgentCounters]) -> None:
        self._read = read

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            f"{_NS}_agent_translation_errors",
            "Agent framework (CrewAI) events the agent could not translate into "
            "protocol events, by the framework's event type.",
            labels=["event_type"],
        )

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        counters: AgentCounters = {}
        if self._read is not None:
            try:
                counters = self._read()
            except Exception:  # a scrape must not fail for the agent's counters
                log.warning("could not read the agent's counters", exc_info=True)
        for event_type, n in sorted(counters.get("translation_errors", {}).items()):
            family.add_metric([event_type], n)
        yield family


class RunThreadCollector:
    """Run threads written off while stuck in a library call, read at scrape time.

    ``legalstream_run_threads_stuck``: threads the run manager gave up on (their
    run was ended without them) that have not returned; ``..._abandoned_total``:
    all it gave up on; ``..._returned_total``: those that came back later;
    ``..._refused_total``: stuck threads that kept their place because
    ``runs.max_stuck_threads`` were written off already.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._svc: Services | None = None
        registry.register(self)

    def bind(self, svc: Services) -> None:
        self._svc = svc

    def _families(self) -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily,
                                 CounterMetricFamily]:  # fmt: skip
        return (
            GaugeMetricFamily(
                f"{_NS}_run_threads_stuck",
                "Run threads written off (their run ended without them) not yet returned.",
            ),
            CounterMetricFamily(
                f"{_NS}_run_threads_abandoned",
                "Run threads written off while stuck past runs.cancel_grace_seconds.",
            ),
            CounterMetricFamily(
                f"{_NS}_run_threads_returned", "Written-off run threads that came back later."
            ),
            CounterMetricFamily(
                f"{_NS}_run_threads_refused",
                "Stuck run threads not written off: runs.max_stuck_threads reached.",
            ),
        )

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        stuck, abandoned, returned, refused = self._families()
        threads = self._svc.runs.threads if self._svc is not None else None
        stuck.add_metric([], threads.stuck if threads else 0)
        abandoned.add_metric([], threads.abandoned_total if threads else 0)
        returned.add_metric([], threads.returned_total if threads else 0)
        refused.add_metric([], threads.refused_total if threads else 0)
        yield from (stuck, abandoned, returned, refused)


class Metrics:
    """The metrics of one app. Hooks are called from the event loop thread only."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._svc: Services | None = None

        # -- state gauges, computed at scrape time ------------------------------
        self.connections = Gauge(
            f"{_NS}_connections_open", "Open WebSocket connections in this process.", registry=r
        )
        self.connections.set_function(lambda: len(self._svc.registry) if self._svc else 0)
        self.runs_active = Gauge(
            f"{_NS}_runs_active", "Runs started and not yet finished in this process.", registry=r
        )
        self.runs_active.set_function(lambda: self._svc.runs.active if self._svc else 0)
        self.queue_depth = Gauge(
            f"{_NS}_send_queue_depth",
            "Frames queued for sending, summed over this process's connections.",
            registry=r,
        )
        self.queue_depth.set_function(self._queue_total)
        self.queue_depth_max = Gauge(
            f"{_NS}_send_queue_depth_max",
            "Largest send queue of any one connection (frames).",
            registry=r,
        )
        self.queue_depth_max.set_function(self._queue_max)

        # -- counters --------------------------------------------------------------
        self.connections_total = Counter(
            f"{_NS}_connections", "WebSocket connections accepted.", registry=r
        )
        self.runs_started = Counter(f"{_NS}_runs_started", "Runs started.", registry=r)
        runs_finished = Counter(
            f"{_NS}_runs_finished",
            "Runs finished, by outcome (complete, error, cancelled).",
            ["outcome"],
            registry=r,
        )
        self._finished = {o: runs_finished.labels(o) for o in _OUTCOMES}
        self._finished_family = runs_finished
        self._published = EventTypeCounter(
            f"{_NS}_events_published", "Run events published to the bus, by type.", r
        )
        self._delivered = EventTypeCounter(
            f"{_NS}_events_delivered",
            "Frames queued to a connection (after filtering), by type.",
            r,
        )
        self.dropped = Counter(
            f"{_NS}_send_queue_drops",
            "Frames not queued because a connection's send queue was full.",
            registry=r,
        )
        slow = Counter(
            f"{_NS}_slow_consumer_disconnects",
            "Connections closed with 1013 because the client did not keep up.",
            ["reason"],
            registry=r,
        )
        self._slow = {reason: slow.labels(reason) for reason in _SLOW_REASONS}
        self._agent = AgentCounterCollector(r)
        self._threads = RunThreadCollector(r)

        # -- histograms ------------------------------------------------------------
        self.run_duration = Histogram(
            f"{_NS}_run_duration_seconds",
            "Wall time from query to final frame.",
            ["outcome"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self._run_duration = {o: self.run_duration.labels(o) for o in _OUTCOMES}
        self.first_event = Histogram(
            f"{_NS}_time_to_first_event_seconds",
            "Time from query to the run's first agent event (after query_received and "
            "agent_execution_start).",
            buckets=FIRST_EVENT_BUCKETS,
            registry=r,
        )
        self.llm_latency = Histogram(
            f"{_NS}_llm_call_seconds",
            "LLM call latency, llm_start to llm_end/llm_error, by outcome.",
            ["outcome"],
            buckets=LLM_BUCKETS,
            registry=r,
        )
        self._llm = {o: self.llm_latency.labels(o) for o in ("ok", "error")}
        self.retrieval_latency = Histogram(
            f"{_NS}_retrieval_seconds",
            "Retrieval latency, rag_query_start to rag_query_end, by outcome.",
            ["outcome"],
            buckets=RETRIEVAL_BUCKETS,
            registry=r,
        )
        self._retrieval = {o: self.retrieval_latency.labels(o) for o in ("ok", "error")}

        # Open LLM calls and retrievals, per run (dropped with the run's final event).
        self._llm_open: dict[str, dict[Any, float]] = {}
        self._rag_open: dict[str, deque[float]] = {}

    # -- wiring ---------------------------------------------------------------------

    def bind(self, svc: Services) -> None:
        """Attach the live services the state gauges read at scrape time."""
        self._svc = svc
        self._threads.bind(svc)

    def bind_agent_counters(self, read: Callable[[], AgentCounters]) -> None:
        """Read the agent runner's counters with ``read()`` at each scrape.

        ``read`` is called on the scrape's thread and must be cheap; it should
        return ``{}`` while no runner is built (a scrape must not import CrewAI).
        """
        self._agent.bind(read)

    def _queues(self) -> list[int]:
        if self._svc is None:
            return []
        return [s.info.queue_depth for s in list(self._svc.sessions.values())]

    def _queue_total(self) -> float:
        return float(sum(self._queues()))

    def _queue_max(self) -> float:
        return float(max(self._queues(), default=0))

    # -- hooks (event loop thread) --------------------------------------------------

    def connection_opened(self) -> None:
        self.connections_total.inc()

    def events_published(self, events: list[Event]) -> None:
        """Called by the run publisher with each batch of run events, in seq order."""
        counts = self._published.counts
        for event in events:
            t = event.type
            counts[t] += 1
            if t is not EventType.LLM_STREAM_CHUNK:  # the common case: nothing else
                self._timings(event)

    def _timings(self, event: Event) -> None:
        t = event.type
        if t is EventType.QUERY_RECEIVED:
            self.runs_started.inc()
        elif t is EventType.LLM_START:
            key = LLMCallStart.from_payload(event.metadata).call_id
            self._llm_open.setdefault(event.run_id or "", {})[key] = event.timestamp
        elif t is EventType.LLM_END or t is EventType.LLM_ERROR:
            parse = LLMCallEnd.from_payload if t is EventType.LLM_END else LLMCallError.from_payload
            key = parse(event.metadata).call_id
            started = self._llm_open.get(event.run_id or "", {}).pop(key, None)
            if started is not None:
                outcome = "ok" if t is EventType.LLM_END else "error"
                self._llm[outcome].observe(max(0.0, event.timestamp - started))
        elif t is EventType.RAG_QUERY_START:
            self._rag_open.setdefault(event.run_id or "", deque()).append(event.timestamp)
        elif t is EventType.RAG_QUERY_END:
            pending = self._rag_open.get(event.run_id or "")
            if pending:
                started = pending.popleft()
                outcome = "error" if event.error else "ok"
                self._retrieval[outcome].observe(max(0.0, event.timestamp - started))
        elif event.is_final:
            self._llm_open.pop(event.run_id or "", None)
            self._rag_open.pop(event.run_id or "", None)

    def events_delivered(self, events: list[Event]) -> None:
        """Called with the frames queued to one connection (fan-out), after filtering."""
        self._delivered.count(events)

    def frame_dropped(self) -> None:
        self.dropped.inc()

    def slow_consumer(self, reason: str) -> None:
        child = self._slow.get(reason)
        if child is None:
            child = self._slow[reason] = self._slow["send_buffer_full"]
        child.inc()

    def run_finished(self, run: Run) -> None:
        """RunManager's ``on_finish`` hook."""
        outcome = run.status if run.status in self._finished else "error"
        self._finished[outcome].inc()
        end = time.time()
        self._run_duration[outcome].observe(max(0.0, end - run.started_at))
        if run.first_event_at is not None:
            self.first_event.observe(max(0.0, run.first_event_at - run.started_at))

    # -- exposition -----------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)
