"""Helpers for the AG-UI tests: read SSE, check events against the ag-ui-protocol models."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from ag_ui.core import Event as AguiEvent
from pydantic import TypeAdapter

from node_tools import run_node

_EVENT = TypeAdapter(AguiEvent)


def run_input(question: str, case_id: Any = 1, **extra: Any) -> dict[str, Any]:
    """A ``RunAgentInput`` asking ``question`` about ``case_id``."""
    return {
        "threadId": "thread-1",
        "runId": "client-run-1",
        "messages": [{"id": "user-1", "role": "user", "content": question}],
        "forwardedProps": {"caseId": case_id},
        **extra,
    }


def parse_sse(data: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    """The complete events of an SSE body: ``(id, data)``; a cut-off last event is dropped."""
    out: list[tuple[str | None, dict[str, Any]]] = []
    text = data.decode()
    blocks = text.split("\n\n")
    for block in blocks[:-1]:  # the last piece has no blank line after it: incomplete
        event_id, lines = None, []
        for line in block.split("\n"):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                lines.append(line[6:])
        if lines:
            out.append((event_id, json.loads("\n".join(lines))))
    return out


def assert_valid(event: dict[str, Any]) -> None:
    """``event`` is an AG-UI event of the ``ag-ui-protocol`` models, field for field."""
    model = _EVENT.validate_python(event)
    again = model.model_dump(mode="json", by_alias=True)
    assert again == event, f"{event['type']}: not the model's own encoding:\n{event}\n{again}"
    extra = set(model.model_extra or {})
    assert not extra, f"{event['type']} carries fields the protocol does not define: {extra}"


def verify_streams(streams: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Run the AG-UI client's verifier and zod schemas over each stream (node)."""
    with tempfile.TemporaryDirectory(prefix="legalstream-agui-") as tmp:
        path = Path(tmp) / "streams.json"
        path.write_text(json.dumps(streams))
        code, out, log = run_node("agui_verify.mjs", str(path))
    assert out, log
    assert code == 0 and not out["failures"], json.dumps(out["failures"][:5], indent=1)
    return out
