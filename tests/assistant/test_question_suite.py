"""The question suite on a hand-made study: expected answers come from how the study was built.

Ground truth (see conftest): a 75 % / 8 mm non-calcified lesion in the pLAD, a patent stent on the
dLCx, a calcified plaque (500 HU) beside the mRCA without narrowing, a healthy LM; a 62-year-old male
smoker. A 20 mm stent covers the 8 mm lesion with 2.5 mm landing zones (needs 13 mm), a 12 mm one
does not. The Agatston score of a 500 HU plaque on 0.4 mm slices is 4 x volume / 3 mm.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME, segments_of_artery
from cardiovlm.tools.quant.risk import mesa_chd_risk
from tests.assistant.conftest import VOXEL, make_patient_context


@pytest.fixture
def session(patient):
    s = Session(model=ClinicalPlanner())
    s.use_context(patient)
    return s


def numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?", text)]


def finding(answer, name):
    return next(f for f in answer.findings if f.name == name)


def test_calcium_score_matches_the_plaque_built_into_the_study(session, patient):
    answer = session.ask("What is the patient's coronary calcium score?")
    calcium_mm3 = (patient.labels == STRUCTURES_BY_NAME["calcified_plaque"].label_id).sum() * VOXEL**3
    expected = 4 * calcium_mm3 / 3.0  # weight 4 (500 HU), areas scaled by 0.4 mm / 3 mm
    assert finding(answer, "Agatston score").value == pytest.approx(expected, abs=0.1)
    assert f"{expected:.1f}" in answer.answer and "AU" in answer.answer
    assert finding(answer, "RCA Agatston score").value == pytest.approx(expected, abs=0.1)
    assert "A1/N1" in answer.answer  # 1-99, one vessel
    assert answer.verdict is None


@pytest.mark.parametrize(("question", "verdict"), [
    ("Does the patient have any coronary calcium?", "yes"),
    ("Is the Agatston score zero?", "no"),
    ("Is the calcium score above 100?", "no"),
    ("Is there calcification in the RCA?", "yes"),
    ("any Ca in the LAD?", "no"),
    ("Is there plaque in the LAD?", "yes"),
    ("Is there a stent in the RCA?", "no"),
    ("Is there a stent in the circumflex?", "yes"),
    ("Is there a significant stenosis in the proximal LAD?", "yes"),
    ("Is there a severe stenosis of the LAD?", "yes"),
    ("Is the RCA narrowed?", "no"),
    ("Is the LAD occluded?", "no"),
    ("Will a 20 mm stent fully cover the proximal LAD lesion?", "yes"),
    ("Would a 12 mm stent be long enough for the pLAD lesion?", "no"),
    ("Is a 3.5 x 15 mm stent sufficient for the proximal LAD lesion?", "yes"),
])
def test_yes_no_verdicts_follow_the_ground_truth(session, question, verdict):
    answer = session.ask(question)
    assert answer.verdict == verdict, answer.answer
    assert answer.answer.startswith({"yes": "Yes.", "no": "No."}[verdict])


def test_stenosis_of_the_proximal_lad_is_measured_with_units(session):
    answer = session.ask("How severe is the stenosis in the proximal LAD?")
    assert 65 <= finding(answer, "pLAD diameter stenosis").value <= 80
    assert finding(answer, "pLAD CAD-RADS").value == "4A"
    assert finding(answer, "pLAD lesion length").value == pytest.approx(8.0, abs=1.0)
    assert re.search(r"\d+% diameter stenosis", answer.answer) and " mm long" in answer.answer
    assert [c.name for c in answer.tool_calls] == ["measure_lesion"]


def test_whole_tree_names_the_worst_vessel(session):
    answer = session.ask("Where is the worst narrowing?")
    assert "most severe narrowing is on the LAD" in answer.answer
    assert {c.args["vessel"] for c in answer.tool_calls} == {"LM", "LAD", "LCx", "RCA"}


def test_stent_follow_ups_change_the_length_and_keep_the_lesion(session):
    first = session.ask("Will a 20 mm stent fully cover the proximal LAD lesion?")
    assert first.verdict == "yes" and finding(first, "required stent length").value == pytest.approx(13.0, abs=1.0)
    second = session.ask("what about a 12 mm one?")
    assert second.verdict == "no" and second.tool_calls[0].args == {"vessel": "pLAD", "stent_length_mm": 12.0}
    assert "does not cover" in second.answer
    assert finding(second, "shortest covering catalogue length").value == 15.0


def test_stent_without_a_vessel_goes_to_the_worst_lesion(session):
    answer = session.ask("Will a 20 mm stent cover the lesion?")
    stent = [c for c in answer.tool_calls if c.name == "stent_coverage"]
    assert len(stent) == 1 and stent[0].args["vessel"] == "pLAD" and answer.verdict == "yes"
    # The lesion's segment is drawn with the answer.
    assert [m.name for m in answer.masks if m.format == "nifti"] == ["pLAD"]


def test_stent_size_question_gives_the_catalogue_length_and_diameter(session):
    answer = session.ask("Which stent size do I need for the pLAD lesion?")
    assert "shortest catalogue length that covers it is 15 mm" in answer.answer
    assert finding(answer, "suggested stent diameter").value == pytest.approx(3.5, abs=0.25)


def test_follow_up_moves_to_another_artery(session):
    session.ask("Is there calcification in the LAD?")
    answer = session.ask("and the RCA?")
    assert answer.verdict == "yes" and answer.tool_calls[0].args == {"target": "calcification", "on_artery": "RCA"}


def test_segmentation_writes_the_artery_mask(session, patient):
    answer = session.ask("Segment the LAD")
    mask_file = next(m for m in answer.masks if m.name == "LAD")
    import nibabel as nib

    mask = np.asarray(nib.load(mask_file.path).dataobj) > 0
    expected = np.isin(patient.labels, [s.label_id for s in segments_of_artery("LAD")])
    assert mask.shape == patient.study.shape and mask.sum() == expected.sum()
    assert answer.overlay_png and answer.overlay_png.endswith(".png")


def test_most_calcified_artery_is_segmented(session):
    answer = session.ask("Segment the most calcified artery")
    assert answer.answer.startswith("The most calcified artery is the RCA")
    assert [m.name for m in answer.masks] == ["RCA"]


def test_no_stent_is_present_in_a_study_without_one(tmp_path):
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    s.use_context(make_patient_context(stent=False))
    answer = s.ask("Is there a stent?")
    assert answer.verdict == "no" and "No stent is present in this study" in answer.answer


def test_mace_question_gives_established_scores_and_no_probability(session, patient):
    answer = session.ask("Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?")
    text = answer.answer
    assert answer.verdict == "unknown" or answer.verdict is None
    assert "No validated model" in text and "not 1-year MACE" in text
    calcium = finding(answer, "Agatston score").value
    mesa = mesa_chd_risk(patient.clinical, calcium).ten_year_chd_risk_percent
    assert finding(answer, "MESA 10-year hard CHD risk").value == pytest.approx(mesa, abs=0.1)
    assert "above the male 99th-percentile URL of 34.2 ng/L" in text  # 40 pg/mL = 40 ng/L > 34.2
    assert answer.tool_calls[0].args == {"troponin_value": 40.0, "troponin_unit": "pg/mL"}
    # The only percentages are the MESA risk: nothing that reads as a MACE probability.
    assert re.findall(r"(\d+(?:\.\d+)?)%", text) == [f"{mesa:g}"]


def test_nonsense_gets_what_the_assistant_can_do_and_no_tool(session):
    answer = session.ask("banana rocket?")
    assert answer.tool_calls == [] and "I can answer questions" in answer.answer and answer.verdict is None
    follow = session.ask("and the RCA?")  # nothing to follow: still no tool, no invented answer
    assert follow.tool_calls == []


def test_every_number_in_an_answer_comes_from_a_tool(session):
    questions = ["What is the calcium score?", "How severe is the stenosis in the proximal LAD?",
                 "Will a 20 mm stent fully cover the proximal LAD lesion?", "Which study is loaded?",
                 "What is his risk of heart attack with a troponin I of 0.05 ng/mL?", "Segment the RCA"]
    for question in questions:
        answer = session.ask(question)
        allowed = set(numbers(question))
        for f in answer.findings:
            allowed.update(numbers(str(f.value)) if isinstance(f.value, str) else [float(f.value)])
        for call in answer.tool_calls:
            allowed.update(numbers(str(call.args)))
        tool_text = " ".join(str(m.content) for m in session.history[-len(answer.tool_calls) * 2 - 1:])
        allowed.update(numbers(tool_text))
        stray = [n for n in numbers(re.sub(r"\b(CAD-RADS \w+|[A-Z]\d/N\d|P\d|hs-cTnI|\d+th|JACC \d+)\b", "",
                                           answer.answer)) if n not in allowed]
        assert not stray, (question, stray, answer.answer)


@pytest.mark.parametrize("restenosis", [None, 80.0])
def test_stent_patency_is_not_claimed_where_the_in_stent_lumen_is_not_graded(tmp_path, restenosis):
    # Metal blooming hides the lumen inside a stent at CCTA resolution (cardiovlm.tools.quant.stenosis does not grade
    # it): a patent stent and an 80 % restenosis both get "cannot be graded", never "patent on CT".
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    s.use_context(make_patient_context(in_stent_restenosis=restenosis))
    patency = s.ask("Is the LCx stent patent?")
    assert patency.verdict == "unknown", patency.answer
    assert [c.name for c in patency.tool_calls] == ["segment_anatomy", "measure_lesion"]
    again = s.ask("Is there in-stent restenosis in the circumflex?")
    assert again.verdict == "unknown", again.answer
    for answer in (patency, again):
        assert "A stent is present on the LCx" in answer.answer
        assert "cannot be graded from this CT" in answer.answer and "blooms" in answer.answer
        assert "patent on CT" not in answer.answer


def test_a_stent_question_without_a_stent_says_so(tmp_path):
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    s.use_context(make_patient_context(stent=False))
    answer = s.ask("Is the RCA stent patent?")
    assert answer.verdict == "unknown" and "No stent is present on the RCA" in answer.answer


@pytest.mark.xfail(strict=True, reason="known gap: this short mild narrowing (35 % over 6 mm) reads 34 % at its "
                   "deepest but under 25 % on the steadier profile lesions are called from, so no LCx lesion is found "
                   "(mild lesions read low: benchmarks/stenosis_accuracy.py)")
def test_a_follow_up_keeps_the_severity_asked_about(tmp_path):
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    # No stent: the 35 % narrowing of the dLCx is a plain mild (CAD-RADS 2) lesion.
    s.use_context(make_patient_context(stent=False, in_stent_restenosis=35.0))
    assert s.ask("Is there a significant stenosis of the LAD?").verdict == "yes"  # 75 % built in
    follow = s.ask("and the LCx?")
    assert follow.tool_calls[0].args == {"vessel": "LCx"} and follow.verdict == "no", follow.answer
    assert 25 <= next(f.value for f in follow.findings if f.name == "LCx diameter stenosis") < 50
    assert s.ask("Is the LAD narrowed?").verdict == "yes"
    assert s.ask("and the LCx?").verdict == "yes"  # any stenosis of 25 % or more


def test_a_bug_in_the_wording_still_returns_the_results(session, monkeypatch):
    import cardiovlm.assistant.planner

    def broken(q, done):
        raise KeyError("missing fact")

    monkeypatch.setattr(cardiovlm.assistant.planner, "compose_answer", broken)
    answer = session.ask("What is the calcium score?")
    assert answer.answer.startswith("I could not write the answer (KeyError)")
    assert "calcium_score: ok" in answer.answer and any(f.name == "Agatston score" for f in answer.findings)


def test_both_parts_of_a_compound_question_are_answered(session):
    answer = session.ask("What is the calcium score and how severe is the LAD stenosis?")
    assert [c.name for c in answer.tool_calls] == ["calcium_score", "measure_lesion"]
    first, second = answer.answer.split("\n")
    assert first.startswith("(1)") and "Agatston score" in first and "diameter stenosis" not in first
    assert second.startswith("(2)") and re.search(r"LAD has an? \d+% diameter stenosis", second)


def test_a_part_not_understood_is_named(session):
    answer = session.ask("What is the calcium score and also tell me a joke about bananas?")
    assert "Agatston score" in answer.answer and "not answered" in answer.answer


@pytest.mark.xfail(strict=True, reason="known gap: the 1.2 mm thick 500 HU calcification reaches only "
                   "~300-360 HU after the 0.5 mm PSF, darker than the 430 HU lumen, so the CT cannot tell it from the "
                   "lumen's blurred edge: it is read as lumen (area 20 vs 9.6 mm^2 nearby) and the RCA shows no lesion")
def test_a_comparison_measures_every_vessel_named(session):
    answer = session.ask("Compare the LAD and RCA stenoses")
    assert [c.args["vessel"] for c in answer.tool_calls] == ["LAD", "RCA"]
    assert "most severe narrowing is on the LAD" in answer.answer and "The RCA has" in answer.answer


def test_a_vessel_level_follow_up_measures_the_whole_artery(session):
    session.ask("How severe is the stenosis in the proximal LAD?")
    answer = session.ask("and in the RCA?")
    assert [c.args for c in answer.tool_calls] == [{"vessel": "RCA"}]


def test_a_new_request_after_mace_is_not_answered_as_mace(session):
    session.ask("Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?")
    answer = session.ask("Show the right coronary artery")
    assert [c.name for c in answer.tool_calls] == ["segment_anatomy"] and "MACE" not in answer.answer
    session.ask("Is this patient with Troponin-I 40 pg/mL likely to have a MACE within 1 year?")
    follow = session.ask("and the LAD?")
    assert "risk_context" not in [c.name for c in follow.tool_calls] and "MACE" not in follow.answer


def test_lesion_end_is_located_and_marked(session):
    answer = session.ask("Where does the LAD lesion end?")
    assert [c.name for c in answer.tool_calls] == ["measure_lesion"]
    end = finding(answer, "LAD lesion end (LPS)").value
    assert f"at {end} mm" in answer.answer and "marked on the image" in answer.answer
    assert answer.overlay_png and answer.overlay_png.endswith(".png")


def test_an_anatomical_landmark_goes_to_the_locate_tool(session):
    answer = session.ask("Where is the left main ostium?")
    assert [(c.name, c.args) for c in answer.tool_calls] == [("vlm_locate", {"target": "left coronary ostium"})]


def test_a_quantity_the_tools_cannot_measure_gets_a_reasoned_cannot(session):
    answer = session.ask("What is the FFR of the LAD lesion?")
    assert answer.tool_calls == [] and answer.answer.startswith("I cannot tell you fractional flow reserve")
    assert "What would answer it:" in answer.answer and "invasive FFR" in answer.answer


def test_a_negative_stent_length_is_refused_without_a_tool(session):
    answer = session.ask("Will a -20 mm stent cover the proximal LAD lesion?")
    assert answer.tool_calls == [] and "cannot be negative" in answer.answer


@pytest.mark.parametrize(("value", "words", "verdict"), [
    (60, "above both sex-specific 99th-percentile limits", "yes"),
    (10, "not above either sex-specific 99th-percentile limit", "no"),
    (20, "above the female but not the male", "unknown"),
])
def test_troponin_with_sex_unknown_is_compared_with_both_limits(tmp_path, value, words, verdict):
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    s.use_context(make_patient_context(clinical=False))
    answer = s.ask(f"Is a troponin of {value} ng/L elevated?")
    assert words in answer.answer and answer.verdict == verdict, answer.answer
    assert finding(answer, "hs-cTnI 99th-percentile URL (female)").value == 15.6
    assert finding(answer, "hs-cTnI 99th-percentile URL (male)").value == 34.2


def test_a_sex_stated_in_the_question_picks_the_limit_when_none_is_recorded(tmp_path):
    s = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    s.use_context(make_patient_context(clinical=False))
    answer = s.ask("Is a troponin of 20 ng/L elevated in a woman?")
    assert answer.tool_calls[0].args == {"troponin_value": 20.0, "troponin_unit": "ng/L", "sex": "female"}
    assert answer.verdict == "yes" and "above the female 99th-percentile URL of 15.6 ng/L" in answer.answer
