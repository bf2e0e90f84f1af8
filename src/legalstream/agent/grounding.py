"""The grounding check: is every statement of an answer supported by a passage of its run?

Pure text, no CrewAI. :func:`check_answer` cuts the answer into statements (its
sentences, each with the ``[n]`` markers that follow it), and for each marker
looks in the passage the run numbered ``n`` for the sentence, or two or three
adjacent sentences, that hold the statement's content words: at least
:data:`MIN_COVERAGE` of them, and every number it states. Those sentences are
the statement's citation: their exact span in the document's source text (a
passage is ``source_text[char_start:char_end]``, so a sentence at offset ``o``
of the passage is at ``char_start + o``), with the passage kept beside them.

It is a lexical check, not entailment: it catches invented facts (words and
numbers the cited passage does not have), markers of passages the run never
retrieved, statements without a marker and answers without any citation; it
cannot tell "admits" from "denies" in the same words. docs/agent.md,
"Grounding", says what it accepts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from legalstream.agent.extractive import ABBREVIATION, terms
from legalstream.events import CitationPayload, Grounding

__all__ = [
    "MIN_COVERAGE",
    "Check",
    "Source",
    "check_answer",
    "sentence_spans",
    "split_statements",
]

#: Share of a statement's content words that its cited sentences must contain.
MIN_COVERAGE = 0.6
#: Adjacent sentences a statement's support may span.
MAX_WINDOW = 3

#: Words that frame an answer rather than state a fact ("According to the record, ...").
_FRAMING = frozenset(
    terms(
        "according based retrieved passage passages document documents record records case "
        "answer answers following follows shown show shows provided provide states stated "
        "question information context summary summarize here below above excerpt excerpts "
        "hope helps help note noted please let know cited citation citations source sources "
        "mention mentions mentioned indicate indicates specifically also additionally "
        "furthermore however therefore overall"
    )
)

_MARKERS = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
#: A sentence ends at . ! ? (and closing quotes/brackets) before a capital, digit or marker.
_BOUNDARY = re.compile(r"(?<=[.!?])[\"'”’)\]]*\s+(?=[\"'“‘(\[]?[A-Z0-9§¶])")
#: Words before a full stop that do not end a sentence ("Mr.", "Inc.", "Dkt."), or a
#: paragraph's number ("26.", also after a colon: "According to the record: 26.").
_ABBREV = re.compile(rf"{ABBREVIATION.pattern}|(?:^|[:;]\s*)\d+(?:\.\d+)*\.$")
#: A line that starts a unit of its own: heading, list item, transcript turn, numbered paragraph.
_UNIT_START = re.compile(
    r"^\s*(?:#+\s|[-*•]\s|\(?[a-z0-9]{1,3}[.)]\s|(?:\d{1,3}\s+)?(?:Q|A)\.(?:\s|$)|"
    r"(?:\d{1,3}\s+)?(?:(?:MR|MS|MRS|DR)\.\s+[A-Z'-]+|THE [A-Z]+):)"
)
_TURN = re.compile(
    r"^\s*(?:\d{1,3}\s+)?(?:(?:Q|A)\.(?:\s|$)|(?:(?:MR|MS|MRS|DR)\.\s+[A-Z'-]+|THE [A-Z]+):)"
)
_DECORATION = re.compile(r"^\s*(?:#+\s*|[-*•]\s+|\d+[.)]\s+(?=[A-Z*]))|\*\*|__|`")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence of ``text``: exact offsets, whitespace trimmed.

    Headings, list items and transcript turns are units of their own; prose is
    cut at sentence ends, not after abbreviations ("Mr.", "Sec.", "No.").
    """
    blocks: list[tuple[int, int]] = []
    start: int | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        blank = not line.strip()
        if blank or _UNIT_START.match(line) or line.lstrip().startswith("#"):
            if start is not None:
                blocks.append((start, offset))
            start = None if blank else offset
        elif start is None:
            start = offset
        offset += len(line)
    if start is not None:
        blocks.append((start, len(text)))

    spans: list[tuple[int, int]] = []
    for b_start, b_end in blocks:
        block = text[b_start:b_end]
        heading = re.match(r"\s*#+\s*", block)
        if heading or _TURN.match(block):
            # a heading (without its hashes) and a transcript turn are one unit each
            lead = heading.end() if heading else len(block) - len(block.lstrip())
            trail = len(block.rstrip())
            if trail > lead:
                spans.append((b_start + lead, b_start + trail))
            continue
        cuts = [0]
        for m in _BOUNDARY.finditer(block):
            before = block[cuts[-1] : m.start()]
            if _ABBREV.search(before) or len(before.strip()) < 4:
                continue
            cuts.append(m.end())
        cuts.append(len(block))
        for a, b in itertools.pairwise(cuts):
            piece = block[a:b]
            lead = len(piece) - len(piece.lstrip())
            trail = len(piece.rstrip())
            if trail > lead:
                spans.append((b_start + a + lead, b_start + a + trail))
    return spans


