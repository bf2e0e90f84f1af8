"""Extractive answering: pick the statements of retrieved passages that answer a question.

Pure text heuristics, no CrewAI and no model: :func:`extractive_answer` cuts
the passages into statements (prose sentences; in transcripts, an "A." answer
line together with the "Q." line it answers), scores each by the question
terms it contains (IDF-weighted over the candidates, light stemming, numbers
and identifiers weighted up) plus what its paragraph and section heading add,
a bonus when it belongs to a provision the question names ("Section 7.2",
"¶ 26") and when it holds the kind of fact asked for (an amount, a period, a
date, a temperature, a reason, a name, a ruling). A question's plain words
also find the defined terms the passages define with them ('"Software" means
the firmware ...'); a statement with the fact asked for shares in its
neighbour's match; a transcript exchange whose examiner asked the same kind
of question ("Why ...?") scores up. It answers with the best few, verbatim and
in document order, each followed by the ``[n]`` marker of its passage.

:class:`legalstream.agent.offline_llm.OfflineExtractiveLLM` uses it to answer
inside the real CrewAI loop; docs/agent.md describes the signals.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass

__all__ = ["extractive_answer", "score_units", "split_sentences", "terms"]

_STOP = frozenset(
    """a about above after again against all am an and any are as at be because been
    before being below between both but by can could did do does doing done down during
    each few for from further had has have having he her here hers him his how i if in
    into is it its itself just me more most my no nor not now of off on once only or other
    our out over own same she should so some such than that the their them then there
    these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours case according document
    documents tell please give state say said find describe explain whether much must""".split()
)

_WORD = re.compile(r"[A-Za-z0-9§$][A-Za-z0-9§$.,'’-]*[A-Za-z0-9%]|[A-Za-z0-9§$%]")
#: Words before a full stop that do not end a sentence (also used by grounding.py).
ABBREVIATION = _ABBREV = re.compile(
    r"(?:\b(?:Inc|INC|Co|CO|Corp|CORP|Ltd|LTD|LLC|No|Nos|v|vs|Mr|Mrs|Ms|Dr|Sec|Secs|St|Fed|Civ|Cir|App|"
    r"Supp|Ex|Exh|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec|e\.g|i\.e|U\.S|etc|al|"
    r"Wn|Wash|Wis|Stat|Rev|Ann|Ariz|Cal|Minn|RCW|p|pp|para|Art|Ch|cf|Compl|Def|Pl|Br|Dkt|Decl)\.|"
    r"\b[A-Z]\.|\b[ap]\.m\.)$"
)
_SENT_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+(?=[\"'“‘(\[]?[A-Z0-9§¶])")
_SUFFIXES = (
    "ations",
    "ation",
    "ments",
    "ment",
    "ings",
    "ing",
    "edly",
    "ed",
    "ies",
    "es",
    "s",
    "ly",
)


def _stem(word: str) -> str:
    """A light stemmer: lower case, no possessive, a common suffix, a final "e"."""
    w = word.lower().replace("’", "'").strip(".,'-")
    if w.endswith("'s"):
        w = w[:-2]
    if any(ch.isdigit() for ch in w):
        return w  # numbers, section references, identifiers: exact
    for suffix in _SUFFIXES:
        if len(w) > len(suffix) + 3 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w[:_PREFIX]


#: Stems are cut to this many letters ("automated", "automatic" -> "automat").
_PREFIX = 7


#: Plain words of a question and the legal words a record uses for them: a question
#: term also looks for these (weighted as the plain word).
_LEGAL_WORDS: dict[str, tuple[str, ...]] = {
    "responsibility": ("liability", "liable"),
    "responsible": ("liable", "liability"),
    "reject": ("deny", "denied", "disclaim"),
    "rejecting": ("deny", "denied", "disclaim"),
    "rejected": ("deny", "denied", "disclaim"),
    "refuse": ("deny", "denied", "decline"),
    "refused": ("deny", "denied", "declined"),
    "allow": ("deny", "denied", "states a claim"),
    "proceed": ("states a claim", "survive"),
    "co-op": ("cooperative",),
}


def related_terms(question: str) -> dict[str, str]:
    """Terms of the legal words that stand for the question's plain words -> that word's term."""
    out: dict[str, str] = {}
    for word in re.findall(r"[A-Za-z][A-Za-z-]+", question):
        for legal in _LEGAL_WORDS.get(word.lower(), ()):
            for t in terms(legal):
                out.setdefault(t, _stem(word))
    return out


def terms(text: str) -> list[str]:
    """Content terms of ``text``; a hyphenated word also gives its parts."""
    out: list[str] = []
    for w in _WORD.findall(text):
        if w.lower() in _STOP or len(w) < 2:
            continue
        out.append(_stem(w))
        if "-" in w and not any(ch.isdigit() for ch in w):
            out.extend(_stem(p) for p in w.split("-") if len(p) > 2 and p.lower() not in _STOP)
    return out


def _sentences(block: str) -> list[str]:
    block = " ".join(block.split())
    merged: list[str] = []
    for part in _SENT_END.split(block):
        if merged and (
            _ABBREV.search(merged[-1])
            or len(merged[-1]) < 4
            # a provision's number and title ("7.2 Limitation of Liability.") opens its text
            or (len(merged) == 1 and _LABEL.match(merged[-1]) and len(merged[-1].split()) <= 6)
        ):
            merged[-1] = merged[-1] + " " + part
        else:
            merged.append(part)
    return [p.strip() for p in merged if p.strip()]


def split_sentences(text: str) -> list[str]:
    """Split a passage into sentences; headings and list lines stay their own unit."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=#|\s*[-*] |\s*\d+\.\s)", text):
        out.extend(_sentences(block))
    return out


