"""Session hygiene, progress and the prior reports panel, through the app's own handlers.

Clear makes the assistant forget the conversation (a follow-up no longer resolves against it, and a
question still running is neither shown nor remembered); downloads are named after the case and the
answer and name no server folder; long work shows its stage and seconds; retrieved reports are shown
with their cited sentences and never act as markup.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from cardiovlm.tools.core.settings import get_settings

DEMOS = get_settings().demo_cases_dir
needs_demo = pytest.mark.skipif(not (DEMOS / "healthy" / "case.json").is_file(),
                                reason="the healthy demo case is not bundled")
ALICE = SimpleNamespace(username="alice")


@pytest.fixture(scope="module")
def healthy():
    """The healthy demo, loaded once (tracing its coronary tree takes seconds); each test gets a fresh copy."""
    from cardiovlm.tools.quant.context import load_context

    if not (DEMOS / "healthy" / "case.json").is_file():
        pytest.skip("the healthy demo case is not bundled")
    return load_context(DEMOS / "healthy")


@pytest.fixture
def state():
    from cardiovlm.ui.session_state import UiSession

    s = UiSession(owner="alice")
    yield s
    s.close()


def _use(state, healthy) -> None:
    """Make a fresh copy of the loaded demo this session's study (its own masks and output folder)."""
    from dataclasses import replace

    state.session.use_context(replace(healthy, extra_masks={}, output_dir=None), study_path=str(DEMOS / "healthy"))


def _ask(state, question):
    from cardiovlm.ui.app import _answer

    *_, final = _answer(state, question, [], ALICE)
    return final


def _tools(state) -> list[str]:
    return [t.name for t in state.answer.tool_calls] if state.answer is not None else []


