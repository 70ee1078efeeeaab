"""The sentence naming an answer's masks: short, naming the vessels and the source, never the method."""

from __future__ import annotations

import re

import pytest

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.tools.quant.context import StudyContext

# as cardiovlm.tools.quant.context writes it for a tree traced from the CT: the method and a per-segment caveat
LONG_SOURCE = ("image-derived coronary tree (coronary tree from CT intensities: half-maximum lumen threshold, "
               "vesselness, TEASAR centerlines (kimimaro), segments by the anatomy registry's course; traced "
               "with low confidence: LM, pLAD, mLAD, dLAD, D1, D2, pCx, dLCx, OM1, pRCA, mRCA, dRCA (a lesion "
               "there may be missed))")


@pytest.fixture
def session(patient):
    ctx = StudyContext(study=patient.study, labels=patient.labels, labels_source=LONG_SOURCE, cac=patient.cac,
                       cac_labels=patient.cac_labels, clinical=patient.clinical, output_dir=patient.output_dir)
    s = Session(model=ClinicalPlanner())
    s.use_context(ctx)
    return s


def _masks_sentence(answer: str) -> str:
    found = re.findall(r"Masks: [^.]*\.", answer)
    assert len(found) == 1, answer
    return found[0]


def test_a_stenosis_answer_names_its_vessel_and_source_in_one_short_sentence(session):
    answer = session.ask("How severe is the stenosis in the LAD?").answer
    sentence = _masks_sentence(answer)
    assert sentence == "Masks: LAD (image-derived coronary tree).", answer
    assert "kimimaro" not in answer and "low confidence" not in answer and "Masks used" not in answer


def test_a_survey_of_every_artery_stays_short(session):
    answer = session.ask("Is there any significant stenosis anywhere?").answer
    sentence = _masks_sentence(answer)
    assert len(sentence) <= 80, sentence
    assert sentence.endswith("(image-derived coronary tree).") and "LAD" in sentence, sentence


def test_a_calcium_answer_names_only_the_source(session):
    answer = session.ask("What is the calcium score?").answer
    assert _masks_sentence(answer) == "Masks: image-derived coronary tree.", answer



def test_a_segmentation_answer_names_its_mask_file_not_the_server_folder():
    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session
    from tests.assistant.conftest import make_patient_context

    session = Session(model=ClinicalPlanner())
    session.use_context(make_patient_context())
    answer = session.ask("Segment the LAD")
    assert "mask file: " in answer.answer, answer.answer
    named = answer.answer.split("mask file: ")[1].split()[0].rstrip(".")
    assert "/" not in named and named.endswith(".nii.gz"), answer.answer
