"""AG-UI over ``/ws/query``: ``"dialect": "ag-ui"`` on a query or a resume.

The run's frames are ``agui`` frames (one per run event that has AG-UI
events); connection and error frames stay the seed's. Resume after any seq
continues exactly once, with the prelude in a frame of its own.
"""

from __future__ import annotations

import json
from typing import Any

import websockets

from agui_support import assert_valid, verify_streams
from support import recv_json

TERMINAL = ("RUN_FINISHED", "RUN_ERROR")


async def agui_frames(ws: Any) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await recv_json(ws)
        assert frame["type"] == "agui", frame
        frames.append(frame)
        if frame["events"][-1]["type"] in TERMINAL:
            return frames


def flat(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for frame in frames for event in frame["events"]]


async def test_a_query_in_the_ag_ui_dialect_and_resume_after_every_seq(server):
    async with websockets.connect(server.ws) as ws:
        assert (await recv_json(ws))["type"] == "connection_established"
        await ws.send(json.dumps({"query": "Who signed?", "case_id": 1, "dialect": "ag-ui"}))
        frames = await agui_frames(ws)
        run_id = frames[0]["run_id"]
        for frame in frames:
            assert frame["id"] == f"{run_id}:{frame['seq']}" and frame["events"]
            for event in frame["events"]:
                assert_valid(event)
        full = flat(frames)
        assert full[0]["type"] == "RUN_STARTED" and full[-1]["type"] == "RUN_FINISHED"
        streams = [full]
        for after in sorted({f["seq"] for f in frames})[:-1]:
            await ws.send(
                json.dumps(
                    {"type": "resume", "run_id": run_id, "after_seq": after, "dialect": "ag-ui"}
                )
            )
            resumed = await agui_frames(ws)
            assert resumed[0]["seq"] == after and resumed[0]["events"][0]["type"] == "RUN_STARTED"
            assert resumed[1:] == [f for f in frames if f["seq"] > after], after
            streams.append(flat(resumed))
        # The seed's frames are still the default on the same connection.
        await ws.send(json.dumps({"query": "Who signed?", "case_id": 1}))
        assert (await recv_json(ws))["type"] == "query_received"
    verify_streams(streams)


async def test_an_unknown_dialect_is_an_error_frame(server):
    async with websockets.connect(server.ws) as ws:
        await recv_json(ws)
        for message in (
            {"query": "q", "case_id": 1, "dialect": "agui"},
            {"type": "resume", "run_id": "r", "after_seq": 0, "dialect": ["ag-ui"]},
        ):
            await ws.send(json.dumps(message))
            frame = await recv_json(ws)
            assert frame["type"] == "error" and frame["code"] == "invalid_field", frame