def _workers_done(timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while any(t.name == "cardiovlm-work" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.2)


@needs_demo
def test_clear_makes_the_assistant_forget_the_conversation(state, healthy):
    from cardiovlm.ui.app import _clear

    _use(state, healthy)
    _ask(state, "What is the calcium score?")
    _ask(state, "and in the LAD?")  # control: before Clear the follow-up continues the calcium question
    assert _tools(state) == ["calcium_score"] and state.answer.findings
    state_out, chat, _, findings, downloads, status, reports, *_ = _clear(state, ALICE)
    assert chat == [] and findings == [] and downloads is None and "cleared" in status
    assert state.session.history == [] and state.answer is None and state.session.context is not None
    final = _ask(state, "and in the LAD?")
    assert "calcium_score" not in _tools(state)  # nothing left to continue
    assert [m.content for m in state.session.history if m.type == "human"] == ["and in the LAD?"]
    assert len([m for m in final[1] if m.role == "user"]) == 1


@needs_demo
def test_a_question_running_when_clear_is_pressed_is_neither_shown_nor_remembered(state, healthy):
    from cardiovlm.ui.app import _answer, _clear

    _use(state, healthy)
    stream = _answer(state, "What is the calcium score?", [], ALICE)
    next(stream)  # the question is shown; the assistant works in its thread
    _clear(state, ALICE)
    assert list(stream) == []  # nothing more reaches the chat
    _workers_done()
    assert state.session.history == [] and state.answer is None


@needs_demo
def test_downloads_are_named_after_the_case_and_the_answer_and_name_no_server_folder(state, healthy):
    _use(state, healthy)
    final = _ask(state, "What is the calcium score?")
    files = [Path(p) for p in final[4]]
    names = sorted(p.name for p in files)
    assert "healthy_answer01_calcium_score.json" in names and "healthy_answer01_calcium_score_report.html" in names
    assert all(p.name.startswith("healthy_answer01_") for p in files), names
    work = str(Path(get_settings().ui_work_dir).resolve())
    for p in files:
        if p.suffix in (".json", ".html"):
            text = p.read_text()
            assert work not in text and str(Path(get_settings().ui_work_dir)) not in text and "/tmp/" not in text
    saved = json.loads(next(p for p in files if p.suffix == ".json").read_text())
    assert saved["question"] == "What is the calcium score?" and saved["findings"]
    final = _ask(state, "What is the calcium score?")
    assert any(Path(p).name == "healthy_answer02_calcium_score.json" for p in final[4])  # the next answer


@needs_demo
def test_a_load_and_a_question_show_their_stage_and_seconds(state):
    from cardiovlm.ui import app as app_module

    lines = []
    for out in app_module._load(state, "demo", "healthy", "axial", "cardiac", ALICE, 100):
        lines.append(out[6])
    assert any(str(s).startswith("Working: loading the study") and str(s).endswith(" s") for s in lines), lines
    assert lines[-1].startswith("✓ loaded in ") and "Modality" in out[1]
    statuses = [out[8] for out in app_module._answer(state, "What is the calcium score?", [], ALICE)]
    assert any(str(s).startswith("Working: scoring calcium") for s in statuses) or any(
        str(s).startswith("Working: planning") for s in statuses), statuses
    assert statuses[-1].startswith("✓ answered in ") and "scoring calcium" in statuses[-1]


def test_run_with_ticks_reports_idle_seconds_and_stops_the_work():
    from cardiovlm.ui.progress import TICK, StageClock, run_with_ticks

    ran = []

    def work():
        yield "first"
        time.sleep(0.35)
        yield "second"
        ran.append("third")  # never reached: the consumer stopped after "second"
        yield "third"

    stop = []
    items = []
    for item in run_with_ticks(work(), tick_s=0.1, stop=lambda: bool(stop)):
        items.append(item)
        if item == "second":
            stop.append(True)
    assert items[0] == "first" and items.count(TICK) >= 2 and "second" in items and "third" not in items
    time.sleep(0.2)
    assert ran == []
    with pytest.raises(ZeroDivisionError):  # the work's error reaches the caller
        list(run_with_ticks(lambda: 1 / 0, tick_s=0.1))
    clock = StageClock("planning")
    clock.enter("measuring the lesion")
    assert clock.line().startswith("Working: measuring the lesion · ")
    assert clock.summary("✓ answered").startswith("✓ answered in ") and "planning 0 s" in clock.summary("x")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_the_reports_panel_marks_the_cited_sentences_and_is_inert():
    from cardiovlm.tools.core.answer import Citation
    from cardiovlm.ui.reports_panel import reports_html

    hostile = ('<img src="http://evil.example/i.png"> <script>alert(1)</script> ${alert(2)} '
               '<a href="http://evil.example">x</a>')
    text = f"Indication: chest pain. Severe proximal LAD stenosis. {hostile}"
    html = reports_html("prior LAD reports?", [Citation(report_id="r<1>", date="2023-01-02",
                                                         snippet="Severe proximal LAD stenosis.")],
                        {"r<1>": text})
    parser = _Tags()
    parser.feed(html)
    assert set(parser.tags) <= {"p", "b", "div", "blockquote", "mark"}, parser.tags
    assert "<mark>Severe proximal LAD stenosis.</mark>" in html and "&lt;img src=" in html
    assert "r&lt;1&gt;" in html and "2023-01-02" in html


@needs_demo
def test_retrieved_reports_reach_the_panel_with_their_cited_sentences(state, healthy, tmp_path):
    from cardiovlm.tools.core.settings import Settings
    from cardiovlm.tools.reports import api as rs
    from cardiovlm.ui.app import _answer

    store = rs.ReportStore.open(Settings(data_dir=tmp_path), path=tmp_path / "reports")
    store.ingest([
        rs.ReportRecord(report_id="other-7", patient_hash="patient-b", study_date=date(2022, 3, 4),
                        text="Indication: chest pain. Severe stenosis of the proximal LAD. Patent RCA."),
        rs.ReportRecord(report_id="other-8", patient_hash="patient-c", study_date=date(2021, 1, 5),
                        text="Mild plaque in the mid RCA. No LAD stenosis."),
    ])
    state.session.report_store = store
    _use(state, healthy)
    *_, final = _answer(state, "Find similar cases from other patients with proximal LAD stenosis", [], ALICE)
    panel = final[-1]
    assert state.answer.citations and "other-7" in panel and "2022-03-04" in panel
    cited = next(c for c in state.answer.citations if c.report_id == "other-7").snippet
    assert f"<mark>{cited}</mark>" in panel  # the cited sentence, marked inside the whole report
