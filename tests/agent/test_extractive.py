"""agent/extractive.py on made-up passages: the text units, and each signal of the scoring.

Pure functions, no CrewAI: these run in milliseconds.
"""

from __future__ import annotations

import subprocess
import sys

from legalstream.agent.extractive import extractive_answer, split_sentences, terms


def test_importing_it_does_not_import_crewai():
    code = "import sys, legalstream.agent.extractive; assert 'crewai' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_terms_are_light_stems_without_stop_words():
    assert terms("The Warehouse's automated notifications, re-certified under Section 7.2") == [
        "warehou", "automat", "notific", "re-cert", "certifi", "section", "7.2",
    ]  # fmt: skip
    assert terms("automatic") == terms("automated")


def test_sentences_keep_abbreviations_and_provision_titles_whole():
    text = (
        "Mr. Smith signed on Jan. 5. The Court DENIED the motion.\n\n"
        "7.2 Limitation of Liability. Warehouse is not liable. It pays $5."
    )
    assert split_sentences(text) == [
        "Mr. Smith signed on Jan. 5.",
        "The Court DENIED the motion.",
        "7.2 Limitation of Liability. Warehouse is not liable.",
        "It pays $5.",
    ]


def test_no_passages_no_answer():
    assert extractive_answer("What is the cap?", []) == ""
    assert extractive_answer("What is the cap?", [(1, "Nothing relevant here at all.")]) == ""


def test_the_provision_the_question_names_wins_and_is_cited_by_its_marker():
    passages = [
        (
            1,
            "7.1 Warehouse shall store the Goods. It shall keep them cold.\n\n"
            "7.2 Limitation of Liability. Liability is capped at $0.50 per pound of Goods.",
        ),
        (2, "The cap on liability was negotiated in good faith by both parties over months."),
    ]
    answer = extractive_answer("What does Section 7.2 cap?", passages)
    assert answer == (
        "7.2 Limitation of Liability. Liability is capped at $0.50 per pound of Goods. [1]"
    )


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