# --- passages -> answer units ------------------------------------------------------------

#: A transcript turn: optional line number, then "Q." / "A." / "MR. NAME:" / "THE WITNESS:".
_TURN = re.compile(
    r"^\s*(?:\d{1,3}\s+)?(?:(Q|A)\.(?:\s|$)|((?:MR|MS|MRS|DR)\.\s+[A-Z'-]+|THE [A-Z]+):)"
)
_HEADING = re.compile(r"^\s*#+\s*(.*?)\s*$")
#: A numbered provision or paragraph at the start of a block: "7.2 Title.", "26. On ...", "Section 4".
_LABEL = re.compile(r"^(?:(?:Section|Article|§)\s*)?(\d+(?:\.\d+)*)(?:\.|\s|\))")
_HEAD_LABEL = re.compile(r"\b(?:Section|Article|§)\s*(\d+(?:\.\d+)*)", re.IGNORECASE)
#: References in a question: "Section 7.2(a)", "§ 4", "¶ 26", "paragraph 14", "Article 3".
_REF = re.compile(
    r"(?:\bSections?|\bArticles?|\bparagraphs?|\bpara\.|§+|¶+)\s*(\d+(?:\.\d+)*)", re.IGNORECASE
)
_PAGE_HEADING = re.compile(r"^(?:page|p\.)\s*\d+$", re.IGNORECASE)

