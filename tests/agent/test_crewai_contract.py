"""The CrewAI internals legalstream relies on, each checked by name.

``legalstream.agent.crewai_ext`` is the only module that touches them. When a
CrewAI upgrade moves, renames or reshapes one, the test that fails names it.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import threading
import tomllib
from pathlib import Path
from typing import Any

import pytest
from agent_support import Recorder, request

REPO = Path(__file__).resolve().parents[2]
AGENT_SRC = REPO / "src" / "legalstream" / "agent"


def resolve(path: str) -> Any:
    """``a.b.C.attr`` -> the object, importing the longest module prefix; raises naming ``path``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for i, name in enumerate(parts[cut:], cut):
            try:
                obj = getattr(obj, name)
            except AttributeError:
                raise AssertionError(
                    f"CrewAI no longer has {'.'.join(parts[: i + 1])} "
                    f"(legalstream.agent.crewai_ext uses {path})"
                ) from None
        return obj
    raise AssertionError(f"CrewAI no longer has the module of {path}")


def _crewai_version() -> str:
    import crewai

    return crewai.__version__


def test_crewai_is_the_pinned_version():
    from legalstream.agent.crewai_ext import CREWAI_VERSION

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"crewai=={CREWAI_VERSION}" in deps, "pyproject.toml must pin crewai to CREWAI_VERSION"
    assert _crewai_version() == CREWAI_VERSION


#: dotted name -> what it must be.
INTERNALS: dict[str, str] = {
    "crewai.events.stream_context.add_stream_sink": "callable",
    "crewai.events.stream_context.reset_stream_sinks": "callable",
    "crewai.hooks.dispatch.register_scoped": "callable",
    "crewai.hooks.dispatch.scoped_hooks": "callable",
    "crewai.hooks.dispatch.InterceptionPoint.PRE_MODEL_CALL": "member",
    "crewai.hooks.dispatch.InterceptionPoint.PRE_TOOL_CALL": "member",
    "crewai.hooks.HookAborted": "exception",
    "crewai.llms.base_llm.llm_call_context": "callable",
    "crewai.llms.base_llm.BaseLLM._emit_call_started_event": "callable",
    "crewai.llms.base_llm.BaseLLM._emit_call_completed_event": "callable",
    "crewai.llms.base_llm.BaseLLM._emit_call_failed_event": "callable",
    "crewai.llms.base_llm.BaseLLM._emit_stream_chunk_event": "callable",
    "crewai.llms.base_llm.BaseLLM._track_token_usage_internal": "callable",
    "crewai.llms.base_llm.BaseLLM._effective_stream": "callable",
    "crewai.events.types.llm_events.LLMCallType.LLM_CALL": "member",
    "crewai.utilities.string_utils.sanitize_tool_name": "callable",
    "crewai.agents.agent_executor.AgentExecutor._initial_state_t": "class",
    "crewai.flow.runtime.FlowState": "class",
    "crewai.llms.base_llm.call_stop_override": "callable",
    "crewai.llms.base_llm.BaseLLM.stop_sequences": "property",
    "crewai.llms.providers.openai.completion.OpenAICompletion._get_sync_client": "callable",
    "crewai.llms.providers.openai.completion.OpenAICompletion._get_client_params": "callable",
}


@pytest.mark.parametrize("path", sorted(INTERNALS))
def test_internal_name_exists(path):
    obj = resolve(path)
    kind = INTERNALS[path]
    if kind == "callable":
        assert callable(obj), f"{path} is no longer callable"
    elif kind == "class":
        assert isinstance(obj, type), f"{path} is no longer a class"
    elif kind == "exception":
        assert isinstance(obj, type) and issubclass(obj, Exception), f"{path} is no exception"
    elif kind == "property":
        assert isinstance(obj, property), f"{path} is no longer a property"


def test_openai_provider_sends_through_the_http_client_we_give_it():
    """crewai_ext.use_http_client: client_params reach the OpenAI SDK, built lazily from _client."""
    import httpx
    from crewai import LLM

    from legalstream.agent import crewai_ext

    llm = LLM(model="openai/some-model", base_url="http://127.0.0.1:9/v1", api_key="k")
    assert "client_params" in type(llm).model_fields, "OpenAICompletion.client_params is gone"
    assert hasattr(llm, "_client"), "OpenAICompletion._client is gone"
    client = httpx.Client()
    assert crewai_ext.use_http_client(llm, client)
    sdk = llm._get_sync_client()
    assert sdk._client is client, "the OpenAI SDK does not send through client_params' http_client"
    client.close()


