"""Encodings of a run's event stream at the edge.

A run is one ordered, seq-numbered stream of :class:`legalstream.events.Event`
on the bus. The seed's frames (``events.Event.frame_for``) are one encoding of
it; :mod:`legalstream.dialects.agui` is another (AG-UI 1.0 events, over SSE or
WebSocket). Dialects are pure: no socket, no bus, no Starlette.
"""
