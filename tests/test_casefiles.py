"""Case files over HTTP (issue 17), against the real app on uvicorn with the real engine.

The engine runs on a temp data dir (no sample corpus); the producer is a small
runner that searches the engine, so a query's answer says what it retrieved.
Uploads go through the ingest worker; its progress is read from the SSE stream
while it happens.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from legalstream.agent.api import RunOutcome
from legalstream.app import create_app
from legalstream.server.uvicorn_ext import Server
from legalstream.settings import Settings
from support import LiveServer, check_frame, recv_json

COMPLAINT = """# Complaint

## NATURE OF THE ACTION

1. This action arises from the destruction of frozen seafood stored in a refrigerated warehouse.

2. The compressor serving freezer Chamber 3B failed over a weekend and the alarm was in bypass.

## COUNT I — BREACH OF CONTRACT

14. Meridian breached Section 4.1 of the Agreement by failing to keep the chamber cold.
"""

NOTES = "Meeting notes. The parties met on March 3 and agreed on a cure period of thirty days.\n"


def write_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Declaration of Sandra Whitlock", level=0)
    d.add_paragraph("3. On January 9, 2023 I sent Declared Value Form DV-7 at $7.25 per pound.")
    d.add_paragraph("4. Meridian accepted the form in writing on January 17, 2023.")
    d.save(str(path))
    return path


class SearchRunner:
    """A producer that only retrieves: its answer lists the doc ids it found."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def run(self, request: Any, emit: Any, cancelled: threading.Event) -> RunOutcome:
        hits = self.svc.engine.search(request.query, request.case_id, k=20, cut_off=False)
        docs = sorted({h.doc_id for h in hits})
        chunks = {d: sum(1 for h in hits if h.doc_id == d) for d in docs}
        return RunOutcome(answer=json.dumps(chunks), citations=[])


def casefile_settings(data_dir: Path, store: str = "edge", **casefiles: Any) -> Settings:
    rag: dict[str, Any] = {"data_dir": data_dir, "ingest_sample_on_start": False, "store": store}
    if store == "qdrant":  # qdrant-client's local mode: the Qdrant server code path, in process
        rag["qdrant_path"] = ":memory:"
    return Settings(rag=rag, casefiles=casefiles)


