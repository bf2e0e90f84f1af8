"""Run the Node side of the tests (tests/js: the AG-UI client, the AsyncAPI parser).

``make install`` installs tests/js/node_modules from its lockfile (``npm ci``).
Without node or those modules a test skips locally and fails under ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent / "js"
CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing(what: str) -> None:
    if CI:
        pytest.fail(f"{what} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(what)


def node() -> str:
    """The node binary, once tests/js/node_modules is installed."""
    binary = shutil.which("node")
    if binary is None:
        _missing("node is not installed")
    if not (JS / "node_modules" / "@ag-ui" / "client").is_dir():
        _missing("tests/js/node_modules is missing: run `make install` (npm ci)")
    return binary  # type: ignore[return-value]


def run_node(
    script: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, dict[str, Any], str]:
    """Run ``tests/js/<script>``; its exit code, the JSON it printed last, its stderr."""
    proc = subprocess.run(
        [node(), str(JS / script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "NODE_NO_WARNINGS": "1", **(env or {})},
        timeout=timeout,
        cwd=JS,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    out = json.loads(lines[-1]) if lines else {}
    return proc.returncode, out, proc.stdout[-3000:] + proc.stderr[-3000:]
