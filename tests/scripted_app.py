"""The real app with the scripted producer, as its own server process.

Multi-worker tests start this once per worker::

    LEGALSTREAM_BUS__BACKEND=redis python tests/scripted_app.py --port 8001

Settings come from the environment like ``legalstream serve``. A query whose
text contains "slow" takes ~2 s (long enough to disconnect and resume);
"endless" runs for minutes (long enough to kill its worker); any other query
finishes in milliseconds.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from legalstream.agent.api import RunOutcome, RunRequest
from legalstream.app import LegalStreamApp, create_app
from legalstream.settings import Settings
from support import ScriptedRunner


class PacedRunner:
    """ScriptedRunner per run, paced by words of the query (see the module docstring)."""

    def run(self, request: RunRequest, emit: Any, cancelled: threading.Event) -> RunOutcome:
        if "endless" in request.query:
            return ScriptedRunner(steps=2000, delay=0.05).run(request, emit, cancelled)
        delay = 0.25 if "slow" in request.query else 0.001
        return ScriptedRunner(steps=2, delay=delay).run(request, emit, cancelled)


def app() -> LegalStreamApp:
    """``uvicorn --factory scripted_app:app``."""
    runner = PacedRunner()
    return create_app(Settings(), runner_factory=lambda svc: runner)


def main() -> None:
    from legalstream.server.runner import run_server, uvicorn_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--workers", type=int, default=0, help="run as `legalstream serve --workers N` does"
    )
    args = parser.parse_args()
    settings = Settings()
    if args.workers:
        config = uvicorn_config(
            settings,
            "scripted_app:app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
        )
        run_server(config, settings, args.workers)
        return
    config = uvicorn_config(settings, app(), host=args.host, port=args.port, log_level="warning")
    run_server(config, settings)  # as `legalstream serve` runs it


if __name__ == "__main__":
    main()
