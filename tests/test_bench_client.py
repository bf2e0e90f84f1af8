"""The benchmark's lean WebSocket client (bench/wsclient.py) against the websockets server.

bench/fanout.py's figures rest on this parser, so it is checked against a
real, independent implementation: every length encoding, fragmentation,
ping/pong, masking of what it sends, the close handshake, and a bad handshake.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from websockets.asyncio.server import serve

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import wsclient

pytestmark = pytest.mark.asyncio


async def test_lean_client_speaks_rfc6455_with_the_websockets_server():
    big = "x" * 70_000  # 64-bit length
    medium = "m" * 300  # 16-bit length
    server_saw: dict[str, object] = {}

    async def handler(ws):
        await ws.send("hello")
        await ws.send(medium)
        await ws.send(big)
        await ws.send(["frag", "ment", "ed"])  # one message in three frames
        await ws.send(b"\x00\x01binary")
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        server_saw["pong"] = True
        server_saw["echo"] = await ws.recv()  # masked by the client; the server checks
        await ws.send("done")
        await ws.wait_closed()
        server_saw["close_code"] = ws.close_code

    async with serve(handler, "127.0.0.1", 0, max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await wsclient.connect("127.0.0.1", port, "/ws")
        assert await client.recv() == b"hello"
        assert await client.recv() == medium.encode()
        assert await client.recv() == big.encode()
        assert await client.recv() == b"fragmented"
        assert await client.recv() == b"\x00\x01binary"
        client.send_text("é" * 200)
        assert await client.recv() == b"done"
        await client.close()
        await asyncio.sleep(0.2)
    assert server_saw == {"pong": True, "echo": "é" * 200, "close_code": 1000}


async def test_lean_client_hands_every_frame_of_a_read_to_on_message():
    async def handler(ws):
        await ws.send("first")
        await ws.recv()
        for i in range(500):
            await ws.send(f"frame {i}")
        await ws.wait_closed()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await wsclient.connect("127.0.0.1", port)
        assert await client.recv() == b"first"
        got: list[bytes] = []
        arrivals: set[float] = set()
        done = asyncio.get_running_loop().create_future()

        def on_message(payload: bytes, arrived: float) -> None:
            got.append(payload)
            arrivals.add(arrived)
            if len(got) == 500:
                done.set_result(None)

        client.on_message = on_message
        client.send_text("go")
        await asyncio.wait_for(done, 10)
        await client.close()
    assert got == [f"frame {i}".encode() for i in range(500)]
    assert len(arrivals) < 500  # frames that came in one read share its arrival time


async def test_lean_client_refuses_a_bad_handshake():
    async def bad_server(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: not-the-right-one\r\n\r\n"
        )
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    server = await asyncio.start_server(bad_server, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(wsclient.ProtocolError, match="Sec-WebSocket-Accept"):
            await wsclient.connect("127.0.0.1", port)
