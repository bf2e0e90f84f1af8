"""A real Redis for the tests: 127.0.0.1:6379 when it answers, else a redis-server we start.

Import the fixtures into a test module (``from redis_fixture import redis_url, ...``).
Under ``CI=true`` a missing Redis fails the tests instead of skipping them.
Every test gets its own key prefix, and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from legalstream.settings import BusSettings

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip locally; fail under CI, where the real service must be there."""
    if CI:
        pytest.fail(f"{reason} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(reason)


def ping(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


class RedisServer:
    """A throw-away ``redis-server`` on a free port (no persistence)."""

    def __init__(self, port: int | None = None) -> None:
        from support import free_port

        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="legalstream-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not ping(self.url, 0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a reachable Redis for the whole session."""
    default = os.environ.get("LEGALSTREAM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    if ping(default):
        yield default
        return
    if shutil.which("redis-server") is None:
        unavailable(
            "no Redis on 127.0.0.1:6379 and no redis-server binary (apt-get install redis-server)"
        )
    server = RedisServer()
    try:
        server.start()
    except Exception as exc:
        unavailable(f"could not start redis-server: {exc}")
    try:
        yield server.url
    finally:
        server.stop()


def delete_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed afterwards."""
    prefix = f"lstest-{uuid.uuid4().hex[:12]}"
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
def redis_bus_settings(redis_url: str, redis_prefix: str) -> BusSettings:
    return BusSettings(
        backend="redis",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        heartbeat_seconds=0.2,
        retention_seconds=3600,
    )
