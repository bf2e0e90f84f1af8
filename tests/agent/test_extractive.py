"""The extractive scoring on made-up passages: each signal that bridges a change of wording."""

from __future__ import annotations

from legalstream.agent.extractive import extractive_answer


def test_plain_word_finds_the_term_a_definition_gives_it():
    passages = [
        (1, '1.2 "Software" means the firmware supplied for the control unit.'),
        (
            2,
            "5.1 Supplier shall give Owner written notice of any Software update at least "
            "three (3) business days before installation.\n\n"
            "5.2 Supplier shall repair faults within two (2) hours.",
        ),
        (
            3,
            "6.1 Owner shall pay each invoice within thirty (30) days. 6.2 Late amounts bear "
            "interest at one percent per month. 6.3 Title passes on delivery to the site.",
        ),
    ]
    answer = extractive_answer(
        "How much advance warning must be given before new firmware is loaded?",
        passages,
        1,
    )
    assert "three (3) business days" in answer


def test_reason_next_to_the_ruling_is_kept():
    passages = [
        (
            1,
            "Whether the buyer waived the inspection condition presents disputed questions "
            "of fact. The Court FINDS that the seller has not shown as a matter of law that "
            "the warranty lapsed. The motion is DENIED on this issue.",
        ),
        (2, "The seller asks the Court to hold as a matter of law that the warranty lapsed."),
    ]
    answer = extractive_answer(
        "Why did the court refuse to hold, as a matter of law, that the warranty lapsed?",
        passages,
        3,
    )
    assert "presents disputed questions of fact" in answer


def test_examiner_question_of_the_same_kind_answers_without_a_shared_word():
    passages = [
        (
            1,
            "## Page 12\n\n"
            "1  Q. When did you call the owner?\n"
            "2  A. At noon.\n"
            "3  Q. Why did you wait that long?\n"
            "4  A. I wanted to check the gauges before saying anything.\n",
        ),
        (2, "The manager of the depot reported the leak to the fire marshal on Monday."),
    ]
    answer = extractive_answer(
        "What reason did the depot manager give for the delay in phoning?", passages
    )
    assert "I wanted to check the gauges" in answer
    assert answer.count("[1]") + answer.count("[2]") == answer.count("[")
