"""Command bodies for ``legalstream ingest | cases | delete`` (wired up in legalstream.cli).

Each takes the loaded Settings, prints with rich, and returns a process exit code:
0 success, 1 when any file failed (ingest) or nothing matched (delete), 2 on bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from legalstream.rag.engine import RetrievalEngine

if TYPE_CHECKING:
    from legalstream.settings import Settings


def _engine(settings: Settings) -> RetrievalEngine:
    return RetrievalEngine.from_settings(settings.rag)


def ingest_command(
    settings: Settings,
    path: str | Path,
    case_id: int,
    title: str | None = None,
    *,
    console: Console | None = None,
) -> int:
    console = console or Console()
    target = Path(path)
    if not target.exists():
        console.print(f"[red]error:[/] {target} does not exist")
        return 2
    with _engine(settings) as engine:
        report = engine.ingest_path(target, case_id, title=title, progress=console.is_terminal)
    for f in report.failed:
        console.print(f"[red]failed[/] {f.path}: {f.error}")
    replaced = sum(f.status == "replaced" for f in report.files)
    console.print(
        f"case {case_id}: [bold]{report.documents}[/] documents ingested"
        f" ({replaced} replaced), {report.skipped} unchanged, {len(report.failed)} failed;"
        f" [bold]{report.chunks}[/] chunks in {report.seconds:.2f} s"
        f" (parse {report.parse_seconds:.2f} s, embed {report.embed_seconds:.2f} s,"
        f" index {report.index_seconds:.2f} s)"
    )
    return 0 if report.ok else 1


def cases_command(settings: Settings, *, console: Console | None = None) -> int:
    console = console or Console()
    with _engine(settings) as engine:
        cases = engine.cases()
        table = Table("case", "documents", "chunks")
        for c in cases:
            table.add_row(str(c.case_id), str(c.documents), str(c.chunks))
    if not cases:
        console.print("no cases ingested")
    else:
        console.print(table)
    return 0


def documents_command(settings: Settings, case_id: int, *, console: Console | None = None) -> int:
    console = console or Console()
    with _engine(settings) as engine:
        docs = engine.documents(case_id)
    table = Table("doc_id", "title", "chunks", "pages")
    for d in docs:
        table.add_row(d.doc_id, d.title, str(d.chunks), str(d.pages or ""))
    console.print(table)
    return 0


def delete_command(
    settings: Settings,
    case_id: int,
    doc_id: str | None = None,
    *,
    console: Console | None = None,
) -> int:
    console = console or Console()
    with _engine(settings) as engine:
        if doc_id is None:
            known = any(c.case_id == case_id for c in engine.cases())
            n = engine.delete_case(case_id)
            what = f"case {case_id}"
        else:
            known = any(d.doc_id == doc_id for d in engine.documents(case_id))
            n = engine.delete_document(case_id, doc_id)
            what = f"{doc_id} from case {case_id}"
    if not known:
        console.print(f"[yellow]nothing to delete:[/] {what} not found")
        return 1
    console.print(f"deleted {what}: {n} chunks")
    return 0