#: A sentence that is only a provision's number, or its number and short title
#: ("10.", "4.3 Notice of Temperature Excursion."): it opens the sentence after it.
_LABEL_ONLY = re.compile(r"^(?:(?:Section|Article|§)\s*)?\(?\d+(?:\.\d+)*[.)]?$")
_LABEL_TITLE = re.compile(r"^(?:(?:Section|Article|§)\s*)?\d+(?:\.\d+)*\.?\s+[^.!?]{1,80}[.:]$")


def _answer_sentences(text: str) -> list[str]:
    text = re.sub(r"^[\s.,;:!?)\]]+", "", text)  # what closed the marked statement before
    pieces = [text[a:b] for a, b in sentence_spans(text)]
    out: list[str] = []
    carry = ""
    for piece in pieces:
        piece = (carry + " " + piece).strip() if carry else piece
        carry = ""
        if _LABEL_ONLY.match(piece) or (_LABEL_TITLE.match(piece) and len(piece.split()) <= 7):
            carry = piece
            continue
        out.append(piece)
    if carry:
        out.append(carry)
    return out


def _clean(piece: str) -> str:
    text = " ".join(_DECORATION.sub("", piece).split())
    return re.sub(r"\s+([.,;:!?])", r"\1", text).strip()


def split_statements(answer: str) -> list[tuple[str, list[int]]]:
    """The statements of an answer, each with the ``[n]`` markers that follow it, in order.

    A marker group ends the statement before it; the sentences before that one,
    since the previous marker, are statements without a marker. A marker group
    at the start of a sentence belongs to the sentence before it ("... in
    2022. [1] The ..."). Markdown decoration (bullets, bold) is dropped.
    """
    out: list[tuple[str, list[int]]] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)]|#)\s)", answer):
        pos = 0
        for m in re.finditer(r"(?:\s*\[\d+(?:\s*[,;]\s*\d+)*\])+", block):
            markers: list[int] = []
            for group in _MARKERS.findall(m.group(0)):
                for part in re.split(r"\s*[,;]\s*", group):
                    if int(part) not in markers:
                        markers.append(int(part))
            sentences = [t for t in map(_clean, _answer_sentences(block[pos : m.start()])) if t]
            pos = m.end()
            if not sentences or not re.search(r"\w", " ".join(sentences)):
                if out:  # markers after punctuation only: they belong to the statement before
                    out[-1][1].extend(n for n in markers if n not in out[-1][1])
                continue
            out.extend((t, []) for t in sentences[:-1])
            out.append((sentences[-1], markers))
        out.extend(
            (t, [])
            for t in map(_clean, _answer_sentences(block[pos:]))
            if t and re.search(r"\w", t)
        )
    return out


@dataclass(frozen=True, slots=True)
class Source:
    """A passage retrieved in the run: its ``[n]``, its text and where that text starts.

    ``text`` must be the document's source text ``[start:start + len(text)]``
    (a retrieval hit's ``quote`` and ``char_start`` are exactly that).
    """

    marker: int
    text: str
    start: int
    citation: Any = None  # legalstream.rag.citations.Citation, for the payload

    def spans(self) -> list[tuple[int, int]]:
        return _spans(self.text)


_SPAN_CACHE: dict[str, list[tuple[int, int]]] = {}


def _spans(text: str) -> list[tuple[int, int]]:
    spans = _SPAN_CACHE.get(text)
    if spans is None:
        if len(_SPAN_CACHE) > 512:
            _SPAN_CACHE.clear()
        spans = _SPAN_CACHE[text] = sentence_spans(text)
    return spans


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety "
    "hundred thousand million billion".split()
)


def _numbers(text: str) -> set[str]:
    """The numbers ``text`` states, in digits or words ("$92,150" -> "92150", "four")."""
    found = {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}
    words = set(re.findall(r"[a-z]+", text.lower())) & _NUMBER_WORDS
    return found | words


@dataclass(slots=True)
class Statement:
    """One statement of an answer and what the check found for it."""

    text: str
    markers: list[int]
    #: (marker, start, end) of the supporting sentences, offsets into that passage's text.
    support: list[tuple[int, int, int]] = field(default_factory=list)
    problem: str | None = None


