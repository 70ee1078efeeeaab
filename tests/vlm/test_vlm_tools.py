"""The assistant's VLM tools: the input check runs before any mask, landmark or answer, and a yes/no answer is
quoted only when the checkpoint's evaluation shows that answers of its kind depend on the image."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cardiovlm.tools.core.settings import PACKAGE_ROOT, get_settings
from cardiovlm.tools.ingest.nifti_io import read_nifti
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.vlm.validation import EVALUATION_FILE, HELD_OUT_SPLIT

DEMO = PACKAGE_ROOT / "tools" / "demo_cases" / "lad_stenosis"
FINDINGS = "yes/no balanced accuracy (findings)"
ANATOMY = "yes/no balanced accuracy (anatomy)"


@pytest.fixture(scope="module")
def demo_study():
    from cardiovlm.tools.ingest.study import load_study

    return load_study(DEMO)


@pytest.fixture
def tiny_checkpoint(tmp_path, monkeypatch):
    from cardiovlm.vlm import CardioVLM, CardioVLMConfig

    torch.manual_seed(0)
    folder = CardioVLM(CardioVLMConfig.tiny()).save(tmp_path / "ckpt")
    monkeypatch.setenv("CARDIOVLM_CHECKPOINT_DIR", str(folder))
    monkeypatch.delenv("CARDIOVLM_VLM_MIN_ANSWER_MARGIN", raising=False)
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def _evaluation(folder, own: dict, controls: dict[str, dict] | None = None) -> None:
    splits = {HELD_OUT_SPLIT: {"yes/no accuracy": 0.8, **own}}
    splits.update({f"{HELD_OUT_SPLIT}, {label}": rows for label, rows in (controls or {}).items()})
    (folder / EVALUATION_FILE).write_text(json.dumps([{"splits": splits}]))


def _ask(ctx, question, choices=None):
    from cardiovlm.assistant.tools.vlm import vlm_ask_tool

    return vlm_ask_tool.invoke({"question": question, "choices": choices}, config=ctx.as_config())


def test_an_answer_is_quoted_only_when_it_beats_the_image_controls(tiny_checkpoint, demo_study, tmp_path):
    from cardiovlm.assistant.tools.vlm import VLMAnswerWithheld

    ctx = StudyContext(study=demo_study, output_dir=tmp_path / "out")
    question = "Is there a calcification in the LAD?"
    # Evaluated without controls: nothing shows the answers read the image.
    _evaluation(tiny_checkpoint, {FINDINGS: 0.9})
    with pytest.raises(VLMAnswerWithheld, match="not shown .* findings questions depend on the image"):
        _ask(ctx, question)
    # The wording's prior: about as right with another patient's image as with this one.
    _evaluation(tiny_checkpoint, {FINDINGS: 0.62, ANATOMY: 0.95},
                {"shuffled images": {FINDINGS: 0.6, ANATOMY: 0.95}, "blank volumes": {FINDINGS: 0.5}})
    with pytest.raises(VLMAnswerWithheld) as withheld:
        _ask(ctx, question)
    message = str(withheld.value)
    assert "gives no answer" in message and "do not depend on the image on held-out tests" in message
    assert "0.62" in message and "0.60 with shuffled images" in message and "0.10 required" in message
    # Anatomy questions are judged on their own row: right from the wording alone is no reading either.
    with pytest.raises(VLMAnswerWithheld, match="anatomy questions"):
        _ask(ctx, "Is the proximal RCA a segment of the LAD?")
    # A clear lead over every control (the closest one counts): the answer is quoted with its evidence.
    _evaluation(tiny_checkpoint, {FINDINGS: 0.91},
                {"shuffled images": {FINDINGS: 0.55}, "blank volumes": {FINDINGS: 0.5},
                 "noise volumes": {FINDINGS: 0.7}})
    asked = _ask(ctx, question)
    probabilities = asked["answer_probabilities"]
    assert asked["answer"] == max(probabilities, key=probabilities.get) and asked["question_kind"] == "findings"
    assert (asked["measured_balanced_accuracy"], asked["control_accuracy"]) == (0.91, 0.7)
    _evaluation(tiny_checkpoint, {FINDINGS: 0.79},
                {"shuffled images": {FINDINGS: 0.55}, "noise volumes": {FINDINGS: 0.7}})
    with pytest.raises(VLMAnswerWithheld, match="0.70 with noise volumes"):  # a lead of 0.09 is not enough
        _ask(ctx, question)


def test_the_margin_is_a_typed_setting(tiny_checkpoint, demo_study, tmp_path, monkeypatch):
    from cardiovlm.assistant.tools.vlm import VLMAnswerWithheld
    from cardiovlm.tools.core.settings import Settings

    ctx = StudyContext(study=demo_study, output_dir=tmp_path / "out")
    _evaluation(tiny_checkpoint, {FINDINGS: 0.75}, {"shuffled images": {FINDINGS: 0.6}})
    assert get_settings().vlm_min_answer_margin == 0.10  # in the one settings object, read from nowhere else
    assert _ask(ctx, "Is there a stent in the RCA?")["control_accuracy"] == 0.6
    monkeypatch.setenv("CARDIOVLM_VLM_MIN_ANSWER_MARGIN", "0.2")
    get_settings.cache_clear()
    with pytest.raises(VLMAnswerWithheld, match="0.20 required") as withheld:
        _ask(ctx, "Is there a stent in the RCA?")
    assert withheld.value.code == "vlm.answer_withheld"
    monkeypatch.setenv("CARDIOVLM_VLM_MIN_ANSWER_MARGIN", "1.5")
    with pytest.raises(ValueError, match="vlm_min_answer_margin"):
        Settings()


@pytest.mark.parametrize("bad", ["blank", "two_slices", "mr"])
def test_the_input_check_runs_before_any_vlm_output(bad, tiny_checkpoint, demo_study, tmp_path, monkeypatch):
    from cardiovlm.assistant.tools.vlm import vlm_locate_tool, vlm_segment_tool
    from cardiovlm.vlm.input_check import BlankVolumeError, LocalizerError, NotCTError

    monkeypatch.setenv("CARDIOVLM_VLM_MIN_DICE", "0")  # every gate of the checkpoint's scores open...
    monkeypatch.setenv("CARDIOVLM_VLM_MIN_ANSWER_MARGIN", "0")
    get_settings.cache_clear()
    study, error = {
        "blank": (dataclasses.replace(demo_study, hu=np.full(demo_study.shape, -1000, np.int16)), BlankVolumeError),
        "two_slices": (dataclasses.replace(demo_study, hu=np.ascontiguousarray(demo_study.hu[:, :, 50:52])),
                       LocalizerError),
        "mr": (dataclasses.replace(demo_study, modality="MR", hu_calibrated=False), NotCTError),
    }[bad]
    ctx = StudyContext(study=study, output_dir=tmp_path / "out")
    config = ctx.as_config()
    # ...and still no mask, landmark or answer for a study the model was not trained for.
    with pytest.raises(error, match="no mask or answer"):
        vlm_segment_tool.invoke({"target": "aorta"}, config=config)
    with pytest.raises(error):
        vlm_locate_tool.invoke({"target": "left coronary ostium"}, config=config)
    with pytest.raises(error):
        _ask(ctx, "Is there a stent in the RCA?")
    assert ctx.extra_masks == {}
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    # The same tools on the demo CCTA itself do answer (the check refuses the input, not the tools).
    good = StudyContext(study=demo_study, output_dir=tmp_path / "good")
    assert vlm_segment_tool.invoke({"target": "aorta"}, config=good.as_config())["target"] == "aorta"
    answered = _ask(good, "Is there a stent in the RCA?")
    assert answered["answer"] == max(answered["answer_probabilities"], key=answered["answer_probabilities"].get)


def test_masks_follow_the_measured_dice_and_answers_carry_their_evidence(tiny_checkpoint, demo_study, tmp_path,
                                                                         monkeypatch):
    import cardiovlm.assistant.tools.vlm as vt
    from cardiovlm.vlm.checkpoint_format import CONFIG_FILE, WEIGHTS_FILE

    assert (vt.CONFIG_FILE, vt.WEIGHTS_FILE) == (CONFIG_FILE, WEIGHTS_FILE)  # checked without importing torch
    ctx = StudyContext(study=demo_study, output_dir=tmp_path / "out")
    config = ctx.as_config()
    # An unevaluated checkpoint draws no mask by default: a mask on the images reads as a finding.
    with pytest.raises(vt.VLMBelowBar, match="no held-out evaluation for 'LAD'.*CARDIOVLM_VLM_MIN_DICE"):
        vt.vlm_segment_tool.invoke({"target": "LAD"}, config=config)
    monkeypatch.setenv("CARDIOVLM_VLM_MIN_DICE", "0")
    get_settings.cache_clear()
    # What the tool does with the model's mask, with the mask known: a block of voxels, then nothing.
    model, real_run = vt.load_vlm(), vt.load_vlm().run
    block = np.zeros(demo_study.shape, bool)
    block[40:50, 30:36, 20:24] = True
    monkeypatch.setattr(model, "run", lambda study, instruction, choices=None: dataclasses.replace(
        real_run(study, instruction, choices), mask=block))
    seg = vt.vlm_segment_tool.invoke({"target": "LAD"}, config=config)
    assert (seg["present"], seg["voxels"], seg["mask_name"]) == (True, 10 * 6 * 4, "vlm_LAD")
    assert seg["volume_mm3"] == pytest.approx(240 * float(np.prod(demo_study.spacing)), abs=0.1)
    assert seg["measured_dice"] is None and "not for clinical use" in seg["note"]
    written = read_nifti(Path(seg["mask_path"]), labels=True)
    np.testing.assert_array_equal(np.asarray(written.hu) > 0, block)  # on the study grid, where the model put it
    np.testing.assert_allclose(written.affine, demo_study.affine, atol=1e-4)
    np.testing.assert_array_equal(ctx.extra_masks["vlm_LAD"], block)  # and shown on the viewer
    monkeypatch.setattr(model, "run", lambda study, instruction, choices=None: dataclasses.replace(
        real_run(study, instruction, choices), mask=np.zeros_like(block)))
    empty = vt.vlm_segment_tool.invoke({"target": "RCA"}, config=config)
    assert (empty["present"], empty["voxels"], empty["mask_path"], empty["mask_name"]) == (False, 0, None, None)
    assert "vlm_RCA" not in ctx.extra_masks and not list(ctx.outputs().glob("vlm_RCA*"))
    monkeypatch.setattr(model, "run", real_run)
    monkeypatch.delenv("CARDIOVLM_VLM_MIN_DICE")
    get_settings.cache_clear()
    _evaluation(tiny_checkpoint, {"Dice LAD": 0.61, "Dice RCA": 0.12, "yes/no accuracy": 0.83, FINDINGS: 0.9},
                {"shuffled images": {FINDINGS: 0.5}})
    assert vt.vlm_segment_tool.invoke({"target": "proximal LAD"}, config=config)["measured_dice"] == 0.61
    with pytest.raises(vt.VLMBelowBar, match="Dice 0.12 for 'RCA'"):
        vt.vlm_segment_tool.invoke({"target": "RCA"}, config=config)
    asked = _ask(ctx, "is there a stent?")
    assert asked["measured_accuracy"] == 0.83 and "not for clinical use" in asked["note"]
    assert sum(asked["answer_probabilities"].values()) == pytest.approx(1.0, abs=0.01)
