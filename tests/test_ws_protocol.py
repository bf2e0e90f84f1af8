"""Batched sends (server/uvicorn_ext.py): same frames on the wire, fewer writes.

Every size class of the frame header, permessage-deflate (websockets frames
the batch), uvicorn's plain protocol (no extension: frame by frame), and the
counts: a burst goes out in far fewer transport writes than frames.
"""

from __future__ import annotations

import json

import pytest
import websockets
from websockets.frames import Frame, Opcode

from legalstream.app import create_app
from legalstream.server.uvicorn_ext import BatchingSansIOProtocol, text_frame_header
from support import ScriptedRunner, collect_run, live_server, recv_json

QUERY = {"query": "What did the court order?", "case_id": 1, "stream_thinking": True}


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 200_000])
def test_header_matches_websockets_own_framing(size):
    data = b"x" * size
    expected = Frame(Opcode.TEXT, data).serialize(mask=False, extensions=[])
    assert text_frame_header(size) + data == expected


async def _one_run(srv, **connect) -> list[dict]:
    async with websockets.connect(srv.ws, max_size=None, **connect) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await ws.send(json.dumps(QUERY))
        return await collect_run(ws)


def _check(frames: list[dict], chunks: int, padding: int) -> None:
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert frames[-1]["type"] == "agent_execution_complete"
    streamed = [f for f in frames if f["type"] == "llm_stream_chunk"]
    assert [f["output_data"]["chunk"] for f in streamed] == [
        f"part{c} {'x' * padding}" for c in range(chunks)
    ]


@pytest.mark.parametrize("padding", [0, 200, 70_000])
async def test_frames_of_every_size_arrive_whole_and_in_order(tmp_settings, padding):
    runner = ScriptedRunner(steps=1, chunks=300, chunk_bytes=padding)
    app = create_app(tmp_settings, runner_factory=lambda svc: runner)
    with live_server(app, tmp_settings) as srv:
        _check(await _one_run(srv), 300, padding)


async def test_a_burst_takes_far_fewer_writes_than_frames(tmp_settings, monkeypatch):
    # Every batch reaches the transport through _write_frames (one write each),
    # whether written in place (write_nowait) or by the writer (SEND_MANY).
    writes: list[int] = []
    real_write = BatchingSansIOProtocol._write_frames

    def counting_write(self, frames):
        writes.append(len(frames))
        real_write(self, frames)

    monkeypatch.setattr(BatchingSansIOProtocol, "_write_frames", counting_write)
    runner = ScriptedRunner(steps=1, chunks=2000)
    app = create_app(tmp_settings, runner_factory=lambda svc: runner)
    with live_server(app, tmp_settings) as srv:
        frames = await _one_run(srv)
        _check(frames, 2000, 0)
        # A replay is a burst by construction: the whole history at once.
        async with websockets.connect(srv.ws, max_size=None) as ws:
            await recv_json(ws)
            writes.clear()
            await ws.send(json.dumps({"type": "replay", "run_id": frames[0]["run_id"]}))
            replayed = await collect_run(ws)
    assert [f["seq"] for f in replayed] == [f["seq"] for f in frames]
    assert sum(writes) == len(replayed)
    # 2,015 frames in batches of at most MAX_SEND_BATCH (256): a handful of writes.
    assert len(writes) <= -(-len(replayed) // 256) + 1, writes


async def test_permessage_deflate_frames_the_batch_through_websockets(tmp_settings):
    tmp_settings.server = tmp_settings.server.model_copy(update={"per_message_deflate": True})
    runner = ScriptedRunner(steps=1, chunks=500, chunk_bytes=300)
    app = create_app(tmp_settings, runner_factory=lambda svc: runner)
    with live_server(app, tmp_settings) as srv:
        async with websockets.connect(srv.ws, compression="deflate") as ws:
            assert ws.protocol.extensions, "deflate was not negotiated"
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            _check(await collect_run(ws), 500, 300)


async def test_without_the_extension_frames_go_one_by_one(tmp_settings):
    # uvicorn's own websockets-sansio class does not advertise SEND_MANY.
    runner = ScriptedRunner(steps=1, chunks=300)
    app = create_app(tmp_settings, runner_factory=lambda svc: runner)
    with live_server(app, tmp_settings, ws="websockets-sansio") as srv:
        _check(await _one_run(srv), 300, 0)


async def test_history_longer_than_the_send_queue_is_paced_not_dropped(tmp_settings):
    # 2,000+ stored events against a 256-frame send queue: replay and a resume
    # from the start both deliver everything; neither counts as a slow consumer.
    tmp_settings.server = tmp_settings.server.model_copy(update={"send_queue_size": 256})
    # Paced, so that the live run itself never fills the small queue.
    runner = ScriptedRunner(steps=1, chunks=2000, delay=0.0005)
    app = create_app(tmp_settings, runner_factory=lambda svc: runner)
    with live_server(app, tmp_settings) as srv:
        async with websockets.connect(srv.ws, max_size=None) as ws:
            await recv_json(ws)
            await ws.send(json.dumps(QUERY))
            frames = []
            while not frames or frames[-1]["type"] != "agent_execution_complete":
                frames.append(await recv_json(ws))
        run_id = frames[0]["run_id"]
        for command in ({"type": "replay"}, {"type": "resume", "after_seq": 0}):
            async with websockets.connect(srv.ws, max_size=None) as ws:
                await recv_json(ws)
                await ws.send(json.dumps({**command, "run_id": run_id}))
                again = await collect_run(ws)
            assert [f["seq"] for f in again] == [f["seq"] for f in frames], command
        slow = app.state.services.metrics.registry.get_sample_value(
            "legalstream_slow_consumer_disconnects_total", {"reason": "send_buffer_full"}
        )
        assert slow == 0
