"""The AG-UI dialect without a server: translation, event ids, resume at every position.

The runs here have the shapes the real agent emits (agent/listener.py: ReAct
text streamed token by token, "Final Answer:" split over chunks, a retrieval
tool call) and the ways runs end (complete, LLM failure, cancelled mid-answer).
Every AG-UI event must be one of the ``ag-ui-protocol`` models, and every
stream — whole, or resumed after any of its positions — must pass the AG-UI
client's verifier (node, tests/js/agui_verify.mjs).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ag_ui.core import EventType as A

from agui_support import assert_valid, verify_streams
from legalstream.dialects.agui import (
    AguiStream,
    AguiTranslator,
    BadEventId,
    Position,
    event_json,
    parse_event_id,
)
from legalstream.dialects.agui.stream import event_id
from legalstream.events import ErrorCode, Event, EventType

RUN = "0f3c9a1e5b7d4c2a8e6f1b3d5a7c9e0f"
AGENT = "Legal Question Answering Agent"
TOOL = "RAG Legal Retrieval Tool"


class RunBuilder:
    """Events of one run, numbered as the run manager numbers them."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.t = 1_800_000_000.0

    def add(self, type_: EventType, **fields: Any) -> RunBuilder:
        self.t += 0.001
        fields.setdefault("agent_name", AGENT)
        self.events.append(
            Event(type=type_, run_id=RUN, seq=len(self.events) + 1, timestamp=self.t, **fields)
        )
        return self

    def opening(self) -> RunBuilder:
        self.add(EventType.QUERY_RECEIVED, input_data={"query": "q", "case_id": 1})
        self.add(EventType.AGENT_EXECUTION_START, action="kickoff")
        return self.add(EventType.AGENT_START, action="agent_start")

    def llm_call(self, step: int, chunks: list[str], *, thinking: bool = False) -> RunBuilder:
        call = f"call-{step}"
        self.add(EventType.THINKING_START, metadata={"step": step})
        self.add(EventType.LLM_START, metadata={"model": "offline/extractive", "call_id": call})
        for chunk in chunks:
            meta: dict[str, Any] = {"call_id": call}
            if thinking:
                meta["thinking"] = True
            self.add(EventType.LLM_STREAM_CHUNK, output_data={"chunk": chunk}, metadata=meta)
        usage = {"prompt_tokens": 700, "completion_tokens": 30, "total_tokens": 730}
        self.add(
            EventType.LLM_END,
            output_data={"response": "".join(chunks)},
            metadata={"model": "offline/extractive", "call_id": call, "usage": usage},
        )
        return self.add(EventType.THINKING_END, metadata={"step": step})

    def retrieval(self) -> RunBuilder:
        hit = {
            "chunk_id": "case-1/answer#2",
            "doc_id": "case-1/answer",
            "quote": "Denied.",
            "marker": 1,
        }
        self.add(EventType.AGENT_ACTION, tool_name=TOOL, input_data={"query": "response"})
        self.add(EventType.TOOL_START, tool_name=TOOL, input_data={"query": "response"})
        request = {"query": "response", "case_id": 1, "k": 5, "mode": "hybrid"}
        self.add(EventType.RAG_QUERY_START, tool_name=TOOL, input_data=request)
        self.add(
            EventType.RAG_QUERY_END,
            tool_name=TOOL,
            input_data=request,
            output_data={"count": 1, "hits": [hit]},
            metadata={"elapsed_ms": 3.2},
        )
        self.add(EventType.TOOL_END, tool_name=TOOL, output_data={"result": "Passage [1] ..."})
        return self.add(EventType.AGENT_OBSERVATION, output_data={"observation": "Passage [1]"})

    def complete(self, answer: str) -> list[Event]:
        self.add(EventType.AGENT_END)
        citation = {"chunk_id": "case-1/answer#2", "doc_id": "case-1/answer", "quote": "Denied."}
        self.add(
            EventType.AGENT_EXECUTION_COMPLETE,
            output_data={"answer": answer, "citations": [citation]},
        )
        return self.events

    def error(self, code: ErrorCode, message: str) -> list[Event]:
        self.add(EventType.AGENT_EXECUTION_ERROR, error=message, code=str(code))
        return self.events


REACT_TOOL = ["Thought: ", "I ", "will ", "search.\n", "Action: ", "rag_legal_retrieval_tool\n"]
REACT_TOOL += ["Action ", "Input: ", '{"query": ', '"response"}']
REACT_FINAL = ["Thought: ", "I ", "now ", "know\n", "Final ", "Answer: ", "The ", "defendant "]
REACT_FINAL += ["denied ", "the ", "claim [1]."]


