"""MESA 10-year CHD risk, troponin against the 99th percentile, and the risk_context answer's limits."""

import numpy as np
import pytest

from tools.case_format import ClinicalContext
from tools.context import StudyContext
from tools.risk import MesaOutOfRangeError, mesa_chd_risk, risk_context, risk_context_tool
from tools.study import Study
from tools.troponin import TroponinError, interpret_troponin, to_ng_per_l


def patient(**changes):
    base = dict(age=60, sex="male", race="white", systolic_bp_mmhg=130, total_cholesterol_mg_dl=200,
                hdl_cholesterol_mg_dl=50, smoker=False, diabetes=False, hypertension_treatment=True,
                lipid_lowering=False, family_history_mi=False)
    return ClinicalContext(**(base | changes))


# Hand-computed from the coefficients printed in McClelland et al. (JACC 2015), worked out on paper:
# 60 y white man, TC 200, HDL 50, SBP 130 on BP treatment, CAC 100:
#   sum = 0.0172*60 + 0.4079 + 0.0043*200 - 0.0114*50 + 0.0066*130 + 0.2278 + 0.2743*ln(101) = 4.08163
#   risk = 1 - 0.99833**exp(4.08163) = 0.09427
# 72 y African American woman, diabetic smoker on a statin, TC 240, HDL 40, SBP 150, no BP treatment,
# family history, CAC 0:
#   sum = 0.0172*72 + 0.0353 + 0.3892 + 0.3717 + 0.0043*240 - 0.0114*40 + 0.1206 + 0.0066*150 + 0.3239 = 4.0451
#   risk = 1 - 0.99833**exp(4.0451) = 0.09105
@pytest.mark.parametrize("clinical, cac, expected_sum, expected_risk", [
    (patient(), 100, 4.08163, 0.09427),
    (patient(age=72, sex="female", race="african_american", diabetes=True, smoker=True, lipid_lowering=True,
             total_cholesterol_mg_dl=240, hdl_cholesterol_mg_dl=40, systolic_bp_mmhg=150,
             hypertension_treatment=False, family_history_mi=True), 0, 4.0451, 0.09105),
])
def test_mesa_matches_hand_computed_values(clinical, cac, expected_sum, expected_risk):
    out = mesa_chd_risk(clinical, cac)
    assert out.linear_predictor == pytest.approx(expected_sum, abs=1e-5)
    assert out.ten_year_chd_risk == pytest.approx(expected_risk, abs=1e-5)


def test_mesa_rises_with_calcium_and_is_lower_for_chinese_americans():
    assert mesa_chd_risk(patient(), 400).ten_year_chd_risk > mesa_chd_risk(patient(), 10).ten_year_chd_risk
    assert mesa_chd_risk(patient(race="chinese"), 100).ten_year_chd_risk < mesa_chd_risk(patient(), 100).ten_year_chd_risk


@pytest.mark.parametrize("age", [44, 86])
def test_mesa_refuses_ages_outside_45_to_85(age):
    with pytest.raises(MesaOutOfRangeError, match="validated for ages 45-85"):
        mesa_chd_risk(patient(age=age), 10)


@pytest.mark.parametrize("value, unit, ng_l", [(20, "ng/L", 20), (20, "pg/mL", 20), (0.02, "ng/mL", 20)])
def test_troponin_units(value, unit, ng_l):
    assert to_ng_per_l(value, unit) == pytest.approx(ng_l)


def test_troponin_uses_sex_specific_architect_limits():
    woman, man = interpret_troponin(0.02, "ng/mL", "female"), interpret_troponin(20, "pg/mL", "male")
    assert woman.url_ng_l == 15.6 and woman.above_url and "myocardial injury" in woman.interpretation
    assert man.url_ng_l == 34.2 and not man.above_url
    assert "ARCHITECT" in woman.assay
    with pytest.raises(TroponinError, match="unit 'mmol/L' is not known"):
        to_ng_per_l(3, "mmol/L")
    with pytest.raises(TroponinError, match="no 99th-percentile limits"):
        interpret_troponin(3, "ng/L", "male", assay="Unknown Lab Assay")


def test_risk_context_states_scores_and_never_a_mace_probability():
    out = risk_context(patient(troponin_value=40, troponin_unit="ng/L"), 150, agatston_source="given")
    assert out.cac_drs == "A2" and out.plaque_burden == "P2"
    assert out.mesa.ten_year_chd_risk_percent == pytest.approx(100 * mesa_chd_risk(patient(), 150).ten_year_chd_risk,
                                                               abs=0.05)
    assert out.troponin.above_url
    assert any("not 1-year MACE" in lim for lim in out.limits)
    assert "mace_probability" not in str(out.model_dump()).lower()


def test_risk_context_says_what_it_could_not_compute():
    out = risk_context(patient(age=40), None)
    assert out.mesa is None and out.cac_drs is None
    assert any("needs a non-contrast calcium-scoring CT" in m for m in out.not_computed)
    assert any("troponin" in m for m in out.not_computed)
    out = risk_context(patient(age=40), 10)
    assert any("validated for ages 45-85" in m for m in out.not_computed)


def test_tool_reads_the_session_clinical_context():
    study = Study(hu=np.zeros((4, 4, 4), np.int16), spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    ctx = StudyContext(study=study, clinical=patient(troponin_value=10, troponin_unit="pg/mL"))
    out = risk_context_tool.invoke({"agatston": 100}, config=ctx.as_config())
    assert out["mesa"]["ten_year_chd_risk"] == pytest.approx(0.09427, abs=1e-5)
    assert out["agatston_source"] == "given" and out["troponin"]["above_url"] is False


def test_tool_measures_calcium_when_no_score_is_given():
    from tools.anatomy import SEGMENTS_BY_CODE

    hu = np.full((40, 40, 6), 40, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:12, 5:35] = SEGMENTS_BY_CODE["pLAD"].label_id
    labels[30:32, 5:35] = SEGMENTS_BY_CODE["pRCA"].label_id
    hu[12:22, 10:20, 2:4] = 450  # LAD: 25 mm^2 x 4 on two 3 mm slices = 200
    hu[32:36, 10:14, 3] = 250  # RCA: 4 mm^2 x 2 = 8
    cac = Study(hu=hu, spacing=(0.5, 0.5, 3.0), affine=np.eye(4))
    ctx = StudyContext(study=cac, cac=cac, cac_labels=labels, clinical=patient())
    out = risk_context_tool.invoke({}, config=ctx.as_config())
    assert out["agatston"] == pytest.approx(208) and out["agatston_source"].startswith("measured")
    assert out["cac_drs"] == "A2/N2" and out["plaque_burden"] == "P2"
