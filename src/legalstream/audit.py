"""The audit log, and keeping credentials out of every log.

Audit: every finished query is one JSON line on the ``legalstream.audit``
logger (written by :mod:`legalstream.runs`)::

    {"time": "2025-01-01T12:00:00.123456+00:00", "event": "query", "user": "alice",
     "client_ip": "10.0.0.7", "case_id": 1, "run_id": "…", "outcome": "complete",
     "duration_s": 1.234, "cited_doc_ids": ["case-1/complaint"], "connection_id": "…",
     "published": true, "followers": 1}

``outcome`` is how the run ended; ``published`` whether its final event
reached the event bus (false: no client could receive it, e.g. Redis was
down) and ``followers`` how many connections followed it at the end.

Only the fields in :data:`AUDIT_FIELDS` are ever written: never the query's
answer, document text, or a token, whatever a caller puts in ``extra``.
:func:`configure_audit` sends the lines to a file (``audit.path``) or stderr,
from a writer thread: a query's line is logged on the event loop, and a
write (or a full pipe on stderr) must not hold up every connection's frames.

Redaction: uvicorn's access log prints the request path *with* its query
string, and ``?token=`` / ``?ticket=`` are valid (if least preferred) ways to
authenticate a handshake. :class:`RedactSecrets` rewrites such values (and
bearer tokens, and anything shaped like a JWT) to ``[REDACTED]`` in the
records of the loggers :func:`install_redaction` is given.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson

from legalstream.settings import AuditSettings

AUDIT_LOGGER = "legalstream.audit"

AUDIT_FIELDS = (
    "user",
    "client_ip",
    "case_id",
    "run_id",
    "outcome",
    "duration_s",
    "cited_doc_ids",
    "connection_id",
    "published",
    "followers",
)

REDACTED = "[REDACTED]"

#: Query parameters that carry credentials, by their decoded name (lower case).
SECRET_PARAMS = frozenset({"token", "ticket", "access_token"})

#: A query string in a log line: after "?", up to whitespace, a quote or a fragment.
_QUERY = re.compile(r"\?([^\s\"'#]+)")

_PATTERNS = (
    # token=… outside a URL's query string (the query string is decoded below)
    (
        re.compile(r"(?i)((?:^|[;\s\"'])(?:access_token|token|ticket)=)[^&;\s\"']*"),
        r"\1" + REDACTED,
    ),
    # Authorization: Bearer … and the bearer./ticket. subprotocol entries
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-_.~+/]+=*"), r"\1" + REDACTED),
    (re.compile(r"(?i)(\b(?:bearer|ticket)\.)[A-Za-z0-9\-_.]+"), r"\1" + REDACTED),
    # anything that looks like a JWT (header.payload.signature, base64url "eyJ…")
    (re.compile(r"eyJ[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]+\.[A-Za-z0-9\-_]*"), REDACTED),
)


def _redact_query(match: re.Match[str]) -> str:
    """A query string with the values of credential parameters replaced.

    Names are decoded exactly as the server decodes them (Starlette's
    ``parse_qsl``: ``&``-separated, ``+`` is a space, percent-escapes), so
    ``?%74oken=`` is a token parameter here as it is to the server.
    """
    pairs = match.group(1).split("&")
    for i, pair in enumerate(pairs):
        name, sep, _value = pair.partition("=")
        if sep and unquote_plus(name).strip().lower() in SECRET_PARAMS:
            pairs[i] = f"{name}={REDACTED}"
    return "?" + "&".join(pairs)


def redact(text: str) -> str:
    if "?" in text:
        text = _QUERY.sub(_redact_query, text)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    return redact(value) if isinstance(value, str) else value


class RedactSecrets(logging.Filter):
    """Rewrites credentials in a record's message and arguments, keeping their shape
    (uvicorn's access formatter unpacks ``record.args``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact_value(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _redact_value(v) for k, v in args.items()}
        return True


#: Loggers whose records may carry a request path or headers.
REDACTED_LOGGERS = (
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "websockets",
    "websockets.server",
    "legalstream",
    "legalstream.ws",
    "legalstream.session",
    "legalstream.auth",
    "legalstream.server",
)


def install_redaction(loggers: tuple[str, ...] = REDACTED_LOGGERS) -> None:
    """Add :class:`RedactSecrets` to each logger (and its handlers) once.

    Call it after logging is configured (uvicorn's ``Config`` does that):
    a filter on a logger sees only records logged on that very logger, so the
    handlers get one too, for records propagated from children.
    """
    for name in loggers:
        logger = logging.getLogger(name)
        targets: list[logging.Filterer] = [logger, *logger.handlers]
        for target in targets:
            if not any(isinstance(f, RedactSecrets) for f in target.filters):
                target.addFilter(RedactSecrets())


class AuditFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "event": record.getMessage(),
        }
        audit = getattr(record, "audit", None)
        if isinstance(audit, dict):
            for key in AUDIT_FIELDS:
                if key in audit:
                    data[key] = audit[key]
        return orjson.dumps(data, default=str).decode()


