"""A finding's unit has one meaning in the DICOM report: powers are written "mm^2" / "mm^3" as the
findings write them; "mm2" is no unit of theirs and is never coded as an area."""

from __future__ import annotations

import pytest

pytest.importorskip("highdicom")

from cardiovlm.tools.dicom.dicom_export import _unit


@pytest.mark.parametrize(("unit", "code", "meaning"), [("mm", "mm", "millimeter"), ("mm^2", "mm2", "square millimeter"),
                                                       ("mm^3", "mm3", "cubic millimeter")])
def test_findings_units_are_coded_in_ucum(unit, code, meaning):
    concept = _unit(unit)
    assert (concept.value, concept.meaning) == (code, meaning)


def test_a_unit_that_is_not_a_findings_unit_is_an_annotation_not_an_area():
    assert _unit("mm2").meaning != "square millimeter" and _unit("mm2").value == "{mm2}"
