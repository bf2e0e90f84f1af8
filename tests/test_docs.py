"""Docs that are generated from the code must be what the generators make today."""

from __future__ import annotations

from pathlib import Path

from legalstream.settings_doc import render

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_configuration_md_is_generated_from_settings():
    assert (DOCS / "configuration.md").read_text() == render(), (
        "docs/configuration.md is out of date: "
        "python -m legalstream.settings_doc > docs/configuration.md"
    )


# -- figures: what a command printed, written into the docs by the command ---------------

import json  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402

from legalstream import docfigures  # noqa: E402

ROOT = DOCS.parent
MARKDOWN = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_figures_sections_are_what_their_commands_wrote():
    problems = docfigures.check(MARKDOWN)
    assert not problems, "\n".join(problems)


def test_a_hand_edit_of_a_figures_section_is_caught(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("intro\n<!-- figures: x -->\n<!-- /figures: x -->\nend\n")
    assert docfigures.check([doc]) == []  # empty: never written
    docfigures.write_section(doc, "x", "recall 0.559", "make eval")
    assert docfigures.check([doc]) == []
    assert doc.read_text().startswith("intro\n<!-- figures: x · make eval · ")
    doc.write_text(doc.read_text().replace("0.559", "0.576"))
    assert docfigures.check([doc]), "an edited figure went unnoticed"


def test_docfigures_run_writes_a_commands_output_only_when_it_succeeds(tmp_path, capsys):
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- figures: out -->\n<!-- /figures: out -->\n")
    ok = [sys.executable, "-c", "print('recall@1 0.559')"]
    assert docfigures.main(["run", str(doc), "out", "make eval", "--", *ok]) == 0
    section = docfigures.find(doc.read_text(), "out")
    assert section is not None and section.body == "```text\nrecall@1 0.559\n```"
    assert "recall@1 0.559" in capsys.readouterr().out  # shown as it came
    failing = [sys.executable, "-c", "print('half'); raise SystemExit(3)"]
    assert docfigures.main(["run", str(doc), "out", "make eval", "--", *failing]) == 3
    assert "half" not in doc.read_text()


@pytest.fixture
def fanout_report():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import fanout_report

        yield fanout_report
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_the_fanout_section_and_charts_are_drawn_from_its_results(fanout_report):
    section = docfigures.find((DOCS / "benchmarks.md").read_text(), fanout_report.SECTION)
    assert section is not None, "docs/benchmarks.md lost its fanout figures section"
    if not section.body.strip():
        pytest.skip("bench/fanout.py --docs has not written docs/benchmarks.md yet")
    results = json.loads((DOCS / fanout_report.JSON_FILE).read_text())
    redo = "run .venv/bin/python bench/fanout.py --docs (make bench) instead of editing"
    assert section.body == fanout_report.markdown(results).strip("\n"), redo
    for name, draw in (
        (fanout_report.THROUGHPUT_SVG, fanout_report.throughput_chart),
        (fanout_report.LATENCY_SVG, fanout_report.latency_chart),
    ):
        assert (DOCS / name).read_text() == draw(results), f"docs/{name}: {redo}"
