"""The web view and the JavaScript client, against live servers.

* ``test_node_client``: runs ``node --experimental-websocket --test tests/js``
  against the real app on uvicorn (ScriptedRunner as producer).
* ``test_browser_*``: Debian's chromium, headless, driven by Playwright, on the
  real app (retrieval engine + CrewAI offline agent on the sample corpus); saves
  screenshots to a temp dir, or to ``$LEGALSTREAM_SCREENSHOTS`` (``make
  screenshots`` refreshes docs/img/ that way). Under ``CI=true`` a missing
  node/chromium/playwright fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, live_server

ROOT = Path(__file__).resolve().parents[1]
# Not docs/img/ by default: a test run must not rewrite files in the repo.
SCREENSHOTS = os.environ.get("LEGALSTREAM_SCREENSHOTS")
CHROMIUM = os.environ.get("LEGALSTREAM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
LAPTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} is not available")


@pytest.fixture(scope="module")
def scripted_server():
    """Real app, scripted producer: runs take ~1 s and survive a dropped connection."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            rag={"data_dir": Path(tmp) / "data", "ingest_sample_on_start": False},
            runs={"resume_grace_seconds": 10.0},
        )
        runner = ScriptedRunner(steps=3, delay=0.05, chunks=10)
        app = create_app(settings, runner_factory=lambda svc: runner)
        with live_server(app, settings) as srv:
            yield srv