_NUMWORD = (
    r"(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
    r"twenty|thirty|forty|forty-five|fifty|sixty|seventy|eighty|ninety|hundred)"
)
#: Question cues -> what the answer text looks like.
_CUES: list[tuple[re.Pattern[str], re.Pattern[str]]] = [
    (  # temperature
        re.compile(
            r"\b(?:temperatures?|how (?:cold|warm|hot)|degrees?|setpoint|thaw\w*|froze\w*)\b", re.I
        ),
        re.compile(r"-?\d+(?:\.\d+)?\s*°\s*[FC]\b|\bdegrees\b|\bminus \w+", re.I),
    ),
    (  # money
        re.compile(
            r"\b(?:how much|cost|costs|price|fee|fees|charge|charges|pay|paid|payment|"
            r"amount|damages|settlement|worth|sum|offer(?:ed)?|value|cap)\b",
            re.I,
        ),
        re.compile(r"\$\s?\d|\b\d[\d,.]*\s*(?:dollars|cents)\b|\bcents\b", re.I),
    ),
    (  # duration, deadline, notice period
        re.compile(
            r"\b(?:how long|how soon|how many (?:minutes|hours|days|weeks|months|years)|"
            r"within|deadline|advance|period|how much (?:time|notice|warning))\b",
            re.I,
        ),
        re.compile(
            rf"\b{_NUMWORD}\s*(?:\(\d+\)\s*)?(?:business\s+|calendar\s+|full\s+)?"
            r"(?:minutes?|hours?|days?|weeks?|months?|years?)\b",
            re.I,
        ),
    ),
    (  # date / time
        re.compile(
            r"^\s*when\b|\b(?:what|which) (?:date|day|time|month|year)\b|\bwhat time\b", re.I
        ),
        re.compile(
            r"\b(?:January|February|March|April|May|June|July|August|September|October|"
            r"November|December)\b|\b\d{1,2}:\d{2}\b|\b[ap]\.m\.|\b\d{1,2}(?:st|nd|rd|th)\b|"
            r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b",
            re.I,
        ),
    ),
    (  # count / quantity
        re.compile(r"\bhow many\b|\bnumber of\b", re.I),
        re.compile(rf"(?<![\w.-]){_NUMWORD}(?![\w-]|\.\d)", re.I),
    ),
    (  # reason
        re.compile(r"^\s*why\b|\breason\b|\bwhat caused\b|\bcause[ds]?\b|\bexplanation\b", re.I),
        re.compile(
            r"\bbecause\b|\bdue to\b|\bcaused\b|\bso that\b|\bin order to\b|\bwanted to\b|"
            r"\breason\b|\bsince\b|\bresult(?:ed)? (?:of|from|in)\b|"
            # a court's reasons for leaving an issue to trial, or for ruling as it did
            r"\bgenuine (?:dispute|issue)s?\b|\bquestions? of (?:material )?fact\b|\btriable\b|"
            r"\bnot persuaded\b|^(?:First|Second|Third|Finally), ",
            re.I,
        ),
    ),
    (  # person
        re.compile(
            r"^\s*(?:who|whom)\b|\bwhich (?:person|employee|individual|officer|witness)\b", re.I
        ),
        re.compile(r"\b(?:Mr|Ms|Mrs|Dr)\.\s+[A-Z]|\b[A-Z][a-z]+ [A-Z][a-z]+\b|\bI did\b"),
    ),
    (  # a court's ruling
        re.compile(
            r"\b(?:court|judge|ruling|rule[ds]?|held|hold|decided?|granted?|denied|deny|"
            r"dismiss\w*|order(?:ed)?)\b|\bwhat (?:happened|became) (?:to|of)\b",
            re.I,
        ),
        re.compile(
            r"\b(?:FINDS|GRANTED|DENIED|DISMISSED|ORDERED|ORDERS|HOLDS|CONCLUDES|"
            r"AFFIRMED|REVERSED|SUSTAINED|OVERRULED)\b|\b(?:we|the court) (?:hold|find|conclude)s?\b"
        ),
    ),
]


#: The reason and ruling entries of _CUES, by name.
_REASON_ASKED = _CUES[5][0]
_RULING_ANSWER = _CUES[7][1]
assert "why" in _REASON_ASKED.pattern and "DISMISSED" in _RULING_ANSWER.pattern

#: Kinds of question a deposition examiner asks too: the user's question -> the
#: examiner's question line ("Q. Why did you wait that long?") of the same kind.
_SAME_KIND: list[tuple[re.Pattern[str], re.Pattern[str]]] = [
    (
        re.compile(r"^\s*why\b|\b(?:what|which) (?:was the )?reasons?\b|\bwhat caused\b", re.I),
        re.compile(r"^(?:why|what (?:was|is) the reason|what caused)\b", re.I),
    ),
    (
        re.compile(r"^\s*when\b|\b(?:what|which) (?:date|day|time)\b", re.I),
        re.compile(r"^(?:when|what (?:date|day|time))\b", re.I),
    ),
    (re.compile(r"^\s*(?:who|whom)\b", re.I), re.compile(r"^(?:who|whom)\b", re.I)),
]
_HOW = re.compile(r"\bhow (?:long|many|much|soon|often|far|cold|warm|hot)\b", re.I)
#: A yes/no question; the examiner's is one if it opens with the same verb ("Did you read ...").
_YES_NO = re.compile(r"^\s*(did|does|do|was|were|is|are|has|have|had)\b", re.I)
_Q_LINE = re.compile(r"^\s*(?:\d{1,3}\s+)?Q\.\s*")