@dataclass(slots=True)
class Check:
    """The result of :func:`check_answer`."""

    statements: list[Statement]
    problems: list[dict[str, Any]]
    sources: dict[int, Source]
    truncated: bool = False

    @property
    def grounded(self) -> bool:
        return not self.problems

    @property
    def supported(self) -> int:
        return sum(1 for s in self.statements if s.support and s.problem is None)

    def grounding(self, *, retried: bool = False, finish_reason: str | None = None) -> Grounding:
        return Grounding(
            grounded=self.grounded,
            statements=len(self.statements),
            supported=self.supported,
            problems=list(self.problems),
            retried=retried,
            finish_reason=finish_reason,
        )

    def citations(self) -> list[dict[str, Any]]:
        """One citation payload per supporting span, by marker then position; no repeats.

        ``quote`` is the supporting sentence(s); ``passage`` the retrieved passage.
        """
        seen: set[tuple[int, int, int]] = set()
        spans: list[tuple[int, int, int]] = []
        for statement in self.statements:
            for item in statement.support:
                if item not in seen:
                    seen.add(item)
                    spans.append(item)
        out: list[dict[str, Any]] = []
        for marker, start, end in sorted(spans):
            source = self.sources[marker]
            cit = source.citation
            out.append(
                CitationPayload(
                    chunk_id=getattr(cit, "chunk_id", ""),
                    doc_id=getattr(cit, "doc_id", ""),
                    title=getattr(cit, "title", ""),
                    case_id=getattr(cit, "case_id", None),
                    page=getattr(cit, "page", None),
                    section=getattr(cit, "section", None),
                    char_start=source.start + start,
                    char_end=source.start + end,
                    quote=source.text[start:end],
                    score=float(getattr(cit, "score", 0.0) or 0.0),
                    marker=marker,
                    passage=source.text,
                    passage_start=source.start,
                    passage_end=source.start + len(source.text),
                ).to_payload()
            )
        return out


def _squash(text: str) -> str:
    return " ".join(re.sub(r"[^\w$%.,]+", " ", text.lower()).split())


def _best_window(
    source: Source, wanted: set[str], statement: str
) -> tuple[float, set[str], tuple[int, int] | None]:
    """The run of 1..MAX_WINDOW sentences that supports ``statement`` best.

    A statement quoted verbatim gets the fewest sentences that contain it;
    otherwise the run holding most of ``wanted`` (fewest sentences on a tie),
    and a transcript question is never quoted without the answer after it.
    """
    spans = source.spans()
    texts = [source.text[a:b] for a, b in spans]
    unit_terms = [set(terms(t)) for t in texts]
    needle = _squash(statement)
    if len(needle) > 12:
        for size in range(1, MAX_WINDOW + 1):
            for i in range(0, len(spans) - size + 1):
                if needle in _squash(" ".join(texts[i : i + size])):
                    covered = set().union(*unit_terms[i : i + size]) & wanted
                    return 1.0, covered | wanted, (spans[i][0], spans[i + size - 1][1])
    best: tuple[float, set[str], tuple[int, int] | None] = (0.0, set(), None)
    best_range = (0, 0)
    for size in range(1, MAX_WINDOW + 1):
        for i in range(0, len(spans) - size + 1):
            covered = set().union(*unit_terms[i : i + size]) & wanted
            score = len(covered) / len(wanted) if wanted else 0.0
            if score > best[0] + 1e-9:
                best = (score, covered, (spans[i][0], spans[i + size - 1][1]))
                best_range = (i, i + size)
    first, last = best_range
    if best[2] is not None and last < len(spans):
        if re.match(r"\s*(?:\d{1,3}\s+)?Q\.", texts[last - 1]) and re.match(
            r"\s*(?:\d{1,3}\s+)?A\.", texts[last]
        ):
            best = (best[0], best[1], (spans[first][0], spans[last][1]))
    return best


def _problem(kind: str, statement: str | None = None, marker: int | None = None) -> dict:
    return {"kind": kind, "statement": statement, "marker": marker}


def check_answer(
    answer: str,
    sources: dict[int, Source],
    *,
    question: str = "",
    finish_reason: str | None = None,
) -> Check:
    """Check ``answer`` against the passages of its run (``sources`` by marker)."""
    check = Check(statements=[], problems=[], sources=sources)
    if not sources:
        check.problems.append(_problem("no_retrieval"))
    q_terms = set(terms(question))
    for text, markers in split_statements(answer):
        statement = Statement(text, markers)
        check.statements.append(statement)
        content = set(terms(text)) - _FRAMING
        known = [m for m in markers if m in sources]
        for m in markers:
            if m not in sources:
                check.problems.append(_problem("unknown_marker", text, m))
                statement.problem = "unknown_marker"
        if not known:
            if not markers and content - q_terms:
                statement.problem = "uncited"
                check.problems.append(_problem("uncited", text))
            continue
        # A statement with no words of its own ("Yes.") is checked by the question's.
        wanted = content or (q_terms - _FRAMING)
        covered: set[str] = set()
        windows: list[tuple[int, int, int]] = []
        for m in known:
            _score, got, span = _best_window(sources[m], wanted, text)
            if span is not None and (got - covered or not windows):
                covered |= got
                windows.append((m, *span))
        cited_text = " ".join(sources[m].text[a:b] for m, a, b in windows)
        numbers_ok = _numbers(text) <= _numbers(cited_text)
        coverage = len(covered) / len(wanted) if wanted else 1.0
        if windows and coverage >= MIN_COVERAGE - 1e-9 and numbers_ok:
            statement.support = windows
        elif statement.problem is None:
            statement.problem = "unsupported"
            check.problems.append(_problem("unsupported", text, known[0]))
    if not any(s.support for s in check.statements) and sources:
        check.problems.append(_problem("no_citation"))
    if finish_reason == "length":
        check.truncated = True
        check.problems.append(_problem("truncated"))
    return check
