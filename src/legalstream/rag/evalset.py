"""The retrieval eval sets: questions, their documents, and gold quotes resolved to spans.

Two sets share one question format (``data/eval/*.jsonl``, one object a line):
``id``, ``question``, ``gold_doc``, ``gold_quotes`` (verbatim evidence from the gold
document's body text), ``names_document`` and ``kind``. The sample set also has
``case_id`` (the sample case to ask in) and the older ``gold_section`` /
``answer_contains`` fields.

A gold quote becomes a character span of the document's stored source text
(``RetrievalEngine.source_text``) after ingestion, so spans follow whatever the
loaders make of a file: a quote is matched exactly, else with all whitespace
ignored (a PDF wraps lines where the source had none), and must match once.
"""

from __future__ import annotations

import json
import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from legalstream.rag.ingest import IngestReport, make_doc_id

if TYPE_CHECKING:
    from legalstream.rag.engine import RetrievalEngine

#: Case ids for the within-document setting: each document gets its own case from here on.
WITHIN_DOC_CASE_BASE = 10_000
#: The contract set's whole-case setting puts every contract into this case.
CONTRACTS_CASE_ID = 1


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    #: The gold document's doc_id as the engine names it (``<parent folder>/<file name>``).
    doc_id: str
    quotes: tuple[str, ...]
    names_document: bool
    kind: str
    #: The case to ask in for the whole-case setting.
    case_id: int
    #: The sample set's older gold fields (None for the contract set).
    gold_section: str | None = None
    gold_doc: str | None = None


@dataclass(frozen=True, slots=True)
class GoldSpan:
    doc_id: str
    start: int
    end: int


@dataclass(slots=True)
class EvalSet:
    """Questions plus the documents they are asked over, and how to ingest them."""

    name: str
    questions: list[Question]
    #: Every document of the set: doc_id -> (file, whole-case case id).
    documents: dict[str, tuple[Path, int]] = field(default_factory=dict)

    def within_doc_case(self, doc_id: str) -> int:
        """The case that holds only ``doc_id`` in the within-document setting."""
        return WITHIN_DOC_CASE_BASE + sorted(self.documents).index(doc_id)

    def case_of(self, doc_id: str, *, within_doc: bool) -> int:
        return self.within_doc_case(doc_id) if within_doc else self.documents[doc_id][1]

    def ingest(self, engine: RetrievalEngine, *, within_doc: bool) -> IngestReport:
        """Ingest every document: into its whole-case case, or each into a case of its own."""
        report = IngestReport()
        for doc_id, (path, _) in sorted(self.documents.items()):
            report.merge(engine.ingest_path(path, self.case_of(doc_id, within_doc=within_doc)))
        return report

    def source_texts(self, engine: RetrievalEngine, *, within_doc: bool) -> dict[str, str | None]:
        return {
            d: engine.source_text(d, self.case_of(d, within_doc=within_doc)) for d in self.documents
        }

    def subset(self, question_ids: Iterable[str]) -> EvalSet:
        """The named questions and only their gold documents (for quick runs and tests)."""
        wanted = set(question_ids)
        questions = [q for q in self.questions if q.id in wanted]
        docs = {q.doc_id for q in questions}
        return EvalSet(self.name, questions, {d: v for d, v in self.documents.items() if d in docs})


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def load_contract_set(folder: Path, questions: Path) -> EvalSet:
    """``folder``'s files as one case; ``gold_doc`` is a file name in that folder."""
    documents = {
        make_doc_id(p): (p, CONTRACTS_CASE_ID)
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }
    out = []
    for row in _read_jsonl(questions):
        doc_id = make_doc_id(folder / str(row["gold_doc"]))
        if doc_id not in documents:
            raise ValueError(f"{row['id']}: gold_doc {row['gold_doc']!r} is not in {folder}")
        out.append(_question(row, doc_id, CONTRACTS_CASE_ID))
    return EvalSet("contracts", out, documents)


def load_sample_set(sample_dir: Path, questions: Path) -> EvalSet:
    """The sample cases per ``cases.toml``; ``gold_doc`` is a file stem in the question's case."""
    cases = tomllib.loads((sample_dir / "cases.toml").read_text(encoding="utf-8"))["case"]
    folders = {int(c["id"]): sample_dir / str(c.get("folder", f"case-{c['id']}")) for c in cases}
    documents = {
        make_doc_id(p): (p, case_id)
        for case_id, folder in sorted(folders.items())
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".")
    }
    out = []
    for row in _read_jsonl(questions):
        case_id = int(str(row["case_id"]))
        # gold_doc is a file stem; the doc id names the file ("case-1/complaint.md").
        matches = [p for p in folders[case_id].iterdir() if p.stem == row["gold_doc"]]
        doc_id = make_doc_id(matches[0]) if len(matches) == 1 else f"{row['gold_doc']}?"
        if doc_id not in documents:
            raise ValueError(f"{row['id']}: no document {row['gold_doc']} in case {case_id}")
        out.append(_question(row, doc_id, case_id))
    return EvalSet("sample", out, documents)


def _question(row: dict[str, object], doc_id: str, case_id: int) -> Question:
    quotes = row.get("gold_quotes")
    if not isinstance(quotes, list) or not quotes:
        raise ValueError(f"{row['id']}: no gold_quotes")
    return Question(
        id=str(row["id"]),
        question=str(row["question"]),
        doc_id=doc_id,
        quotes=tuple(str(q) for q in quotes),
        names_document=bool(row.get("names_document", False)),
        kind=str(row.get("kind", "")),
        case_id=case_id,
        gold_section=str(row["gold_section"]) if row.get("gold_section") else None,
        gold_doc=str(row["gold_doc"]),
    )


# quote -> span ------------------------------------------------------------------------

_WS = re.compile(r"\s+")


def find_quote(text: str, quote: str) -> list[tuple[int, int]]:
    """Every span of ``text`` that is ``quote``: exact matches, else whitespace-blind ones."""
    quote = unicodedata.normalize("NFC", quote).strip()
    if not quote:
        return []
    spans = []
    i = text.find(quote)
    while i != -1:
        spans.append((i, i + len(quote)))
        i = text.find(quote, i + 1)
    if spans:
        return spans
    # Whitespace-blind: compare the texts with every whitespace character removed and map
    # the match back through the positions of the characters that were kept.
    kept = [i for i, ch in enumerate(text) if not ch.isspace()]
    squashed = "".join(text[i] for i in kept)
    needle = _WS.sub("", quote)
    j = squashed.find(needle)
    while j != -1:
        spans.append((kept[j], kept[j + len(needle) - 1] + 1))
        j = squashed.find(needle, j + 1)
    return spans


@dataclass(slots=True)
class Resolution:
    """Gold spans per question id, and the quotes that did not resolve exactly once."""

    spans: dict[str, list[GoldSpan]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def resolve(evalset: EvalSet, source_text: dict[str, str | None]) -> Resolution:
    """Resolve every gold quote in its document's source text (doc_id -> text)."""
    res = Resolution()
    for q in evalset.questions:
        text = source_text.get(q.doc_id)
        if text is None:
            res.problems.append(f"{q.id}: no source text for {q.doc_id} (not ingested?)")
            continue
        spans = []
        for quote in q.quotes:
            found = find_quote(text, quote)
            if len(found) != 1:
                what = "not found" if not found else f"found {len(found)} times"
                res.problems.append(f"{q.id}: quote {what} in {q.doc_id}: {quote[:70]!r}")
                continue
            spans.append(GoldSpan(q.doc_id, *found[0]))
        res.spans[q.id] = spans
    return res
