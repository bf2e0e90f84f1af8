import io
from pathlib import Path

from rich.console import Console

from legalstream.rag import RetrievalEngine, ensure_sample_corpus
from legalstream.rag.cli import cases_command, delete_command, documents_command, ingest_command
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
    assert documents_command(settings, 2, console=con) == 0
    assert "case-2/supply-agreement.md" in out.getvalue()
    assert documents_command(settings, 77, console=con) == 1
    # At 80 columns doc ids stay whole (delete --doc-id needs them) and nothing overflows.
    narrow = io.StringIO()
    assert documents_command(settings, 2, console=Console(file=narrow, width=80)) == 0
    assert "case-2/supply-agreement.md" in narrow.getvalue()
    assert all(len(line) <= 80 for line in narrow.getvalue().splitlines())
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


def test_ingest_of_a_folder_without_supported_files_fails(tmp_path: Path) -> None:
    settings = Settings(rag=RagSettings(data_dir=tmp_path / "d"))
    empty = tmp_path / "empty"
    empty.mkdir()
    con, out = _console()
    assert ingest_command(settings, empty, 1, None, console=con) == 1
    assert "no supported files found" in out.getvalue()
    (empty / "photo.png").write_bytes(b"\x89PNG")
    assert ingest_command(settings, empty, 1, None, console=con) == 1
    assert out.getvalue().count("no supported files found") == 2


def test_cli_main_wires_documents(
    tmp_path: Path, two_cases: tuple[Path, Path], monkeypatch
) -> None:
    from legalstream.cli import main

    monkeypatch.setenv("LEGALSTREAM_RAG__DATA_DIR", str(tmp_path / "d"))
    assert main(["ingest", str(two_cases[0]), "--case-id", "1"]) == 0
    assert main(["documents", "--case-id", "1"]) == 0
    assert main(["documents", "--case-id", "2"]) == 1


def test_sample_case_titles_are_stored(tmp_path: Path) -> None:
    with RetrievalEngine.from_settings(RagSettings(data_dir=tmp_path)) as eng:
        ensure_sample_corpus(eng, REPO_ROOT / "data" / "sample")
        titles = {c.case_id: c.title for c in eng.cases()}
    assert titles[1] == "Bluewater Provisions LLC v. Meridian Cold Storage Inc."
