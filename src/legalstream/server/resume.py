"""What a resume does, decided from the run's record and what history still holds.

Pure: no socket, no bus. The session reads the record and the history, asks
:func:`plan_resume`, and carries the plan out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from legalstream.bus.base import History, RunRecord
from legalstream.events import Event, EventType, decode_event


@dataclass(frozen=True, slots=True)
class ResumePlan:
    #: Frames to send first, in order (``resume_failed``, a finished run's final frame).
    send: list[Event] = field(default_factory=list)
    #: Follow the run after this seq; None: the plan ends with ``send``.
    follow_after: int | None = None
    #: Stored events to send (paced) before the live ones: up to ``backlog_until``.
    backlog: list[Event] = field(default_factory=list)
    backlog_until: int = 0


def plan_lost_history(run_id: str, after_seq: int) -> ResumePlan:
    """A run this deployment issued of which nothing is left (no record, no history)."""
    return ResumePlan(
        send=[
            Event(
                type=EventType.RESUME_FAILED,
                run_id=run_id,
                error="the run's history is gone: the event store no longer has it",
                metadata={
                    "after_seq": after_seq,
                    "first_available_seq": None,
                    "last_seq": None,
                    "lost": [after_seq + 1, None],
                    "status": "unknown",
                    "reason": "history_lost",
                },
            )
        ]
    )


def plan_resume(
    run_id: str, after_seq: int, record: RunRecord, history: History | None
) -> ResumePlan:
    """The plan for ``resume`` of ``run_id`` after ``after_seq``.

    ``history`` is what the bus holds after ``after_seq`` (None: nothing).
    Every later event goes out exactly once; when some are no longer held,
    a ``resume_failed`` frame says which, and the run's state follows.
    """
    if history is None:
        if record.status == "running":
            # Nothing of the run is on the bus yet (its first batch is still in
            # flight): nothing was lost, following replays it.
            return ResumePlan(follow_after=after_seq)
        return ResumePlan(send=_lost(run_id, after_seq, record, None) + _final(record))
    if history.closed and after_seq >= history.last_seq and record.final is not None:
        # The client has everything (or says so): its answer is the run's end, again.
        return ResumePlan(send=_final(record))
    if history.first_seq > after_seq + 1:
        notice = _lost(run_id, after_seq, record, history)
        if record.final is not None:
            return ResumePlan(send=notice + _final(record))
        # Still going: continue from the oldest event held.
        return ResumePlan(
            send=notice,
            follow_after=history.first_seq - 1,
            backlog=history.events,
            backlog_until=history.last_seq,
        )
    return ResumePlan(
        follow_after=after_seq, backlog=history.events, backlog_until=history.last_seq
    )


def _lost(run_id: str, after_seq: int, record: RunRecord, history: History | None) -> list[Event]:
    return [
        Event(
            type=EventType.RESUME_FAILED,
            run_id=run_id,
            error="events after after_seq are no longer in history",
            metadata={
                "after_seq": after_seq,
                "first_available_seq": history.first_seq if history else None,
                "last_seq": history.last_seq if history else record.event_count,
                "lost": [
                    after_seq + 1,
                    (history.first_seq - 1) if history else record.event_count,
                ],
                "status": record.status,
                "reason": "evicted",
            },
            output_data=(record.final or {}).get("output_data"),
        )
    ]


def _final(record: RunRecord) -> list[Event]:
    return [decode_event(record.final)] if record.final is not None else []
