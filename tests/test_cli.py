"""The command line explains itself: help texts, defaults, examples, errors a user can act on.

* Every command and option has a description; an option that takes a value and
  is not required names its default; every command's help ends with examples;
  no reST markup; every help line fits 80 columns.
* A server that wants a token (HTTP 401 on the handshake) gets an answer naming
  ``--token`` and ``LEGALSTREAM_TOKEN``, whether no token or a bad one was sent.
* ``probe``'s summary fits 80 columns and shows the questions whole.
* ``query`` and ``probe`` talk to the server the same settings serve.
"""

from __future__ import annotations

import argparse
import re

import pytest

from legalstream.app import create_app
from legalstream.cli import build_parser, local_url, main
from legalstream.settings import Settings
from support import ScriptedRunner, live_server
from test_auth import jwt_settings, make_token

#: Actions that take no value: they have no default worth naming.
SWITCHES = (
    argparse._StoreTrueAction,
    argparse._StoreFalseAction,
    argparse._HelpAction,
    argparse._VersionAction,
    argparse._CountAction,
)


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(Settings())
    found = {"legalstream": parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[f"legalstream {name}"] = sub
    return found


COMMANDS = _commands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_says_what_it_does_and_its_default(name):
    parser = COMMANDS[name]
    hint = (
        "give it help=... in src/legalstream/cli.py; an option that takes a value "
        "ends its help with (default: ...), or says (required)"
    )
    for action in parser._actions:
        label = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{name} {choice.dest}: the command has no help ({hint})"
            continue
        assert action.help and action.help.strip(), f"{name} {label}: no help ({hint})"
        takes_value = not isinstance(action, SWITCHES)
        optional = (action.option_strings and not action.required) or action.nargs == "?"
        if takes_value and optional:
            assert "default" in action.help, f"{name} {label}: no default in its help ({hint})"
        if action.option_strings and action.required:
            assert "required" in action.help, f"{name} {label}: say (required) ({hint})"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_examples_no_markup_and_fits_80_columns(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    parser = COMMANDS[name]
    text = parser.format_help()
    assert parser.epilog and "example" in parser.epilog, f"{name}: no examples in its epilog"
    assert "`" not in text, f"{name}: markup in its help:\n{text}"
    wide = [line for line in text.splitlines() if len(line) > 80]
    assert not wide, f"{name}: help lines over 80 columns: {wide}"


def test_the_help_shows_the_settings_in_force(monkeypatch):
    monkeypatch.setenv("LEGALSTREAM_SERVER__PORT", "8123")
    serve = _commands_for(Settings())["legalstream serve"].format_help()
    assert "default: 8123, the setting server.port" in " ".join(serve.split())


def _commands_for(settings: Settings) -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(settings)
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {f"legalstream {n}": p for n, p in subs.choices.items()}


def test_query_and_probe_talk_to_the_configured_server(monkeypatch):
    monkeypatch.setenv("LEGALSTREAM_SERVER__PORT", "8123")
    assert local_url(Settings()) == "ws://127.0.0.1:8123/ws/query"
    monkeypatch.setenv("LEGALSTREAM_SERVER__HOST", "0.0.0.0")
    assert local_url(Settings()) == "ws://127.0.0.1:8123/ws/query"


@pytest.fixture
def jwt_server(tmp_path):
    settings = jwt_settings(tmp_path)
    runner = ScriptedRunner(steps=1)
    app = create_app(settings, runner_factory=lambda svc: runner)
    with live_server(app, settings) as srv:
        yield srv


@pytest.mark.parametrize("token", [None, "not-a-jwt"], ids=["no-token", "bad-token"])
def test_a_401_says_how_to_pass_a_token(jwt_server, capsys, monkeypatch, token):
    monkeypatch.delenv("LEGALSTREAM_TOKEN", raising=False)
    argv = ["query", "Who signed?", "--case-id", "1", "--url", jwt_server.ws]
    status = main([*argv, "--token", token] if token else argv)
    out = capsys.readouterr()
    said = " ".join((out.err + out.out).split())
    assert status == 2
    assert "401" in said and "--token" in said and "LEGALSTREAM_TOKEN" in said, said

    status = main(["probe", jwt_server.ws, *(["--token", token] if token else [])])
    said = " ".join(capsys.readouterr().out.split())
    assert status == 2
    assert "401" in said and "--token" in said and "LEGALSTREAM_TOKEN" in said, said


def test_a_good_token_gets_an_answer(jwt_server, capsys, monkeypatch):
    monkeypatch.setenv("LEGALSTREAM_TOKEN", make_token())
    assert main(["query", "Who signed?", "--case-id", "1", "--url", jwt_server.ws]) == 0


def test_probe_summary_fits_80_columns(server, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    question = "What does the storage agreement say about the temperature of the warehouse?"
    assert main(["probe", server.ws, "--query", "Who signed?", "--query", question]) == 0
    out = capsys.readouterr().out
    summary = out[out.index("summary") :]
    wide = [line for line in summary.splitlines() if len(line.rstrip()) > 80]
    assert not wide, f"lines over 80 columns:\n{summary}"
    assert re.search(rf"^\s*2: {re.escape(question)}$", summary, re.M), summary
    assert "complete" in summary
