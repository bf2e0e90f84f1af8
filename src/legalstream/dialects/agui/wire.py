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
