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
