"""A lean WebSocket client for load generation: an asyncio Protocol and an RFC 6455 parser.

Why it exists: with 1,000 clients in one Python process, the ``websockets``
asyncio client spends more CPU per frame (a future and a frame object per
``recv()``) than the servers under test spend sending it, so the load
generator, not the server, sets the pace, and publish-to-receive latency
measures the queue in front of the client. This client parses every frame
that one ``data_received`` call brings in a loop, with no task or future per
frame, so the servers are what is measured.

It speaks only what the benchmark needs, strictly: the client handshake
(checking ``Sec-WebSocket-Accept``), masked text frames to the server,
unmasked frames from it (text, binary, continuation, ping -> pong, close),
and no extensions. A protocol error raises instead of being skipped.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time
from collections import deque
from typing import Any

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    # XOR as one big integer: far faster in CPython than a per-byte loop.
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked = int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")
    return masked.to_bytes(len(payload), "big")


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One masked, final client frame (RFC 6455 section 5.2)."""
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return header + key + _mask(payload, key)


class ProtocolError(Exception):
    pass


class LeanClient(asyncio.Protocol):
    """One connection. Complete messages go to ``on_message(payload, arrived)``.

    ``arrived`` is ``time.time()`` taken once per read from the socket: every
    frame in that read arrived together.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._handshake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._key = base64.b64encode(os.urandom(16))
        self._fragments: list[bytes] = []
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox: deque[tuple[bytes, float]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.on_message: Any = None
        self._close_sent = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._handshake.done():
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = bytes(self._buffer[:end]), self._buffer[end + 4 :]
            try:
                self._check_handshake(head)
            except ProtocolError as exc:
                self._handshake.set_exception(exc)
                return
            self._handshake.set_result(None)
        self._parse(time.time())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._handshake.done():
            self._handshake.set_exception(exc or ConnectionError("closed during handshake"))
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    # ------------------------------------------------------------ handshake

    def _request(self, host: str, port: int, path: str) -> bytes:
        return (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {self._key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def _check_handshake(self, head: bytes) -> None:
        status, *lines = head.decode("latin-1").split("\r\n")
        if status.split()[1:2] != ["101"]:
            raise ProtocolError(f"handshake refused: {status}")
        headers = {k.strip().lower(): v.strip() for k, v in (x.split(":", 1) for x in lines)}
        expected = base64.b64encode(hashlib.sha1(self._key + _GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ProtocolError("bad Sec-WebSocket-Accept")
        if "sec-websocket-extensions" in headers:
            raise ProtocolError("no extension was offered")

    # ------------------------------------------------------------ frames

    def _parse(self, arrived: float) -> None:
        buf = self._buffer
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if b1 & 0x80:
                raise ProtocolError("server frames must not be masked")
            if b0 & 0x70:
                raise ProtocolError("reserved bits set")
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            pos += head + length
            self._frame(b0 & 0x80, b0 & 0x0F, payload, arrived)
        del buf[:pos]

    def _frame(self, fin: int, opcode: int, payload: bytes, arrived: float) -> None:
        if opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_PONG:
            pass
        elif opcode == OP_CLOSE:
            if self.transport and not self.transport.is_closing():
                if not self._close_sent:
                    self._write(OP_CLOSE, payload[:2])
                self.transport.close()
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._fragments:
                raise ProtocolError("new message inside a fragmented one")
            if fin:
                self._deliver(payload, arrived)
            else:
                self._fragments = [payload]
        elif opcode == OP_CONT:
            if not self._fragments:
                raise ProtocolError("continuation without a first fragment")
            self._fragments.append(payload)
            if fin:
                message, self._fragments = b"".join(self._fragments), []
                self._deliver(message, arrived)
        else:
            raise ProtocolError(f"unknown opcode {opcode}")

    def _deliver(self, payload: bytes, arrived: float) -> None:
        if self.on_message is not None:
            self.on_message(payload, arrived)
            return
        self._inbox.append((payload, arrived))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _write(self, opcode: int, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame(opcode, payload))

    # ------------------------------------------------------------ API

    def send_text(self, text: str) -> None:
        self._write(OP_TEXT, text.encode())

    async def recv(self) -> bytes:
        """The next message (for handshakes and the first frame; the hot path uses on_message)."""
        while not self._inbox:
            if self.closed.done():
                raise ConnectionError("connection closed")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._inbox.popleft()[0]

    async def close(self) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self._close_sent = True
        self._write(OP_CLOSE, struct.pack("!H", 1000))
        try:
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        except TimeoutError:
            self.transport.close()


async def connect(host: str, port: int, path: str = "/") -> LeanClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(LeanClient, host, port)
    assert client.transport is not None
    client.transport.write(client._request(host, port, path))
    try:
        await client._handshake
    except BaseException:
        client.transport.close()
        raise
    return client
