"""The Bus contract on both implementations, plus what only Redis does.

The contract tests are parametrized over the in-process and the Redis bus; the Redis
ones run against a real redis-server (tests/redis_fixture.py) with a key
prefix of their own. Several Redis buses in one test stand for several
workers.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis

from legalstream.bus import open_bus
from legalstream.bus.base import (
    BROADCAST,
    Bus,
    BusUnavailable,
    HistoryLost,
    RunRecord,
    SubscriptionOverflow,
    UnknownTopic,
    run_topic,
)
from legalstream.bus.redis import open_redis_bus
from legalstream.events import Event, EventType
from legalstream.runs import RunManager
from legalstream.runs.leases import worker_lost_event
from legalstream.settings import BusSettings, RunSettings
from redis_fixture import RedisServer
from support import ScriptedRunner, free_port


def ev(seq: int | None, run_id: str = "r", **kw: Any) -> Event:
    return Event(
        type=EventType.LLM_STREAM_CHUNK,
        run_id=run_id,
        seq=seq,
        output_data={"chunk": f"c{seq}"},
        **kw,
    )


def final(seq: int, run_id: str = "r") -> Event:
    return Event(
        type=EventType.AGENT_EXECUTION_COMPLETE, run_id=run_id, seq=seq, output_data={"answer": "a"}
    )


async def take(sub: Any, n: int, within: float = 5.0) -> list[Event]:
    out = []
    with anyio.fail_after(within):
        async for event in sub:
            out.append(event)
            if len(out) == n:
                break
    return out


async def drain(sub: Any, within: float = 5.0) -> list[Event]:
    """Everything until the subscription ends."""
    out = []
    with anyio.fail_after(within):
        async for event in sub:
            out.append(event)
    return out


def crash(bus: Bus) -> None:
    """A worker "crashes": its background loops stop and nothing is cleaned up."""
    for part in bus.parts:
        for task in getattr(part, "tasks", ()):
            task.cancel()


def new_topic() -> str:
    return run_topic(uuid.uuid4().hex)


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest):
    """``await make_bus(**bus settings)``: a started bus of the parametrized kind."""
    made: list[Any] = []

    async def factory(**overrides: Any) -> Any:
        if request.param == "memory":
            bus = open_bus(BusSettings().model_copy(update=overrides), worker="memory")
        else:
            base: BusSettings = request.getfixturevalue("redis_bus_settings")
            bus = open_redis_bus(
                base.model_copy(update=overrides), worker=f"w-{uuid.uuid4().hex[:6]}"
            )
        await bus.start()
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        await bus.close()


class Recorder:
    """A Follower that records what the bus pushes into it."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.ends: list[Exception | None] = []
        self.ended = anyio.Event()

    def deliver(self, events: list[Event]) -> None:
        self.events.extend(events)

    def end(self, error: Exception | None = None) -> None:
        self.ends.append(error)
        self.ended.set()


@pytest.fixture
async def workers(redis_bus_settings: BusSettings):
    """``await workers(n, **settings)``: n started Redis buses = n workers."""
    made: list[Bus] = []

    async def factory(n: int = 2, **overrides: Any) -> list[Bus]:
        settings = redis_bus_settings.model_copy(update=overrides)
        buses = [open_redis_bus(settings, worker=f"worker-{len(made) + i}") for i in range(n)]
        for bus in buses:
            await bus.start()
        made.extend(buses)
        return buses

    yield factory
    for bus in made:
        await bus.close()


# -- the Bus contract (memory and redis) ----------------------------------------


async def test_follow_replays_after_seq_then_pushes_live_then_ends(make_bus):
    bus = await make_bus()
    topic = new_topic()
    for seq in (1, 2, 3):
        await bus.hub.publish(topic, ev(seq))
    rec = Recorder()
    bus.hub.follow(topic, rec, after_seq=1)
    for seq in (4, 5):
        await bus.hub.publish(topic, ev(seq))
    await bus.hub.publish(topic, final(6))
    await bus.hub.close_topic(topic)
    with anyio.fail_after(5):
        await rec.ended.wait()
    assert [e.seq for e in rec.events] == [2, 3, 4, 5, 6]
    assert rec.ends[0] is None


