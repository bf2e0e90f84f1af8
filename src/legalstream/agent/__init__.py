"""The CrewAI legal agent: crew, event capture, LLMs and the retrieval tool.

Importing this package is cheap: it only sets CrewAI's environment (see
:mod:`legalstream.agent.env`). ``crewai`` itself (~3 s, ~200 MB) is imported
the first time :func:`build_runner` is called, once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from legalstream.agent import env as _env  # noqa: F401  (must run before crewai)

if TYPE_CHECKING:
    from legalstream.agent.api import AgentRunner

__all__ = ["AGENT_NAME", "TASK_NAME", "TOOL_NAME", "build_runner"]

AGENT_NAME = "Legal Question Answering Agent"
TASK_NAME = "Answer legal question"
TOOL_NAME = "RAG Legal Retrieval Tool"


def build_runner(settings: Any, engine: Any) -> AgentRunner:
    """A :class:`~legalstream.agent.api.AgentRunner` backed by a CrewAI crew.

    ``settings`` is a :class:`legalstream.settings.Settings`; ``engine`` anything
    with ``search(query, case_id, *, k=None, mode=None) -> list[Citation]``
    (normally :class:`legalstream.rag.engine.RetrievalEngine`).
    """
    from legalstream.agent.crew import CrewRunner

    return CrewRunner(settings, engine)
