"""The shipped checkpoint (``vlm/checkpoint``): complete and small, loaded offline, it segments on a demo
study what its own evaluation says it can, and the assistant draws only those masks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cardiovlm import vlm
from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.tools.core.settings import PACKAGE_ROOT, get_settings
from cardiovlm.vlm.checkpoint_format import CONFIG_FILE, WEIGHTS_FILE
from cardiovlm.vlm.validation import EVALUATION_FILE, REALISTIC_SPLIT, measured_scores

SHIPPED = PACKAGE_ROOT / "vlm" / "checkpoint"
CARD = "README.md"
DEMO = PACKAGE_ROOT / "tools" / "demo_cases" / "lad_stenosis"  # a realistic (generator 2.0) phantom
# Instruction, label ids of its truth, Dice row of the evaluation table.
STRUCTURES = [("aorta", ["aorta"], "aorta"), ("left ventricle", ["lv_blood"], "chambers"),
              ("left ventricular myocardium", ["lv_myocardium"], "myocardium")]


@pytest.fixture(scope="module")
def shipped_model():
    return vlm.load(SHIPPED, device="cpu")


@pytest.fixture(scope="module")
def demo_study():
    from cardiovlm.tools.ingest.study import load_study

    return load_study(DEMO)


def test_shipped_checkpoint_is_complete_small_and_says_what_it_is():
    names = {p.name for p in SHIPPED.iterdir()}
    assert {CONFIG_FILE, WEIGHTS_FILE, EVALUATION_FILE, CARD} <= names
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) < 50 * 2**20
    card = (SHIPPED / CARD).read_text()
    for words in ("not for clinical use", "synthetic", "CPU", "held-out seeds", "shifted generator"):
        assert words in card, words
    scores = measured_scores(SHIPPED)
    assert scores is not None and scores["records"] > 100  # measured on the held-out seeds, not a stub
    # The card's table is the evaluation.json's: every held-out Dice it quotes is the measured one.
    for row in ("chambers", "aorta", "LAD"):
        assert f"{scores[f'Dice {row}']:.3f}" in card
    # The demo studies are realistic phantoms: the checkpoint is scored on such phantoms too, and the card says so.
    realistic = measured_scores(SHIPPED, REALISTIC_SPLIT)
    assert realistic is not None and realistic["records"] > 100
    assert REALISTIC_SPLIT in card and "generator 1.0" in card and "pending" in card
    for row in ("chambers", "myocardium", "aorta"):
        assert f"{realistic[f'Dice {row}']:.3f}" in card


def test_shipped_checkpoint_segments_on_a_demo_study_what_its_evaluation_claims(shipped_model, demo_study):
    import nibabel as nib

    labels = np.asarray(nib.load(str(DEMO / "labels.nii.gz")).dataobj)
    # The demo study is a realistic phantom, so the claim it is held to is the realistic split's.
    scores, bar = measured_scores(SHIPPED, REALISTIC_SPLIT), get_settings().vlm_min_dice
    checked = 0
    for words, names, row in STRUCTURES:
        claimed = scores[f"Dice {row}"]
        if claimed < bar:
            continue
        truth = np.isin(labels, [STRUCTURES_BY_NAME[n].label_id for n in names])
        mask = shipped_model.run(demo_study, f"segment the {words}").mask
        dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
        # One case against the mean of 8 of its kind: allow 0.2 below the claimed figure.
        assert dice > claimed - 0.2, (words, dice, claimed)
        checked += 1
    assert checked, "the shipped checkpoint draws none of the large structures reliably; do not ship it"


def test_assistant_draws_only_the_masks_the_shipped_checkpoint_can_draw(tmp_path, demo_study, monkeypatch):
    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session
    from cardiovlm.tools.quant.context import StudyContext

    monkeypatch.delenv("CARDIOVLM_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("CARDIOVLM_VLM_MIN_DICE", raising=False)
    get_settings.cache_clear()
    try:
        folder = get_settings().checkpoint_dir
        held_out, realistic = measured_scores(folder), measured_scores(folder, REALISTIC_SPLIT)
        # The figure each mask is gated on and quoted with: the lowest of the held-out and realistic ones.
        dice = {t: min(held_out[f"Dice {t}"], realistic[f"Dice {t}"])
                for t in ("LAD", "myocardium", "aorta", "left atrium")}
        assert dice["aorta"] < 0.5 <= held_out["Dice aorta"]  # what the held-out figure alone would let through
        assert dice["LAD"] < 0.5 <= dice["myocardium"]
        session = Session(model=ClinicalPlanner())
        session.use_context(StudyContext(study=demo_study, output_dir=tmp_path))  # no label map
        drawn = session.ask("Segment the left ventricular myocardium")
        assert [(c.name, c.ok) for c in drawn.tool_calls][-1] == ("vlm_segment", True)
        assert drawn.masks and f"{dice['myocardium']:.3f}"[:4] in drawn.answer
        # The aorta reached 0.92 on schematic held-out phantoms but is drawn only if the realistic figure allows.
        aorta = session.ask("Segment the aorta")
        assert [(c.name, c.ok) for c in aorta.tool_calls][-1] == ("vlm_segment", dice["aorta"] >= 0.5)
        if dice["aorta"] < 0.5:
            assert f"Dice {dice['aorta']:.2f} for 'aorta' on realistic" in aorta.answer and aorta.masks == []
        # A chamber is judged by its own row, not the pooled chambers figure.
        atrium = session.ask("Segment the left atrium")
        assert [(c.name, c.ok) for c in atrium.tool_calls][-1] == ("vlm_segment", dice["left atrium"] >= 0.5)
        assert "la_blood" not in atrium.answer
        refused = session.ask("Segment the LAD")
        assert [(c.name, c.ok) for c in refused.tool_calls][-1] == ("vlm_segment", False)
        assert "below the 0.50 required" in refused.answer and refused.masks == []
    finally:
        get_settings.cache_clear()


def test_evaluation_json_is_what_cardiovlm_evaluate_writes():
    reports = json.loads((SHIPPED / EVALUATION_FILE).read_text())
    assert {"checkpoint", "data", "cases", "splits", "targets"} <= set(reports[0])
    assert any("shifted generator" in name for r in reports for name in r["splits"])


def test_the_shipped_evaluation_has_image_controls_and_the_card_quotes_them():
    from cardiovlm.vlm.validation import CONTROL_SPLITS, measured_controls

    scores, controls = measured_scores(SHIPPED), measured_controls(SHIPPED)
    assert set(controls) == set(CONTROL_SPLITS.values())
    assert all(c["records"] == scores["records"] for c in controls.values())  # the same records, other images
    card = (SHIPPED / CARD).read_text()
    for row in ("yes/no balanced accuracy", "yes/no balanced accuracy (findings)"):
        assert f"{scores[row]:.3f}" in card and f"{controls['shuffled images'][row]:.3f}" in card


def test_the_assistant_quotes_a_shipped_answer_only_as_far_as_its_controls_allow(tmp_path, demo_study, monkeypatch):
    from cardiovlm.assistant.tools.vlm import VLMAnswerWithheld, vlm_ask
    from cardiovlm.tools.quant.context import StudyContext
    from cardiovlm.vlm.validation import answer_evidence

    monkeypatch.delenv("CARDIOVLM_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("CARDIOVLM_VLM_MIN_ANSWER_MARGIN", raising=False)
    get_settings.cache_clear()
    try:
        ctx = StudyContext(study=demo_study, output_dir=tmp_path)
        for question in ("Is there a plaque in the LAD?", "Is the proximal RCA a segment of the LAD?"):
            evidence = answer_evidence(SHIPPED, question)
            if evidence.depends_on_image:
                assert vlm_ask(ctx, question).control_accuracy == round(evidence.control_accuracy, 3)
            else:
                with pytest.raises(VLMAnswerWithheld, match="do not depend on the image on held-out tests"):
                    vlm_ask(ctx, question)
    finally:
        get_settings.cache_clear()
