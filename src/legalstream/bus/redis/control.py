"""Messages about a run to the worker that owns it, over one Pub/Sub channel.

A resumed client may follow, on worker B, a run that lives on worker A: B
sends ``attach`` and A's run manager counts the follower (cancelling its
resume-grace timer); ``detach`` reverses it; ``cancel`` stops the run. Sent
in order by one task; a worker ignores its own messages.
"""

from __future__ import annotations

import asyncio
import logging

import orjson

from legalstream.bus.base import ControlHandler
from legalstream.bus.redis.connection import (
    REDIS_ERRORS,
    BackgroundTasks,
    RedisConnections,
    raise_if_stopping,
)
from legalstream.bus.redis.keys import Keys
from legalstream.bus.redis.pubsub import PubSubListener

log = logging.getLogger("legalstream.bus.redis")

#: Control messages waiting to be sent, at most (a Redis outage must not grow memory).
MAX_QUEUED = 10_000


class RedisControl:
    def __init__(
        self, conn: RedisConnections, keys: Keys, pubsub: PubSubListener, *, worker: str
    ) -> None:
        self._conn = conn
        self._keys = keys
        self.worker = worker
        self._handler: ControlHandler | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)
        #: Runs of other workers this worker attached to, and how often.
        self._attached: dict[str, int] = {}
        self._started = False
        self.tasks = BackgroundTasks()
        pubsub.on(keys.control, self._received)

    def on_message(self, handler: ControlHandler) -> None:
        """Register the run manager's handler for other workers' messages."""
        self._handler = handler

    async def start(self) -> None:
        self._started = True
        self.tasks.spawn(self._sender(), "control")

    async def close(self) -> None:
        self._started = False
        await self.tasks.cancel_all()

    def send(self, op: str, run_id: str, reason: str | None = None) -> bool:
        """Tell the worker that owns ``run_id``: ``attach``, ``detach`` or ``cancel``.

        A ``detach`` is only sent for runs this worker attached to. Returns
        whether a message was queued.
        """
        if not self._started:
            return False
        if op == "attach":
            self._attached[run_id] = self._attached.get(run_id, 0) + 1
        elif op == "detach":
            count = self._attached.get(run_id, 0)
            if count <= 0:
                return False
            if count == 1:
                del self._attached[run_id]
            else:
                self._attached[run_id] = count - 1
        payload = {"op": op, "run_id": run_id, "reason": reason, "from": self.worker}
        try:
            self._queue.put_nowait(orjson.dumps(payload))
        except asyncio.QueueFull:
            log.error("control queue full; message dropped: %s", payload)
            return False
        return True

    async def _sender(self) -> None:
        while True:
            payload = await self._queue.get()
            try:
                await self._conn.commands.publish(self._keys.control, payload)
            except REDIS_ERRORS as exc:
                raise_if_stopping(exc)
                log.error("control message lost (%s): %s", exc, payload)

    def _received(self, raw: bytes) -> None:
        msg = orjson.loads(raw)
        if msg.get("from") == self.worker or self._handler is None:
            return
        self._handler(msg["op"], msg["run_id"], msg.get("reason"))