async def test_unfollow_stops_delivery(make_bus):
    bus = await make_bus()
    topic = new_topic()
    rec, other = Recorder(), Recorder()
    bus.hub.follow(topic, rec, after_seq=0)
    bus.hub.follow(topic, other, after_seq=0)
    await bus.hub.publish(topic, ev(1))
    with anyio.fail_after(5):
        while not rec.events:
            await anyio.sleep(0.01)
    bus.hub.unfollow(topic, rec)
    bus.hub.unfollow(topic, rec)  # idempotent
    await bus.hub.publish(topic, ev(2))
    await bus.hub.publish(topic, final(3))
    await bus.hub.close_topic(topic)
    with anyio.fail_after(5):
        await other.ended.wait()
    assert [e.seq for e in rec.events] == [1]
    assert [e.seq for e in other.events] == [1, 2, 3]


async def test_follow_of_a_finished_run_delivers_its_history_then_ends(make_bus):
    bus = await make_bus()
    topic = new_topic()
    await bus.hub.publish_many(topic, [ev(1), ev(2), final(3)])
    await bus.hub.close_topic(topic)
    rec = Recorder()
    bus.hub.follow(topic, rec, after_seq=0)
    with anyio.fail_after(5):
        await rec.ended.wait()
    assert [e.seq for e in rec.events] == [1, 2, 3]
    assert rec.events[-1].is_final


async def test_a_follower_whose_next_events_are_gone_is_cut_off_not_given_a_gap(make_bus):
    bus = await make_bus(history_per_run=100)
    topic = new_topic()
    for start in range(1, 501, 50):
        await bus.hub.publish_many(topic, [ev(seq) for seq in range(start, start + 50)])
    first = (await bus.hub.history(topic)).first_seq
    assert first > 1
    late, current = Recorder(), Recorder()
    bus.hub.follow(topic, late, after_seq=0)
    bus.hub.follow(topic, current, after_seq=first - 1)
    await bus.hub.publish_many(topic, [final(501)])
    await bus.hub.close_topic(topic)
    with anyio.fail_after(5):
        await late.ended.wait()
        await current.ended.wait()
    assert late.events == [] and isinstance(late.ends[0], HistoryLost)
    assert [e.seq for e in current.events] == list(range(first, 502))
    assert current.ends == [None]


async def test_memory_bus_pushes_to_followers_inside_publish():
    # The session path on the in-process bus: no task and no buffer per follower.
    bus = open_bus(BusSettings(), worker="m")
    topic = new_topic()
    rec = Recorder()
    tasks = len(asyncio.all_tasks())
    bus.hub.follow(topic, rec, after_seq=0)
    bus.hub.publish_now(topic, [ev(1), ev(2)])
    assert [e.seq for e in rec.events] == [1, 2]  # delivered before publish returned
    assert len(asyncio.all_tasks()) == tasks


def run_record(run_id: str, final_event: Event | None = None) -> RunRecord:
    """A record of case 7's run: running, or finished with ``final_event``."""
    return RunRecord(
        run_id=run_id,
        query="q",
        case_id=7,
        user="u",
        status="running" if final_event is None else "complete",
        started_at=time.time(),
        ended_at=None if final_event is None else time.time(),
        event_count=0 if final_event is None else final_event.seq or 0,
        final=None if final_event is None else final_event.to_dict(),
    )