class AuditWriter(logging.Handler):
    """Hands records to a writer thread, which formats them and writes them to ``target``'s stream.

    A record costs its caller (the event loop, mostly) an append to a deque:
    no lock, no condition to notify. The writer wakes when the deque stops
    being empty, lets a burst gather for :attr:`gather_seconds`, and writes
    it with one ``write`` and one flush. The deque is bounded
    (``max_pending``): when the writer falls that far behind, ``emit`` waits
    for room rather than drop an audit line or grow without limit. ``flush``
    waits until every line emitted so far is written; ``close`` writes what
    is pending, then stops the thread and closes the target.
    """

    legalstream_audit = True
    gather_seconds = 0.05

    def __init__(self, target: logging.StreamHandler[Any], max_pending: int = 10_000) -> None:
        super().__init__()
        self.target = target
        self.max_pending = max_pending
        self._pending: deque[logging.LogRecord] = deque()
        self._wake = threading.Event()
        self._busy = False  # the writer holds records it took from the deque
        self._closing = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:
        # logging.Handler.handle takes this handler's lock around emit; emit
        # needs none, so skip it (filters still apply).
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._thread is None:
            self._start()
        while len(self._pending) >= self.max_pending:
            time.sleep(0.001)
        self._pending.append(record)
        if not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_all, name="legalstream-audit", daemon=True
                )
                self._thread.start()

    def _write_all(self) -> None:
        pending = self._pending
        while True:
            self._wake.wait()
            self._busy = True
            # Let a burst gather: each wake of this thread takes the GIL from
            # the event loop, so one wake per burst rather than one per line.
            time.sleep(self.gather_seconds)
            self._wake.clear()
            records = []
            while pending:
                records.append(pending.popleft())
            if records:
                self._write(records)
            self._busy = False
            if self._closing and not pending:
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        target = self.target
        try:
            text = "".join(target.format(r) + target.terminator for r in records)
            with target.lock or contextlib.nullcontext():
                if target.stream is None:  # a FileHandler opens its file on first use
                    target.stream = target._open()  # type: ignore[attr-defined]
                target.stream.write(text)
            target.flush()
        except Exception:
            for record in records:
                target.handleError(record)

    def flush(self) -> None:
        while self._thread is not None and self._thread.is_alive():
            if not self._pending and not self._busy:
                break
            self._wake.set()
            time.sleep(0.005)
        self.target.flush()

    def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._closing = True
            self._wake.set()
            thread.join(timeout=10)
        self.target.close()
        super().close()


def configure_audit(settings: AuditSettings) -> logging.Handler | None:
    """(Re)install the audit handler; idempotent, so every ``create_app`` may call it."""
    logger = logging.getLogger(AUDIT_LOGGER)
    for old in list(logger.handlers):
        if getattr(old, "legalstream_audit", False):
            logger.removeHandler(old)
            old.close()
    logger.propagate = False
    if not settings.enabled:
        logger.setLevel(logging.CRITICAL + 1)
        return None
    target: logging.StreamHandler[Any]
    if settings.path is not None:
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        target = logging.FileHandler(settings.path, encoding="utf-8")
    else:
        target = logging.StreamHandler(sys.stderr)
    target.setFormatter(AuditFormatter())
    handler = AuditWriter(target)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.disabled = False
    return handler


def audit_line(message: str, fields: dict[str, Any]) -> None:
    """Log one audit line: ``message`` is its ``event``, ``fields`` its other keys.

    What ``logger.info(message, extra={"audit": fields})`` does, without
    looking up the caller's file and line (a walk up the stack per run) that
    an audit line never shows.
    """
    logger = _audit_logger
    if not logger.isEnabledFor(logging.INFO):
        return
    record = logging.LogRecord(AUDIT_LOGGER, logging.INFO, __file__, 0, message, None, None)
    record.audit = fields
    logger.handle(record)


_audit_logger = logging.getLogger(AUDIT_LOGGER)


def audit_refused(
    *,
    user: str,
    client_ip: str | None,
    case_id: Any,
    outcome: str,
    connection_id: str | None = None,
) -> None:
    """Audit a query refused before any run started (``forbidden_case``, ``rate_limited``)."""
    audit_line(
        "query_refused",
        {
            "user": user,
            "client_ip": client_ip,
            "case_id": case_id,
            "run_id": None,
            "outcome": outcome,
            "duration_s": 0.0,
            "cited_doc_ids": [],
            "connection_id": connection_id,
        },
    )