def answered() -> list[Event]:
    b = RunBuilder().opening().llm_call(1, REACT_TOOL).retrieval().llm_call(2, REACT_FINAL)
    return b.complete("The defendant denied the claim [1].")


def llm_failed() -> list[Event]:
    b = RunBuilder().opening().llm_call(1, REACT_TOOL).retrieval()
    b.add(EventType.THINKING_START, metadata={"step": 2})
    b.add(EventType.LLM_START, metadata={"model": "openai/x", "call_id": "c2"})
    b.add(EventType.LLM_ERROR, error="503 from provider", metadata={"call_id": "c2"})
    b.add(EventType.THINKING_END, error="503 from provider")
    return b.error(ErrorCode.LLM_FAILED, "LLM call failed: 503 from provider")


def cancelled_mid_answer() -> list[Event]:
    b = RunBuilder().opening().llm_call(1, REACT_TOOL).retrieval()
    b.add(EventType.THINKING_START, metadata={"step": 2})
    b.add(EventType.LLM_START, metadata={"model": "offline/extractive", "call_id": "c2"})
    for chunk in ["Final Answer: ", "The ", "defendant "]:
        b.add(EventType.LLM_STREAM_CHUNK, output_data={"chunk": chunk}, metadata={"call_id": "c2"})
    return b.error(ErrorCode.CANCELLED, "cancelled by client")


def native_provider() -> list[Event]:
    """Reasoning tokens flagged ``thinking`` and an answer with no ReAct marker."""
    b = RunBuilder().opening().retrieval()
    b.llm_call(1, ["The user ", "asks about ", "the response."], thinking=True)
    return b.complete("The defendant denied the claim [1].")


RUNS = {
    "answered": answered,
    "llm_failed": llm_failed,
    "cancelled_mid_answer": cancelled_mid_answer,
    "native_provider": native_provider,
}


def translate(events: list[Event], after: Position | None = None) -> list[tuple[str, Any]]:
    stream = AguiStream(AguiTranslator(RUN, "thread-1"), after)
    out: list[tuple[str, Any]] = []
    for event in events:
        out += stream.feed(event)
    return out


