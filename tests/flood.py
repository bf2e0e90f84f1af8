"""An attacker for tests/test_http_guard.py: connections that never finish their request head.

Run as its own process (file descriptors are per process)::

    python tests/flood.py --port 8000 --source 127.0.0.2 --count 10000 --hold 6

Opens ``--count`` connections from ``--source``, sends each the start of a
request head and nothing more, holds them ``--hold`` seconds after the last
one opened (so each is at least that old), then reports as
one JSON line how many the server had closed by then (with a response, with
FIN or RST) and how many were still open. ``--header-bytes N`` instead sends
headers until N bytes or until the server stops it.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import time


def _connect(host: str, port: int, source: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(2.0)
    try:
        sock.bind((source, 0))
        sock.connect((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def half_open(args: argparse.Namespace) -> dict[str, int]:
    socks: list[socket.socket] = []
    failed = 0
    started = time.monotonic()
    for _ in range(args.count):
        sock = _connect(args.host, args.port, args.source)
        if sock is None:
            failed += 1
            continue
        try:
            sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        except OSError:
            pass
        socks.append(sock)
    opened_s = time.monotonic() - started
    time.sleep(args.hold)
    closed = still_open = 0
    for sock in socks:
        sock.setblocking(False)
        try:
            sock.recv(65536)
            closed += 1  # a response (503/408) or EOF: the server let go
        except BlockingIOError:
            still_open += 1
        except OSError:
            closed += 1  # reset
        finally:
            sock.close()
    return {
        "opened": len(socks),
        "connect_failed": failed,
        "closed_by_server": closed,
        "still_open": still_open,
        "open_seconds": round(opened_s, 2),
    }


def big_head(args: argparse.Namespace) -> dict[str, object]:
    sock = _connect(args.host, args.port, args.source)
    assert sock is not None
    sent = 0
    chunk = b"X-Fill: " + b"a" * 8000 + b"\r\n"
    try:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        while sent < args.header_bytes:
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    sock.settimeout(5.0)
    try:
        reply = sock.recv(200)
    except OSError:
        reply = b""
    sock.close()
    return {"sent": sent, "reply": reply.decode("latin-1").split("\r\n", 1)[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--hold", type=float, default=5.0)
    parser.add_argument("--header-bytes", type=int, default=0)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = big_head(args) if args.header_bytes else half_open(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
