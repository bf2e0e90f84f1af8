import websockets

from support import collect_run, recv_json


async def test_query_streams_to_completion(server):
    async with websockets.connect(server.ws) as ws:
        hello = await recv_json(ws)
        assert hello["type"] == "connection_established"
        await ws.send(
            '{"query": "What was the defendant\'s response?", "case_id": 1, "stream_thinking": true}'
        )
        frames = await collect_run(ws)
    types = [f["type"] for f in frames]
    assert types[0] == "query_received"
    assert types[-1] == "agent_execution_complete"
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
