"""AG-UI events on the wire: Server-Sent Events, and WebSocket text frames.

SSE: each event is ``id: <event id>`` then the ``ag-ui-protocol`` encoder's
``data: <json>`` block. WebSocket: one text frame per run event that has AG-UI
events — ``{"type": "agui", "run_id", "seq", "id", "events": [...]}`` — so a
group is never cut in two there and ``seq`` is a resume position as it is
for the seed's frames.
"""

from __future__ import annotations

from typing import Any

import orjson
from ag_ui.core import BaseEvent
from ag_ui.encoder import EventEncoder

from legalstream.dialects.agui.stream import AguiStream, Position
from legalstream.dialects.agui.translate import AguiTranslator
from legalstream.events import Event, EventType

#: The SSE media type of AG-UI streams.
MEDIA_TYPE = "text/event-stream"

#: ``type`` of the WebSocket frame that carries a run event's AG-UI events.
WS_FRAME_TYPE = "agui"

_ENCODER = EventEncoder()

#: An SSE comment: keeps proxies from closing an idle stream; clients ignore it.
KEEPALIVE = b": keepalive\n\n"


def sse(event_id: str, event: BaseEvent) -> bytes:
    """One SSE event: its id line, then the AG-UI encoder's data block."""
    return f"id: {event_id}\n{_ENCODER.encode(event)}".encode()


def sse_many(items: list[tuple[str, BaseEvent]]) -> bytes:
    return b"".join(sse(event_id, event) for event_id, event in items)


def event_json(event: BaseEvent) -> dict[str, Any]:
    """An event as the JSON object the SSE data block holds."""
    return event.model_dump(mode="json", by_alias=True)


def ws_frame(run_id: str, seq: int, events: list[BaseEvent]) -> bytes:
    """The WebSocket text frame of one run event's AG-UI events."""
    return orjson.dumps(
        {
            "type": WS_FRAME_TYPE,
            "run_id": run_id,
            "seq": seq,
            "id": f"{run_id}:{seq}",
            "events": [event_json(event) for event in events],
        }
    )


class AguiFrames:
    """One connection's encoder of one run's events as ``agui`` WebSocket frames.

    Called with the run's events in seq order (the outbox's batches). Service
    frames about the run (``error``) stay seed frames; ``resume_failed``
    becomes ``RUN_ERROR``. A resumed stream first gets a frame with ``seq``
    equal to the resume position holding the prelude (stream.py).
    """

    def __init__(self, stream: AguiStream, connection_id: str) -> None:
        self.stream = stream
        self.connection_id = connection_id

    def prime(self, events: list[Event]) -> None:
        """Translate what the client already has (up to the resume position), sending nothing."""
        for event in events:
            if event.seq is not None and event.seq <= self.stream.after.seq:
                self.stream.feed(event)

    def __call__(self, events: list[Event]) -> list[bytes]:
        stream = self.stream
        run_id = stream.run_id
        cursor = stream.after.event_id(run_id)
        frames: list[bytes] = []
        for event in events:
            if event.type is EventType.RESUME_FAILED:
                items = stream.fail(event)
            elif event.seq is None:
                frames.append(event.frame_for(self.connection_id))
                continue
            else:
                items = stream.feed(event)
            n = 0  # the prelude (and a resume's RUN_ERROR) carry the resume position
            while n < len(items) and items[n][0] == cursor:
                n += 1
            if n:
                frames.append(ws_frame(run_id, stream.after.seq, [e for _, e in items[:n]]))
            if len(items) > n:
                assert event.seq is not None
                frames.append(ws_frame(run_id, event.seq, [e for _, e in items[n:]]))
        return frames


def ws_encoder(run_id: str, after_seq: int, connection_id: str) -> AguiFrames:
    """The ``agui`` frames of a run for one connection, after run event ``after_seq``.

    Over WebSocket the thread id is the run id (a query names no thread).
    """
    translator = AguiTranslator(run_id, thread_id=run_id)
    return AguiFrames(AguiStream(translator, Position(after_seq)), connection_id)


def lost_history(run_id: str, after_seq: int, first_seq: int) -> Event:
    """The ``resume_failed`` event of a resume that cannot be translated any more."""
    return Event(
        type=EventType.RESUME_FAILED,
        run_id=run_id,
        error="the run's first events are no longer in history",
        metadata={"after_seq": after_seq, "first_available_seq": first_seq},
    )