def _examiner_kinds(question: str) -> list[re.Pattern[str]]:
    """Patterns of examiner question lines that ask what ``question`` asks."""
    kinds = [examiner for asked, examiner in _SAME_KIND if asked.search(question)]
    kinds += [re.compile(rf"^{re.escape(m.lower())}\b", re.I) for m in _HOW.findall(question)]
    kinds += [re.compile(rf"^{m.group(1)}\b", re.I) for m in [_YES_NO.match(question)] if m]
    return kinds


@dataclass(slots=True)
class _Unit:
    rank: int  # rank of the passage in the observation
    marker: int
    pos: int  # order within its passage
    text: str  # the verbatim statement (whitespace normalised)
    body: str  # the answering part (the answer of a Q/A exchange)
    terms: set[str]
    block: int  # global id of its paragraph (prose) or exchange window (transcript)
    heading: str
    label: str  # numbered provision/paragraph it belongs to ("7.2", "26"), or ""
    #: "caption" (a line in capitals: a caption, a title, a party's name),
    #: "signature" (a signature block: the party, then By:/Name:/Title: lines), or "".
    kind: str = ""


def _units(passages: list[tuple[int, str]]) -> tuple[list[_Unit], dict[int, set[str]]]:
    """Answer units of ``passages`` and the terms of each paragraph."""
    units: list[_Unit] = []
    block_terms: dict[int, set[str]] = {}
    block_id = 0
    for rank, (marker, text) in enumerate(passages):
        heading, section, pos = "", "", 0
        for raw in re.split(r"\n\s*\n", text):
            lines = [ln for ln in raw.splitlines() if ln.strip()]
            if not lines:
                continue
            # headings open a section (and may carry its number)
            while lines and _HEADING.match(lines[0]):
                heading = _HEADING.match(lines[0]).group(1)  # type: ignore[union-attr]
                found = _HEAD_LABEL.search(heading)
                section = found.group(1) if found else ""
                lines = lines[1:]
            if not lines:
                continue
            if any(_TURN.match(ln) for ln in lines):
                # transcript: turns (a line and its continuation lines); an answer is
                # paired with the question line right before it
                turns: list[list[str]] = []
                for ln in lines:
                    if _TURN.match(ln) or not turns:
                        turns.append([ln])
                    else:
                        turns[-1].append(ln)
                for i, turn in enumerate(turns):
                    m = _TURN.match(turn[0])
                    if not m or m.group(1) != "A":
                        continue
                    answer = " ".join(" ".join(turn).split())
                    prev = turns[i - 1] if i > 0 else None
                    pm = _TURN.match(prev[0]) if prev else None
                    question = (
                        " ".join(" ".join(prev).split())
                        if prev and pm and pm.group(1) == "Q"
                        else ""
                    )
                    full = f"{question} {answer}".strip()
                    block_id += 1
                    unit = _Unit(
                        rank,
                        marker,
                        pos,
                        full,
                        answer,
                        set(terms(full)),
                        block_id,
                        heading,
                        section,
                    )
                    units.append(unit)
                    pos += 1
                # an exchange's context: the exchanges around it
                tail = [u for u in units if u.rank == rank and u.block > block_id - len(turns)]
                for j, u in enumerate(tail):
                    ctx = set(u.terms)
                    for v in tail[max(0, j - 1) : j + 2]:
                        ctx |= v.terms
                    block_terms[u.block] = ctx
                continue
            # prose: list items are their own paragraphs
            for para in re.split(r"\n(?=\s*[-*•] |\s*\(?[a-z0-9]{1,3}[.)]\s)", "\n".join(lines)):
                para = " ".join(para.split())
                if not para:
                    continue
                found = _LABEL.match(para)
                if found:
                    section = found.group(1)
                block_id += 1
                block_terms[block_id] = set(terms(para))
                if _SIGNATURE.match(para):
                    # a signature block, with the party it signs for (the line before)
                    party = units[-1] if units and units[-1].rank == rank else None
                    text = f"{party.text} {para}" if party and party.kind == "caption" else para
                    units.append(
                        _Unit(rank, marker, pos, text, text, set(terms(text)), block_id,
                              heading, section, "signature")
                    )  # fmt: skip
                    pos += 1
                    continue
                for sentence in _sentences(para):
                    kind = "caption" if _is_caption(sentence) else ""
                    units.append(
                        _Unit(rank, marker, pos, sentence, sentence, set(terms(sentence)),
                              block_id, heading, section, kind)
                    )  # fmt: skip
                    pos += 1
    return units, block_terms