async def test_finish_run_publishes_closes_and_saves_in_one_call(make_bus):
    bus = await make_bus()
    run_id = uuid.uuid4().hex
    topic = run_topic(run_id)
    rec = Recorder()
    bus.hub.follow(topic, rec, after_seq=0)
    await bus.hub.publish_many(topic, [ev(1, run_id), ev(2, run_id)])
    record = run_record(run_id, final(3, run_id))
    await bus.hub.finish_run(topic, [final(3, run_id)], record)
    with anyio.fail_after(5):
        await rec.ended.wait()
    assert [e.seq for e in rec.events] == [1, 2, 3] and rec.ends == [None]
    history = await bus.hub.history(topic)
    assert history.closed and [e.seq for e in history.events] == [1, 2, 3]
    saved = await bus.records.get(run_id)
    assert saved is not None and saved.status == "complete" and saved.event_count == 3
    assert [r.run_id for r in await bus.records.list_runs(case_id=7)] == [run_id]


async def test_open_run_saves_the_record_and_the_opening_frames_in_one_call(make_bus):
    bus = await make_bus()
    run_id = uuid.uuid4().hex
    topic = run_topic(run_id)
    record = run_record(run_id)
    await bus.hub.open_run(topic, [ev(1, run_id), ev(2, run_id)], record)
    saved = await bus.records.get(run_id)
    assert saved is not None and saved.status == "running"
    assert [r.run_id for r in await bus.records.list_runs(case_id=7)] == [run_id]
    history = await bus.hub.history(topic)
    assert not history.closed and [e.seq for e in history.events] == [1, 2]
    # A follower that took the opening frames from the run goes on from seq 2.
    rec = Recorder()
    bus.hub.follow(topic, rec, after_seq=2)
    await bus.hub.publish_many(topic, [ev(3, run_id)])
    await bus.hub.finish_run(topic, [final(4, run_id)], record)
    with anyio.fail_after(5):
        await rec.ended.wait()
    assert [e.seq for e in rec.events] == [3, 4]


async def test_subscribe_then_publish_then_close(make_bus):
    bus = await make_bus()
    topic = new_topic()
    sub = bus.hub.subscribe(topic, after_seq=0)
    sent = [ev(seq) for seq in range(1, 6)] + [final(6)]
    for event in sent:
        await bus.hub.publish(topic, event)
    await bus.hub.close_topic(topic)
    events = await drain(sub)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[-1].is_final
    assert events[0].output_data == {"chunk": "c1"}
    # The wire bytes survive the trip unchanged.
    assert [e.encoded for e in events] == [e.encoded for e in sent]
    assert [e.to_dict() for e in events] == [e.to_dict() for e in sent]


async def test_replay_after_seq_then_live(make_bus):
    bus = await make_bus()
    topic = new_topic()
    for seq in range(1, 11):
        await bus.hub.publish(topic, ev(seq))
    sub = bus.hub.subscribe(topic, after_seq=4)
    replayed = await take(sub, 6)
    assert [e.seq for e in replayed] == [5, 6, 7, 8, 9, 10]
    await bus.hub.publish(topic, ev(11))
    await bus.hub.publish(topic, final(12))
    await bus.hub.close_topic(topic)
    assert [e.seq for e in await drain(sub)] == [11, 12]


async def test_subscribers_at_different_positions(make_bus):
    bus = await make_bus()
    topic = new_topic()
    live = bus.hub.subscribe(topic, after_seq=0)
    for seq in range(1, 4):
        await bus.hub.publish(topic, ev(seq))
    assert [e.seq for e in await take(live, 3)] == [1, 2, 3]
    late = bus.hub.subscribe(topic, after_seq=1)
    await bus.hub.publish(topic, ev(4))
    await bus.hub.close_topic(topic)
    assert [e.seq for e in await drain(live)] == [4]
    assert [e.seq for e in await drain(late)] == [2, 3, 4]


async def test_subscribe_to_closed_topic_replays_and_ends(make_bus):
    bus = await make_bus()
    topic = new_topic()
    for seq in range(1, 4):
        await bus.hub.publish(topic, ev(seq))
    await bus.hub.close_topic(topic)
    assert [e.seq for e in await drain(bus.hub.subscribe(topic, after_seq=0))] == [1, 2, 3]
    assert [e.seq for e in await drain(bus.hub.subscribe(topic, after_seq=2))] == [3]


