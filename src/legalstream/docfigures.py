"""Figures in the docs are what a command printed, written there by the command.

A Markdown file holds a command's figures between two markers::

    <!-- figures: eval · make eval · 2026-11-29 · sha256:0123456789ab -->
    ...what the command wrote...
    <!-- /figures: eval -->

The opening marker names the section, the command that wrote it, the day,
and a hash of what lies between the markers: ``check`` (and
tests/test_docs.py) fails when the text was edited by hand, so a figure in a
section is always one the command printed. To change it, run the command
again; it rewrites the section.

    python -m legalstream.docfigures run docs/retrieval.md eval "make eval" -- \\
        .venv/bin/python -m legalstream.rag.eval
    python -m legalstream.docfigures check README.md docs/*.md

``run`` shows the command's output as it comes and, when it exits 0, writes
its standard output into the section as a ``text`` block (the section must
exist: add the two markers, empty, where the figures belong). Scripts that
write Markdown of their own (bench/fanout.py --docs) call
:func:`write_section`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_OPEN = re.compile(
    r"^<!-- figures: (?P<name>[\w.-]+)(?: · (?P<command>.*?) · (?P<day>[\d-]+)"
    r" · sha256:(?P<hash>[0-9a-f]{12}))? -->$",
    re.M,
)


@dataclass(frozen=True)
class Section:
    name: str
    command: str | None
    day: str | None
    hash: str | None
    body: str
    start: int  # offsets of the whole section, markers included
    end: int

    @property
    def intact(self) -> bool:
        """Whether the body is what the command wrote (an empty, never written one is too)."""
        if self.hash is None:
            return not self.body.strip()
        return digest(self.body) == self.hash


def digest(body: str) -> str:
    return hashlib.sha256(body.strip().encode()).hexdigest()[:12]


def sections(text: str) -> Iterator[Section]:
    for match in _OPEN.finditer(text):
        name = match.group("name")
        close = re.compile(rf"^<!-- /figures: {re.escape(name)} -->$", re.M)
        end = close.search(text, match.end())
        if end is None:
            raise ValueError(f"figures section {name!r} has no closing <!-- /figures: {name} -->")
        yield Section(
            name,
            match.group("command"),
            match.group("day"),
            match.group("hash"),
            text[match.end() : end.start()].strip("\n"),
            match.start(),
            end.end(),
        )


def find(text: str, name: str) -> Section | None:
    return next((s for s in sections(text) if s.name == name), None)


def write_section(doc: Path, name: str, body: str, command: str) -> None:
    """Put ``body`` into ``doc``'s section ``name``, marked as written by ``command`` today."""
    text = doc.read_text(encoding="utf-8")
    section = find(text, name)
    if section is None:
        raise LookupError(
            f"{doc} has no figures section {name!r}: add the two lines "
            f"'<!-- figures: {name} -->' and '<!-- /figures: {name} -->' where they belong"
        )
    body = body.strip("\n")
    day = datetime.date.today().isoformat()
    opening = f"<!-- figures: {name} · {command} · {day} · sha256:{digest(body)} -->"
    replaced = f"{opening}\n{body}\n<!-- /figures: {name} -->"
    doc.write_text(text[: section.start] + replaced + text[section.end :], encoding="utf-8")


def text_block(output: str) -> str:
    """A command's output as a Markdown ``text`` block."""
    return "```text\n" + output.rstrip() + "\n```"


def run(doc: Path, name: str, shown: str, argv: list[str]) -> int:
    """Run ``argv``; show its output live; on success write it into the section."""
    if find(doc.read_text(encoding="utf-8"), name) is None:
        # Say so before minutes of work, not after.
        print(
            f"note: {doc} has no figures section {name!r}; the output is not written there",
            file=sys.stderr,
        )
        return subprocess.call(argv)
    captured: list[str] = []
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            captured.append(line)
    if proc.returncode == 0:
        write_section(doc, name, text_block("".join(captured)), shown)
        print(f"(written into {doc}, section {name!r})", file=sys.stderr)
    return proc.returncode


def check(paths: list[Path]) -> list[str]:
    """Every figures section edited by hand since its command wrote it."""
    problems = []
    for path in paths:
        for s in sections(path.read_text(encoding="utf-8")):
            if not s.intact:
                problems.append(
                    f"{path}: figures section {s.name!r} differs from what "
                    f"{s.command or 'its command'} wrote: run it again instead of editing"
                )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m legalstream.docfigures",
        description="Write a command's figures into a Markdown section, or check the sections.",
    )
    sub = parser.add_subparsers(dest="what", required=True)
    r = sub.add_parser("run", help="run a command and write its output into a section")
    r.add_argument("doc", type=Path, help="the Markdown file")
    r.add_argument("name", help="the section's name")
    r.add_argument("shown", help="the command as the section names it, e.g. 'make eval'")
    r.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command to run")
    c = sub.add_parser("check", help="fail when a section was edited by hand")
    c.add_argument("paths", type=Path, nargs="+", help="Markdown files")
    args = parser.parse_args(argv)
    if args.what == "run":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            parser.error("run: give the command after --")
        return run(args.doc, args.name, args.shown, command)
    problems = check(args.paths)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
