"""AG-UI 1.0 (``ag-ui-protocol``): a run's events as AG-UI events, with exact resume.

* :mod:`.translate`: run events → AG-UI events (deterministic);
* :mod:`.stream`: event ids, positions, resuming after one with a prelude;
* :mod:`.wire`: SSE and WebSocket encodings.
"""

from legalstream.dialects.agui.stream import (
    AguiStream,
    BadEventId,
    OpenConstructs,
    Position,
    event_id,
    parse_event_id,
)
from legalstream.dialects.agui.translate import (
    CITATIONS_EVENT,
    RESUME_FAILED,
    RETRIEVAL_EVENT,
    AguiTranslator,
)
from legalstream.dialects.agui.wire import (
    KEEPALIVE,
    MEDIA_TYPE,
    WS_FRAME_TYPE,
    AguiFrames,
    event_json,
    lost_history,
    sse,
    sse_many,
    ws_encoder,
    ws_frame,
)

__all__ = [
    "CITATIONS_EVENT",
    "KEEPALIVE",
    "MEDIA_TYPE",
    "RESUME_FAILED",
    "RETRIEVAL_EVENT",
    "WS_FRAME_TYPE",
    "AguiFrames",
    "AguiStream",
    "AguiTranslator",
    "BadEventId",
    "OpenConstructs",
    "Position",
    "event_id",
    "event_json",
    "lost_history",
    "parse_event_id",
    "sse",
    "sse_many",
    "ws_encoder",
    "ws_frame",
]