#: A signature block: "By: /s/ Name ...", then Name:/Title:/Date: lines.
_SIGNATURE = re.compile(r"^By:\s*(?:/s/\s*)?\S.*\bName:\s*\S", re.IGNORECASE)
#: Questions about who signed (or executed) an agreement.
_SIGNED = re.compile(r"\b(?:sign(?:ed|s|ing|atur\w*|atory|atories)?|execut\w*)\b", re.IGNORECASE)
#: Questions about what a party did in answer to something, and the words of such acts.
_RESPONSE = re.compile(r"\b(?:respon\w*|repl(?:y|ied|ies)|react\w*)\b", re.IGNORECASE)
#: (Not in capitals: "DENIED" is a court's ruling, not a party's response.)
_RESPONSE_ACT = re.compile(
    r"\b(?:[Dd]en(?:y|ies|ied)|[Aa]dmit(?:s|ted)?|[Aa]nswers?|[Rr]espond(?:s|ed)?|"
    r"[Rr]eject(?:s|ed)?|[Rr]eplied|[Cc]ounterclaim\w*|[Aa]ffirmative [Dd]efenses?)\b"
)


_OUTCOME = re.compile(r"\bwhat (?:happened|became) (?:to|of)\b", re.IGNORECASE)


def _is_caption(text: str) -> bool:
    """A line in capitals (a caption, a title, a party's name): no statement of fact."""
    letters = [c for c in text if c.isalpha()]
    if len(letters) < 6 or sum(c.isupper() for c in letters) <= 0.7 * len(letters):
        return False
    # "Count III is DISMISSED WITH PREJUDICE." is a ruling: it has a word in lower case
    return not re.search(r"\b[a-z]{2,}\b", text)


def signature_question(question: str) -> bool:
    """Whether ``question`` asks who signed (executed) something."""
    return bool(_SIGNED.search(question)) and bool(
        re.search(r"^\s*who\b|\bwhom?\b", question, re.I)
    )


def signature_blocks(passages: list[tuple[int, str]]) -> int:
    """How many signature blocks the passages hold."""
    return sum(
        1
        for _m, text in passages
        for p in re.split(r"\n\s*\n", text)
        if _SIGNATURE.match(" ".join(p.split()))
    )


def _ref_match(label: str, refs: set[str]) -> bool:
    return bool(label) and any(label == r or label.startswith(r + ".") for r in refs)


def extractive_answer(
    question: str, passages: list[tuple[int, str]], max_sentences: int = 4
) -> str:
    """The best statements of ``passages`` for ``question``, each with its ``[n]``.

    Statements are sentences of prose paragraphs and, in transcripts, answer
    lines together with the question line they answer. Each is scored by the
    IDF-weighted question terms it contains (numbers and identifiers count
    more), plus those its paragraph and section heading add, plus a bonus when
    it belongs to a provision the question names ("Section 7.2", "¶ 26") and
    when it has the kind of fact the question asks for (an amount, a period, a
    date, a temperature, a reason, a name, a ruling).
    """
    q_terms = set(terms(question))
    units, scored = score_units(question, passages)
    if not scored:
        return ""
    heading_terms = {u.heading: set(terms(u.heading)) for u in units}
    scored.sort(key=lambda si: (-si[0], si[1]))
    top = scored[0][0]
    chosen: list[int] = []
    for score, index in scored:
        if len(chosen) >= max_sentences or score < 0.5 * top:
            break
        u = units[index]
        if any(_similar(u, units[c]) for c in chosen):
            continue
        chosen.append(index)
    chosen.sort(key=lambda i: (units[i].rank, units[i].pos))
    # Name the section when its heading answers part of the question ("which
    # defense ..."): it opens the statement it heads, so the statement is still
    # the passage's own words, with the section it sits under.
    covered = set().union(*(units[i].terms for i in chosen))
    statements: list[str] = []
    named: set[tuple[int, str]] = set()
    for i in chosen:
        u = units[i]
        name = _section_name(u.heading)
        if (
            name
            and (u.rank, u.heading) not in named
            and not _PAGE_HEADING.match(u.heading)
            and (q_terms - _STRUCTURE) & heading_terms[u.heading] - covered
        ):
            named.add((u.rank, u.heading))
            statements.append(f"{name}: {u.text} [{u.marker}]")
        else:
            statements.append(f"{u.text} [{u.marker}]")
    return " ".join(statements)


