"""Document routing: does a question name one document of the case?

"In the lease between Alder Row Properties and Quillfeather Books, …" names a
document by its parties; "Under the storage agreement, …" by its title. Each
document has a card (its title, file name and opening text, where contracts
name their parties, type and date) stored as BM25 term weights on its
document record. A question is routed to a document when the question's terms
match that card clearly better than any other card of the case (BM25 with IDF
over the case's cards, so words every document shares weigh nothing). The
engine then searches only that document, inside Qdrant's filter.

Filings are named by their role more often than by their title: "according
to the complaint", "what did the witness testify", "why did the court ...",
"which defense ...". A question that names no document by its words is
therefore also routed by role (:func:`role_route`): the role words map to the
document type a filing's title opens with (Complaint, Answer, Motion, Order,
Deposition, ...), and a case with exactly one document of that type gets the
question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from legalstream.rag.store import SparseVec

#: How much opening text a card holds: enough for a contract's title, parties and date.
CARD_CHARS = 1000


_ENTITY = re.compile(
    r"\b((?:[A-Z][\w&'’.-]*,?\s+){0,5}?"
    r"(?:Inc|LLC|L\.L\.C|Ltd|Limited|Corp|Corporation|Company|Co|GmbH|LLP|LP|L\.P|plc|PLC|AG|S\.A|B\.V|N\.V|Pty)\.?)"
    r"(?=\W)"
)
_SHORT_NAME = re.compile(r"\(\s*(?:the\s+)?[\"“]([A-Z][^\"”]{1,40})[\"”]\s*\)")


_DATE = re.compile(
    r"\b(?:January|February|March|April|May|June|July|August|September|October|November"
    r"|December)\s+\d{1,2},\s+\d{4}\b|\b\d{1,2}\s+(?:January|February|March|April|May|June"
    r"|July|August|September|October|November|December)\s+\d{4}\b"
)


def card_text(title: str, name: str, text: str) -> str:
    """A document's card: its names (:func:`name_text`), dates and opening text."""
    dates = _DATE.findall(text[:CARD_CHARS])
    return "\n".join([name_text(title, name, text), *dates, text[:CARD_CHARS]])


def name_text(title: str, name: str, text: str) -> str:
    """The words that name a document: title, file name, parties and their short names.

    Parties are read from the opening text: company names ending in a legal form
    ("Harbor Lantern Analytics, Inc.") and the short names defined for them
    (("Harbor")). Generic defined terms of a preamble ("Agreement", "Effective
    Date") are left out, so a question about them is not emptied.
    """
    head = text[:CARD_CHARS]
    names = [m.group(1) for m in _ENTITY.finditer(head)]
    shorts = [s for s in _SHORT_NAME.findall(head) if s.split()[0] not in _GENERIC_SHORT_NAMES]
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("-", " ").replace("_", " ")
    return " ".join([title, stem, *names, *shorts])


_GENERIC_SHORT_NAMES = {
    "Agreement", "Effective", "Party", "Parties", "Purpose", "Term", "Services", "Company",
    "Customer", "Supplier", "Seller", "Buyer", "Licensor", "Licensee", "Landlord", "Tenant",
    "Discloser", "Recipient", "Disclosing", "Receiving", "Client", "Provider", "Consultant",
    "Distributor", "Premises", "Lease", "Commencement", "Contract", "Opportunity", "Project",
}  # fmt: skip


#: Document types a title opens with (after "Defendant's", "Summons and", ...).
DOC_TYPES = frozenset(
    {
        "complaint", "answer", "motion", "brief", "memorandum", "order", "decision",
        "opinion", "judgment", "deposition", "transcript", "declaration", "affidavit",
        "exhibit",
    }
)  # fmt: skip