async def test_close_topic_ends_waiting_subscriptions(make_bus):
    bus = await make_bus()
    topic = new_topic()
    subs = [bus.hub.subscribe(topic, after_seq=0) for _ in range(3)]
    await bus.hub.publish(topic, ev(1))
    for sub in subs:
        assert [e.seq for e in await take(sub, 1)] == [1]
    await bus.hub.close_topic(topic)
    for sub in subs:
        assert await drain(sub) == []


async def test_history(make_bus):
    bus = await make_bus()
    topic = new_topic()
    with pytest.raises(UnknownTopic):
        await bus.hub.history(new_topic())
    for seq in range(1, 8):
        await bus.hub.publish(topic, ev(seq))
    h = await bus.hub.history(topic, after_seq=3)
    assert [e.seq for e in h.events] == [4, 5, 6, 7]
    assert (h.first_seq, h.last_seq, h.closed) == (1, 7, False)
    await bus.hub.publish(topic, final(8))
    await bus.hub.close_topic(topic)
    h = await bus.hub.history(topic)
    assert [e.seq for e in h.events] == list(range(1, 9))
    assert (h.first_seq, h.last_seq, h.closed) == (1, 8, True)
    assert h.events[-1].type is EventType.AGENT_EXECUTION_COMPLETE


async def test_overflow_cuts_off_slow_subscriber_only(make_bus):
    bus = await make_bus(subscriber_buffer=8)
    topic = new_topic()
    slow = bus.hub.subscribe(topic, after_seq=0)
    fast = bus.hub.subscribe(topic, after_seq=0)
    await bus.hub.publish(topic, ev(1))
    assert [e.seq for e in await take(slow, 1)] == [1]
    got_fast = await take(fast, 1)
    for seq in range(2, 40):
        await bus.hub.publish(topic, ev(seq))
        got_fast += await take(fast, 1)
    assert [e.seq for e in got_fast] == list(range(1, 40))
    received = []
    with pytest.raises(SubscriptionOverflow), anyio.fail_after(5):
        async for event in slow:
            received.append(event.seq)
    # What was buffered is delivered first, in order, then the overflow.
    assert received == list(range(2, 2 + len(received)))
    # Redis counts the first read after subscribing as replayed backlog (+1 here).
    assert 1 <= len(received) <= 8 + 1


async def test_broadcast(make_bus):
    bus = await make_bus()
    a, b = bus.hub.subscribe(BROADCAST), bus.hub.subscribe(BROADCAST)
    await bus.hub.publish(
        BROADCAST, Event(type=EventType.BROADCAST, action="notice", output_data={"message": "hi"})
    )
    for sub in (a, b):
        (event,) = await take(sub, 1)
        assert event.type is EventType.BROADCAST
        assert event.output_data == {"message": "hi"}
    await a.aclose()
    await b.aclose()


async def test_run_records_and_list_filtering(make_bus):
    bus = await make_bus()
    now = time.time()
    ids = [uuid.uuid4().hex for _ in range(5)]
    for i, run_id in enumerate(ids):
        await bus.records.save(
            RunRecord(
                run_id=run_id,
                query=f"q{i}",
                case_id=1 + i % 2,
                user="u",
                status="running",
                started_at=now + i,
            )
        )
    done = RunRecord(
        run_id=ids[0],
        query="q0",
        case_id=1,
        user="u",
        status="complete",
        started_at=now,
        ended_at=now + 9,
        event_count=12,
        final={"type": "agent_execution_complete", "seq": 12},
    )
    await bus.records.save(done)
    got = await bus.records.get(ids[0])
    assert got is not None
    assert (got.status, got.event_count, got.ended_at, got.final) == (
        "complete",
        12,
        now + 9,
        done.final,
    )
    assert await bus.records.get("nope") is None
    everything = await bus.records.list_runs()
    mine = [r.run_id for r in everything if r.run_id in ids]
    assert sorted(mine) == sorted(ids)
    case1 = [r.run_id for r in await bus.records.list_runs(case_id=1) if r.run_id in ids]
    assert set(case1) == {ids[0], ids[2], ids[4]}
    assert all(r.case_id == 2 for r in await bus.records.list_runs(case_id=2))
    assert len(await bus.records.list_runs(limit=2)) == 2


