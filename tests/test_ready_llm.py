"""``/ready`` says when the LLM setting cannot work, instead of failing every query.

Issue 16: ``LEGALSTREAM_LLM=openai/...`` without a key said ready while every query
failed with "OPENAI_API_KEY is required"; and with a ``base_url`` (a local server
that needs no key) it failed the same way.
"""

from __future__ import annotations

import time

import httpx
import pytest

from legalstream.app import create_app
from support import live_server


def _ready(settings) -> httpx.Response:
    with live_server(create_app(settings), settings) as srv:
        for _ in range(600):
            response = httpx.get(srv.http + "/ready", timeout=5)
            if response.json()["status"] != "starting":
                return response
            time.sleep(0.1)
    raise AssertionError("the app never got past starting")


@pytest.mark.parametrize(
    "options, ready",
    [
        ({}, False),  # openai/ with no key and no base_url: cannot work
        ({"base_url": "http://127.0.0.1:9/v1"}, True),  # a local server: no key needed
        ({"api_key": "sk-test"}, True),
    ],
)
def test_ready_reports_an_llm_setting_that_cannot_work(tmp_settings, monkeypatch, options, ready):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    settings = tmp_settings.model_copy(
        update={
            "llm": "openai/gpt-4o-mini",
            "llm_options": tmp_settings.llm_options.model_copy(update=options),
        }
    )
    response = _ready(settings)
    if ready:
        assert response.status_code == 200 and response.json() == {"status": "ready"}
    else:
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "misconfigured"
        assert "API key" in body["error"] and "OPENAI_API_KEY" in body["error"]