#: Words that say where a provision is, not what it is about: no reason to name a heading.
_STRUCTURE = frozenset(terms("section sections article count paragraph exhibit page part"))


def _section_name(heading: str) -> str | None:
    """A heading as it can open a statement: its numbering dropped; None if a number is left.

    The statement must still hold only what its passage states, and every
    number it states must be the passage's: "Section 10. Insurance" would bring
    a "10" the clause does not say.
    """
    name = re.sub(
        r"^(?:(?:Section|Article|Count|Part)\s+)?[\dIVXLC]+(?:\.\d+)*[.:)]?\s+", "", heading
    )
    name = name.strip(" #")
    return None if not name or re.search(r"\d", name) else name


#: How much a passage's place in the retrieval order lowers its statements'
#: scores, per place: retrieval's order is evidence, but with clause-sized
#: passages the answer is often a few places down.
RANK_DECAY = 0.02


def score_units(
    question: str, passages: list[tuple[int, str]]
) -> tuple[list[_Unit], list[tuple[float, int]]]:
    """The answer units of ``passages`` and ``(score, index)`` of those that may answer."""
    q_terms = set(terms(question))
    units, block_terms = _units(passages)
    if not units or not q_terms:
        return units, []
    n = len(units)
    weight: dict[str, float] = {}
    for t in q_terms:
        df = sum(1 for u in units if t in u.terms)
        weight[t] = math.log(1 + n / (1 + df)) * (1.5 if any(c.isdigit() for c in t) else 1.0)
    scale = max(weight.values())
    for t, plain in _defined_terms(units, q_terms).items():
        df = sum(1 for u in units if t in u.terms)
        weight[t] = min(math.log(1 + n / (1 + df)), *(weight[p] for p in plain))
    for t, plain in related_terms(question).items():
        if t not in weight and plain in weight:
            weight[t] = weight[plain]
    q_terms = set(weight)
    refs = set(_REF.findall(question))
    cues = [answer for asked, answer in _CUES if asked.search(question)]
    if _REASON_ASKED.search(question):  # "why ...": the reason, not the ruling it led to
        cues = [c for c in cues if c is not _RULING_ANSWER]
    heading_terms = {u.heading: set(terms(u.heading)) for u in units}

    def overlap(ts: set[str]) -> float:
        return sum(weight[t] for t in q_terms & ts)

    q_bigrams = _bigrams(question)
    testimony = bool(_TESTIMONY.search(question))
    kinds = _examiner_kinds(question)
    # who signed: the signature blocks are the answer, when the passages have them
    signed = signature_question(question) and any(u.kind == "signature" for u in units)
    #: "What happened to the claim ...": only a ruling answers it, when there is one.
    outcome = bool(_OUTCOME.search(question))
    response = bool(_RESPONSE.search(question))
    owns = [overlap(u.terms) for u in units]
    scored: list[tuple[float, int]] = []
    rulings: list[tuple[float, int]] = []
    for index, u in enumerate(units):
        if u.kind == "signature" or signed:
            if u.kind == "signature" and signed:
                scored.append((2.0 * scale * (1.0 - RANK_DECAY * u.rank), index))
            continue
        if u.kind == "caption":
            continue  # a caption or a title states nothing
        if re.search(r"\[\d", u.text) or (len(u.body.split()) < 4 and u.body == u.text):
            continue  # would read as a citation marker; or a fragment
        own = owns[index]
        context = overlap(block_terms.get(u.block, set()) - u.terms)
        body = _LABEL.sub("", u.body, count=1)  # "26. On ..." is no amount nor date
        typed = bool(cues) and any(c.search(body) for c in cues)
        if response and _RESPONSE_ACT.search(body):
            typed = True  # "what was X's response": what X admitted, denied, answered
        asked = u.body != u.text and any(
            k.search(_Q_LINE.sub("", u.text[: -len(u.body)])) for k in kinds
        )
        if own <= 0 and not (typed and (context > 0 or asked)):
            continue
        score = own / (1 + 0.15 * math.log(1 + len(u.terms)))
        # (a ruling sits under the heading that names the claim it decides)
        heading_weight = 1.0 if outcome else 0.25
        score += 0.35 * context + heading_weight * overlap(heading_terms[u.heading] - u.terms)
        if typed:
            # The fact asked for often sits next to the sentence that has the
            # question's words ("Whether ... presents disputed questions of fact.
            # The Court FINDS that ..."): it shares in its neighbour's match.
            score += 0.5 * max(
                (owns[j] for j in (index - 1, index + 1)
                 if 0 <= j < len(units) and units[j].block == u.block),
                default=0.0,
            )  # fmt: skip
        if asked:
            score += 0.5 * scale
        if refs and _ref_match(u.label, refs):
            score += 0.8 * scale
        if typed:
            score += 0.6 * scale
        if u.body != u.text:  # a Q/A exchange: the question line's wording matters
            score += 0.25 * scale * min(3, len(q_bigrams & _bigrams(u.text[: -len(u.body)])))
            if testimony:
                score += 0.4 * scale
        scored.append((score * (1.0 - RANK_DECAY * u.rank), index))
        if outcome and typed:
            rulings.append(scored[-1])
    return units, (rulings if outcome and rulings else scored)


