import itertools

from legalstream.rag.chunking import chunk_text, normalize_text

from .conftest import COMPLAINT_1


def test_sections_and_paragraphs_are_labelled() -> None:
    text = normalize_text(COMPLAINT_1)
    chunks = chunk_text(text, chunk_size=400, chunk_overlap=60)
    for c in chunks:
        assert text[c.char_start : c.char_end] == c.text
    count_i = next(c for c in chunks if "¶ 14" in c.labels)
    assert count_i.heading == "COUNT I — BREACH OF CONTRACT"
    assert count_i.section == "COUNT I — BREACH OF CONTRACT · ¶ 14–15"
    assert count_i.text.startswith("## COUNT I")  # the heading travels with its paragraphs
    # Chunks never straddle a heading.
    assert not any("COUNT I —" in c.text and "COUNT II —" in c.text for c in chunks)


def test_subsections_and_continuations() -> None:
    text = "## Section 7. Liability\n\n7.2 Limitation. (a) Fifty cents per pound.\n\n(b) Customer may declare more."
    chunks = chunk_text(text, chunk_size=1000)
    assert len(chunks) == 1
    assert chunks[0].labels == ["Section 7. Liability", "Section 7.2"]


def test_long_paragraph_is_split_with_overlap_at_sentences() -> None:
    para = "12. " + " ".join(
        f"Sentence number {i} says something about the alarm." for i in range(40)
    )
    text = normalize_text(f"## FACTS\n\n{para}")
    chunks = chunk_text(text, chunk_size=300, chunk_overlap=80)
    assert len(chunks) > 3
    for a, b in itertools.pairwise(chunks):
        assert b.char_start < a.char_end  # overlap
        assert b.char_start >= a.char_start
        assert len(b.text) <= 300 + 10
        assert b.text[0].isupper()  # starts at a sentence, not mid-word
    assert all(c.section and "¶ 12" in c.section for c in chunks)


def test_pages_and_normalisation() -> None:
    text = normalize_text("first page text\r\n\r\n\r\n\r\nmore")
    assert text == "first page text\n\nmore"
    pages = chunk_text("A on page one.\n\nB on page two.", chunk_size=20, page_starts=[0, 16])
    assert [c.page for c in pages] == [1, 2]
    assert pages[1].section == "Page 2"
