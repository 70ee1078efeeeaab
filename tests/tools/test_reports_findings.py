"""A report's stenosis number is graded by the same CAD-RADS bands as a measured one."""

from __future__ import annotations

import pytest

from cardiovlm.tools.quant.cadrads import STENOSIS_BANDS, stenosis_band
from cardiovlm.tools.reports.findings import GRADE_CATEGORY, SegmentFinding, grade_of_percent
from cardiovlm.tools.reports.parser import parse_report


# The edges where the report grader once disagreed with the measured one: a fraction below a band's
# first whole percent stays in the lower band.
@pytest.mark.parametrize(("percent", "grade", "category"), [
    (24.5, "minimal", "1"), (25.0, "mild", "2"), (49.5, "mild", "2"), (69.5, "moderate", "3"),
    (70.0, "severe", "4A"), (99.5, "severe", "4A"), (100.0, "occluded", "5"),
])
def test_report_grade_is_the_measured_band_at_its_edges(percent, grade, category):
    assert grade_of_percent(percent) == grade == stenosis_band(percent).grade
    finding = SegmentFinding(artery="LAD", stenosis_percent=percent, stenosis_grade=grade_of_percent(percent),
                             span=(0, 1), text="x")
    assert finding.stenosis_category == category == stenosis_band(percent).category


def test_every_band_word_is_a_report_grade_with_the_bands_category():
    assert {b.grade: b.category for b in STENOSIS_BANDS}.items() <= GRADE_CATEGORY.items()
    assert grade_of_percent(0) == "none" and GRADE_CATEGORY["none"] == "0"


@pytest.mark.parametrize("bad", [-1.0, 100.5, float("nan")])
def test_a_percent_outside_0_to_100_is_refused(bad):
    with pytest.raises(ValueError, match="between 0 and 100"):
        grade_of_percent(bad)


@pytest.mark.parametrize(("text", "grade"), [
    ("Proximal LAD: mixed plaque with 69.5% stenosis.", "moderate"),
    ("Proximal LAD: calcified plaque with 24.5% stenosis.", "minimal"),
    ("Proximal LAD: noncalcified plaque with 99.5% stenosis.", "severe"),
])
def test_parsed_report_grades_a_fractional_percent_like_the_answers_do(text, grade):
    found = [f for f in parse_report(text).findings if f.stenosis_percent is not None]
    assert [f.stenosis_grade for f in found] == [grade]
