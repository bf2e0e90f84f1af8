"""Every command and snippet in README.md and docs/*.md runs as written.

The blocks are read from the Markdown (tests/doc_blocks.py has the rules; README.md,
"Commands in the docs", says them for people). The ``bash``/``sh``/``python``
blocks of one file run in order in one bash process, as a reader would type them
into one terminal:

* from the repository's root, in a plain shell: no virtualenv on ``PATH``, no
  ``LEGALSTREAM_*`` variables but these, which keep the test out of the repo
  tree and off ports in use: ``LEGALSTREAM_RAG__DATA_DIR`` (a temp copy of the
  sample cases' store, ingested once per test run), ``LEGALSTREAM_SERVER__PORT``,
  ``LEGALSTREAM_BUS__REDIS_PREFIX``; ``HOME`` and ``TMPDIR`` are temp dirs;
* the ports 8000-8009 in a block (``:8000``, ``--port 8001``, ``PORT=8002``) are
  replaced by free ports, the same ones throughout a file;
* ``redis://127.0.0.1:6379/0`` in a block is the test's Redis (tests/redis_fixture.py),
  under a key prefix of the file's own, deleted afterwards;
* a file whose blocks start no server (``make run``, ``legalstream serve``,
  ``uvicorn``) runs against the test's own ``legalstream serve`` where it says
  ``127.0.0.1:8000`` (one server for all such files);
* the shell has ``set -eo pipefail``: a failing command fails its block, and the
  blocks after it in that file are not run;
* at the end of a file, what its blocks left running (``make run &``) gets
  SIGTERM and must stop within a minute, with no traceback in its output.

``toml`` blocks must be TOML whose keys are settings; ``json`` blocks JSON.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from doc_blocks import (
    CONVENTION,
    DOC_PORTS,
    ROOT,
    Block,
    ConventionError,
    blocks,
    doc_ports,
    map_ports,
    markdown_files,
)
from redis_fixture import delete_prefix, redis_url  # noqa: F401
from support import free_port

try:
    BLOCKS = [b for path in markdown_files() for b in blocks(path)]
    CONVENTION_ERROR: str | None = None
except ConventionError as exc:
    BLOCKS, CONVENTION_ERROR = [], str(exc)

CHECKED = [b for b in BLOCKS if b.kind in ("run", "parse")]
#: The Redis the docs name; the test's own Redis (tests/redis_fixture.py) stands in for it.
DOC_REDIS = "redis://127.0.0.1:6379/0"
STOP_SECONDS = 60.0
SERVER_COMMANDS = ("make run", "legalstream serve", "uvicorn ")


def test_docs_test_comments_are_understood():
    assert CONVENTION_ERROR is None, f"{CONVENTION_ERROR}\n(the rules: {CONVENTION})"


# --------------------------------------------------------------------------- fixtures


def _plain_path() -> str:
    """``PATH`` without any virtualenv's bin directory (a fresh terminal's)."""
    keep = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if entry and not (Path(entry).parent / "pyvenv.cfg").exists():
            keep.append(entry)
    return os.pathsep.join(keep)


def _base_env() -> dict[str, str]:
    drop = ("VIRTUAL_ENV", "PORT", "MAKEFLAGS", "MAKELEVEL", "MFLAGS", "PYTHONPATH")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LEGALSTREAM_") and k not in drop and not k.startswith("PYTEST_")
    }
    env["PATH"] = _plain_path()
    return env


class Workspace:
    """What every file's session shares: the ingested sample store, and a server."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._template: Path | None = None
        self.server: subprocess.Popen[bytes] | None = None
        self.server_port = 0
        self.server_log = tmp / "shared-server.log"

    def data_dir(self, into: Path) -> Path:
        """A copy of a store that already holds the sample cases (ingested once per run)."""
        if self._template is None:
            template = self.tmp / "template"
            env = {**_base_env(), "LEGALSTREAM_RAG__DATA_DIR": str(template)}
            code = textwrap.dedent(
                """
                from legalstream.rag.engine import RetrievalEngine, ensure_sample_corpus
                from legalstream.settings import Settings
                rag = Settings().rag
                with RetrievalEngine.from_settings(rag) as engine:
                    report = ensure_sample_corpus(engine, rag.sample_corpus)
                    assert report is not None and report.ok, report
                """
            )
            subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=600)
            self._template = template
        shutil.copytree(self._template, into)
        return into

    def shared_server(self) -> int:
        """The port of one ``legalstream serve`` on the sample cases, started on first use."""
        if self.server is None:
            self.server_port = free_port()
            env = {
                **_base_env(),
                "LEGALSTREAM_RAG__DATA_DIR": str(self.data_dir(self.tmp / "shared-data")),
                "HOME": str(self.tmp),
            }
            self.server = subprocess.Popen(
                [sys.executable, "-m", "legalstream.cli", "serve", "--port", str(self.server_port)],
                cwd=ROOT,
                env=env,
                stdout=self.server_log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            _wait_ready(self.server_port, self.server, self.server_log)
        return self.server_port

    def close(self) -> str | None:
        """Stop the shared server; what went wrong, if anything."""
        if self.server is None:
            return None
        self.server.send_signal(signal.SIGTERM)
        try:
            status = self.server.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            return f"the shared server did not stop within {STOP_SECONDS:.0f} s of SIGTERM"
        log = self.server_log.read_text(errors="replace")
        if status != 0 or "Traceback" in log:
            return f"the shared server stopped with status {status}:\n{_tail(log)}"
        return None


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the docs' server exited:\n{_tail(log.read_text())}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the docs' server was not ready in 300 s:\n{_tail(log.read_text())}")


class BlockFailed(Exception):
    pass


class Session:
    """One Markdown file's blocks, run in order in one bash process."""

    def __init__(
        self, path: Path, workspace: Workspace, tmp: Path, redis: Callable[[], str]
    ) -> None:
        self.path = path
        self._redis = redis
        self.redis_url: str | None = None
        self.redis_prefix = f"docs-{uuid.uuid4().hex[:12]}"
        self.blocks = [b for b in blocks(path) if b.kind == "run" and b.skip is None]
        self.tmp = tmp
        self.workspace = workspace
        self.done: dict[int, str | None] = {}  # line -> failure message, None when it ran
        self.failed: Block | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.ports: dict[int, int] = {}
        self.closed = False

    @property
    def starts_a_server(self) -> bool:
        return any(cmd in b.text for b in self.blocks for cmd in SERVER_COMMANDS)

    def _start(self) -> None:
        text = "".join(b.text for b in self.blocks)
        if self.starts_a_server:
            self.ports = {port: free_port() for port in doc_ports(text) | {8000}}
        else:
            self.ports = {port: free_port() for port in doc_ports(text)}
            self.ports[8000] = self.workspace.shared_server()
        if DOC_REDIS in text:
            self.redis_url = self._redis()
        for name in ("home", "tmp"):
            (self.tmp / name).mkdir()
        env = {
            **_base_env(),
            "HOME": str(self.tmp / "home"),
            "TMPDIR": str(self.tmp / "tmp"),
            "LEGALSTREAM_RAG__DATA_DIR": str(self.workspace.data_dir(self.tmp / "data")),
            "LEGALSTREAM_SERVER__PORT": str(self.ports[8000]),
            "LEGALSTREAM_BUS__REDIS_PREFIX": self.redis_prefix,
        }
        self.proc = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=(self.tmp / "shell.log").open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._send("set -eo pipefail")

    def _mapped(self, text: str) -> str:
        """``text`` as run: free ports for the docs' ports, the test's Redis for the docs' one."""
        text = map_ports(text, self.ports)
        if self.redis_url is not None:
            text = text.replace(DOC_REDIS, self.redis_url)
        return text

    def _send(self, line: str) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run_through(self, target: Block) -> None:
        """Run the file's blocks up to ``target``; raise BlockFailed if ``target`` or one before failed."""
        for block in self.blocks:
            if block.line not in self.done:
                if self.failed is None:
                    self._run(block)
                else:
                    self.done[block.line] = f"not run: {self.failed.where} before it failed"
            if block is target or block.line == target.line:
                break
        message = self.done.get(target.line)
        if message is not None:
            raise BlockFailed(message)

    def _run(self, block: Block) -> None:
        if self.proc is None:
            self._start()
        assert self.proc is not None
        n = len(self.done)
        out, rc = self.tmp / f"block{n}.out", self.tmp / f"block{n}.rc"
        if block.lang == "python":
            code = "".join(b.text for b in [*block.before, block])
            script = self.tmp / f"block{n}.py"
            script.write_text(self._mapped(code))
            source = self.tmp / f"block{n}.sh"
            source.write_text(f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}\n")
        else:
            source = self.tmp / f"block{n}.sh"
            source.write_text(self._mapped(block.text))
        started = time.monotonic()
        q = shlex.quote
        self._send(
            f"source {q(str(source))} > {q(str(out))} 2>&1 < /dev/null; echo $? > {q(str(rc))}"
        )
        while not rc.exists():
            status = self.proc.poll()
            elapsed = time.monotonic() - started
            if status is not None:
                self._fail(block, f"failed with status {status} after {elapsed:.1f} s", out)
                return
            if elapsed > block.timeout:
                self._fail(block, f"did not finish in {block.timeout:.0f} s", out)
                self._kill()
                return
            time.sleep(0.05)
        time.sleep(0.05)  # the echo's write completes
        self.done[block.line] = None

    def _fail(self, block: Block, what: str, out: Path) -> None:
        self.failed = block
        mapped = ", ".join(f"{a} -> {b}" for a, b in sorted(self.ports.items()) if a != b)
        output = out.read_text(errors="replace") if out.exists() else ""
        self.done[block.line] = (
            f"{block.where} ({block.lang}) {what}.\n\n"
            f"The block, as run (ports mapped: {mapped or 'none'}):\n"
            f"{textwrap.indent(self._mapped(block.text), '    ')}\n"
            f"Its output (the end):\n{textwrap.indent(_tail(output), '    ')}\n"
            "A command in README.md or docs/ must run as written on a fresh clone: "
            "from the repository's root, in a plain shell (no virtualenv activated: "
            "write .venv/bin/python, .venv/bin/legalstream), after the blocks before it "
            "in the same file (one shell per file: cd and export carry over), and without "
            "racing a server it started (wait for it: curl --retry-connrefused ... /ready). "
            "A block that cannot run in CI (a hosted LLM key, a Qdrant server, a "
            "placeholder host) gets <!-- docs-test: skip: <why> --> on the line before "
            f"its fence. The rules: {CONVENTION}; tests/doc_blocks.py."
        )

    def _kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)

    def close(self) -> str | None:
        """SIGTERM to everything the file's blocks started; what did not stop cleanly."""
        if self.closed or self.proc is None:
            self.closed = True
            return None
        self.closed = True
        pgid = self.proc.pid
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        deadline = time.monotonic() + STOP_SECONDS
        problem = None
        while _group_alive(pgid):
            if time.monotonic() > deadline:
                problem = f"still running {STOP_SECONDS:.0f} s after SIGTERM"
                os.killpg(pgid, signal.SIGKILL)
                break
            time.sleep(0.1)
        if self.redis_url is not None:
            delete_prefix(self.redis_url, self.redis_prefix)
        for out in sorted(self.tmp.glob("block*.out")):
            text = out.read_text(errors="replace")
            if "Traceback" in text and problem is None:
                problem = f"a traceback in {out.name}:\n{_tail(text)}"
        if problem is None:
            return None
        return (
            f"what {self.path.relative_to(ROOT)}'s blocks started did not stop cleanly on "
            f"SIGTERM: {problem}"
        )


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Zombies (already exited, not yet reaped by init) still count: look closer.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _tail(text: str, lines: int = 60) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(nothing)"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    ws = Workspace(tmp_path_factory.mktemp("docs"))
    yield ws
    problem = ws.close()
    shutil.rmtree(ws.tmp, ignore_errors=True)
    assert problem is None, problem