def test_stop_override_reaches_the_wrapped_llm():
    from crewai import LLM

    from legalstream.agent import crewai_ext

    llm = LLM(model="openai/some-model", base_url="http://127.0.0.1:9/v1", api_key="k")
    with crewai_ext.stop_override(llm, ["\nObservation:"]):
        assert llm.stop_sequences == ["\nObservation:"]
    assert llm.stop_sequences == llm.stop


#: BaseLLM method -> the keyword arguments crewai_ext passes it.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "_emit_call_started_event": (
        "messages", "tools", "callbacks", "available_functions", "from_task", "from_agent",
    ),
    "_emit_call_completed_event": (
        "response", "call_type", "from_task", "from_agent", "messages", "usage", "finish_reason",
    ),
    "_emit_call_failed_event": ("error", "from_task", "from_agent"),
    "_emit_stream_chunk_event": ("chunk", "from_task", "from_agent", "call_type"),
    "_track_token_usage_internal": ("usage_data",),
}  # fmt: skip


@pytest.mark.parametrize("method", sorted(KEYWORDS))
def test_base_llm_methods_take_what_we_pass(method):
    from crewai.llms.base_llm import BaseLLM

    params = inspect.signature(getattr(BaseLLM, method)).parameters
    for name in KEYWORDS[method]:
        assert name in params, f"BaseLLM.{method} has no parameter {name!r} any more"


def test_hook_aborted_takes_a_reason_and_a_source():
    from crewai.hooks import HookAborted

    params = inspect.signature(HookAborted.__init__).parameters
    assert "reason" in params, "HookAborted(reason, ...) changed"
    assert "source" in params, "HookAborted(..., source=) changed"


def test_crew_keeps_its_replay_store_in_a_private_attribute():
    from crewai import Crew

    from legalstream.agent.crewai_ext import LeanCrew, NoReplayStore

    assert "_task_output_handler" in Crew.__private_attributes__, (
        "Crew._task_output_handler (the replay store LeanCrew replaces) is gone"
    )
    default = LeanCrew.__private_attributes__["_task_output_handler"].default_factory
    assert default is NoReplayStore


def test_listened_events_have_the_fields_we_read():
    from legalstream.agent.crewai_ext import LISTENED_EVENTS

    problems: list[str] = []
    for event_type, (class_path, fields) in sorted(LISTENED_EVENTS.items()):
        model_fields = resolve(class_path).model_fields
        declared = model_fields["type"].default
        if declared != event_type:
            problems.append(f"{class_path}.type is {declared!r}, not {event_type!r}")
        problems += [
            f"{class_path} has no field {name!r} any more"
            for name in fields
            if name not in model_fields
        ]
    assert not problems, "\n".join(problems)


def test_nested_shapes_we_read():
    """``ev.agent.role``, ``ev.agent.llm.model``, ``ev.tool_call.model_dump()``."""
    from crewai import Agent, BaseLLM
    from crewai.events.types.llm_events import LLMStreamChunkEvent
    from pydantic import BaseModel

    assert "role" in Agent.model_fields, "Agent.role is gone"
    assert "llm" in Agent.model_fields, "Agent.llm is gone"
    assert "model" in BaseLLM.model_fields, "BaseLLM.model is gone"
    annotation = LLMStreamChunkEvent.model_fields["tool_call"].annotation
    models = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type)]
    assert any(issubclass(a, BaseModel) for a in models), (
        "LLMStreamChunkEvent.tool_call is no pydantic model (we call model_dump)"
    )


# --- the fence: what the listener reads is what crewai_ext declares ------------------------------


