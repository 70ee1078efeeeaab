"""The OpenAI-compatible backend runs the same graph: a fake chat-completions server on loopback.

The server speaks the real protocol (POST /v1/chat/completions with messages and tools): it asks
for ``measure_lesion`` on the pLAD, then answers from the tool result it is sent back, as a hosted
model would. The test checks what went over the wire and the grounded answer that came out.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.backends import chat_model, parse_llm_spec
from assistant.session import Session


class FakeChatCompletions(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body})
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
        payload = json.dumps({
            "id": f"chatcmpl-{len(type(self).requests)}", "object": "chat.completion", "created": 0,
            "model": body["model"], "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def server():
    FakeChatCompletions.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeChatCompletions)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


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
