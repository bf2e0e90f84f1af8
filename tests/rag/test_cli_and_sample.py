import io
from pathlib import Path

from rich.console import Console

from legalstream.rag import RetrievalEngine, ensure_sample_corpus
from legalstream.rag.cli import cases_command, delete_command, ingest_command
from legalstream.settings import REPO_ROOT, RagSettings, Settings


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=200), buf


def test_cli_commands(tmp_path: Path, two_cases: tuple[Path, Path]) -> None:
    settings = Settings(rag=RagSettings(data_dir=tmp_path / "d"))
    con, out = _console()
    assert ingest_command(settings, two_cases[0], 1, None, console=con) == 0
    assert "1 documents ingested" in out.getvalue() and "chunks in" in out.getvalue()
    (two_cases[1] / "broken.pdf").write_bytes(b"not a pdf")
    assert ingest_command(settings, two_cases[1], 2, None, console=con) == 1
    assert "failed" in out.getvalue() and "broken.pdf" in out.getvalue()
    assert ingest_command(settings, tmp_path / "missing", 2, None, console=con) == 2
    assert cases_command(settings, console=con) == 0
    assert delete_command(settings, 2, "case-2/supply-agreement.md", console=con) == 0
    assert delete_command(settings, 2, "case-2/supply-agreement.md", console=con) == 1
    assert delete_command(settings, 1, console=con) == 0
    assert "deleted case 1" in out.getvalue()


def test_sample_corpus_is_idempotent(tmp_path: Path) -> None:
    sample = REPO_ROOT / "data" / "sample"
    assert (sample / "cases.toml").exists(), "the sample corpus ships with the repo"
    with RetrievalEngine.from_settings(RagSettings(data_dir=tmp_path)) as eng:
        first = ensure_sample_corpus(eng, sample)
        assert first is not None and first.ok and first.documents > 0
        again = ensure_sample_corpus(eng, sample)
        assert again is not None and again.documents == 0 and again.skipped == first.documents
        # The corpus' own cases are isolated too.
        for h in eng.search("Northgate Dairy cheese aging rooms Arctura", 1, k=10):
            assert h.case_id == 1
    assert ensure_sample_corpus(eng, tmp_path) is None
