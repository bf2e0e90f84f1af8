"""An HTTP client for one run's provider calls that can be cut off from any thread.

The only module that reaches into httpx's internals (one attribute, checked by
tests/agent/test_httpx_contract.py). The provider SDKs CrewAI uses are
synchronous: a worker thread waiting for a model's reply sits in a socket
read, and neither a cancel flag nor a per-read timeout gets it out (a server
that trickles one byte a minute never trips a read timeout). So every socket
this client opens is recorded as it connects, and :meth:`AbortableClient.abort`
shuts them all down: the blocked read returns at once, the SDK raises, the
server sees the connection close and stops generating (llama.cpp checks for
it on every token it sends, and about once a second otherwise).

Each request also has a whole-call deadline, from sending it to the end of its
response body: past it the client aborts itself. That is what bounds a trickle.

The recording uses httpcore's public network-backend interface; plugging it
into httpx needs ``httpx.HTTPTransport._pool`` (the connection pool it sends
through), the one private name used here.
"""

from __future__ import annotations

import socket
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import httpcore
import httpx

__all__ = ["AbortableClient", "CallAborted"]


class CallAborted(httpx.TransportError):
    """A request refused because its client was aborted (or its deadline passed)."""


class _RecordingBackend(httpcore.SyncBackend):
    """httpcore's sync network backend, recording each socket it opens for its owner."""

    def __init__(self, owner: AbortableClient) -> None:
        self._owner = weakref.ref(owner)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        owner = self._owner()
        if owner is not None and owner.aborted is not None:
            raise httpcore.ConnectError(owner.aborted)
        stream = super().connect_tcp(host, port, timeout, local_address, socket_options)
        sock = stream.get_extra_info("socket")
        if owner is not None and isinstance(sock, socket.socket):
            owner._track(sock)
        return stream


class _DeadlineStream(httpx.SyncByteStream):
    """A response body whose request's deadline timer stops when the body is closed."""

    def __init__(self, inner: httpx.SyncByteStream, timer: threading.Timer) -> None:
        self._inner = inner
        self._timer = timer

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        self._timer.cancel()
        self._inner.close()


class _Transport(httpx.HTTPTransport):
    def __init__(self, owner: AbortableClient) -> None:
        super().__init__()
        self._owner = owner
        limits = httpx.Limits()
        # httpx private: the pool handle_request sends through (contract-tested).
        self._pool = httpcore.ConnectionPool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_RecordingBackend(owner),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        owner = self._owner
        if owner.aborted is not None:
            raise CallAborted(owner.aborted, request=request)
        deadline = owner.deadline
        timer = threading.Timer(
            deadline if deadline else 1e9,
            owner.abort,
            args=(f"LLM call exceeded its {deadline:g} s deadline" if deadline else "",),
        )
        timer.daemon = True
        if deadline:
            timer.start()
        try:
            response = super().handle_request(request)
        except BaseException:
            timer.cancel()
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        response.stream = _DeadlineStream(response.stream, timer)
        return response


class AbortableClient:
    """One run's ``httpx.Client`` (:attr:`client`) plus :meth:`abort` and a per-call deadline.

    ``deadline``: seconds a request may take from sending it to the end of its
    response body (None: no deadline). ``timeout``: httpx's per-operation timeout.
    """

    def __init__(self, *, deadline: float | None, timeout: float | None = None) -> None:
        self.deadline = deadline
        #: Why the client was aborted (None while it is usable).
        self.aborted: str | None = None
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.client = httpx.Client(transport=_Transport(self), timeout=timeout)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            aborted = self.aborted is not None
            if not aborted:
                self._sockets.add(sock)
        if aborted:
            _shut(sock)

    def abort(self, reason: str = "aborted") -> None:
        """Cut every connection now and refuse new requests; safe from any thread, never blocks."""
        with self._lock:
            if self.aborted is not None:
                return
            self.aborted = reason or "aborted"
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def close(self) -> None:
        self.client.close()


def _shut(sock: socket.socket) -> None:
    # shutdown(), not close(): it wakes a thread blocked in recv() on this socket.
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
