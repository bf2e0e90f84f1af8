"""uvicorn's ``websockets-sansio`` protocol, plus batched sends.

A streaming run produces frames in bursts: a token stream is hundreds of small
frames a second per client. Through plain ASGI each frame is one
``websocket.send`` message, and uvicorn writes each one to the socket on its
own: a trip through Starlette's and uvicorn's send wrappers and one
``transport.write`` (a system call) per frame. Profiling the fan-out bench put
that at the largest share of the server's time per frame.

This protocol adds one ASGI extension, :data:`SEND_MANY`. The app may send
``{"type": SEND_MANY, "frames": [b"...", ...]}``: each item becomes one text
frame, in order, and the whole batch goes to the transport in one write. The
wire is unchanged (one JSON object per WebSocket message); only the number of
writes changes. Flow control is kept: like uvicorn's own ``send``, a batch
waits while the transport is paused above its high-water mark, so a slow
client still backs the writer up and trips the slow-consumer policy.

The extension's entry in ``scope["extensions"]`` also carries ``keepalive``: a
function returning when the client last answered one of uvicorn's keepalive
pings (wall-clock seconds) and that ping's round trip, or ``(None, None)``.
uvicorn answers pings and times pongs itself but tells the app neither; the
connection's health in ``GET /ws/status`` reports them.

And it carries ``write_nowait``:
a plain function that writes a batch at once when the transport takes it
without waiting (not paused, connection open) and returns False otherwise.
With a thousand clients asking at the same moment, a frame that waits for a
writer task waits for every other connection's turn on the event loop first;
the client sat idle for that long, then the server did while the client caught
up. Written in place, frames reach the client as they are made. The app keeps
its own order: it writes in place only when nothing of its own is queued.

An app that does not see the extension in ``scope["extensions"]`` (another
server, or this app mounted under one) sends frame by frame as usual.
"""

from __future__ import annotations

import struct
import time
from typing import Any

from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

#: ASGI message type (and ``scope["extensions"]`` key) of a batch of text frames.
SEND_MANY = "legalstream.websocket.send_many"

_FIN_TEXT = 0x81
_SHORT_HEADERS = tuple(bytes((_FIN_TEXT, n)) for n in range(126))
_pack16 = struct.Struct("!BBH").pack
_pack64 = struct.Struct("!BBQ").pack


def text_frame_header(length: int) -> bytes:
    """Header of one unmasked, unfragmented text frame (RFC 6455 5.2), as servers send."""
    if length < 126:
        return _SHORT_HEADERS[length]
    if length < 1 << 16:
        return _pack16(_FIN_TEXT, 126, length)
    return _pack64(_FIN_TEXT, 127, length)


class BatchingSansIOProtocol(WebSocketsSansIOProtocol):
    """``websockets-sansio`` with the :data:`SEND_MANY` extension."""

    #: Wall-clock time the client last answered a keepalive ping (None: not yet).
    last_pong_at: float | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        # The ASGI task was created but has not run yet: it sees this key.
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][SEND_MANY] = {
                "write_nowait": self.write_nowait,
                "keepalive": self.keepalive,
            }

    def handle_pong(self, event: Any) -> None:
        awaited = self.pending_ping_payload
        super().handle_pong(event)
        # uvicorn clears the payload only for the pong that answers its ping.
        if awaited is not None and self.pending_ping_payload is None:
            self.last_pong_at = time.time()

    def keepalive(self) -> tuple[float | None, float | None]:
        """When the client last answered a keepalive ping, and that ping's round trip (s)."""
        if self.last_pong_at is None:
            return None, None
        return self.last_pong_at, self.last_ping_rtt

    async def send(self, message: Any) -> None:
        if message["type"] != SEND_MANY:
            await super().send(message)
            return
        await self.writable.wait()
        conn = self.conn
        if self.disconnected or self.close_sent or conn.state is not State.OPEN:
            raise ClientDisconnected()
        self._write_frames(message["frames"])

    def write_nowait(self, frames: list[bytes]) -> bool:
        """Write text frames now if nothing stands in the way; False if the caller must wait.

        In the way: the transport is paused above its high-water mark (the
        client is behind), or the connection is not open. The caller then
        queues the frames and sends them with ``SEND_MANY``, which waits.
        """
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or self.conn.state is not State.OPEN
        ):
            return False
        self._write_frames(frames)
        return True

    def _write_frames(self, frames: list[bytes]) -> None:
        conn = self.conn
        # Control frames websockets has queued (a pong) go first, whole.
        out = conn.data_to_send()
        if conn.extensions:
            # A negotiated extension (permessage-deflate) transforms frames:
            # let websockets build them; still one write for the batch.
            for data in frames:
                conn.send_text(data)
            out += conn.data_to_send()
        else:
            for data in frames:
                out.append(text_frame_header(len(data)))
                out.append(data)
        self.transport.write(b"".join(out))
