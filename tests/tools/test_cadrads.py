"""CAD-RADS 2.0 stenosis bands from their one home (cardiovlm.tools.quant.cadrads): band edges, fractional readings
between the whole-percent bands, what an answer shows, and the one choice of the worst lesion."""

from __future__ import annotations

import pytest

from cardiovlm.tools.quant.cadrads import (
    STENOSIS_BANDS,
    cad_rads,
    shown_percent,
    stenosis_band,
    stenosis_category,
    worst_lesion,
)


@pytest.mark.parametrize(("percent", "category", "grade", "shown"), [
    (0.0, "1", "minimal", 0),  # plaque without narrowing
    (24.0, "1", "minimal", 24),
    (24.5, "1", "minimal", 24),  # between 1-24 and 25-49: minimal, never shown as 25 %
    (24.99, "1", "minimal", 24),
    (25.0, "2", "mild", 25),
    (49.5, "2", "mild", 49),
    (50.0, "3", "moderate", 50),
    (69.5, "3", "moderate", 69),  # not severe, and not shown as 70 %
    (70.0, "4A", "severe", 70),
    (99.0, "4A", "severe", 99),
    (99.5, "4A", "severe", 99),  # a lumen is left: not an occlusion, not shown as 100 %
    (100.0, "5", "occluded", 100),
])
def test_band_edges_and_fractional_readings(percent, category, grade, shown):
    assert stenosis_category(percent) == category
    assert stenosis_band(percent).grade == grade
    assert shown_percent(percent) == shown
    # what an answer shows lies in the same band as the reading
    assert stenosis_category(shown) == category


def test_bands_tile_0_to_100_without_gaps():
    assert STENOSIS_BANDS[0].low == 0
    assert all(a.high == b.low for a, b in zip(STENOSIS_BANDS, STENOSIS_BANDS[1:]))
    assert [b.written for b in STENOSIS_BANDS] == [(0, 24), (25, 49), (50, 69), (70, 99), (100, 100)]


@pytest.mark.parametrize("percent", [-0.1, 100.1, float("nan")])
def test_a_stenosis_outside_0_to_100_is_refused(percent):
    with pytest.raises(ValueError, match="between 0 and 100"):
        stenosis_category(percent)


@pytest.mark.parametrize(("stenoses", "category"), [
    ({"pLAD": 69.5}, "3"),
    ({"pLAD": 99.5}, "4A"),
    ({"pLAD": 24.5}, "1"),
    ({"LM": 49.9, "pLAD": 30}, "2"),
    ({"LM": 50.0}, "4B"),
    ({"pLAD": 70, "pCx": 70, "mRCA": 69.5}, "4A"),  # three-vessel 4B needs >= 70 % in each
    ({"pLAD": 70, "pCx": 70, "mRCA": 70}, "4B"),
    ({"pLAD": 100, "LM": 60}, "5"),
])
def test_patient_category_uses_the_same_bands(stenoses, category):
    assert cad_rads(stenoses).category == category


def test_worst_lesion_breaks_ties_by_length_then_the_more_proximal():
    a = {"stenosis_percent": 60.0, "length_mm": 8.0, "start_mm": 20.0}
    b = {"stenosis_percent": 60.0, "length_mm": 12.0, "start_mm": 30.0}
    c = {"stenosis_percent": 60.0, "length_mm": 12.0, "start_mm": 5.0}
    d = {"stenosis_percent": 75.0, "length_mm": 2.0, "start_mm": 40.0}
    assert worst_lesion([a, b, c, d]) is d
    assert worst_lesion([a, b, c]) is c
    assert worst_lesion([b, a]) is b
    assert worst_lesion([]) is None