@pytest.fixture(scope="module")
def sessions(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
):
    opened: dict[Path, Session] = {}

    def redis() -> str:
        return str(request.getfixturevalue("redis_url"))

    def session(path: Path) -> Session:
        if path not in opened:
            tmp = tmp_path_factory.mktemp(path.stem)
            opened[path] = Session(path, workspace, tmp, redis)
        return opened[path]

    yield session
    for s in opened.values():
        s.close()
        shutil.rmtree(s.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- the test


@pytest.mark.parametrize("block", CHECKED, ids=[b.where for b in CHECKED])
def test_doc_block(block: Block, sessions: Any) -> None:
    if block.skip is not None:
        pytest.skip(f"{block.where}: {block.skip}")
    if block.kind == "parse":
        _check_data(block)
        return
    session = sessions(block.path)
    failure = None
    try:
        session.run_through(block)
    except BlockFailed as exc:
        failure = str(exc)
    if failure is not None and failure.startswith("not run:"):
        pytest.skip(failure)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    if block is session.blocks[-1] or block.line == session.blocks[-1].line:
        problem = session.close()
        assert problem is None, problem


def _check_data(block: Block) -> None:
    hint = f"(or mark it <!-- docs-test: skip: <why> -->; {CONVENTION})"
    if block.lang == "json":
        try:
            json.loads(block.text)
        except ValueError as exc:
            pytest.fail(f"{block.where}: not valid JSON: {exc} {hint}", pytrace=False)
        return
    try:
        data = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"{block.where}: not valid TOML: {exc} {hint}", pytrace=False)
    unknown = _unknown_settings(data)
    assert not unknown, f"{block.where}: not settings: {', '.join(unknown)} {hint}"


def _unknown_settings(data: dict[str, Any], model: Any = None, prefix: str = "") -> list[str]:
    """Keys of ``data`` that are not fields of the settings model (nested by section)."""
    from pydantic import BaseModel

    from legalstream.settings import Settings

    model = model or Settings
    unknown = []
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is None:
            unknown.append(prefix + key)
            continue
        sub = field.annotation
        if isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel):
            unknown += _unknown_settings(value, sub, f"{prefix}{key}.")
    return unknown


def test_the_port_mapping_finds_the_docs_ports():
    text = "make run PORT=8001 & curl http://127.0.0.1:8000/x; serve --port 8002\n"
    assert doc_ports(text) == {8000, 8001, 8002}
    assert set(DOC_PORTS) >= {8000, 8001, 8002}
    mapped = map_ports(text, {8000: 1, 8001: 2, 8002: 3})
    assert mapped == "make run PORT=2 & curl http://127.0.0.1:1/x; serve --port 3\n"
