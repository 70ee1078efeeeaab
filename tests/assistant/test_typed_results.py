"""Typed results end to end: each tool hands its typed result beside the JSON the model reads, a failure
is a typed value with a stable code, routing reads the code only, and the answer reads the types."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from cardiovlm.assistant.compose import compose_answer
from cardiovlm.assistant.evidence import assemble_answer
from cardiovlm.assistant.graph import _typed_failures
from cardiovlm.assistant.outcomes import ToolOutcome, outcomes
from cardiovlm.assistant.planner import plan_next
from cardiovlm.assistant.question import parse_question
from cardiovlm.assistant.registry import available_tools, result_adapter
from cardiovlm.assistant.tool_errors import ToolFailure
from cardiovlm.assistant.tools.segment_anatomy import NoSegmentationAvailable
from cardiovlm.tools.core.errors import CardioVLMError, error_code
from cardiovlm.tools.quant.calcium import ArteryCalcium, CalciumScore


def _call(name: str, args: dict, call_id: str = "c1") -> dict:
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def test_every_tool_answers_with_content_and_a_typed_artifact():
    tools = available_tools()
    assert tools and all(t.response_format == "content_and_artifact" for t in tools)
    assert all(result_adapter(t.name) is not None for t in tools)


def test_a_tool_call_carries_the_typed_result_and_the_model_reads_its_json(patient):
    tool = next(t for t in available_tools() if t.name == "calcium_score")
    message = tool.invoke(_call("calcium_score", {}), config=patient.as_config())
    assert isinstance(message, ToolMessage) and isinstance(message.artifact, CalciumScore)
    sent = json.loads(message.content)
    assert sent["agatston"] == message.artifact.agatston and sent["agatston"] > 0
    # a direct call with plain arguments still returns the JSON-able dump
    assert tool.invoke({}, config=patient.as_config())["agatston"] == message.artifact.agatston


def test_the_answer_reads_the_artifact_not_the_text(patient):
    """The evidence comes from the typed result even where the text the model saw says otherwise."""
    result = CalciumScore(kind="agatston", label="Agatston", agatston=412.0, volume_mm3=300.0, mass_mg=80.0,
                          per_artery={"LAD": ArteryCalcium(agatston=412.0, volume_mm3=300.0, lesions=2)},
                          cac_drs="A3/N1", plaque_burden="P3", lesions=[], excluded=[], slice_spacing_mm=3.0,
                          method="test", scored_series="the loaded study")
    question = HumanMessage("What is the calcium score?")
    new = [AIMessage("", tool_calls=[_call("calcium_score", {})]),
           ToolMessage('{"agatston": 1.0}', tool_call_id="c1", name="calcium_score", artifact=result),
           AIMessage("done")]
    answer = assemble_answer([question], new)
    assert next(f.value for f in answer.findings if f.name == "Agatston score") == 412.0
    assert answer.tool_calls[0].result is result and answer.plan[0].task == "calcium_score"


def test_a_message_without_artifact_is_validated_against_the_tools_type():
    new = [AIMessage("", tool_calls=[_call("measure_lesion", {"vessel": "LAD"}), _call("calcium_score", {}, "c2")]),
           ToolMessage('{"vessel": "LAD"}', tool_call_id="c1", name="measure_lesion"),
           ToolMessage('not json', tool_call_id="c2", name="calcium_score")]
    lesion, calcium = outcomes(new)
    assert (lesion.ok, lesion.failure.code) == (False, "tool.result_unreadable")
    assert (calcium.ok, calcium.failure.code) == (False, "tool.result_unreadable")


def test_a_tool_failure_is_a_typed_artifact_with_its_code():
    request = SimpleNamespace(tool_call=_call("segment_anatomy", {"target": "LAD"}))

    def fails(_):
        raise NoSegmentationAvailable("no label map was supplied")

    message = _typed_failures(request, fails)
    assert message.status == "error" and isinstance(message.artifact, ToolFailure)
    assert (message.artifact.code, message.artifact.no_label_map) == ("segmentation.unavailable", True)
    assert message.content == "error: no label map was supplied [code: segmentation.unavailable; class: " \
                              "NoSegmentationAvailable]"
    [outcome] = outcomes([AIMessage("", tool_calls=[request.tool_call]), message])
    assert outcome.failure is message.artifact


def test_the_vlm_fallback_follows_the_code_never_the_word_segmentation():
    q = parse_question("How tight is the L-PDA?")
    tools = {"measure_lesion", "vlm_ask"}
    worded = ToolOutcome("measure_lesion", {"vessel": "L-PDA"}, failure=ToolFailure(
        "no segmentation of the L-PDA: it is absent in a right-dominant heart", "stenosis.unmeasurable",
        "StenosisError"))
    assert plan_next(q, [worded], tools) == []
    coded = ToolOutcome("measure_lesion", {"vessel": "L-PDA"}, failure=ToolFailure(
        "nothing to measure on", NoSegmentationAvailable.code, "AnyName"))
    assert plan_next(q, [coded], tools) == [("vlm_ask", {"question": q.text})]


def test_the_project_errors_share_one_root_with_a_stable_code():
    from cardiovlm.assistant.session import StudyChangedError

    assert issubclass(StudyChangedError, CardioVLMError)
    assert error_code(StudyChangedError("x")) == "session.study_changed"
    assert error_code(KeyError("x")) == "KeyError"  # a foreign error is named by its class
    unexpected = ToolFailure.of(KeyError("lesion"))
    assert unexpected.message.startswith("the tool failed unexpectedly") and unexpected.code == "KeyError"


@pytest.mark.parametrize(("scored", "said"), [
    ("the loaded study (series 3 'CaSc 3 mm')", "Coronary calcium on the loaded study (series 3 'CaSc 3 mm'), "
                                                "a non-contrast series: Agatston score 12 AU"),
    ("the calcium-scoring series loaded with the CCTA", "Coronary calcium on the calcium-scoring series loaded "
                                                        "with the CCTA, a non-contrast series: Agatston score 12 AU"),
])
def test_the_calcium_answer_names_the_series_that_was_scored(scored, said):
    result = CalciumScore(kind="agatston", label="Agatston", agatston=12.0, volume_mm3=10.0, mass_mg=None,
                          per_artery={}, cac_drs="A1", plaque_burden="P1", lesions=[], excluded=[],
                          slice_spacing_mm=3.0, method="test", scored_series=scored)
    text = compose_answer(parse_question("What is the calcium score?"),
                          [ToolOutcome("calcium_score", {}, value=result)])
    assert text.startswith(said)


def test_the_reports_panel_takes_the_report_texts_from_the_typed_hits():
    import datetime

    from cardiovlm.tools.reports.api import ReportHit
    from cardiovlm.ui.reports_panel import report_texts

    hit = ReportHit(report_id="r1", study_date=datetime.date(2023, 1, 2), score=0.9, similarity=0.8,
                    snippet="50% pLAD", text="Prior CCTA: 50% pLAD stenosis.", metadata={})
    call = _call("retrieve_reports", {"query": "LAD"})
    sent = json.dumps([hit.model_dump(mode="json") | {"text": "what the model saw"}])
    turn = [AIMessage("", tool_calls=[call]), ToolMessage(sent, tool_call_id="c1", name="retrieve_reports",
                                                          artifact=[hit])]
    assert report_texts(turn) == {"r1": "Prior CCTA: 50% pLAD stenosis."}


def test_the_errors_the_assistant_routes_on_derive_from_the_one_root():
    from cardiovlm.assistant.tools.totalseg import TotalSegmentatorError
    from cardiovlm.assistant.tools.vlm import VLMUnavailable
    from cardiovlm.tools.ingest.study_errors import StudyError
    from cardiovlm.tools.quant.calcium import CalciumError

    for error in (StudyError, NoSegmentationAvailable, CalciumError, VLMUnavailable, TotalSegmentatorError):
        assert issubclass(error, CardioVLMError) and "." in error.code, error
