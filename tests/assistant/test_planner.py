"""The embedded planner's choice of tool calls where it depends on results: the worst lesion, the
most calcified artery, and the stenosis a yes/no question asks about."""

import pytest

from cardiovlm.assistant.outcomes import ToolOutcome
from cardiovlm.assistant.planner import plan_next, worst_lesion
from cardiovlm.assistant.question import parse_question
from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.quant.cadrads import STENOSIS_BANDS
from cardiovlm.tools.quant.stenosis import Lesion, LesionMeasurement
from cardiovlm.tools.quant.stent import StentPlan

TOOLS = {"measure_lesion", "stent_coverage", "segment_anatomy", "calcium_score"}


def _measured(vessel: str, segment: str, percent: float, length: float, start: float) -> ToolOutcome:
    # Only the fields the planner reads; the rest of a measurement does not bear on the choice.
    lesion = Lesion.model_construct(segment=segment, segments=[segment], stenosis_percent=percent, length_mm=length,
                                    start_mm=start)
    return ToolOutcome("measure_lesion", {"vessel": vessel},
                       value=LesionMeasurement.model_construct(vessel=vessel, segment=None, lesion=lesion))


# Two lesions alike in stenosis and length: the more proximal one is the worst (a longer stretch of
# myocardium lies beyond it). The planner once broke this tie by the order the results came in, so
# it placed the stent on the distal LAD while the answer called the proximal RCA lesion the worst.
TIED = [_measured("LAD", "dLAD", 60.0, 12.0, 45.0), _measured("RCA", "pRCA", 60.0, 12.0, 8.0),
        _measured("LCx", "pCx", 30.0, 20.0, 2.0), ToolOutcome("measure_lesion", {"vessel": "LM"},
                                                              value=LesionMeasurement.model_construct(
                                                                  vessel="LM", segment=None, lesion=None))]


def test_a_tie_in_stenosis_and_length_goes_to_the_more_proximal_lesion():
    assert worst_lesion(TIED).segment == "pRCA"
    assert worst_lesion(list(reversed(TIED))).segment == "pRCA"


def test_a_stent_without_a_vessel_is_placed_on_the_lesion_the_answer_names_worst():
    q = parse_question("Would a 20 mm stent cover the worst lesion?")
    assert not q.vessels
    calls = plan_next(q, TIED, TOOLS)
    assert ("stent_coverage", {"vessel": "pRCA", "stent_length_mm": 20.0}) in calls
    assert not any(name == "stent_coverage" and args["vessel"] == "dLAD" for name, args in calls)


def test_the_most_stenosed_vessel_shown_is_the_proximal_one_of_a_tie():
    calls = plan_next(parse_question("Show me the most stenosed vessel"), TIED, TOOLS)
    assert ("segment_anatomy", {"target": "pRCA"}) in calls


def test_no_lesion_anywhere_places_no_stent():
    none = [ToolOutcome("measure_lesion", {"vessel": v}, value=LesionMeasurement.model_construct(
        vessel=v, segment=None, lesion=None)) for v in ("LM", "LAD", "LCx", "RCA")]
    assert worst_lesion(none) is None
    assert not [c for c in plan_next(parse_question("Would a 20 mm stent cover the worst lesion?"), none, TOOLS)
                if c[0] == "stent_coverage"]


@pytest.mark.parametrize(("question", "grade"), [("Is there a severe stenosis in the LAD?", "severe"),
                                                 ("Any significant narrowing of the RCA?", "moderate")])
def test_the_stenosis_asked_about_is_the_lower_edge_of_its_cad_rads_band(question, grade):
    band = next(b for b in STENOSIS_BANDS if b.grade == grade)
    assert parse_question(question).stenosis_threshold_percent == band.low


def test_with_no_length_asked_the_recommended_length_is_placed_last():
    # The answer recommends the shortest covering length; the verdict and the vessel view read the
    # last stent call, so that call must be the recommended stent, not the shortest-catalogue probe.
    q = parse_question("What length of stent would you pick for the RCA lesion?")
    assert q.stent_length_mm is None
    shortest = min(get_settings().stent_lengths_mm)
    first = plan_next(q, TIED, TOOLS)
    assert [c for c in first if c[0] == "stent_coverage"] == [
        ("stent_coverage", {"vessel": "RCA", "stent_length_mm": shortest})]
    probe = ToolOutcome("stent_coverage", {"vessel": "RCA", "stent_length_mm": shortest},
                        value=StentPlan.model_construct(status="does_not_cover", covers=False,
                                                        stent_length_mm=shortest, shortest_catalogue_length_mm=20.0,
                                                        lesion=None))
    assert ("stent_coverage", {"vessel": "RCA", "stent_length_mm": 20.0}) in plan_next(q, [*TIED, probe], TOOLS)
    longest = probe.value.model_copy(update={"shortest_catalogue_length_mm": None})
    none_covers = ToolOutcome("stent_coverage", probe.args, value=longest)
    assert ("stent_coverage", {"vessel": "RCA", "stent_length_mm": float(max(get_settings().stent_lengths_mm))}) \
        in plan_next(q, [*TIED, none_covers], TOOLS)


def test_a_length_asked_is_the_only_length_placed():
    q = parse_question("Would a 12 mm stent cover the RCA lesion?")
    probe = ToolOutcome("stent_coverage", {"vessel": "RCA", "stent_length_mm": 12.0},
                        value=StentPlan.model_construct(status="does_not_cover", covers=False, stent_length_mm=12.0,
                                                        shortest_catalogue_length_mm=20.0, lesion=None))
    assert not [c for c in plan_next(q, [*TIED, probe], TOOLS) if c[0] == "stent_coverage"]
