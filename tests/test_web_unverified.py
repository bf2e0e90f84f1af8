"""The web page shows an answer that failed its grounding check as unverified, and a
citation's sentence with the passage around it. Headless Chromium (Playwright), the
real app on real uvicorn, a scripted runner whose outcomes are the check's verdicts.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest

from legalstream.agent.api import RunOutcome, RunRequest
from legalstream.app import create_app
from legalstream.events import CitationPayload, EventType, Grounding
from legalstream.settings import Settings
from support import live_server
from test_web import LAPTOP, _page, browser  # noqa: F401  (the browser fixture)

PASSAGE = "4.3 Notice. Warehouse shall notify Customer within four (4) hours. Nothing else."
SENTENCE = "Warehouse shall notify Customer within four (4) hours."


class _Citation:
    chunk_id = "case-1/exhibit#7"
    doc_id = "case-1/exhibit"
    title = "Exhibit A"
    case_id = 1
    page = None
    section = "Section 4.3"
    char_start = 100
    char_end = 100 + len(PASSAGE)
    quote = PASSAGE
    score = 0.9


class VerdictRunner:
    """Answers "ungrounded ..." with an unsupported draft, anything else grounded."""

    def run(self, request: RunRequest, emit: Any, cancelled: threading.Event) -> RunOutcome:
        emit(EventType.AGENT_START, agent_name="Legal Question Answering Agent")
        start = PASSAGE.index(SENTENCE)
        citation = CitationPayload.of(_Citation(), 1)
        sentence = CitationPayload(
            **{
                **citation.to_payload(),
                "char_start": 100 + start,
                "char_end": 100 + start + len(SENTENCE),
                "quote": SENTENCE,
                "passage": PASSAGE,
                "passage_start": 100,
                "passage_end": 100 + len(PASSAGE),
            }
        ).to_payload()
        if request.query.startswith("ungrounded"):
            problem = {"kind": "unsupported", "statement": "It was signed in 2022", "marker": 1}
            grounding = Grounding(False, 1, 0, [problem, {"kind": "no_citation"}], retried=True)
            return RunOutcome("It was signed in 2022 [1].", [], grounding=grounding.to_payload())
        grounding = Grounding(True, 1, 1, [], finish_reason="stop")
        return RunOutcome(f"{SENTENCE} [1]", [sentence], grounding=grounding.to_payload())


@pytest.fixture(scope="module")
def verdict_server():
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(rag={"data_dir": Path(tmp) / "data", "ingest_sample_on_start": False})
        runner = VerdictRunner()
        with live_server(create_app(settings, runner_factory=lambda svc: runner), settings) as srv:
            yield srv


def _ask(page, question: str) -> None:
    page.wait_for_function("document.querySelectorAll('#case option[value]').length >= 0")
    page.evaluate(
        """() => { const s = document.querySelector('#case');
                   if (!s.querySelector('option[value="1"]')) s.add(new Option('Case 1', '1'));
                   s.value = '1'; }"""
    )
    page.fill("#question", question)
    page.click("#ask-button")


def test_browser_shows_an_unverified_answer_as_such(browser, verdict_server):  # noqa: F811
    context, page, errors = _page(browser, verdict_server, LAPTOP)
    try:
        _ask(page, "ungrounded: when was it signed?")
        page.wait_for_function("document.querySelector('#run-state').textContent === 'Unverified'")
        warning = page.locator("#unverified")
        assert warning.is_visible()
        text = warning.inner_text()
        assert "Unverified answer" in text and "passage [1] does not say" in text
        assert "One corrective retry did not fix it." in text
        assert "signed in 2022" in page.locator("#answer").inner_text()
        assert "unverified-answer" in page.locator("#answer").get_attribute("class")
        assert page.locator("#timeline").inner_text().count("Answer not verified") == 1

        # the next, grounded answer clears the warning
        _ask(page, "How fast must the Warehouse give notice?")
        page.wait_for_function("document.querySelector('#run-state').textContent === 'Complete'")
        assert not page.locator("#unverified").is_visible()
        assert "grounded: 1 of 1 statements supported" in page.locator("#run-meta").inner_text()
        cite = page.locator("#citations .citation").first
        assert cite.locator("blockquote").inner_text().strip() == SENTENCE
        assert not cite.locator(".passage").is_visible()
        cite.get_by_role("button", name="Show the passage").click()
        assert cite.locator(".passage").is_visible()
        assert cite.locator(".passage mark").inner_text() == SENTENCE
        assert cite.locator(".passage").inner_text() == PASSAGE
        assert errors == []
    finally:
        context.close()


def test_post_query_returns_an_unverified_answer_as_a_draft(verdict_server):
    """POST /query never puts an unverified answer where a verified one goes."""
    import httpx

    with httpx.Client(base_url=verdict_server.http, timeout=30) as http:
        failed = http.post("/query", json={"query": "ungrounded: signed when?", "case_id": 1})
        ok = http.post("/query", json={"query": "How fast is notice?", "case_id": 1})
    assert failed.status_code == 502
    body = failed.json()
    assert body["code"] == "ungrounded_answer" and "answer" not in body
    assert body["draft"]["answer"] == "It was signed in 2022 [1]."
    assert body["draft"]["grounding"]["grounded"] is False
    assert ok.status_code == 200 and "draft" not in ok.json()
    assert ok.json()["grounding"]["grounded"] is True
