"""What agent/httpx_ext.py takes from httpx and httpcore: it fails, naming the
attribute, when an upgrade moves it; and the abort works on a socket blocked in a read."""

from __future__ import annotations

import inspect
import socket
import threading
import time

import httpcore
import httpx
import pytest

from legalstream.agent.httpx_ext import AbortableClient


def test_http_transport_sends_through_its_pool():
    transport = httpx.HTTPTransport()
    assert isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool), (
        "httpx.HTTPTransport._pool is no longer its httpcore.ConnectionPool"
    )
    assert "self._pool.handle_request" in inspect.getsource(httpx.HTTPTransport.handle_request), (
        "httpx.HTTPTransport.handle_request no longer sends through self._pool"
    )
    transport.close()


def test_httpcore_backend_interface():
    assert "network_backend" in inspect.signature(httpcore.ConnectionPool).parameters
    assert callable(httpcore.SyncBackend.connect_tcp)


@pytest.fixture
def silent_server():
    """A TCP server that accepts and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield srv.getsockname()[1]
    stop.set()
    thread.join()
    for c in conns:
        c.close()
    srv.close()


def test_abort_wakes_a_blocked_read_and_refuses_new_requests(silent_server):
    http = AbortableClient(deadline=None, timeout=60)
    box: dict = {}

    def call():
        try:
            http.client.get(f"http://127.0.0.1:{silent_server}/")
        except Exception as exc:
            box["error"] = exc
        box["at"] = time.monotonic()

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    http.abort("run cancelled")
    thread.join(5)
    assert isinstance(box.get("error"), httpx.TransportError), box
    assert box["at"] - t0 < 0.5
    with pytest.raises(httpx.TransportError):
        http.client.get(f"http://127.0.0.1:{silent_server}/")
    http.close()


def test_deadline_ends_a_request_that_never_ends(silent_server):
    http = AbortableClient(deadline=0.5, timeout=60)
    t0 = time.monotonic()
    with pytest.raises(httpx.TransportError):
        http.client.get(f"http://127.0.0.1:{silent_server}/")
    assert 0.5 <= time.monotonic() - t0 < 1.5
    assert http.aborted and "deadline" in http.aborted
    http.close()
