"""The resume planner on its own: every case of docs/protocol.md's "Resume", no sockets."""

from __future__ import annotations

from legalstream.bus.base import History, RunRecord
from legalstream.events import Event, EventType
from legalstream.server.resume import plan_resume

RUN = "r1"


def record(status: str = "running", count: int = 0, final: Event | None = None) -> RunRecord:
    return RunRecord(
        run_id=RUN,
        query="q",
        case_id=1,
        user="u",
        status=status,
        started_at=0.0,
        event_count=count,
        final=final.to_dict() if final is not None else None,
    )


def events(first: int, last: int) -> list[Event]:
    return [
        Event(type=EventType.LLM_STREAM_CHUNK, run_id=RUN, seq=s) for s in range(first, last + 1)
    ]


def final(seq: int) -> Event:
    return Event(
        type=EventType.AGENT_EXECUTION_COMPLETE, run_id=RUN, seq=seq, output_data={"answer": "a"}
    )


def history(first: int, last: int, *, after: int, closed: bool = False) -> History:
    return History(
        events=events(max(first, after + 1), last), first_seq=first, last_seq=last, closed=closed
    )


def test_everything_after_after_seq_is_held_follow_with_the_backlog():
    plan = plan_resume(RUN, 3, record(), history(1, 7, after=3))
    assert plan.send == []
    assert plan.follow_after == 3
    assert [e.seq for e in plan.backlog] == [4, 5, 6, 7] and plan.backlog_until == 7


def test_a_running_run_with_nothing_on_the_bus_yet_is_followed_from_after_seq():
    plan = plan_resume(RUN, 0, record(), None)
    assert plan.send == [] and plan.follow_after == 0 and plan.backlog == []


def test_a_running_run_whose_early_events_are_gone_says_so_then_goes_on_from_what_is_held():
    plan = plan_resume(RUN, 2, record(count=20), history(11, 20, after=2))
    (notice,) = plan.send
    assert notice.type is EventType.RESUME_FAILED
    assert notice.metadata == {
        "after_seq": 2,
        "first_available_seq": 11,
        "last_seq": 20,
        "lost": [3, 10],
        "status": "running",
        "reason": "evicted",
    }
    assert plan.follow_after == 10
    assert [e.seq for e in plan.backlog] == list(range(11, 21)) and plan.backlog_until == 20


def test_a_finished_run_whose_events_are_gone_gets_the_notice_and_its_final_frame():
    done = final(30)
    plan = plan_resume(RUN, 2, record("complete", 30, done), history(21, 30, after=2, closed=True))
    assert [e.type for e in plan.send] == [
        EventType.RESUME_FAILED,
        EventType.AGENT_EXECUTION_COMPLETE,
    ]
    assert plan.send[0].output_data == {"answer": "a"}
    assert plan.send[1].seq == 30
    assert plan.follow_after is None


def test_a_finished_run_with_no_history_left_at_all():
    done = final(30)
    plan = plan_resume(RUN, 5, record("complete", 30, done), None)
    assert [e.type for e in plan.send] == [
        EventType.RESUME_FAILED,
        EventType.AGENT_EXECUTION_COMPLETE,
    ]
    assert plan.send[0].metadata["lost"] == [6, 30]
    assert plan.send[0].metadata["first_available_seq"] is None
    assert plan.follow_after is None


def test_a_resume_at_the_tip_of_a_finished_run_gets_its_final_frame_again():
    done = final(12)
    for after in (12, 40):
        plan = plan_resume(
            RUN, after, record("complete", 12, done), history(1, 12, after=after, closed=True)
        )
        assert [e.seq for e in plan.send] == [12] and plan.follow_after is None
