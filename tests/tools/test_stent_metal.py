"""A stent already in place is found from the image (its metal along the traced vessels), graded
against the demo case's ground-truth stent; a case without a stent, a dense calcium nodule or distant
metal give none."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.quant.context import load_context
from cardiovlm.tools.quant.stent import stent_metal_mask

DEMO = get_settings().demo_cases_dir
TRUE_STENT_MM = 18.0  # rca_stent's findings: a patent pRCA stent, 18 mm x 3.56 mm


@pytest.fixture(scope="module")
def rca_stent(tmp_path_factory):
    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session

    session = Session(model=ClinicalPlanner(), output_dir=tmp_path_factory.mktemp("session"))
    session.load_study(DEMO / "rca_stent")
    ctx = session.context
    assert ctx.reference is not None and ctx.labels is not ctx.reference.labels  # anatomy from the image
    return session


def test_the_rca_stent_is_found_where_the_ground_truth_puts_it(rca_stent):
    ctx = rca_stent.context
    found = stent_metal_mask(ctx.study.hu, ctx.study.spacing, ctx.labels, "RCA")
    assert found.sum() > 0
    truth = ctx.reference.labels == STRUCTURES_BY_NAME["stent"].label_id
    assert truth.any()
    near_truth = ndimage.distance_transform_edt(~truth, sampling=ctx.study.spacing) <= 1.5
    assert (found & near_truth).sum() / found.sum() > 0.9  # metal blooms at most ~1 mm beyond the struts
    pts = np.argwhere(found) * np.asarray(ctx.study.spacing)
    assert abs(np.linalg.norm(pts.max(0) - pts.min(0)) - TRUE_STENT_MM) < 4.0
    assert not stent_metal_mask(ctx.study.hu, ctx.study.spacing, ctx.labels, "LAD").any()


def test_no_stent_is_found_on_a_case_without_one():
    ctx = load_context(DEMO / "lad_stenosis")
    assert (ctx.study.hu >= 1000).any()  # bone above the metal level: it must not count
    assert not stent_metal_mask(ctx.study.hu, ctx.study.spacing, ctx.labels).any()


def test_a_long_metal_core_on_the_vessel_is_a_stent_a_dense_nodule_or_distant_metal_is_not():
    hu = np.full((40, 40, 60), 40.0)
    labels = np.zeros(hu.shape, np.int16)
    labels[19:22, 19:22, 5:55] = SEGMENTS_BY_CODE["pRCA"].label_id  # a straight 1 mm-grid vessel
    hu[labels > 0] = 400.0
    hu[22, 20, 30:33] = 1300.0  # dense calcium beside the lumen: 2 mm long
    hu[22, 20, 8:24:2] = 1500.0  # struts every 2 mm over 14 mm: one stent, broken into fragments
    hu[2, 2, 10:40] = 1600.0  # long metal far from any vessel (bone, a wire outside the heart)
    found = stent_metal_mask(hu, (1.0, 1.0, 1.0), labels)
    assert found[22, 20, 8:24:2].all() and found.sum() == 8
    assert not stent_metal_mask(hu, (1.0, 1.0, 1.0), labels, "LAD").any()


def test_the_stent_state_question_finds_the_stent(rca_stent):
    answer = rca_stent.ask("Is the RCA stent patent?")
    assert "No stent" not in answer.answer
    assert "A stent is present on the RCA" in answer.answer
    shown = rca_stent.ask("Show me the stent")
    assert "stent metal" in shown.answer and "no stent" not in shown.answer.lower()


def test_a_stent_on_a_structure_that_is_not_a_vessel_is_refused(rca_stent):
    ctx = rca_stent.context
    with pytest.raises(ValueError, match="not a coronary artery"):
        stent_metal_mask(ctx.study.hu, ctx.study.spacing, ctx.labels, "aorta")
