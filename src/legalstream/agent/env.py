"""Process environment CrewAI reads at import and run time.

Imported by ``legalstream.agent`` before anything imports ``crewai``, so that
no telemetry, tracing or first-run prompt ever reaches the network and CrewAI
keeps its files under our data directory instead of the user's home.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Variables that switch CrewAI's (and OpenTelemetry's) network traffic off.
TELEMETRY_OFF: dict[str, str] = {
    "CREWAI_DISABLE_TELEMETRY": "true",
    "CREWAI_DISABLE_TRACKING": "true",
    "CREWAI_TRACING_ENABLED": "false",
    "OTEL_SDK_DISABLED": "true",
}


def configure(*, storage_dir: str | Path | None = None, telemetry: bool = False) -> None:
    """Set CrewAI's environment. Safe to call again (e.g. from ``build_runner``).

    ``storage_dir`` becomes ``CREWAI_STORAGE_DIR`` (absolute, so CrewAI's
    ``appdirs`` lookup resolves to it rather than to ``~/.local/share``).
    ``telemetry=True`` leaves the operator's own telemetry variables alone.
    """
    if not telemetry:
        os.environ.update(TELEMETRY_OFF)
    if storage_dir is not None:
        path = Path(storage_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        os.environ["CREWAI_STORAGE_DIR"] = str(path)
    elif "CREWAI_STORAGE_DIR" not in os.environ:
        default = Path(__file__).resolve().parents[3] / ".data" / "crewai"
        os.environ["CREWAI_STORAGE_DIR"] = str(default)


configure()
