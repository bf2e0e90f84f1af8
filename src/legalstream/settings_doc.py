"""docs/configuration.md, generated from settings.py so the two cannot drift.

``python -m legalstream.settings_doc > docs/configuration.md`` writes it;
tests/test_docs.py fails when the committed file differs. Each setting's
meaning is the ``#:`` comment above its field in settings.py; a section's
introduction is its class docstring.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from legalstream import settings as settings_module
from legalstream.settings import REPO_ROOT, Settings

HEADER = """\
# Configuration

One typed settings object, `legalstream.settings.Settings` (pydantic-settings).
Sources, strongest first:

1. keyword arguments to `Settings(...)` (tests, embedding);
2. environment variables `LEGALSTREAM_<SECTION>__<KEY>` (e.g. `LEGALSTREAM_BUS__BACKEND=redis`);
   top-level keys without a section: `LEGALSTREAM_LLM=openai/gpt-4o-mini`;
3. the TOML file named by `legalstream --config FILE` or `LEGALSTREAM_CONFIG`;
4. `config/default.toml`;
5. the defaults below.

Nested values in the environment are JSON (`LEGALSTREAM_AUTH__ALLOWED_ORIGINS='["https://app.example"]'`).

This page is generated from `src/legalstream/settings.py`
(`python -m legalstream.settings_doc > docs/configuration.md`).
"""


def _comments(cls: type) -> dict[str, str]:
    """Field name -> the ``#:`` comment lines right above its definition."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment: list[str] = []
            i = node.lineno - 2
            while i >= 0 and lines[i].strip().startswith("#:"):
                comment.insert(0, lines[i].strip()[2:].strip())
                i -= 1
            out[node.target.id] = " ".join(comment)
    return out


def _default(value: Any) -> str:
    if isinstance(value, Path):
        try:
            return repr("<repo>/" + str(value.relative_to(REPO_ROOT)))
        except ValueError:
            return repr(str(value))
    return repr(value)


def _table(model: type[BaseModel], env_prefix: str) -> list[str]:
    comments = _comments(model)
    rows = ["| key | env | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue  # a section of its own
        default = field.get_default(call_default_factory=True)
        env = f"{env_prefix}{name.upper()}"
        rows.append(f"| `{name}` | `{env}` | `{_default(default)}` | {comments.get(name, '')} |")
    return rows


def render() -> str:
    out = [HEADER, "", "## Top level", ""]
    out += _table(Settings, "LEGALSTREAM_")
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        out += ["", f"## [{name}]", ""]
        doc = model.__dict__.get("__doc__")  # its own, not BaseModel's
        if doc and model.__module__ == settings_module.__name__:
            out += [inspect.cleandoc(doc), ""]
        out += _table(model, f"LEGALSTREAM_{name.upper()}__")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
