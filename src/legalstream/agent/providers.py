"""Which LLM a run gets: the offline backend, or a provider through ``crewai.LLM``."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from legalstream.agent.offline_llm import OFFLINE_MODEL, OfflineExtractiveLLM

if TYPE_CHECKING:
    from crewai import BaseLLM

__all__ = ["make_llm", "model_name"]


def model_name(settings: Any) -> str:
    """The model name runs report (``metadata.model``) for ``settings.llm``."""
    return OFFLINE_MODEL if settings.llm == "offline" else settings.llm


def make_llm(settings: Any, cancelled: threading.Event | None = None) -> BaseLLM:
    """A fresh LLM for one run, from ``settings.llm`` and ``settings.llm_options``.

    ``"offline"`` gives :class:`OfflineExtractiveLLM`; anything else is handed to
    ``crewai.LLM`` (``openai/...``, ``anthropic/...``, ``ollama/...``; an
    OpenAI-compatible server via ``llm_options.base_url``), without retries
    beyond ``max_retries`` and with ``timeout`` seconds per request.
    """
    opts = settings.llm_options
    if settings.llm in ("offline", OFFLINE_MODEL):
        llm = OfflineExtractiveLLM(model=OFFLINE_MODEL, stream=opts.stream, temperature=0.0)
        if cancelled is not None:
            llm.bind_cancel(cancelled)
        return llm

    from crewai import LLM

    kwargs: dict[str, Any] = {
        "model": settings.llm,
        "temperature": opts.temperature,
        "timeout": opts.timeout,
        "max_retries": opts.max_retries,
        "stream": opts.stream,
    }
    if opts.base_url:
        kwargs["base_url"] = opts.base_url
    if opts.api_key:
        kwargs["api_key"] = opts.api_key
    if opts.max_tokens:
        kwargs["max_tokens"] = opts.max_tokens
    return LLM(**kwargs)
