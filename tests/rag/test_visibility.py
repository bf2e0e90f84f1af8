"""A search that runs during an ingest sees each document version wholly or not at all."""

import threading
from collections import Counter
from pathlib import Path

import pytest

from legalstream.rag import RetrievalEngine
from legalstream.settings import RagSettings

CLAUSES = 150


def _version(n: int) -> str:
    lines = [f"RENT SCHEDULE VERSION {n}"]
    lines += [
        f"{i}. In version v{n} the rent for month {i} is {1000 + i} dollars payable in advance."
        for i in range(1, CLAUSES + 1)
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("store", ["edge", "qdrant"])
def test_searches_during_ingest_see_whole_versions(tmp_path: Path, store: str) -> None:
    settings = RagSettings(
        data_dir=tmp_path / "d", store=store, qdrant_path=":memory:" if store == "qdrant" else None
    )
    folder = tmp_path / "case-5"
    folder.mkdir()
    doc = folder / "schedule.txt"
    seen: list[Counter[str]] = []
    errors: list[BaseException] = []
    done = threading.Event()
    with RetrievalEngine.from_settings(settings) as engine:
        # Several upsert requests per version, as a long document takes.
        engine.store.upsert_batch = 16  # type: ignore[attr-defined]

        def searcher() -> None:
            try:
                while not done.is_set():
                    hits = engine.search("rent payable in advance", 5, k=500, mode="dense")
                    versions: Counter[str] = Counter()
                    for h in hits:
                        for word in h.quote.split():
                            if word.startswith("v") and word[1:].isdigit():
                                versions[word] += 1
                    seen.append(versions)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=searcher) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for n in range(4):
                doc.write_text(_version(n), encoding="utf-8")
                report = engine.ingest_path(folder, 5)
                assert report.ok and report.chunks >= CLAUSES
        finally:
            done.set()
            for t in threads:
                t.join()
    assert not errors, errors[:3]
    assert len(seen) > 3
    partial = [dict(c) for c in seen if any(n != CLAUSES for n in c.values())]
    assert not partial, partial[:3]
    assert any(seen), "the searches never saw the document"