# -- Redis only --------------------------------------------------------------


async def test_events_cross_workers_with_end_marker(workers):
    a, b = await workers(2)
    topic = new_topic()
    for seq in range(1, 4):
        await a.hub.publish(topic, ev(seq))
    sub = b.hub.subscribe(topic, after_seq=1)
    assert [e.seq for e in await take(sub, 2)] == [2, 3]
    await a.hub.publish(topic, final(4))
    await a.hub.close_topic(topic)
    assert [e.seq for e in await drain(sub)] == [4]
    h = await b.hub.history(topic)
    assert h.closed and h.last_seq == 4


async def test_stream_layout_maxlen_and_ttl(workers, redis_url, redis_prefix):
    (bus,) = await workers(1, history_per_run=100, retention_seconds=50)
    topic = new_topic()
    for seq in range(1, 501):
        await bus.hub.publish(topic, ev(seq))
    h = await bus.hub.history(topic)
    # MAXLEN ~ trims whole stream nodes: at least 100 kept, far fewer than 500.
    assert 100 <= len(h.events) < 500
    assert h.first_seq > 1 and h.last_seq == 500
    assert [e.seq for e in h.events] == list(range(h.first_seq, 501))
    await bus.hub.close_topic(topic)
    r = aioredis.from_url(redis_url)
    try:
        key = f"{redis_prefix}:{topic}"
        assert 0 < await r.ttl(key) <= 50
        first = (await r.xrange(key, "-", "+", count=1))[0]
        assert first[0] == f"{h.first_seq}-0".encode() and set(first[1]) == {b"e"}
    finally:
        await r.aclose()


async def test_finished_history_expires(workers):
    (bus,) = await workers(1, retention_seconds=1)
    topic = new_topic()
    await bus.hub.publish(topic, ev(1))
    await bus.hub.close_topic(topic)
    assert (await bus.hub.history(topic)).closed
    await asyncio.sleep(2.1)
    with pytest.raises(UnknownTopic):
        await bus.hub.history(topic)


async def test_run_index_is_bounded(workers, redis_url, redis_prefix):
    (bus,) = await workers(1, history_runs=5)
    now = time.time()
    for i in range(12):
        await bus.records.save(
            RunRecord(
                run_id=f"r{i}",
                query="q",
                case_id=7,
                user="u",
                status="complete",
                started_at=now + i,
            )
        )
    # Newest first, index trimmed to history_runs.
    assert [r.run_id for r in await bus.records.list_runs()] == ["r11", "r10", "r9", "r8", "r7"]
    r = aioredis.from_url(redis_url)
    try:
        p = redis_prefix
        assert await r.zcard(f"{p}:runs") == 5
        assert await r.zcard(f"{p}:runs:case:7") == 5
        assert 0 < await r.ttl(f"{p}:record:r0")
        # A record that expired disappears from the listing (and the index).
        await r.delete(f"{p}:record:r10")
    finally:
        await r.aclose()
    assert [x.run_id for x in await bus.records.list_runs(case_id=7)] == ["r11", "r9", "r8", "r7"]


async def test_broadcast_reaches_every_worker(workers):
    a, b, c = await workers(3)
    subs = [bus.hub.subscribe(BROADCAST) for bus in (a, b, c)]
    await b.hub.publish(
        BROADCAST,
        Event(type=EventType.BROADCAST, action="maintenance", output_data={"message": "m"}),
    )
    for sub in subs:
        (event,) = await take(sub, 1)
        assert event.action == "maintenance"
        # Exactly once per worker, also on the publisher's own.
        with anyio.move_on_after(0.2):
            extra = await take(sub, 1)
            pytest.fail(f"duplicate broadcast {extra}")


