"""The stent answer's findings table shows each figure as the answer text does."""

from __future__ import annotations

from cardiovlm.assistant.findings import findings_of
from cardiovlm.tools.quant.cadrads import shown_percent
from cardiovlm.tools.quant.stenosis import Lesion
from cardiovlm.tools.quant.stent import StentPlan


def _plan(stenosis_percent: float) -> StentPlan:
    lesion = Lesion.model_construct(stenosis_percent=stenosis_percent, reference_diameter_mm=3.1)
    return StentPlan(status="covers", covers=True, message="covers", stent_length_mm=20.0, landing_zone_mm=2.0,
                     lesion_length_mm=12.0, suggested_diameter_mm=3.25, lesion=lesion)


def _by_name(stenosis_percent: float) -> dict[str, object]:
    return {f.name: f.value for f in findings_of("stent_coverage", _plan(stenosis_percent))}


def test_the_lesion_stenosis_is_the_shown_percent_the_answer_writes():
    # 69.6 % is moderate (CAD-RADS 3) and written 69 %, never 70 % (severe); the table said 69.6, which
    # a reader rounds to 70
    found = _by_name(69.6)
    assert found["lesion diameter stenosis"] == shown_percent(69.6) == 69


def test_a_stent_diameter_keeps_its_quarter_millimetre_and_lengths_one_decimal():
    found = _by_name(50.0)
    assert found["suggested stent diameter"] == 3.25  # 0.25 mm sizes: not rounded to 3.2
    assert found["lesion length"] == 12.0 and found["stent length"] == 20.0