def _attributes_read(function: Any) -> set[str]:
    """Attributes a handler reads of its event argument: ``ev.x`` and ``getattr(ev, "x")``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    fn = tree.body[0]
    assert isinstance(fn, ast.FunctionDef)
    event = fn.args.args[1].arg
    read: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == event:
                read.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id == event
            and isinstance(node.args[1], ast.Constant)
        ):
            read.add(node.args[1].value)
    return read


def test_listener_handles_exactly_the_declared_events():
    from legalstream.agent.crewai_ext import LISTENED_EVENTS
    from legalstream.agent.listener import EventTranslator

    assert set(EventTranslator.HANDLERS) == set(LISTENED_EVENTS)


def test_listener_reads_only_declared_fields():
    from legalstream.agent.crewai_ext import LISTENED_EVENTS
    from legalstream.agent.listener import EventTranslator

    problems: list[str] = []
    for event_type, method in sorted(EventTranslator.HANDLERS.items()):
        read = _attributes_read(getattr(EventTranslator, method))
        if not read:
            problems.append(f"found no attribute reads in {method}")
        undeclared = read - set(LISTENED_EVENTS[event_type][1])
        if undeclared:
            problems.append(
                f"{method} reads {sorted(undeclared)} of {event_type!r} events: "
                "declare them in crewai_ext.LISTENED_EVENTS"
            )
    assert not problems, "\n".join(problems)


#: Names of CrewAI internals; none may appear in agent modules other than crewai_ext.
INTERNAL_NAMES = re.compile(
    r"_emit_\w+_event|_track_token_usage_internal|_effective_stream|llm_call_context|"
    r"stream_context|add_stream_sink|reset_stream_sinks|hooks\.dispatch|register_scoped|"
    r"scoped_hooks|InterceptionPoint|sanitize_tool_name|_task_output_handler|_initial_state_t|"
    r"from crewai\.hooks import"
)


@pytest.mark.parametrize(
    "module", sorted(p.name for p in AGENT_SRC.glob("*.py") if p.name != "crewai_ext.py")
)
def test_only_crewai_ext_touches_crewai_internals(module):
    source = (AGENT_SRC / module).read_text()
    # docstrings and comments may name them; code may not
    code = "\n".join(
        line for line in _strip_docstrings(source).splitlines() if not line.lstrip().startswith("#")
    )
    found = sorted(set(INTERNAL_NAMES.findall(code)))
    assert not found, f"agent/{module} uses CrewAI internals {found}: go through crewai_ext"


def _strip_docstrings(source: str) -> str:
    tree = ast.parse(source)
    lines = source.splitlines()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list) or not body:
            continue
        first = body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            if isinstance(first.value.value, str):
                for i in range(first.lineno - 1, first.end_lineno or first.lineno):
                    lines[i] = ""
    return "\n".join(lines)


# --- behaviour of the internals, through crewai_ext -------------------------------------------


def test_stream_sink_is_inline_and_scoped():
    """add_sink: inline delivery on the emitting thread, only in its own context."""
    import contextvars

    from crewai.events.base_events import BaseEvent
    from crewai.events.event_bus import crewai_event_bus

    from legalstream.agent import crewai_ext

    class Probe(BaseEvent):
        type: str = "legalstream_probe"

    seen: list[tuple[str, str]] = []

    def scoped():
        token = crewai_ext.add_sink(
            lambda src, ev: seen.append((ev.type, threading.current_thread().name))
        )
        try:
            crewai_event_bus.emit(None, Probe())
        finally:
            crewai_ext.remove_sink(token)

    contextvars.copy_context().run(scoped)
    crewai_event_bus.emit(None, Probe())  # outside the scope: not seen
    assert seen == [("legalstream_probe", threading.current_thread().name)]


def test_guarded_calls_registers_its_hooks_in_scope_only():
    from crewai.hooks.dispatch import InterceptionPoint, register_scoped, scoped_hooks

    from legalstream.agent import crewai_ext

    with crewai_ext.guarded_calls(lambda: None):
        pass
    with scoped_hooks():  # the hook API still takes a scoped registration
        register_scoped(InterceptionPoint.PRE_MODEL_CALL, lambda ctx: None)


def test_tool_action_name_is_what_the_react_prompt_uses():
    from legalstream.agent import TOOL_NAME, crewai_ext

    assert crewai_ext.tool_action_name(TOOL_NAME) == "rag_legal_retrieval_tool"


def test_runs_keep_no_crewai_replay_store(runner):
    """Crews never open CrewAI's kickoff-outputs SQLite store (crewai_ext.LeanCrew)."""
    from crewai_core.paths import db_storage_path

    store = Path(db_storage_path()) / "latest_kickoff_task_outputs.db"
    existed = store.exists()
    mtime = store.stat().st_mtime_ns if existed else None
    out = runner.run(
        request("What is the Contract Price under the Equipment Supply Agreement?", 2),
        Recorder(),
        threading.Event(),
    )
    assert out.answer
    assert store.exists() == existed
    assert (store.stat().st_mtime_ns if existed else None) == mtime


def test_executor_state_class_is_built_once(runner):
    """CrewAI would build a pydantic class per agent executor; ours is built once."""
    import gc

    from crewai.agents.agent_executor import AgentExecutor, AgentExecutorState
    from crewai.flow.runtime import FlowState

    state_class = AgentExecutor._initial_state_t
    assert issubclass(state_class, FlowState) and issubclass(state_class, AgentExecutorState)

    def per_run_classes() -> int:
        return sum(c.__name__ == "StateWithId" for c in FlowState.__subclasses__())

    gc.disable()  # a collected per-run class would hide from the count
    try:
        before = per_run_classes()
        for _ in range(2):
            runner.run(
                request("What is the monthly storage charge per pallet?", 1),
                Recorder(),
                threading.Event(),
            )
        assert per_run_classes() == before
    finally:
        gc.enable()
