"""docs/protocol.md's "Final frames" table lists the codes a run can end with.

The run machinery's codes (cancel, timeout, the agent's failures, the grounding
check's) must be documented there, and every documented one must be an ErrorCode;
the JS types spell the same codes (tests/test_wire_vocabulary.py checks them all).
"""

from __future__ import annotations

import re

from legalstream.events import UNVERIFIED_CODES, ErrorCode
from test_wire_vocabulary import PROTOCOL_DOC, markdown_table

#: What a run's final agent_execution_error can carry.
FINAL_CODES = {
    ErrorCode.CANCELLED,
    ErrorCode.TIMEOUT,
    ErrorCode.LLM_FAILED,
    ErrorCode.RETRIEVAL_FAILED,
    ErrorCode.UNGROUNDED_ANSWER,
    ErrorCode.TRUNCATED_ANSWER,
    ErrorCode.AGENT_FAILED,
    ErrorCode.WORKER_LOST,
}


def documented_final_codes() -> set[str]:
    rows = markdown_table(PROTOCOL_DOC.read_text(), "| final code | when |")
    return {code for row in rows for code in re.findall(r"`([^`]+)`", row[0])}


def test_every_final_code_is_documented_and_is_an_error_code():
    documented = documented_final_codes()
    assert documented == {c.value for c in FINAL_CODES}
    assert documented <= {c.value for c in ErrorCode}


def test_unverified_codes_are_final_codes_that_carry_a_draft():
    assert UNVERIFIED_CODES <= FINAL_CODES
    text = PROTOCOL_DOC.read_text()
    for code in UNVERIFIED_CODES:
        row = next(r for r in markdown_table(text, "| final code | when |") if code in r[0])
        assert "unverified draft" in row[1]
