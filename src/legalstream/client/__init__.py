"""The Python client of legalstream: the library, and the ``query`` / ``probe`` commands.

:mod:`legalstream.client.library` is the async client (``websockets``, ``orjson``,
``httpx`` for tickets); :mod:`legalstream.client.cli` prints runs with ``rich``
and is imported only when one of its commands is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legalstream.client.library import (
    DEFAULT_URL,
    Answer,
    ConnectionLost,
    LegalStreamClient,
    RunError,
    RunStream,
    ticket_url,
)

if TYPE_CHECKING:
    from legalstream.client.cli import probe_command, query_command

__all__ = [
    "DEFAULT_URL",
    "Answer",
    "ConnectionLost",
    "LegalStreamClient",
    "RunError",
    "RunStream",
    "probe_command",
    "query_command",
    "ticket_url",
]

_CLI = frozenset({"probe_command", "query_command"})


def __getattr__(name: str) -> Any:
    # The commands live in cli.py, which imports rich: load it on first use only.
    if name in _CLI:
        from legalstream.client import cli

        return getattr(cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