class FakeRegistry:
    def __init__(self, worker: str, n: int) -> None:
        self.items = [
            {"connection_id": f"{worker}-{i}", "metadata": {"worker": worker}} for i in range(n)
        ]

    def snapshot(self) -> list[dict[str, Any]]:
        return list(self.items)


async def test_cluster_connections_and_heartbeat_expiry(workers):
    a, b = await workers(2, heartbeat_seconds=0.2)
    a.presence.attach(FakeRegistry(a.worker, 2))
    reg_b = FakeRegistry(b.worker, 3)
    b.presence.attach(reg_b)

    async def ids_seen_by(bus: Bus) -> set[str]:
        return {c["connection_id"] for c in await bus.presence.connections()}

    with anyio.fail_after(3):
        while len(await ids_seen_by(b)) != 5:
            await anyio.sleep(0.05)
    assert await ids_seen_by(a) == await ids_seen_by(b)
    # B's own list is live (not the heartbeat copy).
    reg_b.items.append({"connection_id": "fresh", "metadata": {}})
    assert "fresh" in await ids_seen_by(b)
    # "Crash" A: its loops stop, nothing is cleaned up; the TTL (3 heartbeats) removes it.
    crash(a)
    crashed_at = time.monotonic()
    with anyio.fail_after(3):
        while any(i.startswith(a.worker) for i in await ids_seen_by(b)):
            await anyio.sleep(0.05)
    assert time.monotonic() - crashed_at < 3 * 0.2 + 0.5
    assert a.worker not in await b.presence.live_workers()


async def test_clean_close_leaves_cluster_at_once(workers):
    a, b = await workers(2, heartbeat_seconds=5)
    a.presence.attach(FakeRegistry(a.worker, 1))
    await a.presence.heartbeat()
    assert len(await b.presence.connections()) == 1
    await a.close()
    assert await b.presence.connections() == []


async def test_control_messages_reach_other_workers_in_order(workers):
    a, b = await workers(2)
    seen_a: list[tuple[str, str]] = []
    seen_b: list[tuple[str, str]] = []
    a.control.on_message(lambda op, run_id, reason: seen_a.append((op, run_id)))
    b.control.on_message(lambda op, run_id, reason: seen_b.append((op, run_id)))
    assert b.control.send("attach", "r1")
    assert b.control.send("detach", "r1")
    assert not b.control.send("detach", "r1")  # never attached again: nothing to undo
    assert b.control.send("cancel", "r1", "stop")
    with anyio.fail_after(3):
        while len(seen_a) < 3:
            await anyio.sleep(0.02)
    assert seen_a == [("attach", "r1"), ("detach", "r1"), ("cancel", "r1")]
    assert seen_b == []  # a worker ignores its own messages


async def test_resume_grace_across_workers(workers):
    """A run on worker A survives its client leaving while a client on B follows it."""
    a, b = await workers(2)
    runner = ScriptedRunner(steps=200, delay=0.01)
    settings = RunSettings(resume_grace_seconds=0.3)
    async with anyio.create_task_group() as tg:
        manager_a = RunManager(a, lambda: runner, settings)
        manager_b = RunManager(b, lambda: runner, settings)
        manager_a.bind(tg)
        manager_b.bind(tg)
        run = await manager_a.start(query="q", case_id=1)
        manager_a.attach(run.run_id)  # the original client
        manager_a.detach(run.run_id)  # ... disconnects: grace period starts
        manager_b.attach(run.run_id)  # resumes on worker B
        with anyio.fail_after(3):
            while run.followers == 0:
                await anyio.sleep(0.01)
        await anyio.sleep(0.5)  # longer than the grace period
        assert not run.cancelled.is_set()
        manager_b.detach(run.run_id)  # the resumed client leaves too
        with anyio.fail_after(3):
            await run.done.wait()
        assert run.status == "cancelled"
        assert run.cancel_reason == "client disconnected"
        # Cancel from another worker.
        run2 = await manager_a.start(query="q", case_id=1)
        assert manager_b.cancel(run2.run_id, "stop please")
        with anyio.fail_after(3):
            await run2.done.wait()
        assert run2.status == "cancelled"


