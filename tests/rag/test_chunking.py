import itertools

from legalstream.rag.chunking import Heading, chunk_text, normalize_text

from .conftest import COMPLAINT_1

# One clause per line, no blank lines: how many contracts arrive.
NDA = """MUTUAL NON-DISCLOSURE AGREEMENT
This Mutual Non-Disclosure Agreement is made as of May 2, 2024 between Alder Row Ltd ("Alder") and Quill Books LLC ("Quill").
1. Definitions
1.1 "Affiliate" means any entity that controls, is controlled by, or is under common control with a Party.
1.2 "Confidential Information" means all non-public information disclosed by a Party, including:
(a) source code and models;
(b) customer lists; and
(c) pricing.
2. Obligations
2.1 The Receiving Party shall:
(a) use the Confidential Information solely for the Purpose;
(b) notify the Disclosing Party within seventy-two (72) hours after becoming aware of any unauthorised disclosure; and
(c) return all copies on request.
2.2 Neither Party shall reverse engineer any prototype. This obligation survives termination.
3. Term. This Agreement continues for two (2) years.
"""


def _spans_hold(text: str, chunks: list) -> None:
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
        for s in c.context:
            assert s.char_end <= c.char_start or s.char_start >= c.char_end or s.role == "heading"


def test_complaint_paragraphs_are_units_with_their_heading() -> None:
    text = normalize_text(COMPLAINT_1)
    chunks = chunk_text(text, chunk_size=400)
    _spans_hold(text, chunks)
    count_i = next(c for c in chunks if "¶ 14" in c.labels)
    assert count_i.heading == "COUNT I — BREACH OF CONTRACT"
    assert count_i.section == "COUNT I — BREACH OF CONTRACT · ¶ 14"
    assert count_i.text.startswith("14. Meridian breached")
    # The heading is context of the unit, quoted from the source text.
    heads = [text[s.char_start : s.char_end] for s in count_i.context if s.role == "heading"]
    assert heads[-1] == "## COUNT I — BREACH OF CONTRACT"
    assert not any("COUNT I —" in c.text and "COUNT II —" in c.text for c in chunks)


def test_one_clause_per_line_without_blank_lines() -> None:
    text = normalize_text(NDA)
    chunks = chunk_text(text, chunk_size=1200)
    _spans_hold(text, chunks)
    by_label = {lbl: c for c in chunks for lbl in c.labels}
    # Every clause is its own unit, labelled, under its section heading.
    term = by_label["Section 3"]
    assert term.text == "3. Term. This Agreement continues for two (2) years."
    survive = by_label["Section 2.2"]
    assert survive.text.startswith("2.2 Neither Party") and survive.text.endswith("termination.")
    assert survive.section == "2. Obligations · Section 2.2"
    # A definition is whole, with its term and its items.
    ci = by_label['"Confidential Information"']
    assert ci.kind == "definition"
    assert ci.text.startswith('1.2 "Confidential Information" means') and ci.text.endswith(
        "pricing."
    )
    affiliate = by_label['"Affiliate"']
    assert affiliate.text.startswith('1.1 "Affiliate"') and "customer lists" not in affiliate.text
    # A lead-in that fits is one unit with its items.
    obligations = by_label["Section 2.1"]
    assert obligations.text.startswith("2.1 The Receiving Party shall:")
    assert obligations.text.endswith("return all copies on request.")
    assert "Section 2.1(b)" in obligations.labels
    # The preamble (parties, date) is a unit of its own, not glued to a definition.
    preamble = next(c for c in chunks if "between Alder Row" in c.text)
    assert '"Affiliate"' not in preamble.text


def test_items_that_do_not_fit_carry_their_lead_in() -> None:
    text = normalize_text(NDA)
    chunks = chunk_text(text, chunk_size=150)
    _spans_hold(text, chunks)
    item = next(c for c in chunks if "seventy-two (72) hours" in c.text)
    assert item.text.startswith("(b) notify")
    assert item.labels[-1] == "Section 2.1(b)"
    lead = [text[s.char_start : s.char_end] for s in item.context if s.role == "lead_in"]
    assert lead == ["2.1 The Receiving Party shall:"]


def test_headings_known_from_the_format() -> None:
    rent = "The Tenant shall pay the monthly rent on the first day of each month, without set-off or deduction of any kind."
    insure = "The Tenant shall insure the contents of the premises against fire and theft for their full replacement value."
    text = f"Lease Agreement\nArticle Four\n{rent}\n{insure}"
    heads = [Heading(0, 15, 1, "Lease Agreement"), Heading(16, 28, 2, "Article Four")]
    chunks = chunk_text(text, headings=heads)
    assert [c.text for c in chunks] == [rent, insure]
    assert all(c.heading == "Article Four" for c in chunks)
    assert chunks[0].context[-1].char_start == 16


def test_references_are_not_clause_numbers() -> None:
    text = "## DEFENSES\n\nSection 7.3 of the Agreement bars lost profits.\n\n7.2 Limitation. Liability is capped."
    chunks = chunk_text(normalize_text(text))
    assert chunks[0].section == "DEFENSES"
    assert chunks[1].section == "DEFENSES · Section 7.2"


def test_transcript_exchanges() -> None:
    text = (
        "## Page 42\n\n1  Q. Who was on call?\n2  A. Luis Ferreira.\n3  Q. Did he come in?\n"
        "4  A. No. He said the alarm never reached him."
    )
    chunks = chunk_text(text)
    assert len(chunks) == 1 and chunks[0].section == "Page 42"
    assert chunks[0].text.startswith("1  Q.") and chunks[0].text.endswith("reached him.")


def test_long_unit_is_split_at_sentences() -> None:
    para = "12. " + " ".join(
        f"Sentence number {i} says something about the alarm." for i in range(40)
    )
    text = normalize_text(f"## FACTS\n\n{para}")
    chunks = chunk_text(text, chunk_size=300)
    assert len(chunks) > 3
    for a, b in itertools.pairwise(chunks):
        assert b.char_start >= a.char_end
        assert len(b.text) <= 300
        assert b.text[0].isupper()  # starts at a sentence, not mid-word
    assert all(c.section and "¶ 12" in c.section for c in chunks)


def test_pages_and_normalisation() -> None:
    text = normalize_text("first page text\r\n\r\n\r\n\r\nmore")
    assert text == "first page text\n\nmore"
    pages = chunk_text("A on page one.\nB on page two.", chunk_size=20, page_starts=[0, 15])
    assert [c.page for c in pages] == [1, 2]
    assert pages[1].section == "Page 2"
