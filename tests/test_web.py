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
    assert 'src="static/app.js"' in html and '<label for="question">' in html
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


# ----------------------------------------------------------------------- mounted under /legal/ + case files


def _starlette_host(legal):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/legal", legal)], lifespan=lambda app: legal.lifespan(legal))


def _fastapi_host(legal):
    import contextlib

    fastapi = pytest.importorskip("fastapi")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with legal.lifespan(legal):
            yield

    host = fastapi.FastAPI(lifespan=lifespan)
    host.mount("/legal", legal)
    return host


@pytest.fixture(scope="module")
def mounted_data():
    """One data dir for both hosts (one after the other): the sample cases are embedded once."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


@pytest.fixture(scope="module", params=["starlette", "fastapi"])
def mounted_server(request, mounted_data):
    """The real app (retrieval engine, CrewAI offline agent) mounted at /legal in a host app."""
    settings = Settings(rag={"data_dir": mounted_data}, runs={"resume_grace_seconds": 10.0})
    make_host = _starlette_host if request.param == "starlette" else _fastapi_host
    with live_server(make_host(create_app(settings)), settings) as srv:
        yield srv


def _mounted_page(browser, server, viewport):
    context = browser.new_context(viewport=viewport, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # No trailing slash: the host redirects to /legal/, so relative URLs resolve under it.
    page.goto(server.http + "/legal")
    assert page.url == server.http + "/legal/"
    page.wait_for_function("document.querySelector('#conn').dataset.state === 'open'")
    return context, page, errors


def _new_case(page, title):
    """The page's "New case" action: a title, then the new case is the selected one."""
    page.get_by_role("button", name="New case").click()
    page.get_by_label("Title", exact=True).fill(title)
    page.get_by_role("button", name="Create").click()
    page.wait_for_function(
        f"document.querySelector('#case').selectedOptions[0]?.text.includes({title!r})"
    )


def _watch_final(page):
    page.evaluate(
        "() => window.legalstream.on('agent_execution_complete', (e) => { window.__final = e; })"
    )


def _ask(page, question):
    page.get_by_label("Question", exact=True).fill(question)
    page.get_by_role("button", name="Ask").click()
    page.wait_for_selector("#run-state[data-kind='complete']", timeout=60_000)


def _open_first_citation(page):
    """Open the reader on the first citation; the <mark> must be the citation's quote."""
    quote = page.evaluate("window.__final.output_data.citations[0].quote")
    page.locator("#citations .citation button.cite-title").first.click()
    page.wait_for_selector("#reader[open] .reader-text mark", timeout=10_000)
    mark = page.locator("#reader .reader-text mark")
    assert mark.text_content() == quote
    assert mark.is_visible()
    # Scrolled into view inside the reader.
    box, body = mark.bounding_box(), page.locator("#reader-body").bounding_box()
    assert body["y"] <= box["y"] < body["y"] + body["height"], (box, body)
    return quote


def test_browser_mounted_under_prefix(browser, mounted_server):
    """Styled, cases listed, a query streams to its answer: the page under /legal/ (both hosts)."""
    context, page, errors = _mounted_page(browser, mounted_server, LAPTOP)
    try:
        # The stylesheet loaded from /legal/static/ (not the host's /static/).
        radius = page.evaluate("getComputedStyle(document.querySelector('.card')).borderRadius")
        assert radius == "10px", radius
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        options = page.locator("#case option").all_inner_texts()
        assert any(re.match(r"Case 1 · .+ · \d+ documents?$", o) for o in options), options
        # The case's documents, from /legal/cases/1/documents.
        page.wait_for_selector("#documents .doc")
        _watch_final(page)
        _ask(
            page,
            "Within how many hours must the Warehouse notify the Customer of a Temperature Excursion?",
        )
        assert page.locator("#answer").inner_text().strip()
        assert page.evaluate("window.legalstream.url").endswith("/legal/ws/query")
        assert page.locator("#citations .citation").count() >= 1
        assert not errors, errors
    finally:
        context.close()


