"""The same search returns the same results, run after run and in another process."""

import json
import subprocess
import sys
from pathlib import Path

from legalstream.rag import RetrievalEngine
from legalstream.settings import RagSettings

from .conftest import COMPLAINT_1

# Clauses that score exactly alike: only a stable tie-break orders them.
TWINS = "# Schedule\n\n" + "\n".join(
    f"{i}. The Tenant shall pay the monthly rent in advance." for i in range(1, 13)
)
QUERIES = [
    ("monthly rent in advance", "hybrid"),
    ("monthly rent in advance", "bm25"),
    ("monthly rent in advance", "dense"),
    ("alarm bypass compressor", "hybrid"),
    ("damages breach", "bm25"),
]
SCRIPT = """
import json, sys
from pathlib import Path
from legalstream.rag import RetrievalEngine
from legalstream.settings import RagSettings
queries = json.loads(sys.argv[2])
with RetrievalEngine.from_settings(RagSettings(data_dir=Path(sys.argv[1]))) as eng:
    print(json.dumps([[c.chunk_id for c in eng.search(q, 1, k=8, mode=m)] for q, m in queries]))
"""


def _run(engine: RetrievalEngine) -> list[list[str]]:
    return [[c.chunk_id for c in engine.search(q, 1, k=8, mode=m)] for q, m in QUERIES]


def test_same_results_in_any_process(tmp_path: Path) -> None:
    folder = tmp_path / "case-1"
    folder.mkdir()
    (folder / "schedule.md").write_text(TWINS, encoding="utf-8")
    (folder / "complaint.md").write_text(COMPLAINT_1, encoding="utf-8")
    settings = RagSettings(data_dir=tmp_path / "d")
    with RetrievalEngine.from_settings(settings) as engine:
        assert engine.ingest_path(folder, 1).ok
        first = _run(engine)
        for _ in range(5):
            assert _run(engine) == first
    # Ties are ordered by chunk id, not by how the store happened to return them.
    twins = [c for c in first[1] if c.startswith("case-1/schedule.md#")]
    assert twins == sorted(twins, key=lambda c: int(c.split("#")[1]))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "d"), json.dumps(QUERIES)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == first
