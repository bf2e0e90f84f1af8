"""The legalstream command line: serve, ingest, cases, documents, delete, query, probe.

Every option says what it does and its default (tests/test_cli.py checks it);
each command's help ends with examples.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from legalstream.settings import Settings

DESCRIPTION = """\
Ask questions about a legal case's documents and watch the agent work.

Settings come from config/default.toml, a --config file and LEGALSTREAM_*
environment variables (docs/configuration.md lists them all)."""

EPILOG = """\
examples:
  legalstream serve                  (http://127.0.0.1:8000/, sample cases)
  legalstream query "Who signed the storage agreement?" --case-id 1
  legalstream ingest ./contracts --case-id 3
  legalstream serve --help           (the options of one command)"""

SERVE_EPILOG = """\
examples:
  legalstream serve
  legalstream serve --port 8001            (make run PORT=8001 does the same)
  LEGALSTREAM_LLM=openai/gpt-4o-mini OPENAI_API_KEY=... legalstream serve

Ctrl-C or SIGTERM let running queries finish, then stop the server (exit
status 0). Exit status 2: it could not start (a port in use, an address that
needs auth, --workers on the embedded store)."""

INGEST_EPILOG = """\
examples:
  legalstream ingest data/sample/case-1 --case-id 1
  legalstream ingest contract.pdf --case-id 3 --title "Supply agreement"

File types: .md, .markdown, .txt, .pdf, .docx, .html, .htm. A document that
is already in the case and unchanged is skipped. Exit status 1 when a file
failed.

While "legalstream serve" runs on the same data directory (it owns the
store), this command and cases/documents/delete go through it over HTTP
(found in <rag.data_dir>/server.json); --url names a server explicitly.
Through a server, documents get upload ids: case-<id>/<file name>."""

CASES_EPILOG = """\
example:
  legalstream cases"""

DELETE_EPILOG = """\
examples:
  legalstream delete --case-id 1 --doc-id case-1/complaint
  legalstream delete --case-id 3           (the whole case)

Document ids are <folder>/<file name without extension>. Exit status 1 when
nothing matched."""

QUERY_EPILOG = """\
examples:
  legalstream query "What was the defendant's response?" --case-id 1
  legalstream query "Who signed?" --case-id 1 --json | jq -c '{type, seq}'
  legalstream query "Who signed?" --case-id 1 --url ws://host:8000/ws/query
  LEGALSTREAM_TOKEN=$JWT legalstream query "Who signed?" --case-id 1

Exit status: 0 answered, 1 run error or refused, 2 connection or
authentication failed, 130 interrupted (the run is cancelled first)."""

PROBE_EPILOG = """\
examples:
  legalstream probe
  legalstream probe ws://host:8000/ws/query
  legalstream probe --case-id 2 --query "Who signed?" --query "When?"

Exit status 0 only when every run completed."""

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; option help in a column wide enough to read."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32)


def local_url(settings: Settings) -> str:
    """The WebSocket endpoint of the server these settings serve (for query and probe)."""
    host = settings.server.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"ws://{host}:{settings.server.port}/ws/query"


def build_parser(defaults: Settings | None = None) -> argparse.ArgumentParser:
    """The parser; ``defaults`` (the settings as they stand) fill in the help's defaults."""
    d = defaults
    host = d.server.host if d else "127.0.0.1"
    port = d.server.port if d else 8000
    workers = d.server.workers if d else 1
    log_level = d.log_level if d else "info"
    url = local_url(d) if d else "ws://127.0.0.1:8000/ws/query"

    parser = argparse.ArgumentParser(
        prog="legalstream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a TOML file read over config/default.toml (default: $LEGALSTREAM_CONFIG, if set)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, epilog: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help,
            description=help[0].upper() + help[1:] + ".",
            epilog=epilog,
            formatter_class=_HelpFormatter,
        )

    serve = command("serve", "run the service until Ctrl-C or SIGTERM", SERVE_EPILOG)
    serve.add_argument(
        "--host",
        help="address to listen on; anything but loopback needs auth mode jwt "
        f"(default: {host}, the setting server.host)",
    )
    serve.add_argument(
        "--port", type=int, help=f"port to listen on (default: {port}, the setting server.port)"
    )
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes; more than 1 needs a Qdrant server (rag.store) and the "
        f"Redis bus, docs/deploy.md (default: {workers}, the setting server.workers)",
    )
    serve.add_argument(
        "--config",
        dest="config_sub",
        metavar="FILE",
        help="a TOML file read over config/default.toml (default: $LEGALSTREAM_CONFIG, if set)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default: {log_level}, the setting log_level)",
    )

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--url",
            help="a running server's HTTP address, e.g. http://127.0.0.1:8000 (default: the "
            "server named in <rag.data_dir>/server.json if one is running, else the store "
            "is opened directly)",
        )
        p.add_argument(
            "--token",
            help="a JWT for a server with auth mode jwt (default: $LEGALSTREAM_TOKEN, if set)",
        )

    ingest = command("ingest", "add a file, or a folder of files, to a case", INGEST_EPILOG)
    ingest.add_argument("path", type=Path, help="a file, or a folder (read with its subfolders)")
    ingest.add_argument(
        "--case-id", type=int, required=True, help="the case the documents belong to (required)"
    )
    ingest.add_argument(
        "--title",
        help="the document's title, for a single file "
        "(default: its first heading, or its file name)",
    )
    server_options(ingest)

    cases = command(
        "cases", "list the cases in the store with titles, document and chunk counts", CASES_EPILOG
    )
    server_options(cases)

    documents = command(
        "documents",
        "list a case's documents with titles, chunks and pages",
        "example:\n  legalstream documents --case-id 1",
    )
    documents.add_argument("--case-id", type=int, required=True, help="the case (required)")
    server_options(documents)

    delete = command(
        "delete", "delete one document, or a whole case, from the store", DELETE_EPILOG
    )
    delete.add_argument("--case-id", type=int, required=True, help="the case (required)")
    delete.add_argument(
        "--doc-id",
        help="the document to delete, e.g. case-1/complaint (default: none, the whole case)",
    )
    server_options(delete)

    query = command("query", "ask a question and watch the agent answer, live", QUERY_EPILOG)
    query.add_argument("question", help="the question, in quotes")
    query.add_argument(
        "--case-id",
        type=int,
        required=True,
        help="the case whose documents are searched (required)",
    )
    query.add_argument(
        "--url",
        help=f"the server's WebSocket endpoint (default: {url}, from server.host and server.port)",
    )
    query.add_argument(
        "--token",
        help="a JWT for a server with auth mode jwt (default: $LEGALSTREAM_TOKEN, if set)",
    )
    query.add_argument(
        "--json", action="store_true", help="print every frame as one JSON line, not the live view"
    )
    query.add_argument(
        "--no-thinking",
        action="store_true",
        help="only the run's lifecycle frames: no thinking, tool or token frames",
    )

    probe = command(
        "probe",
        "check a server: send test questions, print every event and a summary",
        PROBE_EPILOG,
    )
    probe.add_argument("url", nargs="?", help=f"the server's WebSocket endpoint (default: {url})")
    probe.add_argument(
        "--case-id", type=int, default=1, help="the case to ask about (default: %(default)s)"
    )
    probe.add_argument(
        "--token",
        help="a JWT for a server with auth mode jwt (default: $LEGALSTREAM_TOKEN, if set)",
    )
    probe.add_argument(
        "--query",
        action="append",
        dest="queries",
        metavar="QUESTION",
        help="a test question; repeat for several (default: two questions about sample case 1)",
    )
    return parser