async def test_a_dead_owner_s_run_is_ended_exactly_once_by_the_survivors(workers):
    a, b, c = await workers(3, heartbeat_seconds=0.2)
    run_id = uuid.uuid4().hex
    topic = run_topic(run_id)
    record = run_record(run_id)
    await a.hub.open_run(topic, [ev(1, run_id), ev(2, run_id)], record)
    await a.hub.publish_many(topic, [ev(3, run_id)])
    rec = Recorder()
    b.hub.follow(topic, rec, after_seq=0)
    # While A is alive, nobody may end its run.
    assert await b.leases.orphans() == []
    assert await b.leases.finalize(record, worker_lost_event(record)) == 0
    crash(a)  # A dies mid-run: its heartbeats stop, no final event will come from it
    with anyio.fail_after(5):
        while a.worker in await b.presence.live_workers():
            await anyio.sleep(0.05)
    (orphan,) = await b.leases.orphans()
    assert orphan.run_id == run_id
    # Two survivors race to end it: exactly one does.
    seqs = await asyncio.gather(
        b.leases.finalize(orphan, worker_lost_event(orphan)),
        c.leases.finalize(orphan, worker_lost_event(orphan)),
    )
    assert sorted(seqs) == [0, 4]
    with anyio.fail_after(5):
        await rec.ended.wait()
    assert [e.seq for e in rec.events] == [1, 2, 3, 4] and rec.ends == [None]
    final_event = rec.events[-1]
    assert final_event.type is EventType.AGENT_EXECUTION_ERROR and final_event.code == "worker_lost"
    history = await c.hub.history(topic)
    assert history.closed and [e.seq for e in history.events] == [1, 2, 3, 4]
    assert sum(e.is_final for e in history.events) == 1
    saved = await c.records.get(run_id)
    assert saved is not None and (saved.status, saved.event_count) == ("error", 4)
    assert saved.final is not None and saved.final["seq"] == 4
    assert await b.leases.orphans() == []


# -- a failing Redis -----------------------------------------------------------


async def test_unreachable_redis_gives_errors_not_crashes(redis_prefix):
    settings = BusSettings(
        backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_prefix=redis_prefix
    )
    bus = open_redis_bus(settings, worker="lonely")
    with anyio.fail_after(10):
        await bus.start()  # does not raise
    try:
        with anyio.fail_after(10):
            with pytest.raises(BusUnavailable):
                await bus.hub.publish(new_topic(), ev(1))
            with pytest.raises(BusUnavailable):
                await bus.records.get("x")
            with pytest.raises(BusUnavailable):
                await bus.hub.history(new_topic())
            with pytest.raises(BusUnavailable):
                await drain(bus.hub.subscribe(new_topic(), after_seq=0))
            bus.presence.attach(FakeRegistry("lonely", 1))
            assert await bus.presence.connections() != []
    finally:
        await bus.close()


