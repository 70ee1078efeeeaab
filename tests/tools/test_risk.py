"""MESA 10-year CHD risk, troponin against the 99th percentile, and the risk_context answer's limits."""

import re

import numpy as np
import pytest

from cardiovlm.assistant.tools.risk_context import risk_context_tool
from cardiovlm.tools.core.case_format import ClinicalContext
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.tools.quant.risk import MesaOutOfRangeError, mesa_chd_risk, risk_context
from cardiovlm.tools.quant.troponin import TroponinError, interpret_troponin, to_ng_per_l


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
    chinese = mesa_chd_risk(patient(race="chinese"), 100).ten_year_chd_risk
    assert chinese < mesa_chd_risk(patient(), 100).ten_year_chd_risk


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
    from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE

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


# --- the session's clinical context: partly known, edited, named in the answer ---
from cardiovlm.tools.quant.clinical_context import ClinicalContext as SessionClinical  # noqa: E402
from cardiovlm.tools.quant.clinical_context import ClinicalContextError  # noqa: E402
from cardiovlm.tools.quant.risk import CLINICAL_CONFIG_KEY  # noqa: E402


def config_with(ctx, clinical):
    return {"configurable": {**ctx.as_config()["configurable"], CLINICAL_CONFIG_KEY: clinical}}


def test_mesa_names_the_values_that_are_missing():
    partial = SessionClinical().updated({"age": 60, "sex": "male", "systolic_bp_mmhg": 130})
    out = risk_context(partial, 100)
    assert out.mesa is None
    message = next(m for m in out.not_computed if m.startswith("MESA"))
    assert "race, total cholesterol, HDL cholesterol, current smoking" in message
    assert "age" not in message.split("known:")[1] and "systolic" not in message
    assert "age 60 years (entered by the user)" in out.clinical_values


