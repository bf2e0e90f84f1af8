"""One wire vocabulary: events.py is its source; the JS client, its types, the Python
client, the benches and docs/protocol.md spell the same event types, final types and codes.

JavaScript cannot import Python, so legalstream.js and legalstream.d.ts keep their own
constants; these tests read them and compare. They also hold the payload classes to
the wire: ``to_payload()`` gives the keys in the wire's order, ``from_payload()``
reads partial or odd payloads without raising.

The parsers of docs/protocol.md here are used by tests/test_fuzz.py too.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from legalstream import events
from legalstream.events import FINAL_TYPES, ErrorCode, EventType

REPO = Path(__file__).resolve().parents[1]
WEB = REPO / "src" / "legalstream" / "web"
PROTOCOL_DOC = REPO / "docs" / "protocol.md"

EVENT_TYPES = {t.value for t in EventType}
FINAL = {t.value for t in FINAL_TYPES}
CODES = {c.value for c in ErrorCode}
#: Codes the clients make themselves for a RunError (no server frame carries them):
#: a query nobody acknowledged, and a run whose resume lost events it cannot get back.
CLIENT_RUN_ERROR_CODES = {"timeout", EventType.RESUME_FAILED.value}


# --- docs/protocol.md --------------------------------------------------------------------------


def markdown_table(markdown: str, header: str) -> list[list[str]]:
    """The body rows (cells, stripped) of the table whose header row starts with ``header``."""
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(header):
            rows = []
            for row in lines[i + 2 :]:  # after the header and its |---| line
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            assert rows, f"docs/protocol.md: the table {header!r} has no rows"
            return rows
    raise AssertionError(f"docs/protocol.md has no table starting {header!r}")


def _backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_event_types(markdown: str | None = None) -> set[str]:
    """The frame types of the "Event types" table (what a parenthesis says is not a type)."""
    markdown = markdown if markdown is not None else PROTOCOL_DOC.read_text()
    types: set[str] = set()
    for _group, cell in markdown_table(markdown, "| group | types |"):
        types.update(_backticked(re.sub(r"\([^)]*\)", "", cell)))
    return types


def documented_error_codes(markdown: str | None = None) -> set[str]:
    """The ``code`` values of the "Bad input" table."""
    markdown = markdown if markdown is not None else PROTOCOL_DOC.read_text()
    codes: set[str] = set()
    for row in markdown_table(markdown, "| input | code |"):
        codes.update(_backticked(re.sub(r"\([^)]*\)", "", row[-1])))
    return codes


def documented_close_codes(markdown: str | None = None) -> set[int]:
    """The WebSocket close codes of the "Closing codes" table."""
    markdown = markdown if markdown is not None else PROTOCOL_DOC.read_text()
    codes: set[int] = set()
    for row in markdown_table(markdown, "| close code | when |"):
        codes.update(int(code) for code in re.findall(r"\b(\d{4})\b", row[0]))
    return codes


def test_the_documented_event_types_are_the_protocols():
    assert documented_event_types() == EVENT_TYPES


def test_every_documented_error_code_is_an_error_code():
    documented = documented_error_codes()
    assert documented, "no codes found in the Bad input table"
    assert documented <= CODES, documented - CODES


def test_the_close_code_table_parses():
    assert {1000, 1001, 1002, 1007, 1009, 1011, 1013, 4401} <= documented_close_codes()


# --- the JavaScript client and its type declarations -------------------------------------------


def _dts_union(name: str) -> set[str]:
    source = (WEB / "legalstream.d.ts").read_text()
    match = re.search(rf"export type {name} =(.*?);", source, re.DOTALL)
    assert match, f"legalstream.d.ts declares no type {name}"
    return set(re.findall(r'"([^"]+)"', match.group(1)))


def test_dts_event_types_are_the_protocols():
    assert _dts_union("EventType") == EVENT_TYPES


def test_dts_final_types_are_the_protocols():
    assert _dts_union("FinalEventType") == FINAL


def test_dts_error_codes_are_the_protocols():
    assert _dts_union("ErrorCode") == CODES


JS = (WEB / "legalstream.js").read_text()


def test_js_final_types_are_the_protocols():
    match = re.search(r"const FINAL_TYPES = new Set\(\[(.*?)\]\)", JS)
    assert match, "legalstream.js has no FINAL_TYPES set"
    assert set(re.findall(r'"([^"]+)"', match.group(1))) == FINAL


def test_js_branches_on_frame_types_of_the_protocol():
    used = set(re.findall(r'\.type\s*[!=]==\s*"([^"]+)"', JS))
    assert len(used) >= 5, used  # the pattern still finds the client's comparisons
    assert used <= EVENT_TYPES, used - EVENT_TYPES


def test_js_compares_error_codes_of_the_protocol():
    used = set(re.findall(r'codeOf\([^)]*\)\s*[!=]==\s*"([^"]+)"', JS))
    assert used, "the pattern no longer finds the client's code comparisons"
    assert used <= CODES, used - CODES


def test_js_run_errors_carry_protocol_codes():
    used = set(re.findall(r'new RunError\("([^"]+)"', JS))
    assert used, "the pattern no longer finds the client's RunError codes"
    assert used <= CODES | CLIENT_RUN_ERROR_CODES, used - CODES - CLIENT_RUN_ERROR_CODES


# --- the Python client and the benches ------------------------------------------------------


def test_python_client_takes_final_types_from_events():
    from legalstream.client import cli, library

    assert library.FINAL_TYPES is FINAL_TYPES
    assert cli.FINAL_TYPES is FINAL_TYPES


@pytest.mark.parametrize("path", sorted((REPO / "bench").glob("*.py")), ids=lambda p: p.name)
def test_benches_do_not_spell_final_types(path):
    """The benches' clients end a run on FINAL_TYPES from events.py, never on a copy."""
    source = path.read_text()
    spelled = [t for t in FINAL if f'"{t}"' in source or f"'{t}'" in source]
    assert not spelled, f"{path.name} spells {spelled}: use legalstream.events.FINAL_TYPES"