@contextlib.contextmanager
def casefile_server(app: Any, settings: Settings) -> Iterator[LiveServer]:
    """A live server as ``legalstream serve`` runs it: its stop runs the app's graceful
    shutdown first (jobs end, progress streams close), not only uvicorn's."""
    server = LiveServer(app, settings)
    server.server = Server(server.server.config)
    server.thread = threading.Thread(target=server.server.run, daemon=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", params=["edge", "qdrant"])
def srv(request, tmp_path_factory):
    """Both stores: Qdrant Edge owned by the server, and the Qdrant client's store."""
    settings = casefile_settings(
        tmp_path_factory.mktemp("casefiles") / "data",
        request.param,
        max_file_bytes=200_000,
        max_upload_bytes=600_000,
        max_files=5,
    )
    app = create_app(settings, runner_factory=SearchRunner, load_engine=True)
    with casefile_server(app, settings) as server:
        yield server


class SSE:
    """Reads ``GET /cases/{id}/documents/events`` on a thread, event by event."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.comments: list[str] = []
        self._url = url
        self._headers = headers or {}
        self._open = threading.Event()
        self._cond = threading.Condition()
        self.status: int | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(60, read=120))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._open.wait(10), "the SSE stream did not open"

    def _read(self) -> None:
        try:
            with self._client.stream("GET", self._url, headers=self._headers) as r:
                self._response = r
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                kind = None
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line)
                        self._open.set()
                    elif line.startswith("event: "):
                        kind = line[len("event: ") :]
                    elif line.startswith("data: "):
                        event = json.loads(line[len("data: ") :])
                        with self._cond:
                            self.events.append((kind or "", event))
                            self._cond.notify_all()
        except (httpx.HTTPError, RuntimeError):
            pass
        finally:
            self._open.set()

    def wait_for(self, kind: str, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for k, e in self.events:
                    if k == kind and (e["output_data"] or {}).get("job_id") == job_id:
                        return e
                left = deadline - time.monotonic()
                assert left > 0, f"no {kind} for job {job_id}: {self.events}"
                self._cond.wait(left)

    def of_job(self, job_id: str) -> list[tuple[str, dict[str, Any]]]:
        with self._cond:
            return [
                (k, e) for k, e in self.events if (e["output_data"] or {}).get("job_id") == job_id
            ]

    def close(self) -> None:
        # Hang up (the server then ends the stream), from this thread.
        response = getattr(self, "_response", None)
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
        self._client.close()
        self._thread.join(10)


def create(srv, title: str, case_id: int | None = None) -> httpx.Response:
    body: dict[str, Any] = {"title": title}
    if case_id is not None:
        body["case_id"] = case_id
    return httpx.post(f"{srv.http}/cases", json=body, timeout=30)


def upload(srv, case_id: int, files: list[tuple[str, bytes]], **form: str) -> httpx.Response:
    return httpx.post(
        f"{srv.http}/cases/{case_id}/documents",
        files=[("file", (name, data)) for name, data in files],
        data=form,
        timeout=60,
    )


def test_create_upload_and_watch_it_live(srv, tmp_path):
    r = create(srv, "Bluewater v. Meridian", 41)
    assert r.status_code == 201, r.text
    assert r.json()["case"] == {**r.json()["case"], "case_id": 41, "title": "Bluewater v. Meridian"}
    assert create(srv, "again", 41).json()["code"] == "case_exists"
    assert create(srv, "again", 41).status_code == 409
    listed = httpx.get(f"{srv.http}/cases", timeout=10).json()["cases"]
    assert any(c["case_id"] == 41 and c["documents"] == 0 for c in listed)

    sse = SSE(f"{srv.http}/cases/41/documents/events")
    try:
        assert sse.status == 200 and sse.content_type.startswith("text/event-stream")
        # One file, with a title.
        r = upload(srv, 41, [("complaint.md", COMPLAINT.encode())], title="The Complaint")
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["case_id"] == 41 and job["files"] == [
            {"name": "complaint.md", "size": len(COMPLAINT.encode())}
        ]
        done = sse.wait_for("ingest_job_done", job["job_id"])["output_data"]
        assert (done["ingested"], done["failed"], done["case_id"]) == (1, 0, 41)
        phases = [
            e["output_data"]["phase"]
            for k, e in sse.of_job(job["job_id"])
            if k == "document_progress"
        ]
        assert phases[0] == "parsing" and phases[-1] == "done" and "embedding" in phases
        embedding = [
            e["output_data"]
            for k, e in sse.of_job(job["job_id"])
            if k == "document_progress" and e["output_data"]["phase"] == "embedding"
        ]
        assert embedding[-1]["chunks_total"] > 0
        assert embedding[-1]["chunks_done"] == embedding[-1]["chunks_total"]
        kinds = [k for k, _ in sse.of_job(job["job_id"])]
        assert kinds[-2:] == ["documents_changed", "ingest_job_done"]
        changed = sse.of_job(job["job_id"])[-2][1]["output_data"]
        assert changed["added"] == ["case-41/complaint.md"] and changed["removed"] == []
        for kind, event in sse.of_job(job["job_id"]):
            assert event["type"] == kind and event["metadata"] == {"case_id": 41}
            check_frame(event)  # each keeps to its schema in docs/asyncapi.json

        # Several files at once: .docx made with python-docx, .txt.
        docx_bytes = write_docx(tmp_path / "declaration.docx").read_bytes()
        r = upload(srv, 41, [("declaration.docx", docx_bytes), ("notes.txt", NOTES.encode())])
        assert r.status_code == 202, r.text
        job2 = r.json()["job_id"]
        done = sse.wait_for("ingest_job_done", job2)["output_data"]
        assert (done["ingested"], done["failed"]) == (2, 0), done
        files = {
            (
                e["output_data"]["name"],
                e["output_data"]["file_index"],
                e["output_data"]["files_total"],
            )
            for k, e in sse.of_job(job2)
            if k == "document_progress"
        }
        assert files == {("declaration.docx", 1, 2), ("notes.txt", 2, 2)}
    finally:
        sse.close()

    docs = httpx.get(f"{srv.http}/cases/41/documents", timeout=10).json()
    assert docs["case_id"] == 41
    by_id = {d["doc_id"]: d for d in docs["documents"]}
    assert set(by_id) == {"case-41/complaint.md", "case-41/declaration.docx", "case-41/notes.txt"}
    complaint = by_id["case-41/complaint.md"]
    assert complaint["title"] == "The Complaint" and complaint["file_type"] == "markdown"
    assert complaint["chunks"] > 0 and complaint["size_bytes"] == len(COMPLAINT.encode())
    assert complaint["content_hash"] and complaint["ingested_at"]
    assert by_id["case-41/declaration.docx"]["file_type"] == "docx"

    # One document, its text, and a highlighted span.
    url = f"{srv.http}/cases/41/documents/case-41/complaint.md"
    doc = httpx.get(url, timeout=10).json()
    start = doc["text"].index("Chamber 3B")
    hl = httpx.get(url, params={"start": start, "end": start + 10}, timeout=10).json()
    assert hl["highlight"] == {"start": start, "end": start + 10, "text": "Chamber 3B"}
    bad = httpx.get(url, params={"start": 5, "end": 1}, timeout=10)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_field"
    missing = httpx.get(f"{srv.http}/cases/41/documents/case-41/nope.md", timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_document"

    # Delete one document, then the case.
    r = httpx.delete(f"{srv.http}/cases/41/documents/case-41/notes.txt", timeout=30)
    assert r.status_code == 200 and r.json()["doc_id"] == "case-41/notes.txt"
    assert r.json()["deleted_chunks"] >= 1
    again = httpx.delete(f"{srv.http}/cases/41/documents/case-41/notes.txt", timeout=30)
    assert again.status_code == 404 and again.json()["code"] == "unknown_document"
    r = httpx.delete(f"{srv.http}/cases/41", timeout=30)
    assert r.status_code == 200 and r.json()["case_id"] == 41 and r.json()["deleted_chunks"] > 0
    gone = httpx.get(f"{srv.http}/cases/41/documents", timeout=10)
    assert gone.status_code == 404 and gone.json()["code"] == "unknown_case"
    assert httpx.delete(f"{srv.http}/cases/41", timeout=10).json()["code"] == "unknown_case"


def test_create_without_an_id_takes_the_next_free_one(srv):
    a = create(srv, "first").json()["case"]["case_id"]
    b = create(srv, "second").json()["case"]["case_id"]
    assert b == a + 1
    r = httpx.post(f"{srv.http}/cases", json={"title": ""}, timeout=10)
    assert r.status_code == 422 and r.json()["code"] == "invalid_field"


def test_upload_refusals_carry_codes(srv):
    assert create(srv, "limits", 42).status_code == 201
    r = upload(srv, 999_999, [("a.md", b"# A")])
    assert (r.status_code, r.json()["code"]) == (404, "unknown_case")
    r = upload(srv, 42, [("run.exe", b"MZ")])
    assert (r.status_code, r.json()["code"]) == (415, "unsupported_type")
    r = upload(srv, 42, [("big.txt", b"x" * 200_001)])
    assert (r.status_code, r.json()["code"]) == (413, "file_too_large")
    r = upload(srv, 42, [(f"f{i}.txt", b"x" * 150_000) for i in range(5)])
    assert (r.status_code, r.json()["code"]) == (413, "upload_too_large")
    r = upload(srv, 42, [], title="no file")
    assert (r.status_code, r.json()["code"]) == (400, "invalid_upload")
    r = upload(srv, 42, [("a.md", b"# A"), ("b.md", b"# B")], title="one title, two files")
    assert (r.status_code, r.json()["code"]) == (400, "invalid_upload")
    r = httpx.post(f"{srv.http}/cases/42/documents", json={"file": "x"}, timeout=10)
    assert (r.status_code, r.json()["code"]) == (400, "invalid_upload")
    # A chunked body (no Content-Length) is cut at the limit too.
    boundary = "b0undary"

    def chunks():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\n'.encode()
        for _ in range(100):
            yield b"y" * 10_000
        yield f"\r\n--{boundary}--\r\n".encode()

    r = httpx.post(
        f"{srv.http}/cases/42/documents",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert (r.status_code, r.json()["code"]) == (413, "upload_too_large")
    unknown = httpx.get(f"{srv.http}/cases/999999/documents/events", timeout=10)
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_case")


async def test_unknown_case_over_websocket_and_post_query(srv):
    async with websockets.connect(srv.ws) as ws:
        await recv_json(ws)  # connection_established
        await ws.send(json.dumps({"query": "Who signed?", "case_id": 777_777}))
        frame = await recv_json(ws)
        assert frame["type"] == "error" and frame["code"] == "unknown_case"
        assert frame["run_id"] is None
    async with httpx.AsyncClient(base_url=srv.http, timeout=30) as http:
        r = await http.post("/query", json={"query": "Who signed?", "case_id": 777_777})
        assert (r.status_code, r.json()["code"]) == (404, "unknown_case")
        runs = (await http.get("/runs", params={"case_id": 777_777})).json()["runs"]
    assert runs == []


def test_a_query_during_an_ingest_sees_the_document_wholly_or_not_at_all(srv):
    assert create(srv, "visibility", 43).status_code == 201
    # A document of many chunks: its embedding takes a while.
    text = "# Long Agreement\n\n" + "\n\n".join(
        f"## Section {i}\n\n{i}.1 The warehouse shall keep chamber {i} at minus ten degrees; "
        f"the operator inspects compressor {i} every week and logs alarm tests."
        for i in range(1, 121)
    )
    sse = SSE(f"{srv.http}/cases/43/documents/events")
    try:
        job = upload(srv, 43, [("long.md", text.encode())]).json()["job_id"]
        seen: list[int] = []
        total = None
        while True:
            r = httpx.post(
                f"{srv.http}/query",
                json={"query": "compressor chamber warehouse alarm", "case_id": 43},
                timeout=60,
            )
            assert r.status_code == 200, r.text
            found = json.loads(r.json()["answer"])
            seen.append(found.get("case-43/long.md", 0))
            done = [k for k, _ in sse.of_job(job) if k == "ingest_job_done"]
            if done:
                docs = httpx.get(f"{srv.http}/cases/43/documents", timeout=10).json()["documents"]
                total = docs[0]["chunks"]
                break
        final = httpx.post(
            f"{srv.http}/query",
            json={"query": "compressor chamber warehouse alarm", "case_id": 43},
            timeout=60,
        )
        assert json.loads(final.json()["answer"]).get("case-43/long.md") == min(20, total)
        # Before it is published: nothing of it; after: all of what k allows. Never a part.
        assert all(n in (0, min(20, total)) for n in seen), seen
    finally:
        sse.close()


def long_document(sections: int) -> bytes:
    return (
        "# Long Agreement\n\n"
        + "\n\n".join(
            f"## Section {i}\n\n{i}.1 The warehouse shall keep chamber {i} at minus ten degrees; "
            f"the operator inspects compressor {i} every week and logs alarm tests."
            for i in range(1, sections + 1)
        )
    ).encode()


def test_a_full_queue_is_ingest_busy_and_a_job_past_its_deadline_fails(tmp_path):
    settings = casefile_settings(tmp_path / "data", queue_size=1, job_timeout_seconds=1.0)
    app = create_app(settings, runner_factory=SearchRunner, load_engine=True)
    with casefile_server(app, settings) as server:
        assert create(server, "busy", 44).status_code == 201
        sse = SSE(f"{server.http}/cases/44/documents/events")
        try:
            slow = upload(server, 44, [("slow.md", long_document(400))])
            assert slow.status_code == 202
            # The first job runs, the second waits in the queue (size 1), the third is refused.
            queued = upload(server, 44, [("queued.md", b"# Queued\n\nA short note.")])
            refused = upload(server, 44, [("refused.md", b"# Refused\n\nA short note.")])
            assert queued.status_code == 202
            assert (refused.status_code, refused.json()["code"]) == (503, "ingest_busy")
            assert refused.headers["retry-after"]
            done = sse.wait_for("ingest_job_done", slow.json()["job_id"])["output_data"]
            assert done["failed"] == 1 and "longer than 1 s" in done["files"][0]["error"]
            failed = [
                e["output_data"]
                for k, e in sse.of_job(slow.json()["job_id"])
                if k == "document_progress" and e["output_data"]["phase"] == "failed"
            ]
            assert failed and "longer than 1 s" in failed[-1]["error"]
            done = sse.wait_for("ingest_job_done", queued.json()["job_id"])["output_data"]
            assert done["ingested"] == 1
        finally:
            sse.close()
        docs = httpx.get(f"{server.http}/cases/44/documents", timeout=10).json()["documents"]
        # The stopped document was never published: nothing of it is in the case.
        assert [d["doc_id"] for d in docs] == ["case-44/queued.md"]


def test_shutdown_ends_the_progress_streams_and_stops_the_running_job(tmp_path):
    settings = casefile_settings(tmp_path / "data")
    app = create_app(settings, runner_factory=SearchRunner, load_engine=True)
    server = casefile_server(app, settings)
    srv = server.__enter__()
    stopped = False
    try:
        assert create(srv, "stopping", 45).status_code == 201
        sse = SSE(f"{srv.http}/cases/45/documents/events")
        job = upload(srv, 45, [("slow.md", long_document(400))]).json()["job_id"]
        deadline = time.monotonic() + 60
        while not sse.of_job(job):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        began = time.monotonic()
        server.__exit__(None, None, None)
        stopped = True
        assert time.monotonic() - began < 15
        assert not srv.thread.is_alive()
        done = [e["output_data"] for k, e in sse.of_job(job) if k == "ingest_job_done"]
        assert done and done[0]["failed"] == 1, sse.of_job(job)[-3:]
        assert "shutting down" in done[0]["files"][0]["error"]
        sse._thread.join(5)
        assert not sse._thread.is_alive()  # the stream ended with the server
        sse.close()
    finally:
        if not stopped:
            server.__exit__(None, None, None)
    assert not (tmp_path / "data" / "server.json").exists()