#: A defined term: '"Software" means ...', or a parenthetical '... (the "Warranty Period")'.
_DEFINES = re.compile(r"[\"“]([A-Z][^\"“”]{1,60})[\"”]\s+(?:means|shall mean|refers to)\b")
_NAMES = re.compile(r"\((?:the |each an? |an? )?[\"“]([A-Z][^\"“”]{1,60})[\"”]\)")


def _definitions(text: str) -> list[tuple[str, str]]:
    """``(defined term, defining words)`` pairs stated in ``text``."""
    out = [(m.group(1), text[m.end() :]) for m in _DEFINES.finditer(text)]
    for m in _NAMES.finditer(text):
        # the words the parenthetical names: those just before it, in its clause
        before = re.split(r"[,;:]", text[: m.start()])[-1].split()[-10:]
        out.append((m.group(1), " ".join(before)))
    return out


def _defined_terms(units: list[_Unit], q_terms: set[str]) -> dict[str, set[str]]:
    """Terms of defined terms that stand for question words, each with its trigger words.

    A question in plain words ("firmware") meets a contract that says it once,
    in a definition ('"Software" means the firmware ...'), and then uses only
    the defined term. A question word the passages use nowhere but in
    definitions therefore also looks for the term it defines.
    """
    found = [(u, _definitions(u.text)) for u in units]
    defining = {id(u) for u, defs in found if defs}
    if not defining:
        return {}
    elsewhere = set().union(*(u.terms for u in units if id(u) not in defining))
    out: dict[str, set[str]] = {}
    for _u, defs in found:
        for name, words in defs:
            plain = (set(terms(words)) & q_terms) - elsewhere
            for t in set(terms(name)) - q_terms if plain else ():
                out.setdefault(t, set()).update(plain)
    return out


_TESTIMONY = re.compile(r"\b(?:witness\w*|testif\w*|testimony|deposition|deposed)\b", re.I)


def _bigrams(text: str) -> set[tuple[str, str]]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return set(itertools.pairwise(words))


def _similar(a: _Unit, b: _Unit) -> bool:
    if a.text in b.text or b.text in a.text:
        return True
    union = a.terms | b.terms
    return bool(union) and len(a.terms & b.terms) / len(union) > 0.7