async def test_redis_restart_ends_subscriptions_then_recovers(redis_prefix):
    server = RedisServer().start()
    try:
        settings = BusSettings(backend="redis", redis_url=server.url, redis_prefix=redis_prefix)
        bus = open_redis_bus(settings, worker="w")
        await bus.start()
        try:
            topic = new_topic()
            sub = bus.hub.subscribe(topic, after_seq=0)
            await bus.hub.publish(topic, ev(1))
            assert [e.seq for e in await take(sub, 1)] == [1]
            broadcast = bus.hub.subscribe(BROADCAST)
            port = server.port
            await anyio.to_thread.run_sync(server.stop)
            with pytest.raises(BusUnavailable):
                await drain(sub, within=10)
            server = RedisServer(port).start()
            # Reconnects with backoff: publishing and following work again.
            with anyio.fail_after(15):
                while True:
                    try:
                        await bus.hub.publish(topic, ev(2))
                        break
                    except BusUnavailable:
                        await anyio.sleep(0.1)
            with anyio.fail_after(15):
                while True:
                    sub2 = bus.hub.subscribe(topic, after_seq=1)
                    try:
                        assert [e.seq for e in await take(sub2, 1)] == [2]
                        break
                    except BusUnavailable:
                        await anyio.sleep(0.2)
            # The broadcast subscription survived the outage.
            with anyio.fail_after(15):
                while True:
                    await bus.hub.publish(
                        BROADCAST, Event(type=EventType.BROADCAST, output_data={"message": "back"})
                    )
                    with anyio.move_on_after(0.3):
                        (event,) = await take(broadcast, 1)
                        assert event.output_data == {"message": "back"}
                        break
        finally:
            await bus.close()
    finally:
        server.stop()


async def test_memory_bus_cuts_off_a_failing_follower_and_serves_the_rest():
    bus = open_bus(BusSettings(), worker="m")
    topic = new_topic()

    class Broken(Recorder):
        def deliver(self, events: list[Event]) -> None:
            raise ValueError("boom")

    broken, good = Broken(), Recorder()
    bus.hub.follow(topic, broken, after_seq=0)
    bus.hub.follow(topic, good, after_seq=0)
    bus.hub.publish_now(topic, [ev(1)])
    bus.hub.publish_now(topic, [ev(2)])
    assert [e.seq for e in good.events] == [1, 2]
    assert len(broken.ends) == 1 and isinstance(broken.ends[0], ValueError)


async def test_script_calls_of_one_loop_turn_share_a_pipeline_and_keep_their_own_errors(
    redis_bus_settings: BusSettings, monkeypatch
):
    bus = open_redis_bus(redis_bus_settings, worker="w-batch")
    await bus.start()
    try:
        closed = new_topic()
        await bus.hub.publish_many(closed, [ev(1), ev(2)])
        await bus.hub.close_topic(closed)
        pipelines = 0
        commands = bus.parts[0].commands  # type: ignore[attr-defined]
        real_pipeline = commands.pipeline

        def counting_pipeline(*args: Any, **kwargs: Any) -> Any:
            nonlocal pipelines
            pipelines += 1
            return real_pipeline(*args, **kwargs)

        monkeypatch.setattr(commands, "pipeline", counting_pipeline)
        topics = [new_topic() for _ in range(30)]
        results = await asyncio.gather(
            *(bus.hub.publish_many(t, [ev(1), ev(2), ev(3)]) for t in topics),
            bus.hub.publish_many(closed, [ev(3)]),  # refused: the run is closed
            return_exceptions=True,
        )
        assert pipelines == 1
        assert results[:-1] == [None] * 30
        assert isinstance(results[-1], RuntimeError)
        for topic in topics:
            assert [e.seq for e in (await bus.hub.history(topic)).events] == [1, 2, 3]
    finally:
        await bus.close()


async def test_redis_followers_are_pushed_to_without_a_task_and_told_when_redis_fails(
    redis_bus_settings: BusSettings,
):
    bus = open_redis_bus(redis_bus_settings, worker="w-push")
    await bus.start()
    try:
        topic, other = new_topic(), new_topic()
        rec, cut = Recorder(), Recorder()
        tasks = len(asyncio.all_tasks())
        bus.hub.follow(topic, rec, after_seq=0)
        bus.hub.follow(other, cut, after_seq=0)
        await bus.hub.publish_many(topic, [ev(1), ev(2)])
        assert [e.seq for e in rec.events] == [1, 2]  # local publish: pushed at once
        assert len(asyncio.all_tasks()) <= tasks + 1  # no task per follower (a wake may run)
        bus.hub.fail(None, BusUnavailable("redis connection lost"))
        assert isinstance(cut.ends[0], BusUnavailable)
    finally:
        await bus.close()