def test_an_edited_value_changes_the_mesa_answer_and_is_named_with_its_source():
    study = Study(hu=np.zeros((4, 4, 4), np.int16), spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    ctx = StudyContext(study=study, clinical=patient())
    case = SessionClinical.from_case(patient())
    before = risk_context_tool.invoke({"agatston": 100}, config=config_with(ctx, case))
    edited = case.updated({"systolic_bp_mmhg": 170, "smoker": True})
    after = risk_context_tool.invoke({"agatston": 100}, config=config_with(ctx, edited))
    assert before["mesa"]["ten_year_chd_risk"] == pytest.approx(0.09427, abs=1e-5)
    # sum rises by 0.0066 * 40 + 0.3717 = 0.6357
    assert after["mesa"]["ten_year_chd_risk"] == pytest.approx(1 - 0.99833 ** np.exp(4.08163 + 0.6357), abs=1e-5)
    assert "systolic blood pressure 170 mmHg (entered by the user)" in after["mesa"]["inputs_shown"]
    assert "HDL cholesterol 50 mg/dL (case clinical file)" in after["mesa"]["inputs_shown"]
    assert after["mesa"]["inputs"]["systolic_bp_mmhg"] == 170


def test_dicom_age_and_sex_fill_an_otherwise_unknown_context():
    clinical = SessionClinical.for_study(None, {"patient_age_years": 58, "patient_sex": "female"})
    assert (clinical.age, clinical.sex) == (58, "female")
    assert clinical.sources == {"age": "DICOM header", "sex": "DICOM header"}
    # a case's clinical file wins over the header
    assert SessionClinical.for_study(patient(), {"patient_age_years": 58}).age == 60


def test_bad_clinical_values_are_typed_errors_naming_the_value():
    with pytest.raises(ClinicalContextError, match="systolic blood pressure"):
        SessionClinical().updated({"systolic_bp_mmhg": 20})
    with pytest.raises(ClinicalContextError, match="troponin: a value needs its unit"):
        SessionClinical().updated({"troponin_value": 30})
    with pytest.raises(ClinicalContextError, match="'weight' is not a clinical value"):
        SessionClinical().updated({"weight": 80})
    assert ClinicalContextError.code == "clinical.invalid"


def test_troponin_without_a_known_sex_is_read_against_both_limits():
    clinical = SessionClinical().updated({"troponin_value": 60, "troponin_unit": "ng/L"})
    out = risk_context(clinical, None)
    assert out.troponin is None and out.troponin_sex_unknown.above == "both"


def _non_contrast_ct():
    hu = np.full((40, 40, 6), 40, np.int16)
    hu[12:22, 10:20, 2:4] = 450  # 25 mm^2 on two 3 mm slices, peak 450 HU: 25 x 4 x 2 = 200
    return Study(hu=hu, spacing=(0.5, 0.5, 3.0), affine=np.eye(4),
                 metadata={"series_description": "Calcium Score 3.0 mm", "series_number": "2"})


def test_the_risk_answer_scores_a_lone_non_contrast_ct_from_the_image():
    ctx = StudyContext(study=_non_contrast_ct(), clinical=patient())  # no separate calcium series
    out = risk_context_tool.invoke({}, config=ctx.as_config())
    assert out["agatston"] == pytest.approx(200)
    assert out["agatston_source"] == "measured on the loaded study (series 2 'Calcium Score 3.0 mm')"
    assert out["mesa"]["inputs"]["agatston"] == pytest.approx(200)


def test_the_risk_answer_names_the_calcium_series_it_measured_on():
    cac = _non_contrast_ct()
    ctx = StudyContext(study=_contrast_ct(), cac=cac, clinical=patient())
    out = risk_context_tool.invoke({}, config=ctx.as_config())
    assert out["agatston"] == pytest.approx(200)
    assert out["agatston_source"].startswith("measured on the calcium-scoring series loaded with the CCTA (series 2")


def _contrast_ct():
    hu = np.full((100, 100, 60), 40, np.int16)
    hu[30:70, 30:70, 5:55] = 400  # an enhanced blood pool of 80 mL in the centre of the field
    return Study(hu=hu, spacing=(1.0, 1.0, 1.0), affine=np.eye(4))


def test_a_contrast_ct_alone_gives_no_agatston_and_the_answer_says_why():
    ctx = StudyContext(study=_contrast_ct(), clinical=patient())
    out = risk_context_tool.invoke({}, config=ctx.as_config())
    assert out["agatston"] is None and out["mesa"] is None
    assert any("needs a non-contrast calcium-scoring CT" in m and "could not be measured" in m
               for m in out["not_computed"]), out["not_computed"]


def test_a_troponin_of_an_assay_without_stored_limits_is_not_read_and_the_answer_says_why():
    clinical = SessionClinical.from_case(patient()).updated(
        {"troponin_value": 30, "troponin_unit": "ng/L", "troponin_assay": "Roche Elecsys hs-TnT"})
    out = risk_context(clinical, 10)
    assert out.troponin is None and out.mesa is not None
    assert any(m.startswith("troponin: no 99th-percentile limits are stored for the troponin assay 'Roche")
               for m in out.not_computed)
    assert "troponin assay Roche Elecsys hs-TnT (entered by the user)" in out.clinical_values


# --- typed errors with stable codes, and the typed MESA inputs ---
from cardiovlm.tools.core.errors import CardioVLMError  # noqa: E402
from cardiovlm.tools.quant.risk import AgatstonValueError, MesaInputsMissingError  # noqa: E402
from cardiovlm.tools.quant.troponin import TroponinAssayError, TroponinUnitError  # noqa: E402


def test_the_mesa_inputs_are_the_typed_values_used():
    inputs = mesa_chd_risk(patient(race="hispanic", smoker=True), 120).inputs
    assert (inputs.age_years, inputs.sex, inputs.race, inputs.current_smoker) == (60, "male", "hispanic", True)
    assert (inputs.systolic_bp_mmhg, inputs.bp_medication, inputs.agatston) == (130, True, 120)


@pytest.mark.parametrize("call, kind, code, words", [
    (lambda: mesa_chd_risk(SessionClinical().updated({"age": 60}), 10), MesaInputsMissingError,
     "risk.mesa_inputs_missing", "these values are not known: sex, race"),
    (lambda: mesa_chd_risk(patient(age=30), 10), MesaOutOfRangeError, "risk.mesa_age_out_of_range",
     "this patient is 30, so it is not computed"),
    (lambda: mesa_chd_risk(patient(), float("nan")), AgatstonValueError, "risk.agatston_invalid",
     "nan is not one, so MESA is not computed"),
    (lambda: to_ng_per_l(3, "mmol/L"), TroponinUnitError, "troponin.unit_unknown", "give ng/L, pg/mL or ng/mL"),
    (lambda: to_ng_per_l(-3, "ng/L"), TroponinError, "troponin.invalid", "concentration"),
    (lambda: interpret_troponin(3, "ng/L", "male", assay="Roche Elecsys hs-TnT"), TroponinAssayError,
     "troponin.assay_unknown", "no 99th-percentile limits are stored"),
    (lambda: SessionClinical().updated({"age": 12}), ClinicalContextError, "clinical.invalid",
     "age: input should be greater than or equal to 18 (got 12)"),
])
def test_bad_inputs_raise_project_errors_with_stable_codes(call, kind, code, words):
    with pytest.raises(kind, match=re.escape(words)) as caught:
        call()
    assert isinstance(caught.value, CardioVLMError) and caught.value.code == code


def test_a_troponin_given_without_its_unit_is_a_typed_failure_the_model_reads():
    from cardiovlm.assistant.tool_errors import ToolFailure

    study = Study(hu=np.zeros((4, 4, 4), np.int16), spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    ctx = StudyContext(study=study, clinical=patient())
    with pytest.raises(ClinicalContextError) as caught:
        risk_context_tool.invoke({"agatston": 10, "troponin_value": 40}, config=ctx.as_config())
    failure = ToolFailure.of(caught.value)
    assert failure.code == "clinical.invalid"
    assert failure.message == "troponin: a value needs its unit (ng/L, pg/mL or ng/mL)"


def test_a_troponin_read_against_both_limits_is_named_among_the_scores_used():
    clinical = SessionClinical().updated({"troponin_value": 60, "troponin_unit": "ng/L"})
    out = risk_context(clinical, None)
    assert "hs-cTnI vs both sex-specific 99th-percentile URLs (Abbott ARCHITECT STAT hs-cTnI)" in out.scores_used
