"""A terminal progress bar over the chunks of an ingest (CLI only), with an ETA."""

from __future__ import annotations

from legalstream.rag.progress import IngestProgress, ProgressCallback


class ChunkProgressBar:
    """Draws ``rich`` progress from :class:`IngestProgress` events: chunks, not files."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._p = Progress(
            TextColumn("[bold]ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.description}"),
            transient=False,
        )
        self._task = self._p.add_task("parsing", total=None)
        self._p.start()

    def update(self, ev: IngestProgress) -> None:
        total = ev.all_chunks_total or None
        where = f"{ev.file_index}/{ev.files_total} {ev.name} ({ev.phase})"
        self._p.update(self._task, total=total, completed=ev.all_chunks_done, description=where)

    def chain(self, other: ProgressCallback | None) -> ProgressCallback:
        def both(ev: IngestProgress) -> None:
            self.update(ev)
            if other is not None:
                other(ev)

        return both

    def close(self) -> None:
        self._p.update(self._task, description="done")
        self._p.stop()
