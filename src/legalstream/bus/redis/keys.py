"""Where everything lives in Redis (``P`` is ``settings.redis_prefix``)::

    P:run:<run_id>          Stream: one entry per event, entry ID ``<seq>-0``,
                            field ``e`` = Event.encoded; a final ``end`` entry
                            marks the ended stream. MAXLEN ~ history_per_run,
                            EXPIRE retention_seconds.
    P:record:<run_id>       String: the RunRecord as JSON (+ owner worker), TTL.
    P:runs                  ZSET run_id by started_at (trimmed to history_runs).
    P:runs:case:<case>      ZSET per case, same.
    P:running               ZSET run_id by started_at: runs not ended (leases).
    P:worker:<worker>       String: the worker's connection snapshot, TTL 3x heartbeat.
    P:workers               ZSET worker -> expiry (an index; the key's TTL decides).
    P:wake:<worker>         Stream used only to wake this worker's blocked XREAD.
    P:broadcast             Pub/Sub channel: broadcast events.
    P:cases                 Pub/Sub channel: every case's document events,
                            each message "case:<id>\n<event>".
    P:control               Pub/Sub channel: cross-worker attach/detach/cancel.

Why the seq is the entry ID (not only a field): ``XRANGE P:run:x <n+1>-0 +``
*is* "replay after seq n", and the first entry's ID is the first seq still in
history, so neither replay nor resume needs a scan.
"""

from __future__ import annotations

from typing import Any

import orjson

StreamId = tuple[int, int]


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.workers = f"{prefix}:workers"
        self.control = f"{prefix}:control"
        self.running = f"{prefix}:running"

    def stream(self, topic: str) -> str:
        return f"{self.prefix}:{topic}"

    def topic_of(self, key: bytes) -> str:
        return key.decode()[len(self.prefix) + 1 :]

    def channel(self, topic: str) -> str:
        return f"{self.prefix}:{topic}"

    def record(self, run_id: str) -> str:
        return f"{self.prefix}:record:{run_id}"

    def index(self, case_id: Any = None) -> str:
        if case_id is None:
            return f"{self.prefix}:runs"
        return f"{self.prefix}:runs:case:{orjson.dumps(case_id).decode()}"

    def worker(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"

    def wake(self, worker: str) -> bytes:
        return f"{self.prefix}:wake:{worker}".encode()


def parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(sid: StreamId) -> str:
    return f"{sid[0]}-{sid[1]}"
