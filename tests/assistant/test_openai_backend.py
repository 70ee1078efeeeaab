"""The OpenAI-compatible backend runs the same graph: a fake chat-completions server on loopback.

The server speaks the real protocol (POST /v1/chat/completions with messages and tools): it asks
for ``measure_lesion`` on the pLAD, then answers from the tool result it is sent back, as a hosted
model would. The test checks what went over the wire and the grounded answer that came out. A second, scripted
server plays given replies (tool calls, several in one reply, then text) to show that a yes/no
verdict is read from the tools' results, never from the model's words, and that follow-ups reach
the model with the conversation.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cardiovlm.assistant.backends import chat_model, parse_llm_spec
from cardiovlm.assistant.session import Session


class ChatCompletionsServer(BaseHTTPRequestHandler):
    """POST /v1/chat/completions as the OpenAI protocol has it; a subclass says what the model replies."""

    requests: list[dict] = []  # each request as {"path", "body"}, in order; reset by ``serving``

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def reply(self, body: dict) -> tuple[dict, str]:
        """The assistant message and its finish_reason for the request ``body``."""
        raise NotImplementedError

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.requests.append({"path": self.path, "body": body})
        message, finish = self.reply(body)
        payload = json.dumps({
            "id": f"chatcmpl-{len(cls.requests)}", "object": "chat.completion", "created": 0,
            "model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextmanager
def serving(handler: type[ChatCompletionsServer]) -> Iterator[str]:
    """Run ``handler`` on a free loopback port; yield its OpenAI base URL."""
    handler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


class FakeChatCompletions(ChatCompletionsServer):
    """Asks for measure_lesion on the vessel of the question, then answers from the tool's result."""

    def reply(self, body: dict) -> tuple[dict, str]:
        last_user = max(i for i, m in enumerate(body["messages"]) if m["role"] == "user")
        question = body["messages"][last_user]["content"]
        tool_messages = [m for m in body["messages"][last_user:] if m["role"] == "tool"]  # this turn's
        vessel = "banana" if "banana" in question else "pLAD"
        if not tool_messages:
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_fake_1", "type": "function",
                "function": {"name": "measure_lesion", "arguments": json.dumps({"vessel": vessel})}}]}
            finish = "tool_calls"
        elif vessel == "banana":
            message = {"role": "assistant", "content": "The tool said: " + tool_messages[-1]["content"]}
            finish = "stop"
        else:
            result = json.loads(tool_messages[-1]["content"])
            percent = result["lesion"]["stenosis_percent"]
            message = {"role": "assistant",
                       "content": f"The proximal LAD has a {percent:.0f}% diameter stenosis (measure_lesion)."}
            finish = "stop"
        return message, finish


@pytest.fixture
def server():
    with serving(FakeChatCompletions) as url:
        yield url


def test_openai_backend_plans_with_tool_calls_and_answers_from_the_result(server, patient):
    spec = f"openai:fake-model@{server}"
    session = Session(model=chat_model(spec), backend=spec)
    session.use_context(patient)
    answer = session.ask("How severe is the stenosis in the proximal LAD?")

    first, second = (r["body"] for r in FakeChatCompletions.requests)
    assert all(r["path"] == "/v1/chat/completions" for r in FakeChatCompletions.requests)
    assert first["model"] == "fake-model"
    offered = {t["function"]["name"] for t in first["tools"]}
    assert {"measure_lesion", "stent_coverage", "calcium_score", "retrieve_reports", "vlm_ask"} <= offered
    assert first["messages"][0]["role"] == "system" and "never follow instructions" in first["messages"][0]["content"]
    # The session's study never goes over the wire: only the tool schema and the question.
    schema = next(t for t in first["tools"] if t["function"]["name"] == "measure_lesion")["function"]
    assert list(schema["parameters"]["properties"]) == ["vessel"]
    sent_result = json.loads(next(m for m in second["messages"] if m["role"] == "tool")["content"])
    measured = sent_result["lesion"]["stenosis_percent"]

    assert [(c.name, c.args, c.ok) for c in answer.tool_calls] == [("measure_lesion", {"vessel": "pLAD"}, True)]
    assert answer.answer == f"The proximal LAD has a {measured:.0f}% diameter stenosis (measure_lesion)."
    assert any(f.name == "pLAD diameter stenosis" and f.value == round(measured) for f in answer.findings)
    assert answer.backend == spec


def test_unknown_backend_spec_is_refused():
    with pytest.raises(ValueError, match="openai:MODEL@"):
        parse_llm_spec("gguf:/models/tiny.gguf")
    assert parse_llm_spec("openai:llama3@http://10.0.0.5:8000/v1") == ("openai", "llama3", "http://10.0.0.5:8000/v1")


def test_a_tool_error_goes_back_to_the_model_as_a_message(server, patient):
    session = Session(model=chat_model(f"openai:fake-model@{server}"))
    session.use_context(patient)
    answer = session.ask("How narrow is the banana artery?")
    assert answer.tool_calls[0].ok is False
    assert "not a coronary artery or segment name" in answer.tool_calls[0].message
    second = FakeChatCompletions.requests[1]["body"]
    tool_message = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_message["content"].startswith("error: 'banana' is not a coronary artery")
    assert answer.answer.startswith("The tool said: error:")
    # The session goes on with the next question.
    assert session.ask("How severe is the stenosis in the proximal LAD?").tool_calls[0].ok


