"""A provider request in flight is cut off: on cancel, and past its whole-call deadline.

Issue 16: a cancel did not stop generation (the request ran to its end), and a
server that trickles tokens never tripped the per-read timeout. The stub records
when it saw the client go; the run must end, and the connection close, within 1 s.
"""

from __future__ import annotations

import threading
import time

import pytest
from agent_support import Recorder, assert_well_formed, request
from test_agent_provider import QUESTION, provider_runner

from legalstream.agent.api import Cancellation, RunCancelled, RunFailed
from legalstream.events import EventType as E


def _start(runner, cancelled):
    box: dict = {}
    rec = Recorder()

    def target():
        try:
            box["outcome"] = runner.run(request(QUESTION, 1), rec, cancelled)
        except BaseException as exc:
            box["error"] = exc
        box["ended"] = time.monotonic()

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box, rec


def _wait_for_request(stub, model, before, timeout=20.0):
    deadline = time.monotonic() + timeout
    while stub.count(model) == before:
        assert time.monotonic() < deadline, f"{model}: no request reached the stub"
        time.sleep(0.01)


@pytest.mark.parametrize(
    "model, stream, flag",
    [
        ("stub-hang", False, Cancellation),
        ("stub-hang", True, Cancellation),
        ("stub-trickle", True, Cancellation),
        ("stub-stall", True, Cancellation),
        ("stub-trickle", True, threading.Event),  # a plain Event: the runner watches it
    ],
)
def test_cancel_cuts_the_request_off(base_settings, engine, stub, model, stream, flag):
    runner = provider_runner(base_settings, engine, stub, model, stream, timeout=60.0)
    cancelled = flag()
    before = stub.count(model)
    gone_before = len(stub.disconnected(model))
    thread, box, rec = _start(runner, cancelled)
    _wait_for_request(stub, model, before)
    time.sleep(0.3)  # well inside the call (a trickle has sent a chunk or two)
    t0 = time.monotonic()
    cancelled.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert isinstance(box.get("error"), RunCancelled), box
    assert box["ended"] - t0 < 1.0, f"run ended {box['ended'] - t0:.2f} s after the cancel"
    deadline = time.monotonic() + 2
    while len(stub.disconnected(model)) == gone_before and time.monotonic() < deadline:
        time.sleep(0.01)
    gone = stub.disconnected(model)[gone_before:]
    assert gone, "the server never saw the connection close"
    assert gone[0] - t0 < 1.0, f"the server saw the client go {gone[0] - t0:.2f} s after"
    assert stub.count(model) - before == 1  # nothing was sent after the cancel
    assert_well_formed(rec.events, complete=False)


@pytest.mark.parametrize("model", ["stub-trickle", "stub-stall", "stub-hang"])
def test_whole_call_deadline(base_settings, engine, stub, model):
    """A reply that trickles (a chunk every 0.5 s) never trips a per-read timeout."""
    runner = provider_runner(base_settings, engine, stub, model, True, timeout=1.5)
    before = len(stub.disconnected(model))
    rec = Recorder()
    t0 = time.monotonic()
    with pytest.raises(RunFailed) as info:
        runner.run(request(QUESTION, 1), rec, threading.Event())
    elapsed = time.monotonic() - t0
    assert info.value.code == "llm_failed"
    assert "deadline" in info.value.message, info.value.message
    assert 1.5 <= elapsed < 4.0, elapsed
    assert len(rec.of(E.LLM_ERROR)) == 1
    deadline = time.monotonic() + 2
    while len(stub.disconnected(model)) == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(stub.disconnected(model)) > before
    assert_well_formed(rec.events)