def _docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Charter Party Addendum", level=1)
    d.add_heading("Clause 4. Demurrage", level=2)
    d.add_paragraph(
        "The Charterer shall pay demurrage at the rate of 17,250 US dollars per day or pro rata "
        "for any part of a day, payable every fifteen days upon receipt of the Owner's invoice."
    )
    d.add_heading("Clause 5. Master", level=2)
    d.add_paragraph(
        "The vessel Aurora Kestrel is commanded by Captain Ingrid Halvorsen, who shall keep the "
        "deck log in English and deliver a copy to the Charterer at each port of discharge."
    )
    d.save(path)
    return path


@pytest.mark.parametrize("mounted_server", ["starlette"], indirect=True)
def test_browser_case_files_upload_ask_and_read(browser, mounted_server, tmp_path):
    """New case, .docx upload with live progress, a question answered from it, the cited span."""
    context, page, errors = _mounted_page(browser, mounted_server, LAPTOP)
    try:
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        _new_case(page, "Aurora Kestrel charter")
        label = page.locator("#case").evaluate("s => s.selectedOptions[0].text")
        assert re.match(r"Case \d+ · Aurora Kestrel charter", label), label
        page.wait_for_selector("#documents-card[data-live='open']")
        page.evaluate(
            """() => {
            window.__phases = [];
            new MutationObserver((records) => {
              for (const r of records) if (r.attributeName === 'data-phase') {
                window.__phases.push(r.oldValue, r.target.dataset.phase);
              }
            }).observe(document.querySelector('#uploads'),
                       {subtree: true, attributes: true, attributeOldValue: true});
        }"""
        )
        # The file-picker button's input (drag and drop: test_browser_drop_upload_and_delete).
        page.locator("#file-input").set_input_files(str(_docx(tmp_path / "charter.docx")))
        row = page.locator(".upload[data-name='charter.docx']")
        row.wait_for()
        page.wait_for_selector(
            ".upload[data-name='charter.docx'][data-phase='done']", timeout=60_000
        )
        assert row.locator(".upload-state").inner_text().startswith("Done:")
        assert "embedding" in page.evaluate("window.__phases"), page.evaluate("window.__phases")
        # documents_changed refreshed the list.
        doc = page.locator("#documents .doc").first
        doc.wait_for()
        facts = doc.locator(".doc-facts").inner_text()
        assert "DOCX" in facts and "chunk" in facts and "added" in facts, facts
        page.wait_for_function(
            "document.querySelector('#case').selectedOptions[0].text.endsWith('1 document')"
        )

        _watch_final(page)
        _ask(page, "Who commands the vessel Aurora Kestrel?")
        assert "Halvorsen" in page.locator("#answer").inner_text()
        quote = _open_first_citation(page)
        assert page.locator("#reader-title").inner_text().strip()
        # Esc closes the reader.
        page.keyboard.press("Escape")
        page.wait_for_function("!document.querySelector('#reader').open")
        # The close button too.
        page.locator("#citations .citation button.cite-title").first.click()
        page.wait_for_selector("#reader[open] .reader-text mark")
        page.get_by_role("button", name="Close the document").click()
        page.wait_for_function("!document.querySelector('#reader').open")
        assert quote and not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("mounted_server", ["starlette"], indirect=True)
