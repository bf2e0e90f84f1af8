"""``<data_dir>/server.json``: which server owns a data directory, for the CLI.

``legalstream serve`` writes it once it listens (its URL and pid) and removes
it when it stops. ``legalstream ingest|cases|documents|delete`` read it: a
live server there means the embedded store is that server's, so the command
goes through its HTTP API instead of opening the store (which would fail).
"""

from __future__ import annotations

import contextlib
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

FILE_NAME = "server.json"


def server_file(data_dir: Path) -> Path:
    return Path(data_dir) / FILE_NAME


def http_url(host: str, port: int) -> str:
    """The URL a local client reaches a server bound to ``host``:``port`` at."""
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write(data_dir: Path, url: str) -> Path:
    """Record this process as the server of ``data_dir`` (atomically: write, then rename)."""
    path = server_file(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(orjson.dumps({"url": url, "pid": os.getpid(), "started_at": time.time()}))
    tmp.replace(path)
    return path


def remove(data_dir: Path) -> None:
    """Remove the file if it is this process's (a second server never removes the first's)."""
    info = read(data_dir)
    if info is not None and info.get("pid") == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            server_file(data_dir).unlink()


def read(data_dir: Path) -> dict[str, Any] | None:
    try:
        info = orjson.loads(server_file(data_dir).read_bytes())
    except (FileNotFoundError, orjson.JSONDecodeError, OSError):
        return None
    return info if isinstance(info, dict) else None


def running_server(data_dir: Path) -> str | None:
    """The URL of the live server the file names, or None (no file, its process is
    gone, or nothing answers there: a file left by a killed server whose pid was reused)."""
    info = read(data_dir)
    if info is None or not isinstance(info.get("url"), str):
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        return None
    url = str(info["url"])
    return url if _answers(url) else None


def _answers(url: str) -> bool:
    try:
        # Straight to the address the server wrote (a local one): never through a proxy.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{url}/health", timeout=2.0):
            return True
    except urllib.error.HTTPError:
        return True  # something answers HTTP there (a proxy in front, say)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True
