"""``legalstream serve`` and ``make run`` as a person at a terminal runs them: real
processes, real signals.

* Ctrl-C (SIGINT to the whole foreground process group, as a terminal sends it)
  and SIGTERM stop the server gracefully and end the process normally: status
  0, no traceback; ``make`` prints no "Interrupt"/"Error" line for its recipe.
* A busy port fails at once, before anything loads, naming the port and the
  three ways to choose another.
* Start-up says what it is doing and prints the address once it serves.

The servers here skip the sample corpus (``ingest_sample_on_start=false``): what
is tested is the process's start and stop, not retrieval; the CrewAI agent is
still imported and built, as in every real start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from support import free_port

REPO = Path(__file__).resolve().parents[1]
LEGALSTREAM = [sys.executable, "-m", "legalstream.cli"]


class Process:
    """A command in its own session (its own process group, as a shell job is),
    its output in a file."""

    def __init__(self, argv: list[str], tmp: Path, **env: str) -> None:
        self.out_path = tmp / f"out-{time.monotonic_ns()}.log"
        self._out = self.out_path.open("wb")
        environ = {**os.environ, "LEGALSTREAM_RAG__DATA_DIR": str(tmp / "data"), **env}
        environ.setdefault("LEGALSTREAM_RAG__INGEST_SAMPLE_ON_START", "false")
        for name in ("LEGALSTREAM_CONFIG", "PORT", "MAKEFLAGS", "MAKELEVEL"):
            environ.pop(name, None)
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env=environ,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def wait_ready(self, port: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited early:\n{self.output}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"not ready after {timeout} s:\n{self.output}")

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def processes(tmp_path):
    started: list[Process] = []

    def start(argv: list[str], **env: str) -> Process:
        p = Process(argv, tmp_path, **env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()


def assert_clean(output: str) -> None:
    for noise in ("Traceback", "KeyboardInterrupt", "make: ***", "Error", "Terminated"):
        assert noise not in output, f"{noise!r} in the output of a normal stop:\n{output}"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_serve_stops_cleanly_on_a_signal(processes, sig):
    port = free_port()
    server = processes([*LEGALSTREAM, "serve", "--port", str(port)])
    server.wait_ready(port)
    # Ctrl-C in a terminal reaches the whole foreground process group.
    os.killpg(server.proc.pid, sig)
    assert server.wait() == 0, server.output
    out = server.output
    assert_clean(out)
    assert f"ready on http://127.0.0.1:{port}/" in out
    assert "Finished server process" in out


def test_make_run_port_and_ctrl_c(processes):
    """``make run PORT=…`` serves there; Ctrl-C stops make and the server without a word of error."""
    port = free_port()
    make = processes(["make", "--no-print-directory", "run", f"PORT={port}"])
    make.wait_ready(port)
    os.killpg(make.proc.pid, signal.SIGINT)
    # make kills itself with the signal it got once its recipe is done (the
    # shell's "interrupted", which it does not report); the recipe exited 0.
    assert make.wait() in (0, -signal.SIGINT), make.output
    out = make.output
    assert_clean(out)
    assert f"--port {port}" in out and f"ready on http://127.0.0.1:{port}/" in out


def test_make_run_sigterm_to_make_alone(processes):
    """``kill <make's pid>`` (a job control or supervisor stop): make passes SIGTERM on."""
    port = free_port()
    make = processes(["make", "--no-print-directory", "run"], LEGALSTREAM_SERVER__PORT=str(port))
    make.wait_ready(port)
    make.proc.send_signal(signal.SIGTERM)
    assert make.wait() in (0, -signal.SIGTERM), make.output
    assert_clean(make.output)


def test_ctrl_c_during_start_up_stops_once_started(processes):
    port = free_port()
    server = processes([*LEGALSTREAM, "serve", "--port", str(port)])
    deadline = time.monotonic() + 60
    while "Waiting for application startup" not in server.output:
        assert time.monotonic() < deadline and server.proc.poll() is None, server.output
        time.sleep(0.05)
    os.killpg(server.proc.pid, signal.SIGINT)
    assert server.wait(120) == 0, server.output
    out = server.output
    assert_clean(out)
    assert "stopping once start-up has finished" in out
    assert "ready on" not in out


def test_a_busy_port_fails_at_once_and_says_how_to_choose_another(processes):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        server = processes([*LEGALSTREAM, "serve", "--port", str(port)])
        status = server.wait(60)
        elapsed = time.monotonic() - started
    out = server.output
    assert status == 2, out
    assert f"port {port} on 127.0.0.1 is already in use" in out
    for way in ("make run PORT=", "legalstream serve --port ", "LEGALSTREAM_SERVER__PORT="):
        assert way in out, f"the message does not mention {way!r}:\n{out}"
    # Nothing heavy was loaded: no application start-up, and no CrewAI import (seconds).
    assert "Waiting for application startup" not in out
    assert elapsed < 10, f"took {elapsed:.1f} s to refuse a busy port"
    assert_clean(out)


def test_the_suggested_port_is_free(processes):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = processes([*LEGALSTREAM, "serve", "--port", str(port)])
        assert server.wait(60) == 2
    suggested = int(server.output.split("make run PORT=")[1].split(",")[0])
    assert suggested != port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", suggested))