def as_json(items: list[tuple[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(eid, event_json(event)) for eid, event in items]


def text_of(items: list[tuple[str, Any]], kind: A) -> str:
    return "".join(e.delta for _, e in items if e.type is kind)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_every_event_is_an_ag_ui_protocol_model(name):
    items = as_json(translate(RUNS[name]()))
    assert items[0][1]["type"] == "RUN_STARTED"
    assert items[-1][1]["type"] in ("RUN_FINISHED", "RUN_ERROR")
    for _, event in items:
        assert_valid(event)


def test_the_answer_is_a_text_message_and_the_thought_is_reasoning():
    items = translate(answered())
    assert text_of(items, A.TEXT_MESSAGE_CONTENT) == "The defendant denied the claim [1]."
    reasoning = text_of(items, A.REASONING_MESSAGE_CONTENT)
    assert reasoning.startswith("Thought: I will search.\nAction:") and "Final" not in reasoning
    assert reasoning.endswith("Thought: I now know\n")
    types = [e.type for _, e in items]
    assert types.count(A.TOOL_CALL_START) == types.count(A.TOOL_CALL_RESULT) == 1
    finished = items[-1][1]
    assert finished.result == {
        "answer": "The defendant denied the claim [1].",
        "citations": [
            {"chunk_id": "case-1/answer#2", "doc_id": "case-1/answer", "quote": "Denied."}
        ],
    }
    assert [u.model_dump(by_alias=True) for u in finished.usage] == [
        {
            "model": "offline/extractive",
            "inputTokens": 1400,
            "outputTokens": 60,
            "totalTokens": 1460,
        }
    ]
    custom = {e.name: e.value for _, e in items if e.type is A.CUSTOM}
    assert custom["legalstream.retrieval"]["hits"][0]["chunk_id"] == "case-1/answer#2"
    assert custom["legalstream.citations"]["citations"][0]["quote"] == "Denied."


def test_an_answer_without_the_marker_is_sent_whole_at_the_end():
    items = translate(native_provider())
    assert text_of(items, A.REASONING_MESSAGE_CONTENT) == "The user asks about the response."
    assert text_of(items, A.TEXT_MESSAGE_CONTENT) == "The defendant denied the claim [1]."


@pytest.mark.parametrize("text", ["Thought: ok\nFinal Answer: yes it was", "Final Answer:x"])
def test_the_marker_is_found_wherever_the_chunks_split_it(text):
    for i in range(1, len(text)):
        for j in range(i, len(text)):
            chunks = [c for c in (text[:i], text[i:j], text[j:]) if c]
            items = translate(RunBuilder().opening().llm_call(1, chunks).complete("a"))
            before, _, after = text.partition("Final Answer:")
            assert text_of(items, A.REASONING_MESSAGE_CONTENT) == before, chunks
            assert text_of(items, A.TEXT_MESSAGE_CONTENT) == after.lstrip(), chunks


def test_errors_end_the_run_with_run_error_and_the_code():
    for events, code in ((llm_failed(), "llm_failed"), (cancelled_mid_answer(), "cancelled")):
        last = translate(events)[-1][1]
        assert last.type is A.RUN_ERROR and last.code == code and last.message


def test_event_ids_name_the_run_event_and_the_place_in_its_group():
    items = translate(answered())
    ids = [eid for eid, _ in items]
    assert len(set(ids)) == len(ids)
    assert ids[0] == f"{RUN}:1"
    assert event_id(RUN, 7, 3, 3) == f"{RUN}:7" and event_id(RUN, 7, 1, 3) == f"{RUN}:7.1"
    final_group = [eid for eid in ids if eid.startswith(f"{RUN}:{len(answered())}")]
    assert final_group[-1] == f"{RUN}:{len(answered())}"
    assert all(eid.rsplit(".", 1)[1].isdigit() for eid in final_group[:-1])
    for eid in ids:
        position = parse_event_id(eid, RUN)
        assert position.event_id(RUN) == eid


@pytest.mark.parametrize(
    "bad", ["", "nope", f"{RUN}:", f"{RUN}:x", f"{RUN}:3.0", f"{RUN}:-1", "other:3", f"{RUN}:3.1.2"]
)
def test_a_bad_last_event_id_is_refused(bad):
    with pytest.raises(BadEventId):
        parse_event_id(bad, RUN)


def test_translation_is_deterministic():
    first = json.dumps(as_json(translate(answered())))
    assert json.dumps(as_json(translate(answered()))) == first


def test_resuming_after_every_position_is_exact_and_passes_the_client_verifier():
    streams: list[list[dict[str, Any]]] = []
    for name, make in sorted(RUNS.items()):
        events = make()
        full = as_json(translate(events))
        streams.append([event for _, event in full])
        positions = [Position()] + [parse_event_id(eid, RUN) for eid, _ in full]
        for cut, position in enumerate(positions):
            resumed = as_json(translate(events, position))
            cursor = position.event_id(RUN)
            prelude = [event for eid, event in resumed if eid == cursor]
            tail = resumed[len(prelude) :]
            assert tail == full[cut:], f"{name}: resumed after {cursor}: lost or repeated events"
            if tail:
                assert cut == 0 or prelude[0]["type"] == "RUN_STARTED", name
                streams.append(prelude + [event for _, event in tail])
            else:
                assert not prelude, f"{name}: a prelude with nothing after it"
    out = verify_streams(streams)
    assert out["checked"] == len(streams) > 100


def test_a_resume_whose_history_is_gone_is_run_error_resume_failed():
    stream = AguiStream(AguiTranslator(RUN, "t"), Position(12))
    lost = Event(
        type=EventType.RESUME_FAILED,
        run_id=RUN,
        error="events after after_seq are no longer in history",
        metadata={"after_seq": 0, "lost": [1, 40], "status": "running"},
    )
    [(eid, event)] = stream.fail(lost)
    assert eid == f"{RUN}:12"
    assert event.type is A.RUN_ERROR and event.code == "resume_failed"
    assert_valid(event_json(event))


def test_the_ag_ui_encoder_writes_what_the_sse_framing_relies_on():
    """wire.sse puts ``id:`` in front of ag-ui-protocol's encoding: one ``data:`` line,
    a blank line, no ``null`` for absent optional fields (ag_ui.encoder.EventEncoder)."""
    from ag_ui.core import TextMessageContentEvent
    from ag_ui.encoder import EventEncoder

    event = TextMessageContentEvent(message_id="m", delta="line one\nline two")
    encoded = EventEncoder().encode(event)
    assert encoded.startswith("data: ") and encoded.endswith("\n\n")
    assert encoded.count("\n") == 2, "EventEncoder no longer writes one data line per event"
    assert "null" not in encoded, "ag-ui-protocol models no longer leave out absent fields"
    assert EventEncoder().get_content_type() == "text/event-stream"
