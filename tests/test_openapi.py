"""``/openapi.json`` describes every HTTP route, and schemathesis holds the server to it.

schemathesis generates requests for every operation (valid and invalid
bodies, parameters and headers) against the real app on uvicorn with JWT
auth and rate limits on (ScriptedRunner as producer), and fails on a 5xx, a
status code, content type, header or body the schema does not describe.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from legalstream.app import create_app
from legalstream.server.openapi import openapi_document
from support import ScriptedRunner, live_server
from test_auth import bearer, jwt_settings, make_token

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES = 20
#: Every scope, every case: schemathesis should reach the handlers, not only 401/403.
TOKEN = make_token("fuzzer", cases="*", scope="query status admin", exp_in=3600)


@pytest.fixture(scope="module")
def api_server():
    with tempfile.TemporaryDirectory() as tmp:
        s = jwt_settings(Path(tmp))
        s.limits = s.limits.model_copy(update={"enabled": True})
        runner = ScriptedRunner(steps=1, delay=0.0)
        # The engine too (no sample cases): the case file operations reach it.
        app = create_app(s, runner_factory=lambda svc: runner, load_engine=True)
        with live_server(app, s) as srv:
            yield srv


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_to_the_schema(api_server, mode):
    # The operations one by one with hypothesis, not schemathesis' pytest plugin (its
    # lazy fixture loader reads a private attribute pytest 9 no longer has).
    api = schemathesis.openapi.from_url(f"{api_server.http}/openapi.json")
    tested = []
    for result in api.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case):
            case.call_and_validate(
                base_url=api_server.http, headers=bearer(TOKEN), checks=CHECKS, timeout=30
            )

        try:
            check()
        except Unsatisfiable:
            # Nothing to get wrong (no body, parameters or headers): no negative case exists.
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        tested.append(operation.label)
    described = {
        f"{m.upper()} {p}" for p, item in openapi_document()["paths"].items() for m in item
    }
    if mode is GenerationMode.POSITIVE:
        # schemathesis leaves out the document's own URL (it loaded it: that is the test).
        assert set(tested) == described - {"GET /openapi.json"}
    else:
        assert {"POST /query", "POST /agui", "GET /agui/runs/{run_id}"} <= set(tested)


def test_without_a_token_every_protected_operation_is_401(api_server):
    doc = httpx.get(f"{api_server.http}/openapi.json", timeout=10).json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if operation.get("security") == []:
                continue
            url = api_server.http + path.replace("{run_id}", "0" * 32)
            response = httpx.request(method.upper(), url, timeout=10)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["code"] == "unauthorized"


def test_every_http_route_is_described(tmp_settings):
    app = create_app(tmp_settings, runner_factory=lambda svc: ScriptedRunner())
    doc = openapi_document(tmp_settings)
    routes = {
        # A convertor ({doc_id:path}) is Starlette's: OpenAPI names the parameter only.
        (re.sub(r":\w+}", "}", route.path), method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path != "/"
        for method in (route.methods or ())
        if method != "HEAD"
    }
    described = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert routes == described