def _settings_for_help() -> Settings | None:
    try:
        return Settings()
    except Exception:  # a bad setting must not hide the help; the command reports it
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser(_settings_for_help()).parse_args(argv)
    config = getattr(args, "config_sub", None) or args.config
    if config:
        os.environ["LEGALSTREAM_CONFIG"] = str(Path(config).resolve())
    settings = Settings()
    token = getattr(args, "token", None) or os.environ.get("LEGALSTREAM_TOKEN")

    if args.command in ("ingest", "cases", "documents", "delete"):
        url = args.url or _running_server(settings)
        if url:
            return _through_server(url, token, args)

    match args.command:
        case "serve":
            return _serve(settings, args)
        case "ingest":
            from legalstream.rag.cli import ingest_command

            return ingest_command(settings, args.path, args.case_id, args.title)
        case "cases":
            from legalstream.rag.cli import cases_command

            return cases_command(settings)
        case "documents":
            from legalstream.rag.cli import documents_command

            return documents_command(settings, args.case_id)
        case "delete":
            from legalstream.rag.cli import delete_command

            return delete_command(settings, args.case_id, args.doc_id)
        case "query":
            from legalstream.client import query_command

            return query_command(
                args.url or local_url(settings),
                args.question,
                args.case_id,
                token=token,
                as_json=args.json,
                stream_thinking=not args.no_thinking,
            )
        case "probe":
            from legalstream.client import probe_command

            return probe_command(
                args.url or local_url(settings), args.case_id, token=token, queries=args.queries
            )
    return 2


def _running_server(settings: Settings) -> str | None:
    """The live server that owns the data directory (its server.json), if any."""
    from legalstream import discovery

    return discovery.running_server(settings.rag.data_dir)


def _through_server(url: str, token: str | None, args: argparse.Namespace) -> int:
    """ingest | cases | documents | delete over the server's HTTP API."""
    from legalstream.client import casefiles

    match args.command:
        case "ingest":
            return casefiles.ingest_command(url, token, args.path, args.case_id, args.title)
        case "cases":
            return casefiles.cases_command(url, token)
        case "documents":
            return casefiles.documents_command(url, token, args.case_id)
        case _:
            return casefiles.delete_command(url, token, args.case_id, args.doc_id)


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from legalstream.app import serve

    server = settings.server
    host = args.host or server.host
    port = args.port if args.port is not None else server.port
    workers = args.workers or server.workers
    # Workers re-read settings from the environment: pass the CLI's choices on.
    os.environ["LEGALSTREAM_SERVER__HOST"] = host
    os.environ["LEGALSTREAM_SERVER__PORT"] = str(port)
    if args.log_level:
        os.environ["LEGALSTREAM_LOG_LEVEL"] = args.log_level
    return serve(Settings(), host=host, port=port, workers=workers)


if __name__ == "__main__":
    sys.exit(main())
