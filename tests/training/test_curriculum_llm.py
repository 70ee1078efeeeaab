"""Report templates through every backend: the embedded parser and an OpenAI-compatible endpoint."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cardiovlm.tools.reports.findings import ReportFindings
from cardiovlm.training.curriculum.llm import (
    EmbeddedReportModel,
    ReportModelError,
    ask,
    extract_findings,
    make_chat_model,
)
from cardiovlm.training.curriculum.templates import load_templates, render_messages

REPORT = ("Right dominant. Calcified plaque in the first diagonal with mild stenosis. Non-calcified plaque "
          "in the pCx, 50-69% stenosis over 14 mm. No plaque in the RCA. 3.0 x 22 mm stent in the mid LAD "
          "with 50% in-stent restenosis. CAD-RADS 3/S.")


@pytest.fixture(scope="module")
def embedded():
    return EmbeddedReportModel()


def test_multiple_choice_like_the_patent(embedded):
    choices = ["left diagonal", "left circumflex", "left main", "distal circumflex"]
    answer = ask(embedded, "calcified_artery_choice", REPORT, choices=choices)
    assert answer.choice == 1 and "first diagonal" in answer.evidence
    worst = ask(embedded, "stenosed_segment_choice", REPORT, choices=["D1", "proximal circumflex", "RCA"])
    assert worst.choice == 2


@pytest.mark.parametrize("template, anatomy, expected", [
    ("plaque_presence", "D1", "yes"),
    ("plaque_presence", "RCA", "no"),
    ("plaque_presence", "OM2", "not mentioned"),
    ("calcium_presence", "LAD", "yes"),
    ("calcium_presence", "proximal circumflex", "no"),
    ("stent_presence", "mid LAD", "yes"),
    ("stent_presence", "RCA", "not mentioned"),
])
def test_presence(embedded, template, anatomy, expected):
    assert ask(embedded, template, REPORT, anatomy=anatomy).answer == expected


def test_measurements(embedded):
    stenosis = ask(embedded, "stenosis_measurement", REPORT, anatomy="pCx")
    assert (stenosis.low, stenosis.high, stenosis.unit) == (50, 69, "%")
    assert ask(embedded, "lesion_length_measurement", REPORT, anatomy="pCx").value == 14
    assert ask(embedded, "stent_length_measurement", REPORT, anatomy="mLAD").value == 22
    assert ask(embedded, "stent_length_measurement", REPORT, anatomy="RCA").value is None


def test_cad_rads_and_extraction(embedded):
    cad = ask(embedded, "cad_rads", REPORT)
    assert (cad.category, cad.modifiers) == ("3", ["S"])
    findings = extract_findings(embedded, REPORT)
    assert isinstance(findings, ReportFindings) and findings.dominance == "right"
    assert {f.segment for f in findings.positive()} >= {"D1", "pCx", "mLAD"}


def test_templates_are_data_and_validate_parameters():
    assert {t.form for t in load_templates().templates.values()} == {
        "extraction", "multiple_choice", "presence", "measurement", "cad_rads"}
    with pytest.raises(ValueError, match="needs parameters"):
        render_messages("plaque_presence", REPORT)
    with pytest.raises(ValueError, match="unknown template"):
        render_messages("nope", REPORT)


@pytest.mark.parametrize("spec", ["openai:model", "openai:m@ftp://x", "llama", "gguf:/x.gguf"])
def test_bad_llm_specs(spec):
    with pytest.raises(ValueError):
        make_chat_model(spec)


class _FakeOpenAI(BaseHTTPRequestHandler):
    """Speaks POST /v1/chat/completions; answers come from the server's queue."""

    def do_POST(self):  # http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        content = self.server.answers.pop(0)
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": content}}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    server.requests, server.answers = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_openai_backend_retries_once_with_the_validation_error(fake_server):
    fake_server.answers += ['{"answer": "probably"}', '{"answer": "yes", "evidence": "Calcified plaque"}']
    model = make_chat_model(f"openai:qwen2.5-7b@http://127.0.0.1:{fake_server.server_port}/v1")
    answer = ask(model, "calcium_presence", REPORT, anatomy="D1")
    assert answer.answer == "yes"
    (path, first), (_, second) = fake_server.requests
    assert path == "/v1/chat/completions" and first["model"] == "qwen2.5-7b"
    assert first["response_format"] == {"type": "json_object"}
    assert "Template: calcium_presence" in first["messages"][1]["content"]
    assert "did not validate" in second["messages"][-1]["content"]
    assert second["messages"][-2] == {"role": "assistant", "content": '{"answer": "probably"}'}


def test_openai_backend_gives_up_after_the_retry(fake_server):
    fake_server.answers += ["not json", '{"choice": "first"}']
    model = make_chat_model(f"openai:m@http://127.0.0.1:{fake_server.server_port}/v1")
    with pytest.raises(ReportModelError, match="no valid answer"):
        ask(model, "calcified_artery_choice", REPORT, choices=["LAD", "RCA"])
    assert len(fake_server.requests) == 2


def test_openai_backend_returns_the_same_findings_model(fake_server, embedded):
    expected = extract_findings(embedded, REPORT)
    fake_server.answers.append(expected.model_dump_json())
    model = make_chat_model(f"openai:m@http://127.0.0.1:{fake_server.server_port}/v1")
    assert extract_findings(model, REPORT) == expected
