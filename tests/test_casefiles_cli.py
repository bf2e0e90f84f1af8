"""``legalstream ingest | documents | delete`` with and without a server on the data directory.

Real processes: ``legalstream serve`` on a temp data dir (no sample corpus), and
the CLI beside it. While the server runs, the CLI finds it in
``<data_dir>/server.json`` and goes through HTTP (uploads, live chunk progress);
once it stops, the CLI opens the store itself. A store another process holds is
one clear line and exit status 1, and a second ``serve`` refuses to start.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from legalstream.rag.edge_store import EdgeStore
from support import free_port
from test_serve import Process

LEGALSTREAM = [sys.executable, "-m", "legalstream.cli"]
REPO = Path(__file__).resolve().parents[1]

AGREEMENT = "# Storage Agreement\n\n" + "\n\n".join(
    f"## Section {i}\n\n{i}.1 The warehouse keeps chamber {i} at minus ten degrees and logs "
    f"every alarm test of compressor {i}."
    for i in range(1, 25)
)


def cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "LEGALSTREAM_RAG__DATA_DIR": str(tmp / "data"),
        "COLUMNS": "160",
        **env,
    }
    environ.pop("LEGALSTREAM_CONFIG", None)
    return subprocess.run(
        [*LEGALSTREAM, *args],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def served(tmp_path):
    port = free_port()
    server = Process([*LEGALSTREAM, "serve", "--port", str(port)], tmp_path)
    try:
        server.wait_ready(port)
        yield server, port
    finally:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
        server.wait()


def test_through_a_running_server_then_directly(served, tmp_path):
    server, port = served
    info = json.loads((tmp_path / "data" / "server.json").read_text())
    assert info["url"] == f"http://127.0.0.1:{port}" and info["pid"] == server.proc.pid
    doc = tmp_path / "agreement.md"
    doc.write_text(AGREEMENT, encoding="utf-8")

    r = cli(tmp_path, "ingest", str(doc), "--case-id", "7")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    # Chunk progress from the server's SSE stream, then the direct path's summary.
    assert "embedding" in r.stdout and "chunks" in r.stdout, r.stdout
    assert "1/1 agreement.md: done" in r.stdout, r.stdout
    assert "case 7: 1 documents ingested (0 replaced), 0 unchanged, 0 failed;" in r.stdout

    r = cli(tmp_path, "documents", "--case-id", "7")
    assert r.returncode == 0 and "case-7/agreement.md" in r.stdout, r.stdout + r.stderr
    r = cli(tmp_path, "cases")
    assert r.returncode == 0 and "7" in r.stdout
    r = cli(tmp_path, "delete", "--case-id", "7", "--doc-id", "case-7/agreement.md")
    assert r.returncode == 0 and "deleted case-7/agreement.md from case 7" in r.stdout, r.stdout
    r = cli(tmp_path, "delete", "--case-id", "7", "--doc-id", "case-7/agreement.md")
    assert r.returncode == 1 and "nothing to delete" in r.stdout

    # A second server on the same data directory refuses to start, clearly.
    second = cli(tmp_path, "serve", "--port", str(free_port()))
    assert second.returncode == 2, second.stdout + second.stderr
    assert "already serves the data directory" in second.stderr
    assert "Traceback" not in second.stderr

    # Stopped: server.json is gone and the CLI opens the store itself.
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not (tmp_path / "data" / "server.json").exists()
    r = cli(tmp_path, "ingest", str(doc), "--case-id", "8")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "case 8: 1 documents ingested" in r.stdout
    r = cli(tmp_path, "documents", "--case-id", "8")
    assert r.returncode == 0 and "case-8/agreement.md" not in r.stdout  # a folder-style id
    r = cli(tmp_path, "delete", "--case-id", "8")
    assert r.returncode == 0 and "deleted case 8" in r.stdout


def test_a_locked_store_is_one_clear_line(tmp_path):
    store = EdgeStore(tmp_path / "data" / "qdrant-edge" / "legal_chunks", 384)
    try:
        for args in (("cases",), ("documents", "--case-id", "1"), ("delete", "--case-id", "1")):
            r = cli(tmp_path, *args)
            assert r.returncode == 1, (args, r.stdout, r.stderr)
            assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
            assert "in use by another process" in r.stdout, r.stdout
        doc = tmp_path / "a.md"
        doc.write_text("# A\n\nSome text.", encoding="utf-8")
        r = cli(tmp_path, "ingest", str(doc), "--case-id", "1")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert "in use by another process" in r.stdout
        serve = cli(tmp_path, "serve", "--port", str(free_port()))
        assert serve.returncode == 2 and "Traceback" not in serve.stderr
        assert "open in another process" in serve.stderr
    finally:
        store.close()