def test_client_package_spells_no_frame_type():
    """Frame types in the Python client come from events.py (message types are the client's)."""
    # "error" is a frame key too (frame.get("error")): it cannot be told apart by spelling.
    vocabulary = (EVENT_TYPES | CODES) - {"error"}
    for name in ("library.py", "cli.py"):
        source = (REPO / "src" / "legalstream" / "client" / name).read_text()
        spelled = sorted(t for t in vocabulary if f'"{t}"' in source)
        assert not spelled, f"client/{name} spells {spelled}: use legalstream.events"


# --- payloads: keys in the wire's order, lenient parsing -------------------------------------


class _Citation:
    chunk_id = "case-1/complaint#3"
    doc_id = "case-1/complaint"
    title = "Complaint"
    case_id = 1
    page = None
    section = "¶ 7–10"
    char_start = 10
    char_end = 20
    quote = "7. On March 14"
    score = 0.5


def _keys(payload: dict) -> list[str]:
    return list(orjson.loads(orjson.dumps(payload)))


def test_payload_keys_are_in_wire_order():
    cit = events.CitationPayload.of(_Citation(), marker=2).to_payload()
    assert _keys(cit) == [
        "chunk_id", "doc_id", "title", "case_id", "page", "section",
        "char_start", "char_end", "quote", "score", "marker",
    ]  # fmt: skip
    assert "marker" not in events.CitationPayload.of(_Citation()).to_payload()
    assert _keys(events.RagQuery("q", 1, 5, "hybrid").to_payload()) == [
        "query", "case_id", "k", "mode",
    ]  # fmt: skip
    assert _keys(events.RagResult(1, [cit]).to_payload()) == ["count", "hits"]
    assert events.RagTiming(1.5).to_payload() == {"elapsed_ms": 1.5}
    assert _keys(events.RagTiming(1.5, 0).to_payload()) == ["elapsed_ms", "dropped_other_case"]
    assert _keys(events.ToolTiming(2.0, False).to_payload()) == ["elapsed_ms", "from_cache"]
    assert events.ToolResult("r").to_payload() == {"result": "r"}
    assert _keys(events.LLMCallStart("m", "c", True, 1).to_payload()) == [
        "model", "call_id", "stream", "step",
    ]  # fmt: skip
    assert _keys(events.LLMCallEnd("m", "c", None, "stop", 1).to_payload()) == [
        "model", "call_id", "usage", "finish_reason", "step",
    ]  # fmt: skip
    assert _keys(events.LLMCallError("m", None, 1).to_payload()) == ["model", "call_id", "step"]
    assert _keys(events.TokenUsage(1, 2, 3).to_payload()) == [
        "prompt_tokens", "completion_tokens", "total_tokens",
    ]  # fmt: skip
    assert events.StreamChunk("w ").to_payload() == {"chunk": "w "}
    assert _keys(events.FinalAnswer("a", [cit]).to_payload()) == ["answer", "citations"]
    assert _keys(events.RunFailure("q", 1, "cancelled").to_payload()) == [
        "query", "case_id", "code",
    ]  # fmt: skip


PAYLOADS = [
    events.CitationPayload,
    events.RagQuery,
    events.RagResult,
    events.RagTiming,
    events.ToolResult,
    events.ToolTiming,
    events.TokenUsage,
    events.LLMCallStart,
    events.LLMCallEnd,
    events.LLMCallError,
    events.StreamChunk,
    events.FinalAnswer,
    events.RunFailure,
]


@pytest.mark.parametrize("cls", PAYLOADS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("odd", [None, {}, [], "x", {"count": "3", "hits": "no", "usage": 7}])
def test_from_payload_never_raises(cls, odd):
    cls.from_payload(odd)


@pytest.mark.parametrize(
    "cls, payload",
    [
        (events.CitationPayload, events.CitationPayload.of(_Citation(), 3).to_payload()),
        (events.RagQuery, {"query": "q", "case_id": 1, "k": 5, "mode": "hybrid"}),
        (events.RagTiming, {"elapsed_ms": 3.25, "dropped_other_case": 0}),
        (events.ToolTiming, {"elapsed_ms": 4.5, "from_cache": False}),
        (events.LLMCallEnd, {"model": "m", "call_id": "c", "usage": {"total_tokens": 3, "x": 1},
                             "finish_reason": "stop", "step": 2}),
        (events.FinalAnswer, {"answer": "a [1]", "citations": [{"doc_id": "d"}]}),
        (events.RunFailure, {"query": "q", "case_id": 1, "code": "cancelled"}),
    ],
)  # fmt: skip
def test_round_trip(cls, payload):
    assert cls.from_payload(payload).to_payload() == payload


def test_error_code_of_a_frame():
    assert events.error_code({"code": "cancelled"}) == "cancelled"
    assert events.error_code({"metadata": {"code": "llm_failed"}}) == "llm_failed"
    assert events.error_code({"metadata": None}) is None
