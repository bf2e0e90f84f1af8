"""Case files with JWT auth, and their progress across workers on the Redis bus.

* Writes (create, upload, delete) need the ``documents`` scope; reads need
  ``query``; both need the token's ``cases`` claim to allow the case.
* Two app instances share a Redis bus: an upload ingested by one is seen live
  by an SSE subscriber of the other (each has its own engine and data dir,
  the case made on both; what is tested is the bus, not a shared store).
"""

from __future__ import annotations

import httpx
import pytest

from legalstream.app import create_app
from legalstream.settings import Settings
from support import ScriptedRunner, live_server
from test_auth import bearer, jwt_settings, make_token
from test_casefiles import COMPLAINT, SSE, casefile_server


@pytest.fixture(scope="module")
def jwt_srv(tmp_path_factory):
    settings = jwt_settings(tmp_path_factory.mktemp("casefiles-auth"))
    app = create_app(settings, runner_factory=lambda svc: ScriptedRunner(), load_engine=True)
    with live_server(app, settings) as server:
        yield server


def tok(cases="*", scope="query documents", sub="alice") -> dict[str, str]:
    return bearer(make_token(sub, cases=cases, scope=scope))


def test_writes_need_the_documents_scope(jwt_srv):
    url = jwt_srv.http
    assert httpx.post(f"{url}/cases", json={"title": "x"}, timeout=10).status_code == 401
    r = httpx.post(f"{url}/cases", json={"title": "x", "case_id": 60}, headers=tok(scope="query"))
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    # A token without a scope claim gets auth.default_scopes: query only.
    r = httpx.post(f"{url}/cases", json={"title": "x", "case_id": 60}, headers=tok(scope=None))
    assert r.status_code == 403
    r = httpx.post(f"{url}/cases", json={"title": "Sixty", "case_id": 60}, headers=tok())
    assert r.status_code == 201, r.text
    files = [("file", ("a.md", COMPLAINT.encode()))]
    r = httpx.post(f"{url}/cases/60/documents", files=files, headers=tok(scope="query"))
    assert r.status_code == 403
    r = httpx.post(f"{url}/cases/60/documents", files=files, headers=tok(scope="documents"))
    assert r.status_code == 202, r.text
    # Reads need query: documents alone is not enough.
    r = httpx.get(f"{url}/cases/60/documents", headers=tok(scope="documents"))
    assert r.status_code == 403
    assert httpx.get(f"{url}/cases/60/documents", headers=tok(scope="query")).status_code == 200
    r = httpx.delete(f"{url}/cases/60", headers=tok(scope="query"))
    assert r.status_code == 403
    # admin implies every scope.
    assert httpx.delete(f"{url}/cases/60", headers=tok(scope="admin")).status_code == 200


def test_the_cases_claim_is_respected(jwt_srv):
    url = jwt_srv.http
    assert (
        httpx.post(f"{url}/cases", json={"title": "a", "case_id": 61}, headers=tok()).status_code
        == 201
    )
    assert (
        httpx.post(f"{url}/cases", json={"title": "b", "case_id": 62}, headers=tok()).status_code
        == 201
    )
    only61 = tok(cases=[61])
    # Reads: the other case is forbidden, also its documents, one document and the stream.
    assert httpx.get(f"{url}/cases/61/documents", headers=only61).status_code == 200
    for path in (
        "/cases/62/documents",
        "/cases/62/documents/events",
        "/cases/62/documents/case-62/x.md",
    ):
        r = httpx.get(url + path, headers=only61, timeout=10)
        assert (r.status_code, r.json()["code"]) == (403, "forbidden_case"), (path, r.text)
    listed = httpx.get(f"{url}/cases", headers=only61).json()["cases"]
    assert {c["case_id"] for c in listed} <= {61}
    # Writes too.
    files = [("file", ("a.md", COMPLAINT.encode()))]
    assert httpx.post(f"{url}/cases/62/documents", files=files, headers=only61).status_code == 403
    assert httpx.delete(f"{url}/cases/62", headers=only61).status_code == 403
    r = httpx.post(f"{url}/cases", json={"title": "c", "case_id": 63}, headers=only61)
    assert r.status_code == 403
    # Without a case_id, a limited token gets the first of its cases that is free.
    r = httpx.post(f"{url}/cases", json={"title": "d"}, headers=tok(cases=[61, 64]))
    assert r.status_code == 201 and r.json()["case"]["case_id"] == 64
    r = httpx.post(f"{url}/cases", json={"title": "e"}, headers=tok(cases=[61, 64]))
    assert r.status_code == 403
    # The same limits on queries: a case the token does not allow is forbidden_case,
    # one it allows that does not exist is unknown_case.
    q = {"query": "Who signed?", "case_id": 65}
    r = httpx.post(f"{url}/query", json=q, headers=tok(cases=[61]), timeout=30)
    assert r.json()["code"] == "forbidden_case"
    r = httpx.post(f"{url}/query", json=q, headers=tok(cases=[65]), timeout=30)
    assert (r.status_code, r.json()["code"]) == (404, "unknown_case")


def test_progress_crosses_workers_on_the_redis_bus(redis_bus_settings, tmp_path):
    def settings(name: str) -> Settings:
        return Settings(
            rag={"data_dir": tmp_path / name, "ingest_sample_on_start": False},
            bus=redis_bus_settings.model_dump(),
        )

    a, b = settings("a"), settings("b")
    app_a = create_app(a, runner_factory=lambda svc: ScriptedRunner(), load_engine=True)
    app_b = create_app(b, runner_factory=lambda svc: ScriptedRunner(), load_engine=True)
    with casefile_server(app_a, a) as srv_a, casefile_server(app_b, b) as srv_b:
        for srv in (srv_a, srv_b):
            r = httpx.post(f"{srv.http}/cases", json={"title": "Shared", "case_id": 70})
            assert r.status_code == 201
        sse = SSE(f"{srv_b.http}/cases/70/documents/events")
        try:
            files = [("file", ("complaint.md", COMPLAINT.encode()))]
            job = httpx.post(f"{srv_a.http}/cases/70/documents", files=files, timeout=30).json()
            done = sse.wait_for("ingest_job_done", job["job_id"])["output_data"]
            assert done["ingested"] == 1
            kinds = [k for k, _ in sse.of_job(job["job_id"])]
            assert kinds.count("document_progress") >= 3 and "documents_changed" in kinds
        finally:
            sse.close()
        # A delete on B reaches a subscriber on A.
        sse = SSE(f"{srv_a.http}/cases/70/documents/events")
        try:
            httpx.delete(f"{srv_b.http}/cases/70", timeout=30)
            import time

            deadline = time.monotonic() + 10
            while not any(k == "documents_changed" for k, _ in sse.events):
                assert time.monotonic() < deadline, sse.events
                time.sleep(0.05)
        finally:
            sse.close()