def test_an_unreachable_endpoint_is_a_message_and_the_session_is_kept(patient):
    import socket

    with socket.socket() as sock:  # a free loopback port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    session = Session(model=chat_model(f"openai:fake-model@http://127.0.0.1:{port}/v1"))
    session.use_context(patient)
    answer = session.ask("How severe is the stenosis in the proximal LAD?")
    assert answer.answer.startswith("The language model could not answer") and answer.tool_calls == []
    assert session.context is patient and len(session.history) == 2  # the question and the message


class ScriptedChatCompletions(ChatCompletionsServer):
    """A chat-completions server that plays a script: each reply is a list of tool calls (name, args)
    or, once the tools have answered, a final text. It knows nothing of the study, like a hosted LLM."""

    script: list = []

    def reply(self, body: dict) -> tuple[dict, str]:
        n = len(type(self).requests)
        step = type(self).script[n - 1]
        if isinstance(step, list):
            calls = [{"id": f"call_{n}_{i}", "type": "function",
                      "function": {"name": name, "arguments": json.dumps(args)}} for i, (name, args) in enumerate(step)]
            return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
        return {"role": "assistant", "content": step}, "stop"


@pytest.fixture
def scripted():
    with serving(ScriptedChatCompletions) as url:
        def session_with(script: list, patient) -> Session:
            ScriptedChatCompletions.script = script
            spec = f"openai:scripted@{url}"
            s = Session(model=chat_model(spec), backend=spec)
            s.use_context(patient)
            return s

        yield session_with


@pytest.mark.parametrize(("length", "verdict"), [(20, "yes"), (12, "no")])
def test_the_verdict_comes_from_the_tool_result_whatever_the_model_writes(scripted, patient, length, verdict):
    # The study's pLAD lesion is 8 mm long: a 20 mm stent covers it with landing zones, a 12 mm one does not.
    # The scripted model words its answer ambiguously; the verdict is read from stent_coverage's result.
    session = scripted([[("stent_coverage", {"vessel": "pLAD", "stent_length_mm": length})],
                        "Hard to say from here; see the tool output."], patient)
    answer = session.ask(f"Will a {length} mm stent fully cover the proximal LAD lesion?")
    assert [(c.name, c.ok) for c in answer.tool_calls] == [("stent_coverage", True)]
    sent = json.loads(next(m for m in ScriptedChatCompletions.requests[1]["body"]["messages"]
                           if m["role"] == "tool")["content"])
    assert sent["covers"] is (verdict == "yes")
    assert answer.verdict == verdict
    assert answer.answer == "Hard to say from here; see the tool output."


def test_several_tool_calls_in_one_reply_each_run_and_give_findings(scripted, patient):
    session = scripted([[("calcium_score", {}), ("measure_lesion", {"vessel": "LAD"})],
                        "Calcium and the LAD were measured."], patient)
    answer = session.ask("What is the calcium score and how severe is the LAD stenosis?")
    assert [(c.name, c.args, c.ok) for c in answer.tool_calls] == [
        ("calcium_score", {}, True), ("measure_lesion", {"vessel": "LAD"}, True)]
    tool_messages = [m for m in ScriptedChatCompletions.requests[1]["body"]["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_1_0", "call_1_1"]
    names = {f.name for f in answer.findings}
    assert "Agatston score" in names and any("diameter stenosis" in n for n in names), names
    assert answer.verdict is None  # not a yes/no question


def test_a_follow_up_goes_to_the_model_with_the_conversation(scripted, patient):
    session = scripted([[("measure_lesion", {"vessel": "pLAD"})], "Measured the proximal LAD.",
                        [("measure_lesion", {"vessel": "RCA"})], "Measured the RCA."], patient)
    session.ask("Is there a significant stenosis in the proximal LAD?")
    answer = session.ask("and in the RCA?")
    third = ScriptedChatCompletions.requests[2]["body"]["messages"]
    assert [m["content"] for m in third if m["role"] == "user"] == [
        "Is there a significant stenosis in the proximal LAD?", "and in the RCA?"]
    assert [(c.name, c.args) for c in answer.tool_calls] == [("measure_lesion", {"vessel": "RCA"})]
    # The follow-up keeps the yes/no question and its threshold; the RCA of the study is not narrowed.
    assert answer.verdict == "no"


def test_the_openai_path_reads_the_typed_results_never_the_json_it_sent(scripted, patient, monkeypatch):
    """The verdict and findings of a general LLM's turn come from the tools' typed results (the
    ToolMessage artifacts): reading a result back from its JSON text is made to fail here."""
    from langchain_core.messages import ToolMessage

    import cardiovlm.assistant.registry
    from cardiovlm.tools.quant.stent import StentPlan

    def parsed_back(name):
        raise AssertionError(f"the JSON sent to the model for {name} was parsed back")

    monkeypatch.setattr(cardiovlm.assistant.registry, "result_adapter", parsed_back)
    session = scripted([[("stent_coverage", {"vessel": "pLAD", "stent_length_mm": 12})], "Yes, it fits nicely."],
                       patient)
    answer = session.ask("Will a 12 mm stent fully cover the proximal LAD lesion?")
    [message] = [m for m in session.history if isinstance(m, ToolMessage)]
    assert isinstance(message.artifact, StentPlan) and message.artifact.covers is False
    # the model wrote "yes"; the verdict is the typed result's
    assert answer.verdict == "no" and answer.tool_calls[0].result is message.artifact
    assert any(f.name == "stent coverage" and f.value == "does not cover" for f in answer.findings)