def test_browser_drop_upload_and_delete(browser, mounted_server):
    """Dropped files: refused or failed ones say why; one ingested, then deleted (confirmed)."""
    context, page, errors = _mounted_page(browser, mounted_server, LAPTOP)
    try:
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        _new_case(page, "Dropped files")
        page.wait_for_selector("#documents-card[data-live='open']")

        def drop(name: str, text: str) -> None:
            data = page.evaluate_handle(
                """([name, text]) => {
                const dt = new DataTransfer();
                dt.items.add(new File([text], name));
                return dt;
            }""",
                [name, text],
            )
            page.dispatch_event("#dropzone", "drop", {"dataTransfer": data})

        # Refused upload (415): the row says why.
        drop("tool.exe", "MZ")
        refused = page.locator(".upload[data-name='tool.exe'][data-phase='failed']")
        refused.wait_for(timeout=30_000)
        assert "unsupported_type" in refused.inner_text(), refused.inner_text()
        # A file that cannot be parsed: accepted, then failed with the parser's reason (SSE).
        drop("broken.docx", "this is not a zip archive")
        broken = page.locator(".upload[data-name='broken.docx'][data-phase='failed']")
        broken.wait_for(timeout=60_000)
        assert re.search(r"Failed: \S", broken.inner_text()), broken.inner_text()
        drop("notice.md", "# Notice\n\nThe lease ends on 30 June 2030 unless renewed in writing.\n")
        page.wait_for_selector(".upload[data-name='notice.md'][data-phase='done']", timeout=60_000)
        doc = page.locator("#documents .doc")
        doc.first.wait_for()
        assert doc.count() == 1
        page.once("dialog", lambda dialog: dialog.accept())
        doc.first.get_by_role("button", name=re.compile("^Delete")).click()
        page.wait_for_function("document.querySelectorAll('#documents .doc').length === 0")
        assert page.locator("#documents-empty").is_visible()
        assert not errors, errors
    finally:
        context.close()


@pytest.mark.parametrize("mounted_server", ["starlette"], indirect=True)
def test_browser_reader_at_phone_width(browser, mounted_server):
    """375 px: nothing scrolls sideways, and the citation reader takes the whole screen."""
    phone = {"width": 375, "height": 740}
    context, page, errors = _mounted_page(browser, mounted_server, phone)
    try:
        page.wait_for_function("document.querySelector('#case').options.length >= 2")
        page.get_by_label("Case", exact=True).select_option("1")
        _watch_final(page)
        _ask(
            page,
            "Under the storage agreement, how cold did the warehouse have to keep the freezer room?",
        )
        assert page.evaluate("document.scrollingElement.scrollWidth") <= phone["width"]
        _open_first_citation(page)
        box = page.locator("#reader").bounding_box()
        assert box["x"] == 0 and box["y"] == 0, box
        assert box["width"] == phone["width"] and box["height"] == phone["height"], box
        assert page.evaluate("document.scrollingElement.scrollWidth") <= phone["width"]
        assert page.get_by_role("button", name="Close the document").is_visible()
        page.keyboard.press("Escape")
        page.wait_for_function("!document.querySelector('#reader').open")
        assert not errors, errors
    finally:
        context.close()


def test_browser_case_files_with_a_jwt(browser, tmp_path):
    """auth.mode jwt: the page's token goes on every case-file call, the SSE stream included."""
    from test_auth import jwt_settings, make_token

    settings = jwt_settings(tmp_path)
    legal = create_app(settings, runner_factory=lambda svc: ScriptedRunner(), load_engine=True)
    token = make_token("alice", cases="*", scope="query documents")
    with live_server(_starlette_host(legal), settings) as server:
        context = browser.new_context(viewport=LAPTOP, device_scale_factor=1)
        context.add_init_script(f"sessionStorage.setItem('legalstream.token', {token!r})")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(server.http + "/legal/")
            page.wait_for_function("document.querySelector('#conn').dataset.state === 'open'")
            _new_case(page, "Sealed matter")
            page.wait_for_selector("#documents-card[data-live='open']")
            page.locator("#file-input").set_input_files(
                files=[
                    {
                        "name": "memo.md",
                        "mimeType": "text/markdown",
                        "buffer": b"# Memo\n\nSealed.\n",
                    }
                ]
            )
            page.wait_for_selector(
                ".upload[data-name='memo.md'][data-phase='done']", timeout=60_000
            )
            page.locator("#documents .doc").first.wait_for()
            assert not errors, errors
        finally:
            context.close()
        # Without the token the page says it needs one.
        context = browser.new_context(viewport=LAPTOP, device_scale_factor=1)
        try:
            page = context.new_page()
            page.goto(server.http + "/legal/")
            page.wait_for_selector("#alert:not([hidden])")
            assert "sign-in" in page.locator("#alert-text").inner_text()
        finally:
            context.close()
