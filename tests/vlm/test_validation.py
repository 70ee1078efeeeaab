"""The checkpoint's own evaluation, as quoted next to VLM answers."""

from __future__ import annotations

import json

import pytest

from cardiovlm.vlm.validation import (
    EVALUATION_FILE,
    HELD_OUT_SPLIT,
    measured_dice,
    measured_scores,
    structure_group_of_text,
)


@pytest.mark.parametrize("text,group", [("LAD", "LAD"), ("proximal RCA", "RCA"), ("circumflex", "LCx"),
                                        ("left ventricle", "chambers"), ("aorta", "aorta"),
                                        ("calcified plaque of the LAD", "calcifications"),
                                        ("stent in the RCA", "stents"),
                                        ("crux cordis", None)])
def test_structure_group_of_text(text, group):
    assert structure_group_of_text(text) == group


def test_measured_dice_reads_the_held_out_column(tmp_path):
    assert measured_scores(tmp_path) is None and measured_dice(tmp_path, "LAD") is None
    reports = [{"splits": {HELD_OUT_SPLIT: {"Dice LAD": 0.42, "Dice aorta": None},
                           f"{HELD_OUT_SPLIT}, held-out phrasings": {"Dice LAD": 0.1}}}]
    (tmp_path / EVALUATION_FILE).write_text(json.dumps(reports))
    assert measured_dice(tmp_path, "mid LAD") == 0.42
    assert measured_dice(tmp_path, "aorta") is None  # not evaluated
    assert measured_dice(tmp_path, "crux cordis") is None  # no Dice row
    (tmp_path / EVALUATION_FILE).write_text("{not json")
    assert measured_scores(tmp_path) is None


def test_a_chamber_is_judged_by_its_own_row_when_the_evaluation_has_one(tmp_path):
    reports = [{"splits": {HELD_OUT_SPLIT: {"Dice chambers": 0.72, "Dice left atrium": 0.31,
                                            "Dice left ventricle": 0.9}}}]
    (tmp_path / EVALUATION_FILE).write_text(json.dumps(reports))
    assert measured_dice(tmp_path, "left atrium") == 0.31  # the pooled 0.72 would hide a poor atrium
    assert measured_dice(tmp_path, "left ventricle") == 0.9
    assert measured_dice(tmp_path, "calcified plaque of the left ventricle") is None  # a finding, not the chamber
    (tmp_path / EVALUATION_FILE).write_text(json.dumps([{"splits": {HELD_OUT_SPLIT: {"Dice chambers": 0.72}}}]))
    assert measured_dice(tmp_path, "right atrium") == 0.72  # older evaluations: the pooled row


@pytest.mark.parametrize("question,kind", [
    ("Is there a calcification in the left main coronary artery?", "findings"), ("any plaque in LAD?", "findings"),
    ("Is the LAD narrowed?", "findings"), ("Is there a stenosis in the RCA?", "findings"),
    ("Is the proximal right coronary artery a segment of the left main coronary artery?", "anatomy"),
    ("Will a 26 mm stent fully cover the proximal LAD lesion?", "stent sizing"),
    ("24 mm stent covers pCx lesion?", "stent sizing")])
def test_question_kind(question, kind):
    from cardiovlm.vlm.validation import question_kind

    assert question_kind(question) == kind


def test_answer_evidence_compares_the_kind_with_its_closest_control(tmp_path):
    from cardiovlm.vlm.validation import answer_evidence

    row = "yes/no balanced accuracy (findings)"
    assert not answer_evidence(tmp_path, "is there a stent?").depends_on_image  # no evaluation: no evidence
    reports = [{"splits": {HELD_OUT_SPLIT: {row: 0.8, "multiple-choice accuracy": 0.5},
                           f"{HELD_OUT_SPLIT}, shuffled images": {row: 0.55, "multiple-choice accuracy": 0.45},
                           f"{HELD_OUT_SPLIT}, blank volumes": {row: 0.72}}}]
    (tmp_path / EVALUATION_FILE).write_text(json.dumps(reports))
    evidence = answer_evidence(tmp_path, "is there a stent?")
    assert (evidence.control, evidence.control_accuracy, evidence.depends_on_image) == ("blank volumes", 0.72, False)
    assert answer_evidence(tmp_path, "is there a stent?", margin=0.05).depends_on_image
    assert not answer_evidence(tmp_path, "which artery?", choices=["LAD", "RCA"]).depends_on_image  # 0.05 lead
    assert answer_evidence(tmp_path, "is the pRCA part of the LAD?").accuracy is None  # anatomy: not evaluated


def test_a_mask_is_gated_on_the_lowest_of_the_held_out_and_realistic_figures(tmp_path):
    from cardiovlm.vlm.validation import REALISTIC_SPLIT, gating_dice

    assert gating_dice(tmp_path, "aorta") is None
    reports = [{"splits": {HELD_OUT_SPLIT: {"Dice aorta": 0.92, "Dice LAD": 0.1, "Dice myocardium": 0.95}}},
               {"splits": {REALISTIC_SPLIT: {"Dice aorta": 0.32, "Dice LAD": 0.4, "Dice myocardium": None}}}]
    (tmp_path / EVALUATION_FILE).write_text(json.dumps(reports))
    aorta = gating_dice(tmp_path, "aorta")
    # The schematic 0.92 would pass a 0.5 bar; on realistic studies the aorta reaches 0.32, and that is quoted.
    assert (aorta.value, aorta.split) == (0.32, REALISTIC_SPLIT)
    assert (gating_dice(tmp_path, "LAD").value, gating_dice(tmp_path, "LAD").split) == (0.1, HELD_OUT_SPLIT)
    assert gating_dice(tmp_path, "myocardium").value == 0.95  # not scored on realistic phantoms: the one figure
    assert measured_dice(tmp_path, "aorta") == 0.92 and measured_dice(tmp_path, "aorta", REALISTIC_SPLIT) == 0.32
