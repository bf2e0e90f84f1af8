"""What server/uvicorn_ext.py relies on in uvicorn and websockets, checked by name.

uvicorn and websockets are pinned in pyproject.toml. When an upgrade moves or
renames something used there, one of these fails and says what; the
behaviour itself is tested end to end in tests/test_ws_protocol.py,
tests/test_http_guard.py, tests/test_hardening.py (graceful shutdown) and
tests/test_workers.py.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from uvicorn.supervisors import multiprocess
from websockets.protocol import State
from websockets.server import ServerProtocol

from legalstream.server import uvicorn_ext

PINNED = {"uvicorn": "0.54.0", "websockets": "17.4", "starlette": "1.10.0"}


def _assigned(cls: type, attribute: str) -> bool:
    """Whether the class's source (or a base's) assigns ``self.<attribute>``."""
    for klass in cls.__mro__:
        if klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if re.search(rf"self\.{attribute}\s*(?::[^=\n]+)?=(?!=)", source):
            return True
    return False


@pytest.mark.parametrize("package", sorted(PINNED))
def test_the_pinned_versions_are_installed(package):
    assert version(package) == PINNED[package], (
        f"{package} {version(package)} is installed; server/uvicorn_ext.py was written "
        f"against {PINNED[package]}: check this file's other tests, then update the pin"
    )


@pytest.mark.parametrize(
    "attribute",
    [
        "scope",
        "conn",
        "transport",
        "writable",
        "disconnected",
        "close_sent",
        "pending_ping_payload",
        "last_ping_rtt",
    ],
)
def test_sansio_protocol_keeps_the_attributes_we_read(attribute):
    assert _assigned(WebSocketsSansIOProtocol, attribute), (
        f"uvicorn's WebSocketsSansIOProtocol no longer sets self.{attribute}"
    )


@pytest.mark.parametrize("method", ["handle_connect", "handle_pong", "send"])
def test_sansio_protocol_keeps_the_methods_we_override(method):
    assert callable(getattr(WebSocketsSansIOProtocol, method, None)), (
        f"uvicorn's WebSocketsSansIOProtocol.{method} is gone"
    )


def test_client_disconnected_is_still_an_os_error():
    # The session's writer treats OSError as "the peer went away".
    assert issubclass(ClientDisconnected, OSError)


def test_websockets_sans_io_api_we_use():
    assert State.OPEN
    for name in ("data_to_send", "send_text", "extensions", "state"):
        assert hasattr(ServerProtocol, name) or _assigned(ServerProtocol, name), (
            f"websockets' ServerProtocol has no {name}"
        )


@pytest.mark.parametrize("attribute", ["servers", "force_exit"])
def test_server_keeps_the_attributes_our_shutdown_reads(attribute):
    assert _assigned(uvicorn.Server, attribute), f"uvicorn.Server no longer sets self.{attribute}"


def test_server_startup_and_shutdown_take_sockets():
    for name in ("startup", "shutdown"):
        params = inspect.signature(getattr(uvicorn.Server, name)).parameters
        assert "sockets" in params, f"uvicorn.Server.{name} no longer takes sockets"


@pytest.mark.parametrize("attribute", ["loaded_app", "loaded", "timeout_graceful_shutdown"])
def test_config_keeps_what_our_shutdown_reads(attribute):
    assert _assigned(uvicorn.Config, attribute) or hasattr(uvicorn.Config, attribute), (
        f"uvicorn.Config no longer has {attribute}"
    )


def test_multiprocess_supervisor_builds_workers_from_a_module_level_process_class():
    assert isinstance(multiprocess.Process, type), "uvicorn's multiprocess.Process is gone"
    assert _assigned(multiprocess.Process, "_server"), "multiprocess.Process no longer sets _server"
    assert isinstance(inspect.getattr_static(multiprocess.Process, "server"), property)
    source = inspect.getsource(multiprocess.Multiprocess)
    assert re.search(r"\bProcess\(", source), "Multiprocess no longer builds Process(...) itself"
    assert issubclass(uvicorn_ext._WorkerProcess, multiprocess.Process)


@pytest.mark.parametrize(
    "method",
    [
        "connection_made",
        "connection_lost",
        "data_received",
        "on_url",
        "on_header",
        "on_headers_complete",
        "send_400_response",
    ],
)
def test_httptools_protocol_keeps_the_methods_the_head_guard_overrides(method):
    assert callable(getattr(HttpToolsProtocol, method, None)), (
        f"uvicorn's HttpToolsProtocol.{method} is gone"
    )


@pytest.mark.parametrize(
    "attribute", ["config", "server_state", "client", "loop", "transport", "cycle", "parser"]
)
def test_httptools_protocol_keeps_the_attributes_the_head_guard_reads(attribute):
    assert _assigned(HttpToolsProtocol, attribute), (
        f"uvicorn's HttpToolsProtocol no longer sets self.{attribute}"
    )


def test_parser_errors_still_become_send_400_response():
    # The guard raises inside the parser's callbacks and answers 431 from there.
    source = inspect.getsource(HttpToolsProtocol.data_received)
    assert "HttpParserError" in source and "send_400_response" in source


def test_server_state_takes_our_counter():
    state = ServerState()
    state.legalstream_unfinished = object()  # type: ignore[attr-defined]


def test_server_serves_inside_capture_signals_and_handles_exit():
    # Server.capture_signals replaces uvicorn's (which re-raises the signal after
    # shutting down); it installs uvicorn's handle_exit for HANDLED_SIGNALS.
    import signal

    from uvicorn.server import HANDLED_SIGNALS

    assert signal.SIGINT in HANDLED_SIGNALS and signal.SIGTERM in HANDLED_SIGNALS, (
        "uvicorn.server.HANDLED_SIGNALS no longer lists SIGINT and SIGTERM"
    )
    source = inspect.getsource(uvicorn.Server.serve)
    assert "self.capture_signals()" in source, "uvicorn.Server.serve no longer uses capture_signals"
    assert callable(getattr(uvicorn.Server, "handle_exit", None)), (
        "uvicorn.Server.handle_exit is gone"
    )
    assert _assigned(uvicorn.Server, "should_exit") and _assigned(uvicorn.Server, "started")


def test_server_run_takes_sockets_and_log_formatting_is_there():
    # legalstream serve binds its socket before start-up and passes it to run();
    # log_to_console formats legalstream's lines with uvicorn's formatter and levels.
    import logging

    from uvicorn.config import LOG_LEVELS
    from uvicorn.logging import DefaultFormatter

    assert "sockets" in inspect.signature(uvicorn.Server.run).parameters
    assert LOG_LEVELS["info"] == logging.INFO and "trace" in LOG_LEVELS
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    formatter = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False)
    assert formatter.format(record) == "INFO:     hello"
