"""Word's automatic paragraph numbers ("1.", "1.1", "(a)"), which python-docx leaves out.

A clause numbered by a Word list style shows "3.2" on the page, but ``para.text``
has no number: Word computes it from ``numbering.xml`` when it renders. Clause
numbers are how people cite and ask about contracts, so the loader puts them
back, computed the way Word does for the common cases: decimal, letter and
roman formats, multi-level ``lvlText`` ("%1.%2"), ``start`` values, level
restarts, and numbering set directly on a paragraph or through its style.
Bullets get no label.

This reads python-docx's lxml elements (``w:numPr``, ``w:abstractNum``), its
only contact with the library's internals; tests/rag/test_loaders.py builds
numbered documents with python-docx and checks the labels.
"""

from __future__ import annotations

from typing import Any

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _roman(n: int) -> str:
    out = ""
    for value, sym in (
        (1000, "m"), (900, "cm"), (500, "d"), (400, "cd"), (100, "c"), (90, "xc"),
        (50, "l"), (40, "xl"), (10, "x"), (9, "ix"), (5, "v"), (4, "iv"), (1, "i"),
    ):  # fmt: skip
        while n >= value:
            out += sym
            n -= value
    return out


def _letters(n: int) -> str:
    # Word's letter numbering: a..z, then aa..zz.
    n = max(1, n)
    return chr(ord("a") + (n - 1) % 26) * ((n - 1) // 26 + 1)


def _format(n: int, fmt: str) -> str | None:
    match fmt:
        case "decimal" | "decimalZero":
            return str(n)
        case "lowerLetter":
            return _letters(n)
        case "upperLetter":
            return _letters(n).upper()
        case "lowerRoman":
            return _roman(n)
        case "upperRoman":
            return _roman(n).upper()
        case _:
            return None  # bullet, none, or a format we do not render


def _val(el: Any, name: str) -> str | None:
    child = el.find(f"{_W}{name}") if el is not None else None
    return child.get(f"{_W}val") if child is not None else None


class Numbering:
    """Computes the number label of each paragraph, in document order."""

    def __init__(self, document: Any) -> None:
        self._levels: dict[str, dict[int, tuple[int, str, str]]] = {}  # abstract -> lvl
        self._num_to_abstract: dict[str, str] = {}
        self._start_override: dict[tuple[str, int], int] = {}
        self._counters: dict[str, dict[int, int]] = {}
        try:
            root = document.part.numbering_part.element
        except (KeyError, NotImplementedError, AttributeError):
            return
        for abstract in root.findall(f"{_W}abstractNum"):
            aid = abstract.get(f"{_W}abstractNumId")
            levels: dict[int, tuple[int, str, str]] = {}
            for lvl in abstract.findall(f"{_W}lvl"):
                ilvl = int(lvl.get(f"{_W}ilvl", "0"))
                start = int(_val(lvl, "start") or "1")
                levels[ilvl] = (start, _val(lvl, "numFmt") or "decimal", _val(lvl, "lvlText") or "")
            self._levels[aid] = levels
        for num in root.findall(f"{_W}num"):
            nid = num.get(f"{_W}numId")
            aid = _val(num, "abstractNumId")
            if nid is None or aid is None:
                continue
            self._num_to_abstract[nid] = aid
            for override in num.findall(f"{_W}lvlOverride"):
                start = _val(override, "startOverride")
                if start is not None:
                    ilvl = int(override.get(f"{_W}ilvl", "0"))
                    self._start_override[(nid, ilvl)] = int(start)

    def _num_pr(self, para: Any) -> tuple[str, int] | None:
        ppr = para._p.pPr
        num_pr = ppr.find(f"{_W}numPr") if ppr is not None else None
        style = para.style
        while num_pr is None and style is not None:
            sppr = style.element.find(f"{_W}pPr")
            num_pr = sppr.find(f"{_W}numPr") if sppr is not None else None
            style = style.base_style
        if num_pr is None:
            return None
        nid = _val(num_pr, "numId")
        if nid is None or nid == "0":
            return None
        return nid, int(_val(num_pr, "ilvl") or "0")

    def label(self, para: Any) -> str | None:
        """The number Word would show before ``para`` ("2.1", "(a)"), or None.

        Call once per paragraph, in document order: counters advance.
        """
        if not self._levels:
            return None
        found = self._num_pr(para)
        if found is None:
            return None
        nid, ilvl = found
        aid = self._num_to_abstract.get(nid)
        levels = self._levels.get(aid or "")
        if not levels or ilvl not in levels:
            return None
        counters = self._counters.setdefault(nid, {})
        start = self._start_override.get((nid, ilvl), levels[ilvl][0])
        counters[ilvl] = counters.get(ilvl, start - 1) + 1
        for deeper in [k for k in counters if k > ilvl]:
            del counters[deeper]
        text = levels[ilvl][2]
        if not text:
            return None
        for k in range(ilvl + 1):
            lvl_start, fmt, _ = levels.get(k, (1, "decimal", ""))
            value = counters.get(k, self._start_override.get((nid, k), lvl_start))
            shown = _format(value, fmt)
            if shown is None:
                return None
            text = text.replace(f"%{k + 1}", shown)
        return text.strip() or None
