"""``legalstream`` command line: serve, ingest, cases, documents, delete, query, probe."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from legalstream.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="legalstream", description=__doc__)
    parser.add_argument("--config", help="extra TOML config file (over config/default.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service with uvicorn")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--config", dest="config_sub")
    serve.add_argument("--log-level")

    ingest = sub.add_parser("ingest", help="ingest a file or folder into a case")
    ingest.add_argument("path", type=Path)
    ingest.add_argument("--case-id", type=int, required=True)
    ingest.add_argument("--title")

    sub.add_parser("cases", help="list cases with titles, document and chunk counts")

    documents = sub.add_parser("documents", help="list a case's documents")
    documents.add_argument("--case-id", type=int, required=True)

    delete = sub.add_parser("delete", help="delete a document or a whole case")
    delete.add_argument("--case-id", type=int, required=True)
    delete.add_argument("--doc-id")

    query = sub.add_parser("query", help="ask a question and print the stream live")
    query.add_argument("question")
    query.add_argument("--case-id", type=int, required=True)
    query.add_argument("--url", default="ws://127.0.0.1:8000/ws/query")
    query.add_argument("--token", default=os.environ.get("LEGALSTREAM_TOKEN"))
    query.add_argument("--json", action="store_true", help="print raw frames as JSON lines")
    query.add_argument("--no-thinking", action="store_true", help="stream_thinking: false")

    probe = sub.add_parser("probe", help="connect, send test queries, print events and a summary")
    probe.add_argument("url", nargs="?", default="ws://127.0.0.1:8000/ws/query")
    probe.add_argument("--case-id", type=int, default=1)
    probe.add_argument("--token", default=os.environ.get("LEGALSTREAM_TOKEN"))
    probe.add_argument("--query", action="append", dest="queries")

    args = parser.parse_args(argv)
    config = getattr(args, "config_sub", None) or args.config
    if config:
        os.environ["LEGALSTREAM_CONFIG"] = str(Path(config).resolve())
    settings = Settings()

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
                args.url,
                args.question,
                args.case_id,
                token=args.token,
                as_json=args.json,
                stream_thinking=not args.no_thinking,
            )
        case "probe":
            from legalstream.client import probe_command

            return probe_command(args.url, args.case_id, token=args.token, queries=args.queries)
    return 2


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    from legalstream.app import serve

    server = settings.server
    host = args.host or server.host
    port = args.port or server.port
    workers = args.workers or server.workers
    # Workers re-read settings from the environment: pass the CLI's choices on.
    os.environ["LEGALSTREAM_SERVER__HOST"] = host
    os.environ["LEGALSTREAM_SERVER__PORT"] = str(port)
    if args.log_level:
        os.environ["LEGALSTREAM_LOG_LEVEL"] = args.log_level
    return serve(Settings(), host=host, port=port, workers=workers)


if __name__ == "__main__":
    sys.exit(main())
