"""The clinical context panel: filled from the case, edited values stored in the session and used by
the risk answer, which names them; a value out of range is a message and changes nothing."""

from __future__ import annotations

import gradio as gr
import pytest

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.ui.context_panel import FIELDS, build_context_panel, context_view, save_context
from tests.assistant.conftest import make_patient_context

NAMES = [name for name, _, _ in FIELDS]


@pytest.fixture
def session(tmp_path):
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    s.use_context(make_patient_context())  # 62 y white man, SBP 138, TC 210, HDL 45, smoker, BP treatment
    return s


def form(session) -> dict:
    return dict(zip(NAMES, context_view(session)[:-1]))


def mesa(answer) -> float:
    return next(f.value for f in answer.findings if f.name == "MESA 10-year hard CHD risk")


def test_the_panel_has_a_field_per_value():
    with gr.Blocks():
        panel = build_context_panel()
    assert len(panel.fields) == len(FIELDS) == 14
    assert panel.fields[0].elem_id == "clinical-age" and panel.outputs[-1] is panel.message


def test_the_form_shows_the_case_values_and_their_source(session):
    values = form(session)
    assert values["age"] == 62 and values["sex"] == "male" and values["smoker"] == "yes"
    assert values["diabetes"] == "no" and values["troponin_value"] is None and values["troponin_unit"] == "unknown"
    message = context_view(session)[-1]
    assert "**From the case's clinical file:** age, sex, race" in message and "every value it needs is known" in message


def test_an_edit_changes_the_risk_answer_which_names_the_values(session):
    before = session.ask("What is his cardiac risk?")
    assert "systolic BP 138 mmHg" in before.answer and "current smoker" in before.answer
    values = form(session) | {"systolic_bp_mmhg": 165, "smoker": "no", "troponin_value": 40,
                              "troponin_unit": "ng/L"}
    out = save_context(session, *values.values())
    assert out[NAMES.index("systolic_bp_mmhg")] == 165 and out[-1].startswith("Saved")
    assert "**Entered by the user:** systolic blood pressure, current smoking, troponin, troponin unit" in out[-1]
    after = session.ask("What is his cardiac risk?")
    assert "systolic BP 165 mmHg" in after.answer and "current smoker" not in after.answer
    assert mesa(after) != mesa(before)
    assert "hs-cTnI 40 ng/L (given as 40 ng/L) is above the male 99th-percentile URL" in after.answer


def test_unknown_values_are_named_as_missing_in_the_answer(session):
    values = form(session) | {"race": "unknown", "hdl_cholesterol_mg_dl": None}
    out = save_context(session, *values.values())
    assert "Missing for the MESA risk score:** race, HDL cholesterol" in out[-1]
    answer = session.ask("What is his cardiac risk?")
    assert "these values are not known: race, HDL cholesterol" in answer.answer


def test_a_value_out_of_range_is_a_message_and_changes_nothing(session):
    values = form(session) | {"systolic_bp_mmhg": 20}
    out = save_context(session, *values.values())
    assert out[-1].startswith("⚠️ systolic blood pressure") and session.clinical.systolic_bp_mmhg == 138
    values = form(session) | {"troponin_value": 12, "troponin_unit": "unknown"}
    assert "needs its unit" in save_context(session, *values.values())[-1]
    assert session.clinical.troponin_value is None
