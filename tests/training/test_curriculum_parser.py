"""The embedded report parser on realistic radiologist phrasing."""

import pytest

from cardiovlm.tools.reports.parser import parse_report

REPORT = """FINDINGS: Right-dominant system. Agatston score 245.
LM: unremarkable.
LAD: Calcified plaque in the pLAD causing mild (25-49%) stenosis and non-calcified plaque in the mid LAD with minimal stenosis.
LCx: Stent in the OM1 (3.0 x 18 mm), patent without in-stent restenosis.
RCA: Total occlusion of the mid RCA over 15 mm. Possible soft plaque in the distal RCA, significant stenosis cannot be excluded.
The proximal and mid circumflex are free of plaque.
IMPRESSION: CAD-RADS 5/P2/S."""  # noqa: E501


def _by(findings, key):
    return {f.segment or f.artery: f for f in findings.findings}[key]


def test_segments_grades_and_plaque_types():
    f = parse_report(REPORT)
    plad = _by(f, "pLAD")
    assert (plad.stenosis_low, plad.stenosis_high, plad.stenosis_category) == (25, 49, "2")
    assert plad.plaque_type == "calcified" and plad.calcium is True
    mlad = _by(f, "mLAD")
    assert mlad.plaque_type == "noncalcified" and mlad.stenosis_grade == "minimal" and mlad.calcium is False


def test_header_lines_give_way_to_the_named_segment():
    f = parse_report(REPORT)
    assert "LAD" not in {x.artery for x in f.findings if x.segment is None}
    span = REPORT[slice(*_by(f, "pLAD").span)]
    assert "Calcified plaque in the pLAD causing mild" in span and "non-calcified" not in span


def test_stent_dimensions_and_no_restenosis():
    om1 = _by(parse_report(REPORT), "OM1")
    assert om1.stent is True and (om1.stent_diameter_mm, om1.stent_length_mm) == (3.0, 18.0)
    assert om1.in_stent_restenosis is False and not om1.negated


def test_occlusion_with_length_and_uncertainty():
    f = parse_report(REPORT)
    mrca = _by(f, "mRCA")
    assert mrca.occluded and mrca.stenosis_category == "5" and mrca.lesion_length_mm == 15
    drca = _by(f, "dRCA")
    assert drca.uncertain and drca.plaque_type == "noncalcified" and not drca.negated


@pytest.mark.parametrize("text, key", [
    ("No calcification in the RCA.", "RCA"),
    ("The LM is unremarkable.", "LM"),
    ("No evidence of plaque or stenosis in the proximal LAD.", "pLAD"),
    ("The RCA is free of disease.", "RCA"),
    ("Left main without significant stenosis.", "LM"),
])
def test_negation(text, key):
    finding = _by(parse_report(text), key)
    assert finding.negated
    assert finding.plaque_type is None and finding.calcium in (None, False)


def test_negation_lists_and_serial_segments():
    f = parse_report(REPORT)
    assert _by(f, "pCx").negated and _by(f, "dLCx").negated
    many = parse_report("The LM, LAD and RCA show no evidence of plaque.")
    assert {x.segment or x.artery for x in many.findings} == {"LM", "LAD", "RCA"}
    assert all(x.negated for x in many.findings)


def test_negation_does_not_leak_past_a_positive_noun():
    f = parse_report("Mixed plaque in the D1 without significant stenosis.")
    d1 = _by(f, "D1")
    assert not d1.negated and d1.plaque_type == "mixed" and d1.calcium is True


@pytest.mark.parametrize("text, key, expected", [
    ("Severe stenosis (70-99%) of the RCA proximal.", "pRCA", ("4A", 70, 99, None)),
    ("Approximately 40% stenosis of the mid LAD by soft plaque.", "mLAD", ("2", None, None, 40)),
    ("pLAD: 50 - 69 % narrowing from a partially calcified plaque.", "pLAD", ("3", 50, 69, None)),
    ("Moderate stenosis of the first diagonal.", "D1", ("3", None, None, None)),
])
def test_units_and_ranges(text, key, expected):
    x = _by(parse_report(text), key)
    assert (x.stenosis_category, x.stenosis_low, x.stenosis_high, x.stenosis_percent) == expected


def test_study_level_fields():
    f = parse_report(REPORT)
    assert (f.dominance, f.cad_rads, f.calcium_score) == ("right", "5/P2/S", 245.0)
    assert parse_report("Co-dominant circulation. Coronary calcium score of 0.").dominance == "codominant"
    assert parse_report("Co-dominant circulation. Coronary calcium score of 0.").calcium_score == 0


def test_lesion_length_in_mm():
    x = _by(parse_report("Calcified plaque in the pRCA measuring 12.5 mm in length with mild stenosis."), "pRCA")
    assert x.lesion_length_mm == 12.5 and x.stenosis_category == "2"


def test_bad_input():
    with pytest.raises(ValueError, match="report must be text"):
        parse_report(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("text, key, expected", [
    ("LCx: minimal luminal irregularities (<25%).", "LCx", ("1", 1, 24)),
    ("Severe (>= 70%) stenosis of D1.", "D1", ("4A", 70, 99)),
])
def test_bounds(text, key, expected):
    x = _by(parse_report(text), key)
    assert (x.stenosis_category, x.stenosis_low, x.stenosis_high) == expected


def test_segment_words_refer_to_the_heading_artery():
    f = parse_report("LAD: mixed plaque in the proximal segment with moderate stenosis.\n"
                     "RCA: dominant. Calcified plaque in the mid portion, >70% stenosis.")
    assert _by(f, "pLAD").stenosis_category == "3" and _by(f, "mRCA").plaque_type == "calcified"
    g = parse_report("RCA: proximal and mid segments with mild calcified plaque; distal segment normal.")
    assert _by(g, "pRCA").stenosis_category == _by(g, "mRCA").stenosis_category == "2"
    assert _by(g, "dRCA").negated


def test_stent_described_twice_is_one_finding():
    f = parse_report("Status post PCI of the mid LAD with a patent 3.5 x 28 mm stent.")
    (x,) = f.findings
    assert (x.segment, x.stent, x.stent_length_mm, x.stent_diameter_mm) == ("mLAD", True, 28, 3.5)


def test_a_sentence_ending_in_a_number_ends_there():
    f = parse_report("Severe stenosis of segment 10. Distal left anterior descending artery: moderate stenosis.")
    assert _by(f, "D2").stenosis_category == "4A" and _by(f, "dLAD").stenosis_category == "3"
    assert _by(parse_report("Stent in the D1 (2.5 x 12 mm)."), "D1").stent_diameter_mm == 2.5  # one number
