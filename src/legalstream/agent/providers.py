"""Which LLM a run gets: the offline backend, or a provider through ``crewai.LLM``."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from legalstream.agent.offline_llm import OFFLINE_MODEL, OfflineExtractiveLLM

if TYPE_CHECKING:
    from crewai import BaseLLM

    from legalstream.agent.httpx_ext import AbortableClient

__all__ = ["NO_KEY", "config_problem", "is_offline", "make_llm", "model_name"]

#: The API key sent to an OpenAI-compatible server given by ``base_url`` alone:
#: local servers (llama.cpp, Ollama, vLLM) ignore it, the OpenAI SDK needs one.
NO_KEY = "no-key-required"

#: Providers that need an API key, and the variable CrewAI reads it from.
_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "claude": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY",
    "google": "GEMINI_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "dashscope": "DASHSCOPE_API_KEY",
}


def is_offline(settings: Any) -> bool:
    return settings.llm in ("offline", OFFLINE_MODEL)


def model_name(settings: Any) -> str:
    """The model name runs report (``metadata.model``) for ``settings.llm``."""
    return OFFLINE_MODEL if is_offline(settings) else settings.llm


def _provider(model: str) -> str:
    return model.split("/", 1)[0].lower() if "/" in model else "openai"


def _api_key(settings: Any) -> str | None:
    """The key to send: the configured one, or for a bare ``base_url`` a placeholder."""
    opts = settings.llm_options
    if opts.api_key:
        return str(opts.api_key)
    env = _KEY_ENV.get(_provider(settings.llm))
    if env and os.environ.get(env):
        return None  # CrewAI reads it from the environment
    if opts.base_url:
        return NO_KEY
    return None


def config_problem(settings: Any) -> str | None:
    """Why ``settings.llm`` cannot work, or None. No network; for ``/ready``."""
    if is_offline(settings):
        return None
    model = str(settings.llm or "").strip()
    if not model:
        return "llm is empty: set it to 'offline' or a CrewAI model id such as openai/gpt-4o-mini"
    env = _KEY_ENV.get(_provider(model))
    if env and not _api_key(settings) and not os.environ.get(env):
        return (
            f"{model} needs an API key: set llm_options.api_key "
            f"(LEGALSTREAM_LLM_OPTIONS__API_KEY) or {env}, or llm_options.base_url "
            "for an OpenAI-compatible server that needs none"
        )
    return None


def make_llm(
    settings: Any,
    cancelled: threading.Event | None = None,
    *,
    http: AbortableClient | None = None,
) -> BaseLLM:
    """A fresh LLM for one run, from ``settings.llm`` and ``settings.llm_options``.

    ``"offline"`` gives :class:`OfflineExtractiveLLM`; anything else is handed to
    ``crewai.LLM`` (``openai/...``, ``anthropic/...``, ``ollama/...``; an
    OpenAI-compatible server via ``llm_options.base_url``, with or without a
    key), without retries beyond ``max_retries``. ``http`` (OpenAI and
    OpenAI-compatible providers) is the run's abortable client, which also
    holds the whole-call deadline.
    """
    opts = settings.llm_options
    if is_offline(settings):
        llm = OfflineExtractiveLLM(model=OFFLINE_MODEL, stream=opts.stream, temperature=0.0)
        if cancelled is not None:
            llm.bind_cancel(cancelled)
        return llm

    from crewai import LLM

    from legalstream.agent import crewai_ext

    kwargs: dict[str, Any] = {
        "model": settings.llm,
        "temperature": opts.temperature,
        "timeout": opts.timeout,
        "max_retries": opts.max_retries,
        "stream": opts.stream,
    }
    if opts.base_url:
        kwargs["base_url"] = opts.base_url
    key = _api_key(settings)
    if key:
        kwargs["api_key"] = key
    if opts.max_tokens:
        kwargs["max_tokens"] = opts.max_tokens
    llm = LLM(**kwargs)
    if http is not None:
        crewai_ext.use_http_client(llm, http.client)
    return llm