@pytest.fixture(scope="module")
def real_server():
    """The real app: retrieval engine on the sample corpus and the CrewAI offline agent."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(rag={"data_dir": tmp}, runs={"resume_grace_seconds": 10.0})
        app = create_app(settings)
        with live_server(app, settings) as srv:
            yield srv


@pytest.fixture(scope="module")
def shots():
    """Where screenshots go: ``$LEGALSTREAM_SCREENSHOTS``, else a temp dir removed afterwards."""
    if SCREENSHOTS:
        path = Path(SCREENSHOTS)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="legalstream-shots-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright (pip install playwright)")
    if not Path(CHROMIUM).exists():
        _missing(f"chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# ----------------------------------------------------------------------- static + node


def test_index_and_module_are_served(scripted_server):
    with urllib.request.urlopen(scripted_server.http + "/", timeout=10) as r:
        html = r.read().decode()
        assert r.headers["content-type"].startswith("text/html")
    assert 'src="/static/app.js"' in html and '<label for="question">' in html
    with urllib.request.urlopen(scripted_server.http + "/static/legalstream.js", timeout=10) as r:
        assert "javascript" in r.headers["content-type"]
        assert "export class LegalAgentWebSocket" in r.read().decode()
    with urllib.request.urlopen(scripted_server.http + "/static/legalstream.d.ts", timeout=10) as r:
        assert "sendQuery" in r.read().decode()


def test_node_client(scripted_server):
    node = shutil.which("node")
    if node is None:
        _missing("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    major, minor = (int(x) for x in version.lstrip("v").split(".")[:2])
    args = [node]
    if (major, minor) < (22, 4):  # global WebSocket is behind a flag before Node 22.4
        if (major, minor) < (20, 10):
            _missing(f"Node >= 20.10 (found {version})")
        args.append("--experimental-websocket")
    env = {**os.environ, "LEGALSTREAM_HTTP": scripted_server.http, "NODE_NO_WARNINGS": "1"}
    started = time.monotonic()
    proc = subprocess.run(
        # The test files by name: the folder also holds node_modules (npm ci).
        [
            *args,
            "--test",
            "--test-reporter=spec",
            *map(str, sorted((ROOT / "tests" / "js").glob("*.test.mjs"))),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    print(proc.stdout[-6000:], proc.stderr[-3000:], f"{time.monotonic() - started:.1f}s")
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert re.search(r"pass \d+", proc.stdout) and "fail 0" in proc.stdout


# ----------------------------------------------------------------------- browser


def _page(browser, server, viewport):
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.http + "/")
    page.wait_for_function("document.querySelector('#conn').dataset.state === 'open'")
    return context, page, errors


def _record_answer_states(page):
    """Collect every distinct answer text the page shows (to prove token-by-token streaming)."""
    page.evaluate(
        """() => {
        window.__answerStates = [];
        window.__chunks = 0;
        window.legalstream.on('llm_stream_chunk', () => window.__chunks++);
        const answer = document.querySelector('#answer');
        new MutationObserver(() => {
          const t = answer.textContent;
          const streaming = answer.classList.contains('streaming');
          const last = window.__answerStates.at(-1);
          if (!last || last[0] !== t || last[1] !== streaming) window.__answerStates.push([t, streaming]);
        }).observe(answer, {childList: true, subtree: true, characterData: true, attributes: true});
    }"""
    )


def test_browser_asks_and_shows_timeline_stream_and_citations(browser, real_server, shots):
    context, page, errors = _page(browser, real_server, LAPTOP)
    try:
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        options = page.locator("#case option").all_inner_texts()
        assert any("documents" in o for o in options), options
        page.get_by_label("Case", exact=True).select_option("1")
        page.get_by_label("Question", exact=True).fill(
            "What amount did Meridian offer in full settlement in its September 28, 2023 "
            "letter, and how was it calculated?"
        )
        _record_answer_states(page)
        # Keyboard: Ctrl+Enter in the question field asks.
        page.get_by_label("Question", exact=True).press("Control+Enter")
        page.wait_for_selector("#run-state[data-kind='complete']", timeout=60_000)

        # Timeline: thinking, a tool call with input and output, retrieval hits, LLM calls with timings.
        steps = page.locator("#timeline .step")
        types = [steps.nth(i).get_attribute("data-type") for i in range(steps.count())]
        for kind in (
            "query_received",
            "thinking_start",
            "llm_start",
            "tool_start",
            "rag_query_start",
            "agent_execution_complete",
        ):
            assert kind in types, (kind, types)
        tool = page.locator(".step[data-type='tool_start']").first
        assert tool.locator("summary").all_inner_texts() == ["Input", "Output"]
        rag = page.locator(".step[data-type='rag_query_start']").first
        assert re.match(r"Retrieved \d+ passages", rag.locator(".title").inner_text())
        assert rag.locator(".hits li").count() >= 1
        llm = page.locator(".step[data-type='llm_start']").first
        assert re.search(r"\d+ (ms|s)$", llm.locator(".time").inner_text())
        assert "offline" in llm.locator(".sub").inner_text()

        # The answer streamed in: many partial states before the final text.
        answer = page.locator("#answer").inner_text().strip()
        assert answer and "Thought:" not in answer and "Final Answer" not in answer
        states = page.evaluate("window.__answerStates")
        assert page.evaluate("window.__chunks") > 10
        streamed = [t for t, streaming in states if streaming and t.strip()]
        assert streamed, states[:10]
        assert answer.startswith(streamed[0].strip()[:10]), (streamed[0], answer)
        assert states[-1] == [page.locator("#answer").text_content(), False]
        assert page.locator("#answer").get_attribute("aria-live") == "polite"
        assert page.locator("#answer").get_attribute("aria-busy") == "false"

        # Citations: quoted passage with document, section and page.
        cites = page.locator("#citations .citation")
        assert cites.count() >= 1
        first = cites.first
        assert first.locator(".cite-title").inner_text().strip()
        assert len(first.locator("blockquote").inner_text().strip()) > 20
        assert first.locator(".cite-doc").inner_text().startswith("case-1/")
        # Markers in the answer link to their citation.
        markers = page.locator("#answer a.marker")
        if markers.count():
            markers.first.click()
            target = markers.first.get_attribute("href")
            assert page.evaluate("document.activeElement.id") == target.lstrip("#")
        assert not errors, errors
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "web-laptop.png"), full_page=False)
    finally:
        context.close()


def test_browser_phone_width(browser, real_server, shots):
    context, page, errors = _page(browser, real_server, PHONE)
    try:
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        page.get_by_label("Question", exact=True).fill(
            "Under the storage agreement, how cold did the warehouse have to keep the freezer room?"
        )
        page.get_by_role("button", name="Ask").click()
        page.wait_for_selector("#run-state[data-kind='complete']", timeout=60_000)
        assert page.locator("#citations .citation").count() >= 1
        # Single column, nothing wider than the screen.
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        assert not errors, errors
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "web-phone.png"), full_page=False)
        # Long passages are shortened behind a toggle.
        more = page.locator("#citations button.more")
        if more.count():
            more.first.click()
            assert more.first.get_attribute("aria-expanded") == "true"
    finally:
        context.close()


def test_browser_lost_connection_shows_banner_and_resumes(browser, real_server):
    context, page, errors = _page(browser, real_server, LAPTOP)
    try:
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        # Drop the socket (not disconnect()) at the first streamed token.
        page.evaluate(
            """() => {
            window.__frames = [];
            const off = window.legalstream.on('llm_stream_chunk', () => { off(); window.legalstream.ws.close(); });
            window.legalstream.on('*', (e) => { if (e.run_id) window.__frames.push(e.seq); });
        }"""
        )
        page.get_by_label("Question", exact=True).fill(
            "What is the monthly storage charge per pallet under Section 3.2?"
        )
        page.get_by_role("button", name="Ask").click()
        page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
        page.wait_for_selector("#run-state[data-kind='complete']", timeout=60_000)
        assert page.evaluate("window.legalstream.reconnects") == 1
        seqs = page.evaluate("window.__frames")
        assert seqs == list(range(1, len(seqs) + 1)), "gapless across the reconnect"
        assert "Reconnected" in page.locator("#banner-text").inner_text()
        assert page.locator("#citations .citation").count() >= 1
        assert not errors, errors
    finally:
        context.close()


def test_browser_cancel_and_errors_are_visible_and_recoverable(browser, scripted_server):
    from playwright.sync_api import expect

    context, page, errors = _page(browser, scripted_server, LAPTOP)
    try:
        page.get_by_label("Question", exact=True).fill("Cancel me")
        page.get_by_role("button", name="Ask").click()
        page.wait_for_selector(".step[data-type='thinking_start']")
        page.get_by_role("button", name="Cancel").click()
        expect(page.get_by_role("alert")).to_contain_text("cancelled")
        expect(page.locator("#run-state")).to_have_text("Cancelled")
        assert page.locator(".step[data-type='agent_execution_error']").count() == 1
        # Recover: "Try again" asks the same question, which now completes.
        page.get_by_role("button", name="Try again").click()
        page.wait_for_selector("#run-state[data-kind='complete']", timeout=30_000)
        assert "Scripted answer to: Cancel me" in page.locator("#answer").inner_text()
        expect(page.get_by_role("alert")).to_be_hidden()
        # A refused question shows its reason; the page stays usable.
        page.evaluate("document.querySelector('#case').add(new Option('Case -1', '-1'))")
        page.get_by_label("Case", exact=True).select_option("-1")
        page.get_by_role("button", name="Ask").click()
        expect(page.get_by_role("alert")).to_contain_text("invalid_case_id")
        # Focus styles exist for keyboard users.
        page.keyboard.press("Tab")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
        assert not errors, errors
    finally:
        context.close()
