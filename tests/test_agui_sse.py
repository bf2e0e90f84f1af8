"""``POST /agui`` and ``GET /agui/runs/{run_id}`` on real uvicorn (ScriptedRunner as producer).

* every event is an ``ag-ui-protocol`` model; ids are ``<run_id>:<seq>[.<k>]``;
* bad input is a 4xx JSON error; auth, case authorization, rate limits and the
  audit log are those of ``/ws/query``;
* 100 random byte-level cuts of live SSE streams on two workers sharing one
  Redis, each resumed with ``Last-Event-ID`` on either worker: nothing lost,
  nothing repeated, and every resumed stream passes the AG-UI client's verifier.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from agui_support import assert_valid, parse_sse, run_input, verify_streams
from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, live_server
from test_auth import bearer, jwt_settings, make_token


def scripted_settings(tmp_path: Path, **extra: Any) -> Settings:
    extra.setdefault("runs", {"resume_grace_seconds": 10.0})
    return Settings(rag={"data_dir": tmp_path / "data", "ingest_sample_on_start": False}, **extra)


@pytest.fixture
def agui_server(tmp_path):
    settings = scripted_settings(tmp_path)
    runner = ScriptedRunner(steps=2, delay=0.001)
    with live_server(create_app(settings, runner_factory=lambda svc: runner), settings) as srv:
        yield srv


def post(srv, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{srv.http}/agui", json=body, headers=headers, timeout=30)


def resume(
    srv, run_id: str, last: str | None = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    headers = {**(headers or {}), **({"Last-Event-ID": last} if last else {})}
    params = {"threadId": "thread-1"}
    return httpx.get(f"{srv.http}/agui/runs/{run_id}", headers=headers, params=params, timeout=30)


def test_a_run_streams_as_ag_ui_events(agui_server):
    response = post(agui_server, run_input("Who signed the storage agreement?"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    run_id = response.headers["x-run-id"]
    events = parse_sse(response.content)
    for _, event in events:
        assert_valid(event)
    ids = [eid for eid, _ in events]
    assert all(eid and eid.startswith(f"{run_id}:") for eid in ids) and len(set(ids)) == len(ids)
    types = [event["type"] for _, event in events]
    assert types[0] == "RUN_STARTED" and types[-1] == "RUN_FINISHED"
    assert events[0][1]["threadId"] == "thread-1" and events[0][1]["runId"] == run_id
    for kind in ("STEP_STARTED", "REASONING_START", "TOOL_CALL_START", "TOOL_CALL_RESULT"):
        assert kind in types
    answer = "".join(e["delta"] for _, e in events if e["type"] == "TEXT_MESSAGE_CONTENT")
    assert answer == "part0 part1 part2 part3 part4 "
    result = events[-1][1]["result"]
    assert result["answer"] == "Scripted answer to: Who signed the storage agreement?"
    assert result["citations"] == [{"doc_id": "case-1/x", "quote": "q"}]
    verify_streams([[event for _, event in events]])
    # The same stream again, from its start, from the resume endpoint.
    again = parse_sse(resume(agui_server, run_id).content)
    assert again == events


def test_state_case_id_and_multimodal_question(agui_server):
    body = run_input("x", case_id=None)
    body.pop("forwardedProps")
    body["state"] = {"caseId": 2}
    body["messages"] = [
        {"id": "u0", "role": "user", "content": "an earlier question"},
        {"id": "a0", "role": "assistant", "content": "an earlier answer"},
        {"id": "u1", "role": "user", "content": [{"type": "text", "text": "Who signed?"}]},
    ]
    events = parse_sse(post(agui_server, body).content)
    assert events[-1][1]["result"]["answer"] == "Scripted answer to: Who signed?"
    assert events[-1][1]["result"]["citations"][0]["doc_id"] == "case-2/x"


BAD = [
    ("not json", b"{", 400, "invalid_json"),
    ("a list", [1, 2], 422, "invalid_message"),
    ("no runId", {"threadId": "t", "messages": []}, 422, "invalid_message"),
    ("bad message", {**run_input("q"), "messages": [{"role": "user"}]}, 422, "invalid_message"),
    ("no user message", {**run_input("q"), "messages": []}, 422, "missing_query"),
    ("blank question", run_input("   "), 422, "missing_query"),
    ("too long", run_input("x" * 4001), 422, "query_too_long"),
    ("no case", {**run_input("q"), "forwardedProps": {}}, 422, "invalid_case_id"),
    ("case a string", run_input("q", case_id="1"), 422, "invalid_case_id"),
    ("case negative", run_input("q", case_id=-1), 422, "invalid_case_id"),
    ("case a bool", run_input("q", case_id=True), 422, "invalid_case_id"),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_json_error(agui_server, name, body, status, code):
    if isinstance(body, bytes):
        response = httpx.post(f"{agui_server.http}/agui", content=body, timeout=10)
    else:
        response = post(agui_server, body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code and response.json()["error"]


def test_resume_endpoint_refusals(agui_server):
    run_id = post(agui_server, run_input("q")).headers["x-run-id"]
    for last in ("garbage", f"{run_id}:x", f"{'0' * 32}:3", f"{run_id}:2.0"):
        response = resume(agui_server, run_id, last)
        assert response.status_code == 400 and response.json()["code"] == "invalid_field", last
    response = resume(agui_server, "f" * 32)
    assert response.status_code == 404 and response.json()["code"] == "unknown_run"
    # After the final event there is nothing more: an empty stream, not an error.
    events = parse_sse(resume(agui_server, run_id).content)
    done = resume(agui_server, run_id, events[-1][0])
    assert done.status_code == 200 and done.content == b""


def test_history_that_is_gone_is_run_error_resume_failed(tmp_path):
    settings = scripted_settings(tmp_path, bus={"history_per_run": 8})
    runner = ScriptedRunner(steps=2, delay=0.001)
    with live_server(create_app(settings, runner_factory=lambda svc: runner), settings) as srv:
        response = post(srv, run_input("q"))
        run_id = response.headers["x-run-id"]
        events = parse_sse(response.content)
        assert events[-1][1]["type"] == "RUN_FINISHED"  # the live stream never needed history
        resumed = parse_sse(resume(srv, run_id, events[3][0]).content)
        assert [event["type"] for _, event in resumed] == ["RUN_ERROR"]
        assert resumed[0][1]["code"] == "resume_failed" and resumed[0][0] == events[3][0]
        assert_valid(resumed[0][1])


def test_auth_case_authorization_rate_limits_and_audit(tmp_path):
    settings = jwt_settings(tmp_path)
    settings.limits = settings.limits.model_copy(
        update={"enabled": True, "queries_per_minute": "2/minute"}
    )
    runner = ScriptedRunner(steps=1, delay=0.001)
    with live_server(create_app(settings, runner_factory=lambda svc: runner), settings) as srv:
        no_token = post(srv, run_input("q"))
        assert no_token.status_code == 401 and no_token.json()["code"] == "unauthorized"
        alice = bearer(make_token("alice", cases=[1]))
        forbidden = post(srv, run_input("q", case_id=2), alice)
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden_case"
        ok = post(srv, run_input("q", case_id=1), alice)
        assert ok.status_code == 200
        run_id = ok.headers["x-run-id"]
        assert parse_sse(ok.content)[-1][1]["type"] == "RUN_FINISHED"
        # Runs are their owner's: another user cannot resume this one.
        other = resume(srv, run_id, headers=bearer(make_token("bob", cases=[1])))
        assert other.status_code == 404 and other.json()["code"] == "unknown_run"
        assert resume(srv, run_id, headers=alice).status_code == 200
        post(srv, run_input("q", case_id=1), alice)
        limited = post(srv, run_input("q", case_id=1), alice)
        assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
        assert int(limited.headers["Retry-After"]) >= 1
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    outcomes = [(line["user"], line["outcome"]) for line in lines]
    assert ("alice", "forbidden_case") in outcomes and ("alice", "rate_limited") in outcomes
    assert any(line["run_id"] == run_id and line["outcome"] == "complete" for line in lines)


# -- exact resume across workers ------------------------------------------------------

CUTS = 100


@contextlib.contextmanager
def two_workers(tmp_path: Path, bus: Any):
    """Two app instances on one Redis: two workers."""
    with contextlib.ExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            settings = Settings(
                rag={"data_dir": tmp_path / name, "ingest_sample_on_start": False},
                runs={"resume_grace_seconds": 10.0},
                bus=bus.model_dump(),
            )
            runner = ScriptedRunner(steps=2, delay=0.002, chunks=8)
            app = create_app(settings, runner_factory=lambda svc, r=runner: r)
            servers.append(stack.enter_context(live_server(app, settings)))
        yield servers


def cut_stream(srv, body: dict[str, Any], at_bytes: int) -> tuple[str, bytes]:
    """POST, read at least ``at_bytes`` bytes (or all), then drop the connection."""
    received = b""
    with httpx.stream("POST", f"{srv.http}/agui", json=body, timeout=30) as response:
        assert response.status_code == 200
        run_id = response.headers["x-run-id"]
        for chunk in response.iter_raw(64):
            received += chunk
            if len(received) >= at_bytes:
                break
    return run_id, received


def wait_finished(srv, run_id: str, deadline: float = 30.0) -> list[tuple[str | None, dict]]:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        events = parse_sse(resume(srv, run_id).content)
        if events and events[-1][1]["type"] in ("RUN_FINISHED", "RUN_ERROR"):
            return events
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not finish")


def test_random_cuts_resume_exactly_once_on_any_worker(tmp_path, redis_bus_settings):
    rng = random.Random(18)
    with two_workers(tmp_path, redis_bus_settings) as (a, b):
        probe = parse_sse(post(a, run_input("probe")).content)
        size = len(b"".join(f"id: {i}\ndata: {json.dumps(e)}\n\n".encode() for i, e in probe))
        resumed_streams: list[list[dict[str, Any]]] = []
        live_cuts = lost = repeated = 0
        for n in range(CUTS):
            at = rng.randint(1, size)
            run_id, received = cut_stream(a, run_input(f"question {n}"), at)
            before = parse_sse(received)
            last = before[-1][0] if before else None
            worker = rng.choice((a, b))
            after = parse_sse(resume(worker, run_id, last).content)
            full = wait_finished(rng.choice((a, b)), run_id)
            live_cuts += not any(e["type"] == "RUN_FINISHED" for _, e in before)
            prelude = [e for eid, e in after if last is not None and eid == last]
            tail = after[len(prelude) :]
            expected = full[len(before) :]
            assert before == full[: len(before)], f"cut {n}: the prefix differs"
            lost += sum(1 for item in expected if item not in tail)
            repeated += (
                len(tail)
                - len({eid for eid, _ in tail})
                + sum(1 for item in tail if item in before)
            )
            assert tail == expected, f"cut {n} after {last} on {worker.port}"
            if prelude:
                assert prelude[0]["type"] == "RUN_STARTED"
            if tail:
                resumed_streams.append(prelude + [event for _, event in tail])
        assert (lost, repeated) == (0, 0)
        assert live_cuts >= CUTS // 2, f"only {live_cuts} cuts fell in a running run"
        verify_streams(resumed_streams)


def test_an_idle_stream_gets_keepalive_comments(tmp_path):
    settings = scripted_settings(tmp_path, agui={"keepalive_seconds": 0.05})
    runner = ScriptedRunner(steps=1, delay=0.3)
    with live_server(create_app(settings, runner_factory=lambda svc: runner), settings) as srv:
        response = post(srv, run_input("q"))
        assert b"\n: keepalive\n\n" in response.content
        events = parse_sse(response.content)  # comments are not events
        assert events[-1][1]["type"] == "RUN_FINISHED"
        verify_streams([[event for _, event in events]])


def test_a_client_that_hangs_up_cancels_its_run_without_a_grace_period(tmp_path):
    settings = scripted_settings(tmp_path, runs={"resume_grace_seconds": 0.0})
    runner = ScriptedRunner(steps=20, delay=0.05)
    with live_server(create_app(settings, runner_factory=lambda svc: runner), settings) as srv:
        run_id, received = cut_stream(srv, run_input("q"), 1)
        assert parse_sse(received) == [] or parse_sse(received)[0][1]["type"] == "RUN_STARTED"
        events = wait_finished(srv, run_id, deadline=10.0)
        assert events[-1][1]["type"] == "RUN_ERROR" and events[-1][1]["code"] == "cancelled"