#: Words in a question that name a filing by its role -> the types that play it.
_ROLES: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = (
    (
        re.compile(r"\b(?:witness\w*|testif\w*|testimony|deposition|deposed)\b", re.I),
        frozenset({"deposition", "transcript", "declaration", "affidavit"}),
    ),
    (
        re.compile(r"\b(?:judge|court)\b", re.I),
        frozenset({"order", "decision", "opinion", "judgment"}),
    ),
    (
        re.compile(
            r"\b(?:defen[cs]es?)\b|\bdefendant'?s?\s+(?:response|answer|reply)\b"
            r"|\b(?:response|answer)\s+to\s+the\s+complaint\b",
            re.I,
        ),
        frozenset({"answer"}),
    ),
    (re.compile(r"\bbrief\b", re.I), frozenset({"motion", "brief", "memorandum"})),
    # "the complaint" as the source ("according to the complaint"), not a topic
    # ("may Northgate file an amended complaint?").
    (
        re.compile(
            r"\b(?:according to|as alleged in|as stated in|in|under|per)\s+the\s+complaint\b"
            r"|\bthe\s+complaint\s+(?:alleges?|says?|states?|claims?|asserts?)\b|\bas alleged\b",
            re.I,
        ),
        frozenset({"complaint"}),
    ),
)


def doc_type(title: str) -> str | None:
    """The type a title opens with ("Defendant's Motion for ..." -> "motion"), if any."""
    for word in re.findall(r"[A-Za-z]+", title.lower())[:6]:
        if word in DOC_TYPES:
            return word
    return None


def role_route(question: str, types: dict[str, str | None]) -> tuple[str, str] | None:
    """The one document whose type the question's role words name, and those words.

    ``types`` maps each document of the case to its type (:func:`doc_type`).
    The words are returned so that the search inside the document can leave
    them out: "complaint" says which document, not what is in it.
    """
    wanted: set[str] = set()
    words: list[str] = []
    for pattern, roles in _ROLES:
        for match in pattern.finditer(question):
            wanted |= roles
            words.append(match.group(0))
    if not wanted:
        return None
    matches = [doc_id for doc_id, kind in types.items() if kind in wanted]
    return (matches[0], " ".join(words)) if len(matches) == 1 else None


@dataclass(frozen=True, slots=True)
class Route:
    doc_id: str | None
    #: Card scores of the best and second-best documents.
    best: float
    second: float
    #: The query's BM25 terms that named the document (matched its card, rare among cards).
    naming_terms: frozenset[int] = frozenset()


class DocumentRouter:
    """Picks the document a question names, or none.

    ``min_score`` is the least BM25 score (over cards) that counts as naming a
    document; ``min_ratio`` how far ahead of the runner-up it must be.
    """

    def __init__(self, *, min_score: float = 6.0, min_ratio: float = 1.5) -> None:
        self.min_score = min_score
        self.min_ratio = min_ratio

    def route(
        self,
        query: SparseVec,
        cards: Sequence[tuple[str, SparseVec]],
        names: dict[str, frozenset[int]] | None = None,
    ) -> Route:
        """Route ``query`` among ``cards``; ``names`` holds each document's naming terms."""
        names = names or {}
        terms = set(query.indices)
        if len(cards) == 1:
            # A one-document case: the document is known, its naming terms still apply.
            only = cards[0][0]
            return Route(only, 0.0, 0.0, frozenset(terms & names.get(only, frozenset())))
        if not cards or not terms:
            return Route(None, 0.0, 0.0)
        df: dict[int, int] = {}
        weights: list[tuple[str, dict[int, float]]] = []
        for doc_id, card in cards:
            w = {i: v for i, v in zip(card.indices, card.values, strict=True) if i in terms}
            weights.append((doc_id, w))
            for i in w:
                df[i] = df.get(i, 0) + 1
        n = len(cards)
        idf = {i: math.log(1 + (n - d + 0.5) / (d + 0.5)) for i, d in df.items()}
        name_df: dict[int, int] = {}
        for doc_names in names.values():
            for t in doc_names & terms:
                name_df[t] = name_df.get(t, 0) + 1
        scored = [
            (
                sum(idf[i] * v for i, v in w.items()),
                doc_id,
            )
            for doc_id, w in weights
        ]
        scored.sort(key=lambda s: (-s[0], s[1]))
        best, doc_id = scored[0]
        second = scored[1][0]
        naming = frozenset(terms & names.get(doc_id, frozenset()))
        # Topic words of a card's opening text ("storage charges") are no reason to
        # route: one of the question's words must be a name few documents share.
        distinctive = any(name_df.get(t, 0) <= max(1, n // 3) for t in naming)
        if best >= self.min_score and best >= self.min_ratio * second and distinctive:
            return Route(doc_id, best, second, naming)
        return Route(None, best, second)
