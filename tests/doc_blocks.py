"""The fenced code blocks of README.md and docs/*.md, and what the docs test does with each.

The convention (README.md, "Commands in the docs", says the same for people):

* A fence labelled ``bash``, ``sh`` or ``python`` is a command: the test runs it.
  The blocks of one Markdown file run in order in one shell (``cd``, ``export``
  and background jobs carry over), like a reader typing them into one
  terminal, from the repository's root, with no virtualenv activated.
* ``toml`` blocks must be valid TOML whose keys are settings; ``json`` blocks
  must be valid JSON.
* Every other fence (``js``, ``yaml``, ``nginx``, ``text``, none) is an
  illustration and is not run.
* An HTML comment on the line right before a fence changes that:

  - ``<!-- docs-test: skip: <why> -->``: the block is not run or checked; the
    test reports it as skipped, with ``<why>`` (say what it needs that CI
    cannot have, or that it is an illustration and why).
  - ``<!-- docs-test: continues -->`` (python only): the block runs after the
    code of the python block before it, in one script (it uses its names).
  - ``<!-- docs-test: timeout <seconds> -->``: a longer limit than the default
    (``DEFAULT_TIMEOUT``), for a block that does much.

  Several may share one comment, separated by ``;``; ``skip:`` comes last (its
  reason runs to the end of the comment).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Fences the test runs (with the language it runs them as).
RUN = {"bash": "bash", "sh": "bash", "python": "python"}
#: Fences the test parses.
PARSE = {"json", "toml"}
#: Seconds a block may take unless it says otherwise.
DEFAULT_TIMEOUT = 180.0
#: Where this convention is written down for people.
CONVENTION = 'README.md, section "Commands in the docs"'

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_DIRECTIVE = re.compile(r"<!--\s*docs-test:(?P<body>.*?)-->")


class ConventionError(Exception):
    """A docs-test comment the test does not understand (a typo, or one not before a fence)."""


@dataclass
class Block:
    """One fenced block of a Markdown file."""

    path: Path
    line: int  # of the opening fence, from 1
    lang: str
    text: str
    skip: str | None = None
    continues: bool = False
    timeout: float = DEFAULT_TIMEOUT
    #: The python blocks this one continues (set by ``blocks``).
    before: list[Block] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        """``run``, ``parse`` or ``illustration``."""
        if self.lang in RUN:
            return "run"
        if self.lang in PARSE:
            return "parse"
        return "illustration"


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    """Every fenced block of ``path``, with the docs-test comment before it applied."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending: tuple[int, str] | None = None  # (line, body) of a directive awaiting its fence
    i = 0
    while i < len(lines):
        line = lines[i]
        comment = _DIRECTIVE.fullmatch(line.strip())
        if comment:
            if pending is not None:
                raise ConventionError(
                    f"{_rel(path)}:{pending[0]}: a docs-test comment must be on the line "
                    "right before a fence"
                )
            pending = (i + 1, comment.group("body"))
            i += 1
            continue
        match = _FENCE.match(line)
        if not match:
            if pending is not None and line.strip():
                raise ConventionError(
                    f"{_rel(path)}:{pending[0]}: a docs-test comment must be on the line "
                    "right before a fence"
                )
            i += 1
            continue
        fence = match.group("fence")
        end = i + 1
        while end < len(lines) and not lines[end].lstrip().startswith(fence):
            end += 1
        indent = len(match.group("indent"))
        body = "\n".join(ln[indent:] if ln[:indent].isspace() else ln for ln in lines[i + 1 : end])
        block = Block(path, i + 1, match.group("info").lower(), body + "\n")
        if pending is not None:
            _apply(block, pending[1], pending[0])
            pending = None
        found.append(block)
        i = end + 1
    if pending is not None:
        raise ConventionError(
            f"{_rel(path)}:{pending[0]}: a docs-test comment with no fence after it"
        )
    previous_python: list[Block] = []
    for block in found:
        if block.lang == "python" and block.skip is None:
            if block.continues:
                if not previous_python:
                    raise ConventionError(
                        f"{block.where}: 'continues', but no python block runs before it"
                    )
                block.before = list(previous_python)
                previous_python.append(block)
            else:
                previous_python = [block]
    return found


def _apply(block: Block, body: str, line: int) -> None:
    body, _, reason = body.partition("skip:")
    if _ or body.strip().startswith("skip"):
        if not reason.strip():
            raise ConventionError(
                f"{_rel(block.path)}:{line}: 'skip' needs a reason: "
                "<!-- docs-test: skip: needs an OpenAI key -->"
            )
        block.skip = " ".join(reason.split())
    for part in (p.strip() for p in body.split(";")):
        if not part:
            continue
        name, _, rest = part.partition(" ")
        if name == "continues" and not rest:
            if block.lang != "python":
                raise ConventionError(
                    f"{_rel(block.path)}:{line}: 'continues' is for python blocks "
                    "(bash blocks of one file already share one shell)"
                )
            block.continues = True
        elif name == "timeout":
            try:
                block.timeout = float(rest)
            except ValueError:
                raise ConventionError(
                    f"{_rel(block.path)}:{line}: 'timeout' takes seconds: "
                    "<!-- docs-test: timeout 300 -->"
                ) from None
        else:
            raise ConventionError(
                f"{_rel(block.path)}:{line}: unknown docs-test directive {part!r}; "
                f"known: 'skip: <why>' (last), 'continues', 'timeout <seconds>' ({CONVENTION})"
            )


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT)


#: Ports the docs use for servers (make run's 8000, deploy.md's 8001 and 8002).
DOC_PORTS = range(8000, 8010)
_PORT = re.compile(r"(?<=[:=\s])(?P<port>800[0-9])(?!\d)")


def doc_ports(text: str) -> set[int]:
    """The ports of :data:`DOC_PORTS` that ``text`` names (``:8000``, ``--port 8001``, ``PORT=8002``)."""
    return {int(m.group("port")) for m in _PORT.finditer(text)}


def map_ports(text: str, ports: dict[int, int]) -> str:
    """``text`` with each port of ``ports`` replaced by its free stand-in."""
    return _PORT.sub(lambda m: str(ports.get(int(m.group("port")), m.group("port"))), text)
