"""docs/asyncapi.json: generated from the code, valid AsyncAPI 3.0, served, and true.

Every frame the protocol tests receive through ``support.recv_json`` is checked
against the document's schema of its type (``support.check_frame``).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from legalstream.events import ErrorCode, EventType
from legalstream.server import protocol
from legalstream.server.asyncapi import (
    CLOSE_DESCRIPTIONS,
    FRAME_DESCRIPTIONS,
    asyncapi_document,
    render,
)
from node_tools import run_node

DOC = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.json"


def test_the_committed_document_is_what_the_generator_makes():
    assert DOC.read_bytes() == render(asyncapi_document()), (
        "docs/asyncapi.json is stale: python -m legalstream.server.asyncapi > docs/asyncapi.json"
    )


def test_the_asyncapi_parser_accepts_it():
    code, out, log = run_node("asyncapi_parse.mjs", str(DOC))
    assert code == 0 and out["errors"] == [], log
    assert out["version"] == "3.0.0"
    assert out["channels"] == ["/ws/query", "/cases/{case_id}/documents/events"]
    assert out["messages"] == len(asyncapi_document()["components"]["messages"])


def test_it_names_every_frame_message_error_and_close_code():
    doc = asyncapi_document()
    messages = doc["components"]["messages"]
    assert set(FRAME_DESCRIPTIONS) == set(EventType)
    for kind in EventType:
        assert messages[f"frame.{kind.value}"]["payload"]["properties"]["type"] == {
            "const": kind.value
        }
    assert "frame.agui" in messages
    for kind in ("query", "cancel", "resume", "replay", "subscribe"):
        assert f"client.{kind}" in messages
    query = messages["client.query"]["payload"]
    assert query["required"] == ["query", "case_id"]
    assert query["properties"]["dialect"] == {"enum": ["legalstream", "ag-ui"]}
    assert doc["x-error-codes"] == [code.value for code in ErrorCode]
    error_codes = messages["frame.error"]["payload"]["properties"]["code"]["enum"]
    assert error_codes == [code.value for code in ErrorCode]
    constants = {n: getattr(protocol, n) for n in vars(protocol) if n.startswith("CLOSE_")}
    assert set(CLOSE_DESCRIPTIONS) == set(constants)
    listed = {c["code"] for c in doc["x-close-codes"]}
    assert set(constants.values()) | {1002, 1007} == listed


def test_it_is_served(server):
    response = httpx.get(f"{server.http}/asyncapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == asyncapi_document(server.settings.server)
