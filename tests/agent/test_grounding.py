"""The grounding check and the text-form tool calls, on made-up passages: pure, no CrewAI."""

from __future__ import annotations

import pytest

from legalstream.agent.grounding import Source, check_answer, sentence_spans, split_statements
from legalstream.agent.tool_text import parse_tool_calls

SOURCE = (
    "## Section 4. Temperature\n\n"
    "4.1 Warehouse shall keep the Goods at or below -10 degrees. Mr. Pak approved the setpoint.\n\n"
    "4.3 Notice. Warehouse shall notify Customer within four (4) hours of any excursion.\n\n"
    "5  Q. Were the checks logged?\n6  A. No.\n"
)
#: The passage starts 1,000 characters into its document.
DOC = "x" * 1000 + SOURCE
PASSAGES = {1: Source(1, SOURCE, 1000), 2: Source(2, "Bluewater rejected the offer.", 50)}


def _kinds(check) -> list[str]:
    return [p["kind"] for p in check.problems]


def test_sentence_spans_are_exact_and_keep_abbreviations_and_turns_whole():
    texts = [SOURCE[a:b] for a, b in sentence_spans(SOURCE)]
    assert texts == [
        "Section 4. Temperature",
        "4.1 Warehouse shall keep the Goods at or below -10 degrees.",
        "Mr. Pak approved the setpoint.",
        "4.3 Notice.",
        "Warehouse shall notify Customer within four (4) hours of any excursion.",
        "5  Q. Were the checks logged?",
        "6  A. No.",
    ]


def test_statements_take_the_markers_that_follow_them():
    assert split_statements(
        "Warehouse had to keep -10 degrees [1]. Mr. Pak approved it. [1] The offer was rejected [2][1]. "
        "I hope this helps."
    ) == [
        ("Warehouse had to keep -10 degrees", [1]),
        ("Mr. Pak approved it.", [1]),
        ("The offer was rejected", [2, 1]),
        ("I hope this helps.", []),
    ]
    assert split_statements("- **Notice** within four hours [1, 2]\n- Rejected [2]") == [
        ("Notice within four hours", [1, 2]),
        ("Rejected", [2]),
    ]


def test_a_grounded_answer_gets_sentence_level_citations_with_exact_spans():
    answer = (
        "Based on the documents: Warehouse must notify Customer within four (4) hours of an "
        "excursion [1]. Bluewater rejected the offer [2]."
    )
    check = check_answer(answer, PASSAGES, question="How fast must the Warehouse notify?")
    assert check.grounded, check.problems
    cits = check.citations()
    assert [(c["marker"], c["quote"]) for c in cits] == [
        (1, "Warehouse shall notify Customer within four (4) hours of any excursion."),
        (2, "Bluewater rejected the offer."),
    ]
    first = cits[0]
    assert DOC[first["char_start"] : first["char_end"]] == first["quote"]
    assert DOC[first["passage_start"] : first["passage_end"]] == SOURCE == first["passage"]


def test_a_transcript_question_is_quoted_with_its_answer():
    check = check_answer(
        "The checks were not logged [1].", PASSAGES, question="Were checks logged?"
    )
    assert check.grounded
    assert check.citations()[0]["quote"] == "5  Q. Were the checks logged?\n6  A. No."


@pytest.mark.parametrize(
    "answer, kinds",
    [
        ("The agreement was signed on March 14, 2022 [1].", ["unsupported", "no_citation"]),
        ("Warehouse must notify within nine (9) hours [1].", ["unsupported", "no_citation"]),
        ("Warehouse must notify within four (4) hours [7].", ["unknown_marker", "no_citation"]),
        ("Warehouse must notify within four (4) hours.", ["uncited", "no_citation"]),
        ("Bluewater rejected the offer [2]. The court then awarded damages.", ["uncited"]),
        ("", ["no_citation"]),
    ],
)
def test_what_fails_the_check(answer, kinds):
    check = check_answer(answer, PASSAGES, question="What happened?")
    assert _kinds(check) == kinds
    assert not check.grounded


def test_truncated_and_no_retrieval():
    assert _kinds(
        check_answer("Bluewater rejected the offer [2].", PASSAGES, finish_reason="length")
    ) == ["truncated"]
    assert _kinds(check_answer("Bluewater rejected the offer [2].", {})) == [
        "no_retrieval",
        "unknown_marker",
    ]


@pytest.mark.parametrize(
    "text",
    [
        'I will search.\n```json\n{"name": "rag_legal_retrieval_tool", "arguments": {"query": "q"}}\n```',
        '<tool_call>{"name": "rag_legal_retrieval_tool", "arguments": {"query": "q"}}</tool_call>',
        '{"name": "rag_legal_retrieval_tool", "parameters": {"query": "q"}}',
        'Thought: search\nAction: rag_legal_retrieval_tool\nAction Input: {"query": "q"}',
        "Action: RAG Legal Retrieval Tool\nAction Input: q",
        '```\n{"function": {"name": "rag_legal_retrieval_tool", "arguments": "{\\"query\\": \\"q\\"}"}}\n```',
    ],
)
def test_tool_calls_written_as_text(text):
    calls = parse_tool_calls(text)
    assert len(calls) == 1 and calls[0].arguments == {"query": "q"}


@pytest.mark.parametrize(
    "text", ["Meridian denied it [1].", "```python\nprint(1)\n```", '{"answer": "no"}', ""]
)
def test_text_that_is_no_tool_call(text):
    assert parse_tool_calls(text) == []
