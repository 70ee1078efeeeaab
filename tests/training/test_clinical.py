"""Phantom clinical context: plausible ranges, consistent troponin units, correlation with disease."""

from __future__ import annotations

import random

import numpy as np
import pytest

from cardiovlm.tools.core.case_format import Finding, Findings
from cardiovlm.tools.quant.troponin import ASSAYS, interpret_troponin, to_ng_per_l
from cardiovlm.training.phantoms.clinical import RACE_SHARES, disease_burden, sample_clinical, sample_troponin

HEALTHY = Findings(cad_rads="0")
SEVERE = Findings(cad_rads="4B", findings=[
    Finding(id="f1", segment="pLAD", kind="mixed_plaque", stenosis_percent=85, length_mm=14, start_mm=2,
            calcium_peak_hu=800),
    Finding(id="f2", segment="mRCA", kind="occlusion", stenosis_percent=100, length_mm=10, start_mm=5),
    Finding(id="f3", segment="OM1", kind="noncalcified_plaque", stenosis_percent=75, length_mm=8, start_mm=1),
])


def draws(findings: Findings, n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [sample_clinical(rng, findings) for _ in range(n)]


def test_values_are_in_plausible_ranges():
    people = draws(HEALTHY) + draws(SEVERE, seed=1)
    ages = np.array([p.age for p in people])
    assert ages.min() >= 40 and ages.max() <= 88
    assert np.mean((ages >= 45) & (ages <= 85)) > 0.85
    assert {p.sex for p in people} == {"male", "female"}
    assert {p.race for p in people} == set(RACE_SHARES)
    for p in people:
        assert 95 <= p.systolic_bp_mmhg <= 200
        assert 120 <= p.total_cholesterol_mg_dl <= 320
        assert 25 <= p.hdl_cholesterol_mg_dl <= p.total_cholesterol_mg_dl - 60


def test_troponin_value_unit_and_assay_are_consistent():
    people = draws(SEVERE, n=400)
    with_troponin = [p for p in people if p.troponin_value is not None]
    assert 0.6 < len(with_troponin) / len(people) < 0.95
    assert {p.troponin_unit for p in with_troponin} == {"ng/L", "pg/mL", "ng/mL"}
    known = {a.name for a in ASSAYS.values()}
    for p in with_troponin:
        assert p.troponin_assay in known
        ng_l = to_ng_per_l(p.troponin_value, p.troponin_unit)
        assert 1 <= ng_l <= 40 * 35, (p.troponin_value, p.troponin_unit)
        if p.troponin_unit == "ng/mL":
            assert p.troponin_value < 2  # ng/mL results are small fractions, never ng/L-sized numbers
    assert all(p.troponin_unit is None and p.troponin_assay is None for p in people if p.troponin_value is None)


@pytest.mark.parametrize("sex", ["male", "female"])
@pytest.mark.parametrize("elevated", [True, False])
def test_sampled_troponin_reads_back_on_the_intended_side_of_the_url(sex, elevated):
    rng = np.random.default_rng(4)
    assay = next(iter(ASSAYS.values()))
    for _ in range(200):
        value, unit = sample_troponin(rng, assay, sex, elevated=elevated)
        assert interpret_troponin(value, unit, sex, assay.name).above_url is elevated


def test_sicker_coronaries_come_with_older_patients_more_risk_and_more_injury():
    healthy, severe = draws(HEALTHY, n=400), draws(SEVERE, n=400, seed=2)

    def elevated_share(people):
        measured = [p for p in people if p.troponin_value is not None]
        return np.mean([interpret_troponin(p.troponin_value, p.troponin_unit, p.sex, p.troponin_assay).above_url
                        for p in measured])

    assert np.mean([p.age for p in severe]) > np.mean([p.age for p in healthy]) + 5
    assert elevated_share(severe) > elevated_share(healthy) + 0.25
    assert 0 < elevated_share(healthy) < 0.2  # injury without disease happens, rarely
    assert np.mean([p.sex == "male" for p in severe]) > np.mean([p.sex == "male" for p in healthy])
    assert np.mean([p.diabetes for p in severe]) > np.mean([p.diabetes for p in healthy])


def test_disease_burden_orders_cases():
    mild = Findings(cad_rads="2", findings=[Finding(id="f1", segment="mLAD", kind="calcified_plaque",
                                                    stenosis_percent=30, length_mm=5, start_mm=1, calcium_peak_hu=500)])
    assert disease_burden(HEALTHY) == 0 < disease_burden(mild) < disease_burden(SEVERE) <= 1


def test_stented_patients_are_mostly_on_lipid_lowering_therapy():
    stented = Findings(cad_rads="2/S", findings=[Finding(id="f1", segment="pRCA", kind="stent", stenosis_percent=0,
                                                         length_mm=18, start_mm=3, stent_diameter_mm=3.0)])
    assert np.mean([p.lipid_lowering for p in draws(stented, n=200)]) > 0.8


def test_deterministic_by_seed_and_random_random_accepted():
    assert draws(SEVERE, n=5, seed=9) == draws(SEVERE, n=5, seed=9)
    assert draws(SEVERE, n=5, seed=9) != draws(SEVERE, n=5, seed=10)
    assert sample_clinical(random.Random(3), SEVERE) == sample_clinical(random.Random(3), SEVERE)


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="rng"):
        sample_clinical(7, HEALTHY)
    with pytest.raises(ValueError, match="Findings"):
        sample_clinical(np.random.default_rng(0), {"findings": []})
