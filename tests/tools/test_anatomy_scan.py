"""One longest-match rule for anatomy names: the longest registry phrase wins whatever its kind, and
the report parser reads vessels through the same rule as every other scanner."""

from __future__ import annotations

from cardiovlm.tools.core.anatomy import anatomy_at, find_anatomy
from cardiovlm.tools.reports.parser import parse_report


def test_the_longest_phrase_wins_at_a_position():
    words = "the proximal lad is narrowed".split()
    assert anatomy_at(words, 1) == (2, "segment", "pLAD")
    assert anatomy_at(words, 0) is None


def test_a_longer_structure_name_is_not_read_as_the_vessel_it_starts_with():
    assert anatomy_at("left main bronchus".split(), 0) == (3, "structure", "main_bronchi")
    assert [kind for kind, _, _ in find_anatomy("The left main bronchus is narrowed.")] == ["structure"]


def test_a_refused_phrase_gives_way_to_the_next_shorter_one():
    words = "left main bronchus".split()
    assert anatomy_at(words, 0, skip=lambda p: p == "left main bronchus") == (2, "segment", "LM")
    assert anatomy_at(["lad"], 0, skip=lambda p: True) is None


def test_report_parser_does_not_grade_the_left_main_from_a_bronchus():
    """The parser once matched vessels only and fell back to 'left main' inside 'left main bronchus',
    so a mass narrowing the bronchus by 50 % became a left main stenosis (CAD-RADS 4B)."""
    report = parse_report("Incidental: the left main bronchus is narrowed by 50% from a mass. LAD: mild plaque.")
    assert [f.artery for f in report.findings] == ["LAD"]
    assert parse_report("Left main: 50% stenosis.").findings[0].artery == "LM"
