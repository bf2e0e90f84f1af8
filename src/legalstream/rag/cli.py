"""Command bodies for ``legalstream ingest | cases | documents | delete``.

Each takes the loaded Settings, prints with rich, and returns a process exit code:
0 success, 1 when any file failed or nothing was found to ingest or delete, 2 on
bad input. Argument parsing lives in legalstream.cli, so another front end (a
client of a running server) can call the same bodies.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec

from rich import box
from rich.console import Console
from rich.table import Table

from legalstream.rag.edge_store import StoreLocked
from legalstream.rag.engine import CaseInfo, DocumentInfo, RetrievalEngine
from legalstream.rag.ingest import IngestReport, iter_files
from legalstream.rag.loaders import SUPPORTED

if TYPE_CHECKING:
    from legalstream.settings import Settings


P = ParamSpec("P")


class StoreBusy(Exception):
    """The store is another process's; the command printed why and exits 1."""


@contextlib.contextmanager
def _engine(settings: Settings, console: Console) -> Iterator[RetrievalEngine]:
    """The engine on the settings' store; a store another process holds is one clear line."""
    try:
        engine = RetrievalEngine.from_settings(settings.rag)
    except StoreLocked as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise StoreBusy from None
    with engine:
        yield engine


def store_busy_exits(command: Callable[P, int]) -> Callable[P, int]:
    """A locked store ends the command with exit status 1 (one line, never a traceback)."""

    @functools.wraps(command)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            return command(*args, **kwargs)
        except StoreBusy:
            return 1

    return wrapped


def print_report(report: IngestReport, case_id: int, console: Console) -> None:
    """Per-file failures and warnings, then one summary line."""
    for f in report.files:
        if f.status == "failed":
            console.print(f"[red]failed[/] {f.path}: {f.error}")
        for w in f.warnings:
            console.print(f"[yellow]warning[/] {f.path}: {w}")
        if f.note:
            console.print(f"[cyan]note[/] {f.path}: {f.note}")
    console.print(
        f"case {case_id}: [bold]{report.documents}[/] documents ingested"
        f" ({report.replaced} replaced), {report.skipped} unchanged, {len(report.failed)} failed;"
        f" [bold]{report.chunks}[/] chunks in {report.seconds:.2f} s"
        f" (parse {report.parse_seconds:.2f} s, embed {report.embed_seconds:.2f} s,"
        f" index {report.index_seconds:.2f} s)"
    )


def files_to_ingest(target: Path, console: Console) -> list[Path] | int:
    """The files at ``target`` (a file, or a folder read with its subfolders), or the
    exit code after saying why there is nothing to ingest (2: no such path, 1: no
    supported file). Unsupported files are kept: the ingest reports them as skipped."""
    if not target.exists():
        console.print(f"[red]error:[/] {target} does not exist")
        return 2
    files = list(iter_files(target))
    if not any(p.suffix.lower() in SUPPORTED for p in files):
        console.print(
            f"[red]error:[/] no supported files found in {target}"
            f" (supported: {', '.join(sorted(SUPPORTED))})"
        )
        return 1
    return files


@store_busy_exits
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
    files = files_to_ingest(target, console)
    if isinstance(files, int):
        return files
    with _engine(settings, console) as engine:
        report = engine.ingest_path(target, case_id, title=title, progress=console.is_terminal)
    print_report(report, case_id, console)
    return 0 if report.ok else 1


@store_busy_exits
def cases_command(settings: Settings, *, console: Console | None = None) -> int:
    console = console or Console()
    with _engine(settings, console) as engine:
        cases = engine.cases()
    print_cases(cases, console)
    return 0


def print_cases(cases: list[CaseInfo], console: Console) -> None:
    if not cases:
        console.print("no cases ingested")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("case", justify="right", no_wrap=True)
    table.add_column("documents", justify="right", no_wrap=True)
    table.add_column("chunks", justify="right", no_wrap=True)
    table.add_column("title", overflow="fold")
    for c in cases:
        table.add_row(str(c.case_id), str(c.documents), str(c.chunks), c.title or "")
    console.print(table)


@store_busy_exits
def documents_command(settings: Settings, case_id: int, *, console: Console | None = None) -> int:
    console = console or Console()
    with _engine(settings, console) as engine:
        if not engine.case_exists(case_id):
            console.print(f"[yellow]no case {case_id}[/]")
            return 1
        docs = engine.documents(case_id)
    print_documents(docs, console)
    return 0


def print_documents(docs: list[DocumentInfo], console: Console) -> None:
    # doc ids are never cut (delete --doc-id needs them); the title gives way first.
    id_width = max([len("doc_id"), *(len(d.doc_id) for d in docs)])
    fixed = id_width + 8 + 5 + 6 + 7 + 10 + 3 * 6 + 1  # other columns, 3 spaces between
    if console.width - fixed < 12:
        # Too narrow for a table: one document per two lines.
        for d in docs:
            console.print(d.doc_id, highlight=False, soft_wrap=True)
            details = ", ".join(
                x
                for x in (
                    d.file_type or "",
                    f"{d.pages} pages" if d.pages else "",
                    f"{d.chunks} chunks",
                    _size(d.size_bytes),
                    f"ingested {_day(d.ingested_at)}" if d.ingested_at else "",
                )
                if x
            )
            console.print(
                f"    {details} — {d.title}", highlight=False, overflow="ellipsis", no_wrap=True
            )
        return
    title_width = console.width - fixed
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("doc_id", no_wrap=True, min_width=id_width)
    table.add_column("type", no_wrap=True, min_width=8)
    table.add_column("pages", justify="right", no_wrap=True, min_width=5)
    table.add_column("chunks", justify="right", no_wrap=True, min_width=6)
    table.add_column("size", justify="right", no_wrap=True, min_width=7)
    table.add_column("ingested", no_wrap=True, min_width=10)
    table.add_column("title", no_wrap=True, max_width=title_width)
    for d in docs:
        table.add_row(
            d.doc_id,
            d.file_type or "",
            str(d.pages or ""),
            str(d.chunks),
            _size(d.size_bytes),
            _day(d.ingested_at) if d.ingested_at else "",
            d.title if len(d.title) <= title_width else d.title[: title_width - 1] + "…",
        )
    console.print(table)


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n / 1024 / 1024:.1f} MB"


@store_busy_exits
def delete_command(
    settings: Settings,
    case_id: int,
    doc_id: str | None = None,
    *,
    console: Console | None = None,
) -> int:
    console = console or Console()
    with _engine(settings, console) as engine:
        if doc_id is None:
            known = engine.case_exists(case_id)
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
