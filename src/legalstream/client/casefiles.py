"""``legalstream ingest | cases | documents | delete`` through a running server (HTTP).

Used when ``<data_dir>/server.json`` names a live server (its embedded store
is that server's) or ``--url`` is given. The output is the direct commands'
(legalstream.rag.cli): ingest uploads the files, follows the case's progress
stream (chunks done of total, ETA) and prints the same summary.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from rich.console import Console

#: Files per upload request (a folder goes up in batches; the server's max_files is 20).
BATCH_FILES = 10
#: Bytes per upload request, at most (the server's max_upload_bytes is 50 MB).
BATCH_BYTES = 40 * 1024 * 1024


class ServerError(Exception):
    """The server refused or failed; the message is what to print."""


class Server:
    """The case file endpoints of one server."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(60.0, read=300.0)
        )

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ServerError(f"cannot reach the server at {self.url}: {exc}") from None

    def json(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kw: Any) -> Any:
        r = self.request(method, path, **kw)
        if r.status_code not in ok:
            raise ServerError(_why(r))
        return r.json()

    def events(self, case_id: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """The case's document events (SSE) as (type, frame), until closed."""
        with self.http.stream("GET", f"/cases/{case_id}/documents/events") as r:
            if r.status_code != 200:
                r.read()
                raise ServerError(_why(r))
            kind = ""
            yield "open", {}
            for line in r.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    yield kind, orjson.loads(line[len("data: ") :])


def _why(r: httpx.Response) -> str:
    try:
        body = r.json()
        return f"{body.get('error')} ({body.get('code')}, HTTP {r.status_code})"
    except ValueError:
        return f"HTTP {r.status_code}: {r.text[:200]}"


def _doc_path(doc_id: str) -> str:
    return "/".join(quote(part, safe="") for part in doc_id.split("/"))


def _run(url: str, token: str | None, console: Console, body: Any) -> int:
    server = Server(url, token)
    try:
        return int(body(server))
    except ServerError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 1
    finally:
        server.close()


# -- the commands -------------------------------------------------------------------------


def cases_command(url: str, token: str | None, *, console: Console | None = None) -> int:
    from legalstream.rag.cli import print_cases
    from legalstream.rag.engine import CaseInfo

    console = console or Console()
    fields = {f.name for f in dataclasses.fields(CaseInfo)}

    def body(server: Server) -> int:
        cases = server.json("GET", "/cases")["cases"]
        print_cases(
            [CaseInfo(**{k: v for k, v in c.items() if k in fields}) for c in cases], console
        )
        return 0

    return _run(url, token, console, body)


def documents_command(
    url: str, token: str | None, case_id: int, *, console: Console | None = None
) -> int:
    from legalstream.rag.cli import print_documents
    from legalstream.rag.engine import DocumentInfo

    console = console or Console()

    def body(server: Server) -> int:
        r = server.request("GET", f"/cases/{case_id}/documents")
        if r.status_code == 404:
            console.print(f"[yellow]no case {case_id}[/]")
            return 1
        if r.status_code != 200:
            raise ServerError(_why(r))
        print_documents([DocumentInfo.from_payload(d) for d in r.json()["documents"]], console)
        return 0

    return _run(url, token, console, body)


def delete_command(
    url: str,
    token: str | None,
    case_id: int,
    doc_id: str | None = None,
    *,
    console: Console | None = None,
) -> int:
    console = console or Console()
    if doc_id is None:
        path, what = f"/cases/{case_id}", f"case {case_id}"
    else:
        path, what = (
            f"/cases/{case_id}/documents/{_doc_path(doc_id)}",
            f"{doc_id} from case {case_id}",
        )

    def body(server: Server) -> int:
        r = server.request("DELETE", path)
        if r.status_code == 404:
            console.print(f"[yellow]nothing to delete:[/] {what} not found")
            return 1
        if r.status_code != 200:
            raise ServerError(_why(r))
        console.print(f"deleted {what}: {r.json()['deleted_chunks']} chunks")
        return 0

    return _run(url, token, console, body)


def ingest_command(
    url: str,
    token: str | None,
    path: str | Path,
    case_id: int,
    title: str | None = None,
    *,
    console: Console | None = None,
) -> int:
    """Upload the file(s), follow their progress, print the direct command's summary."""
    from legalstream.rag.cli import files_to_ingest, print_report
    from legalstream.rag.loaders import SUPPORTED

    console = console or Console()
    target = Path(path)
    found = files_to_ingest(target, console)
    if isinstance(found, int):
        return found
    # The server refuses a batch holding an unsupported type: send the others.
    files = [p for p in found if p.suffix.lower() in SUPPORTED]

    def body(server: Server) -> int:
        if server.request("GET", f"/cases/{case_id}/documents").status_code == 404:
            # The direct path makes a case on its first document; so does this one.
            server.json(
                "POST",
                "/cases",
                ok=(201, 409),
                json={"case_id": case_id, "title": f"Case {case_id}"},
            )
        events = server.events(case_id)
        next(events)  # subscribed before the first upload: no event is missed
        jobs: set[str] = set()
        for batch in _batches(files):
            uploads = [("file", (p.name, p.read_bytes())) for p in batch]
            form = {"title": title} if title and len(files) == 1 else None
            reply = server.json(
                "POST", f"/cases/{case_id}/documents", ok=(202,), files=uploads, data=form
            )
            jobs.add(reply["job_id"])
        report = _follow(events, jobs, console, len(files))
        print_report(report, case_id, console)
        return 0 if report.ok else 1

    return _run(url, token, console, body)


def _batches(files: list[Path]) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for p in files:
        n = p.stat().st_size
        if batch and (len(batch) >= BATCH_FILES or size + n > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(p)
        size += n
    if batch:
        yield batch


def _follow(
    events: Iterator[tuple[str, dict[str, Any]]], jobs: set[str], console: Console, files: int
) -> Any:
    """Progress until every job's ``ingest_job_done``; their report, merged."""
    from legalstream.rag.ingest import FileResult, IngestReport
    from legalstream.rag.progress import IngestProgress

    report = IngestReport()
    fields = {f.name for f in dataclasses.fields(IngestProgress)}
    bar = _Progress(console, files)
    done: set[str] = set()
    try:
        for kind, frame in events:
            data = frame.get("output_data") or {}
            if data.get("job_id") not in jobs:
                continue
            if kind == "document_progress":
                progress = {k: v for k, v in data.items() if k in fields}
                progress["warnings"] = tuple(progress.get("warnings") or ())
                bar.update(IngestProgress(**progress))
            elif kind == "ingest_job_done":
                done.add(data["job_id"])
                for f in data.get("files") or []:
                    report.files.append(
                        FileResult(
                            f.get("name") or "",
                            f.get("status") or "failed",
                            doc_id=f.get("doc_id"),
                            chunks=int(f.get("chunks") or 0),
                            error=f.get("error"),
                            warnings=list(f.get("warnings") or []),
                            note=f.get("note"),
                        )
                    )
                report.seconds += float(data.get("seconds") or 0.0)
                report.parse_seconds += float(data.get("parse_seconds") or 0.0)
                report.embed_seconds += float(data.get("embed_seconds") or 0.0)
                report.index_seconds += float(data.get("index_seconds") or 0.0)
                if done >= jobs:
                    break
    finally:
        bar.close()
    if not done >= jobs:
        raise ServerError("the progress stream ended before the ingest did (server stopping?)")
    return report


class _Progress:
    """The chunk bar on a terminal; otherwise a line per phase and a few while embedding."""

    def __init__(self, console: Console, files: int) -> None:
        self.console = console
        self.bar: Any = None
        self._files = files
        self._done_before = 0
        self._last = 0.0
        if console.is_terminal:
            from legalstream.rag.progress_bar import ChunkProgressBar

            self.bar = ChunkProgressBar()

    def update(self, ev: Any) -> None:
        if self.bar is not None:
            self.bar.update(ev)
            return
        now = time.monotonic()
        if ev.phase == "embedding" and ev.chunks_done < ev.chunks_total and now - self._last < 0.5:
            return
        self._last = now
        eta = f", eta {ev.eta_seconds:.1f} s" if ev.eta_seconds is not None else ""
        chunks = f" {ev.chunks_done}/{ev.chunks_total} chunks{eta}" if ev.chunks_total else ""
        error = f": {ev.error}" if ev.error else ""
        self.console.print(
            f"ingest {ev.file_index}/{ev.files_total} {ev.name}: {ev.phase}{chunks}{error}",
            highlight=False,
            soft_wrap=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
