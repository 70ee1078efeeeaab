"""The vessel panel writes a stenosis as the answer does, and accepts its own answer's number."""

from __future__ import annotations

import pytest

from cardiovlm.assistant.findings import lesion_findings
from cardiovlm.tools.core.answer import GroundedAnswer, ToolCallRecord
from cardiovlm.tools.quant.stenosis import LesionMeasurement, measure_vessel
from cardiovlm.training.phantoms.tubes import OBLIQUE, straight_tube
from cardiovlm.ui.vessel_panel import _check_same, caption_for


def _said(where: str, lesion) -> list:
    """The answer's findings for one measured lesion, as the assistant writes them (typed lesion, or the
    dict of an older findings module)."""
    try:
        return lesion_findings(where, lesion, "measure_lesion")
    except (AttributeError, TypeError):
        return lesion_findings(where, lesion.model_dump(), "measure_lesion")


@pytest.fixture(scope="module")
def measured_lad():
    tube = straight_tube(70.0, voxel=0.5, direction=OBLIQUE, shape="cosine", start=12.0, length=12.0, total=40.0)
    m = measure_vessel(tube.hu, tube.affine, ("pLAD", "mLAD"), labels=tube.labels, vessel="LAD",
                       centerlines=tube.centerlines)
    return m


@pytest.mark.parametrize(("percent", "shown"), [(69.5, 69), (99.5, 99), (24.5, 24)])
def test_a_band_edge_stenosis_is_captioned_and_checked_as_the_answer_shows_it(measured_lad, percent, shown):
    lesion = measured_lad.worst_lesion().model_copy(update={"stenosis_percent": percent})
    measured = LesionMeasurement(vessel="LAD", segment=None, lesion=lesion, message="", measurement=measured_lad,
                                 labels_source=None)
    findings = _said("LAD", lesion)
    answer = GroundedAnswer(question="q", answer="a", findings=findings,
                            tool_calls=[ToolCallRecord(name="measure_lesion", args={"vessel": "LAD"}, ok=True)])
    assert f"{shown}% diameter stenosis" in caption_for(measured, None, "measured centerline")
    _check_same(answer, measured, None)  # the answer's own number: no "another study was loaded"


def test_the_view_draws_the_lesion_the_answer_names_when_stenoses_tie(measured_lad):
    """Two vessels at the same stenosis: the answer names the longer lesion
    (cardiovlm.tools.quant.cadrads.worst_lesion);
    the picture once took whichever vessel came first."""
    from cardiovlm.ui.vessel_panel import _holding_worst, _most_stenosed_said

    base = measured_lad.worst_lesion()
    short = LesionMeasurement(vessel="RCA", segment=None, measurement=measured_lad, message="", labels_source=None,
                              lesion=base.model_copy(update={"stenosis_percent": 69.5, "length_mm": 8.0}))
    long = LesionMeasurement(vessel="LAD", segment=None, measurement=measured_lad, message="", labels_source=None,
                             lesion=base.model_copy(update={"stenosis_percent": 69.5, "length_mm": 12.0}))
    assert _holding_worst([short, long]).vessel == "LAD"
    findings = (_said("RCA", short.lesion) + _said("LAD", long.lesion)
                + _said("LCx", base.model_copy(update={"stenosis_percent": 40.0})))
    answer = GroundedAnswer(question="CAD-RADS?", answer="a", findings=findings)
    assert _most_stenosed_said(answer, ["RCA", "LAD", "LCx"]) == ["RCA", "LAD"]  # both measured again
