"""The vessel view opened with an answer: a PNG named after the case and vessel for stenosis and stent
answers on a demo case (image-derived anatomy only), none for other answers, and a clear refusal
when the study changed since the answer."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from PIL import Image

from cardiovlm.assistant.findings import findings_of
from cardiovlm.assistant.tools.measure_lesion import measure_lesion_tool
from cardiovlm.assistant.tools.stent_coverage import stent_coverage_tool
from cardiovlm.tools.core.answer import AnswerFinding, GroundedAnswer, ToolCallRecord
from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.quant.context import load_context
from cardiovlm.tools.views.vessel_view import VesselViewError
from cardiovlm.ui.vessel_panel import case_name, vessel_view_for_answer

CASE = "lad_stenosis"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    ctx = load_context(get_settings().demo_cases_dir / CASE)  # anatomy from the image, not the case labels
    assert ctx.reference is not None and ctx.labels is not ctx.reference.labels
    ctx.output_dir = tmp_path_factory.mktemp("session")
    return ctx


@pytest.fixture(scope="module")
def lad_answer(ctx):
    return _answer(ctx, measure_lesion_tool, {"vessel": "LAD"})


def _answer(ctx, tool, args) -> GroundedAnswer:
    """The answer the assistant assembles from one tool call: its trace and its findings."""
    result = tool.invoke(args, config=ctx.as_config())
    return GroundedAnswer(question="q", answer="a", findings=findings_of(tool.name, result),
                          tool_calls=[ToolCallRecord(name=tool.name, args=args, ok=True)])


def test_an_answer_without_a_vessel_measurement_gives_none(ctx):
    calcium = GroundedAnswer(question="What is the calcium score?", answer="...",
                             tool_calls=[ToolCallRecord(name="calcium_score", args={}, ok=True)])
    failed = GroundedAnswer(question="LAD stenosis?", answer="...",
                            tool_calls=[ToolCallRecord(name="measure_lesion", args={"vessel": "LAD"}, ok=False,
                                                       message="no lumen")])
    assert vessel_view_for_answer(ctx, calcium) is None
    assert vessel_view_for_answer(ctx, failed) is None
    assert vessel_view_for_answer(ctx, GroundedAnswer(question="hi", answer="hello")) is None


def test_stenosis_answer_on_a_demo_case_gives_its_vessel_view(ctx, lad_answer):
    answer = lad_answer
    view = vessel_view_for_answer(SimpleNamespace(context=ctx), answer)  # a session holds its context
    assert view is not None and view.vessel == "LAD"
    assert view.path.parent == ctx.outputs() and view.path.name == view.file_name == f"{CASE}_LAD_vessel_view.png"
    with Image.open(view.path) as png:
        assert png.format == "PNG" and png.width >= 800 and png.height >= 500
    stenosis = next(f for f in answer.findings if f.name == "LAD diameter stenosis").value
    assert f"{stenosis:.0f}% diameter stenosis" in view.caption and "cross-sections at the MLD" in view.caption
    assert str(view.path.parent) not in view.caption and view.path.name not in view.caption  # no server path


def test_a_cad_rads_answer_draws_its_most_stenosed_vessel(ctx, lad_answer):
    answers = [lad_answer, _answer(ctx, measure_lesion_tool, {"vessel": "RCA"})]
    cad_rads = GroundedAnswer(question="What is the CAD-RADS?", answer="...",
                              findings=[f for a in answers for f in a.findings],
                              tool_calls=[c for a in answers for c in a.tool_calls])
    stenosis = {f.name.split()[0]: float(f.value) for f in cad_rads.findings if f.name.endswith("diameter stenosis")}
    assert stenosis, "no lesion on the demo case: this test needs one"
    view = vessel_view_for_answer(ctx, cad_rads)
    assert view.vessel == max(stenosis, key=stenosis.get)


def test_stent_answer_draws_the_stent_and_its_landing_zones_for_the_last_length_asked(ctx):
    lengths = [_answer(ctx, stent_coverage_tool, {"vessel": "LAD", "stent_length_mm": x}) for x in (20.0, 24.0)]
    both = GroundedAnswer(question="Will a 20 or 24 mm stent cover the LAD lesion?", answer="...",
                          findings=[f for a in lengths for f in a.findings],
                          tool_calls=[c for a in lengths for c in a.tool_calls])
    view = vessel_view_for_answer(ctx, both)
    assert view is not None and view.file_name == f"{CASE}_LAD_stent-24mm_vessel_view.png"
    assert "Proposed stent (blue) 24 mm" in view.caption and "landing zones of 2.5 mm" in view.caption
    assert view.path.exists()


def test_an_answer_from_another_study_is_not_drawn_on_this_one(ctx, lad_answer):
    answer = lad_answer
    said = float(next(f for f in answer.findings if f.name == "LAD diameter stenosis").value)
    other = AnswerFinding(name="LAD diameter stenosis", value=55.0 if said != 55.0 else 75.0, unit="%",
                          tool="measure_lesion")
    stale = answer.model_copy(update={"findings": [other if f.name == other.name else f for f in answer.findings]})
    with pytest.raises(VesselViewError, match="another study"):
        vessel_view_for_answer(ctx, stale)
    with pytest.raises(VesselViewError, match="no study is loaded"):
        vessel_view_for_answer(SimpleNamespace(context=None), answer)


def test_an_uploaded_study_is_not_named_after_its_file(ctx):
    upload = SimpleNamespace(case=None, study=SimpleNamespace(source="/uploads/Doe_John_1950.nii.gz",
                                                              metadata={"study_date": "20240301"}))
    assert case_name(upload) == "study_20240301"
    assert case_name(ctx) == CASE


def test_with_no_length_asked_the_view_draws_the_stent_the_answer_recommends(tmp_path):
    # The answer recommended a 12 mm stent while the view drew the 8 mm shortest-catalogue probe
    # marked "does not cover": the picture contradicted the answer.
    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session

    session = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    session.load_study(get_settings().demo_cases_dir / CASE)
    answer = session.ask("What length of stent would you pick for this lesion?")
    recommended = [f.value for f in answer.findings if f.name == "shortest covering catalogue length"]
    assert recommended, answer.answer
    length = float(recommended[-1])
    assert f"The shortest catalogue length that covers it is {length:g} mm" in answer.answer
    view = vessel_view_for_answer(session, answer)
    assert view is not None and view.file_name.endswith(f"_stent-{length:g}mm_vessel_view.png")
    assert f"Proposed stent (blue) {length:g} mm" in view.caption and "both healthy" in view.caption
