"""Tool calls that a model wrote as text instead of through the provider's tool API.

Small and local models often answer a tool-calling request with the call
written out: a ```json block, a ``<tool_call>`` tag (Hermes, Qwen), a bare
JSON object, or a ReAct ``Action:`` / ``Action Input:`` pair. CrewAI, with
native tool calling, takes any text as the final answer. :func:`parse_tool_calls`
finds such calls so the run can execute them. Pure text, no CrewAI.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["TextToolCall", "parse_tool_calls"]

_FENCED = re.compile(r"```(?:json|tool_call|tool|javascript)?\s*(\{.*?\})\s*```", re.DOTALL)
_TAGGED = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.DOTALL)
_ACTION = re.compile(
    r"Action\s*:\s*(?P<tool>[^\n]+?)\s*\n+\s*Action\s*Input\s*:\s*(?P<input>.+?)"
    r"(?=\n\s*(?:Observation|Thought|Final Answer)\s*:|\Z)",
    re.DOTALL,
)
_NAME_KEYS = ("name", "tool", "tool_name", "function", "action")
_ARG_KEYS = ("arguments", "parameters", "args", "input", "tool_input", "action_input")


@dataclass(frozen=True, slots=True)
class TextToolCall:
    """A tool call found in text: the tool's name as written (may be empty) and its arguments."""

    name: str
    arguments: dict[str, Any]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        # Models write Python-ish JSON: single quotes, trailing commas.
        fixed = re.sub(r",\s*([}\]])", r"\1", text.replace("'", '"'))
        try:
            return json.loads(fixed)
        except ValueError:
            return None


def _call_of(obj: Any) -> TextToolCall | None:
    if not isinstance(obj, dict):
        return None
    name = ""
    for key in _NAME_KEYS:
        value = obj.get(key)
        if isinstance(value, dict):  # {"function": {"name": ..., "arguments": ...}}
            return _call_of(value)
        if isinstance(value, str) and value.strip():
            name = value.strip()
            break
    args: Any = None
    for key in _ARG_KEYS:
        if key in obj:
            args = obj[key]
            break
    if isinstance(args, str):
        parsed = _loads(args)
        args = parsed if isinstance(parsed, dict) else {"query": args}
    if args is None and "query" in obj:
        args = {"query": obj["query"]}
    if not isinstance(args, dict) or not (name or "query" in args):
        return None
    return TextToolCall(name, args)


def parse_tool_calls(text: str) -> list[TextToolCall]:
    """The tool calls written in ``text``, in order; [] when it holds none.

    Recognised: ```json {...}``` blocks, ``<tool_call>{...}</tool_call>`` tags, a
    reply that is one JSON object, and ReAct ``Action: <tool>`` followed by
    ``Action Input: <json or text>``. An object counts as a call when it names a
    tool (``name``/``tool``/``function``) with arguments, or has a ``query``.
    """
    if not isinstance(text, str) or not text.strip():
        return []
    calls: list[TextToolCall] = []
    for pattern in (_TAGGED, _FENCED):
        for match in pattern.finditer(text):
            call = _call_of(_loads(match.group(1)))
            if call is not None:
                calls.append(call)
        if calls:
            return calls
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        call = _call_of(_loads(stripped))
        if call is not None:
            return [call]
    for match in _ACTION.finditer(text):
        raw = match.group("input").strip().strip("`").strip()
        parsed = _loads(raw)
        args = parsed if isinstance(parsed, dict) else {"query": raw.strip("\"'")}
        calls.append(TextToolCall(match.group("tool").strip().strip("`*"), args))
    return calls
