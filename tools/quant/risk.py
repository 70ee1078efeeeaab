"""Risk context from established scores: MESA 10-year CHD risk with CAC, CAC-DRS, plaque burden, troponin.

:func:`mesa_chd_risk` implements the MESA 10-year hard CHD risk score with CAC (McClelland et al.,
JACC 2015;66:1643-53) from its published coefficients and baseline survival:
``risk = 1 - 0.99833 ** exp(sum)``. :func:`risk_context` gathers what is established for a patient
and states each score's limits; it never turns a CT and a troponin into a 1-year MACE probability,
because no validated model does that. The ``risk_context`` tool reads the session's clinical
context (the values the clinician entered, else the case's clinical file and the DICOM age and sex),
names the values it used with their source and the ones that are missing, and measures the calcium
score on the loaded CT (from the image alone) when none is given.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from typing import Literal, overload

from langchain_core.runnables import RunnableConfig
from pydantic import BaseModel, Field

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.quant.cadrads import cac_drs, plaque_burden_from_cac
from cardiovlm.tools.quant.clinical_context import FIELD_NAMES, MESA_FIELDS, ClinicalContext, Race
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.tools.quant.troponin import TroponinError, TroponinInterpretation, interpret_troponin

MESA_BASELINE_SURVIVAL = 0.99833
MESA_AGE_RANGE = (45, 85)  # derivation cohort 45-84 years; the published calculator accepts 45-85
# McClelland et al., JACC 2015: coefficients of the model with CAC (white race is the reference).
MESA_COEFFICIENTS = {
    "age": 0.0172, "male": 0.4079, "chinese": -0.3475, "african_american": 0.0353, "hispanic": -0.0222,
    "diabetes": 0.3892, "smoker": 0.3717, "total_cholesterol": 0.0043, "hdl": -0.0114,
    "lipid_lowering": 0.1206, "systolic_bp": 0.0066, "bp_medication": 0.2278, "family_history": 0.3239,
    "ln_cac_plus_1": 0.2743,
}
NO_MACE_MODEL = ("MESA predicts 10-year hard CHD events, not 1-year MACE; no validated model turns a CT and a "
                 "troponin into a 1-year MACE probability, so none is given")


class RiskError(CardioVLMError):
    """A risk score cannot be computed on these inputs; the message says why (the subclasses say which)."""

    code = "risk.not_computed"


class MesaOutOfRangeError(RiskError):
    """The patient is outside the ages the MESA score was derived for, so it is refused, not extrapolated."""

    code = "risk.mesa_age_out_of_range"


class MesaInputsMissingError(RiskError):
    """A value the MESA score needs is not known; the message names each one."""

    code = "risk.mesa_inputs_missing"


class AgatstonValueError(RiskError):
    """The calcium score given is not an Agatston score (negative or not a finite number)."""

    code = "risk.agatston_invalid"


CLINICAL_CONFIG_KEY = "clinical_context"  # a session's edited ClinicalContext in the run config


@overload
def as_clinical(clinical: ClinicalContext | cf.ClinicalContext) -> ClinicalContext: ...
@overload
def as_clinical(clinical: ClinicalContext | cf.ClinicalContext | None) -> ClinicalContext | None: ...
def as_clinical(clinical: ClinicalContext | cf.ClinicalContext | None) -> ClinicalContext | None:
    """A case's complete clinical file as the session's (partly known) clinical context."""
    return ClinicalContext.from_case(clinical) if isinstance(clinical, cf.ClinicalContext) else clinical


class MesaInputs(BaseModel):
    """The values the MESA score was computed from; every one is known, or no score is given."""

    age_years: int = Field(description="years, 45-85")
    sex: Literal["male", "female"]
    race: Race = Field(description="one of the four groups the score was derived for; white is the reference")
    diabetes: bool
    current_smoker: bool
    total_cholesterol_mg_dl: float
    hdl_cholesterol_mg_dl: float
    lipid_lowering: bool = Field(description="takes lipid-lowering medication")
    systolic_bp_mmhg: float
    bp_medication: bool = Field(description="takes blood-pressure medication")
    family_history_mi: bool = Field(description="heart attack in a parent, sibling or child")
    agatston: float = Field(description="Agatston score of a non-contrast calcium-scoring CT")

    @classmethod
    def of(cls, clinical: ClinicalContext, agatston: float) -> MesaInputs:
        """The inputs of ``clinical``; raises :class:`MesaInputsMissingError` naming each unknown value."""
        missing = clinical.missing(MESA_FIELDS)
        if missing:
            raise MesaInputsMissingError(
                f"MESA 10-year CHD risk: not computed, these values are not known: {', '.join(missing)} (enter "
                "them in the clinical context)")
        return cls.model_validate({
            "age_years": clinical.age, "sex": clinical.sex, "race": clinical.race, "diabetes": clinical.diabetes,
            "current_smoker": clinical.smoker, "total_cholesterol_mg_dl": clinical.total_cholesterol_mg_dl,
            "hdl_cholesterol_mg_dl": clinical.hdl_cholesterol_mg_dl, "lipid_lowering": clinical.lipid_lowering,
            "systolic_bp_mmhg": clinical.systolic_bp_mmhg, "bp_medication": clinical.hypertension_treatment,
            "family_history_mi": clinical.family_history_mi, "agatston": agatston})


class MesaRisk(BaseModel):
    ten_year_chd_risk: float = Field(description="10-year hard CHD event risk, fraction 0-1")
    ten_year_chd_risk_percent: float
    linear_predictor: float = Field(description="the sum of coefficient x input")
    inputs: MesaInputs = Field(description="the values used, with units")
    inputs_shown: list[str] = Field(default_factory=list, description="each value used as the answer names it, "
                                    "with where it came from")
    source: str = "McClelland et al., JACC 2015;66:1643-53 (MESA risk score with CAC)"
    limits: str = ("10-year hard CHD events (MI, CHD death, resuscitated arrest, revascularisation) in people "
                   "without known CHD, aged 45-85; not a short-term or MACE prediction")


def mesa_chd_risk(clinical: ClinicalContext | cf.ClinicalContext, agatston: float) -> MesaRisk:
    """MESA 10-year hard CHD risk with coronary artery calcium.

    Args:
        clinical: age (years), sex, race (one of the four MESA groups), systolic BP (mmHg), total and
            HDL cholesterol (mg/dL), smoker, diabetes, BP and lipid-lowering treatment, family history.
        agatston: Agatston score of a non-contrast calcium-scoring CT (>= 0).

    Raises:
        MesaInputsMissingError: a value the score needs is not known (the message names them).
        MesaOutOfRangeError: age outside 45-85 (the score is refused, not extrapolated).
        AgatstonValueError: a negative or non-finite calcium score.
    """
    session = as_clinical(clinical)
    x = MesaInputs.of(session, agatston)
    lo, hi = MESA_AGE_RANGE
    if not lo <= x.age_years <= hi:
        raise MesaOutOfRangeError(
            f"the MESA risk score is validated for ages {lo}-{hi}; this patient is {x.age_years}, so it is "
            "not computed")
    if not math.isfinite(agatston) or agatston < 0:
        raise AgatstonValueError(f"an Agatston score is a number of 0 or more; {agatston} is not one, so MESA "
                                 "is not computed")
    c = MESA_COEFFICIENTS
    total = (c["age"] * x.age_years + c["male"] * (x.sex == "male")
             + c.get(x.race, 0.0)  # white is the reference group
             + c["diabetes"] * x.diabetes + c["smoker"] * x.current_smoker
             + c["total_cholesterol"] * x.total_cholesterol_mg_dl + c["hdl"] * x.hdl_cholesterol_mg_dl
             + c["lipid_lowering"] * x.lipid_lowering + c["systolic_bp"] * x.systolic_bp_mmhg
             + c["bp_medication"] * x.bp_medication
             + c["family_history"] * x.family_history_mi + c["ln_cac_plus_1"] * math.log(agatston + 1))
    risk = 1 - MESA_BASELINE_SURVIVAL ** math.exp(total)
    return MesaRisk(ten_year_chd_risk=risk, ten_year_chd_risk_percent=round(100 * risk, 1),
                    linear_predictor=total, inputs=x, inputs_shown=[session.shown(f) for f in MESA_FIELDS])


class TroponinBothLimits(BaseModel):
    """A troponin compared with both sex-specific limits when the patient's sex is not known."""

    value_ng_l: float = Field(description="the result converted to ng/L")
    given: str = Field(description="the result as given, with its unit")
    assay: str
    female_url_ng_l: float
    male_url_ng_l: float
    above: Literal["both", "neither", "female_only"] = Field(
        description="which sex-specific 99th-percentile limits the value exceeds (the female one is the lower)")
    interpretation: str


def troponin_against_both_limits(value: float, unit: str, assay: str | None = None) -> TroponinBothLimits:
    """Compare an hs-cTnI result with the female and the male 99th-percentile URL of the assay.

    Above both (or below both) limits, the patient's sex does not change the reading; between them it does.
    """
    female = interpret_troponin(value, unit, "female", assay)
    male = interpret_troponin(value, unit, "male", assay)
    above = "both" if male.above_url else "female_only" if female.above_url else "neither"
    meaning = {"both": "above both sex-specific 99th-percentile limits: myocardial injury whatever the sex",
               "neither": "not above either sex-specific 99th-percentile limit: no myocardial injury on this value",
               "female_only": "above the female but not the male 99th-percentile limit: the reading depends on the "
                              "patient's sex, which is not known"}[above]
    return TroponinBothLimits(value_ng_l=female.value_ng_l, given=female.given, assay=female.assay,
                              female_url_ng_l=female.url_ng_l, male_url_ng_l=male.url_ng_l, above=above,
                              interpretation=f"hs-cTnI {female.value_ng_l:g} ng/L is {meaning}")


class RiskContext(BaseModel):
    """What established scores say about this patient, each with its inputs and limits."""

    scores_used: list[str] = Field(description="the established scores that were computed")
    agatston: float | None = Field(description="Agatston score used, or null when none was available")
    agatston_source: str | None = Field(description="where the Agatston score came from")
    cac_drs: str | None = None
    plaque_burden: str | None = Field(None, description="CAD-RADS 2.0 plaque burden from the calcium score")
    mesa: MesaRisk | None = None
    troponin: TroponinInterpretation | None = None
    troponin_sex_unknown: TroponinBothLimits | None = Field(
        None, description="a troponin given while the patient's sex is unknown, against both limits")
    clinical_values: list[str] = Field(
        default_factory=list, description="the clinical values known for this patient, each with its source")
    clinical_missing: list[str] = Field(
        default_factory=list, description="the values the MESA score needs that are not known")
    not_computed: list[str] = Field(default_factory=list, description="scores left out, and why")
    limits: list[str] = Field(description="what these numbers do not say; quote them with the numbers")


def risk_context(clinical: ClinicalContext | cf.ClinicalContext | None, agatston: float | None, *,
                 agatston_source: str | None = None, per_artery: Mapping[str, float] | None = None,
                 calcium_note: str | None = None) -> RiskContext:
    """Established risk pieces for a patient; never a 1-year MACE probability.

    Args:
        clinical: risk factors and labs (troponin value, unit, assay), any of them unknown, or None.
        agatston: Agatston score from a non-contrast scan, or None when none was measured.
        agatston_source: where the score came from, stated in the result.
        per_artery: artery -> Agatston score when measured, for the CAC-DRS vessel count (N1-N4).
        calcium_note: why no Agatston score could be measured, when none was.
    """
    clinical = as_clinical(clinical)
    used, missing = [], []
    drs = burden = mesa = trop = both = None
    if agatston is not None:
        drs = cac_drs(agatston, per_artery).text
        burden = plaque_burden_from_cac(agatston)
        used += ["CAC-DRS (Hecht et al., JCCT 2018)", "CAD-RADS 2.0 plaque burden from CAC"]
    else:
        missing.append("CAC-DRS and plaque burden: no Agatston score (needs a non-contrast calcium-scoring CT)"
                       + (f"; {calcium_note}" if calcium_note else ""))
    if clinical is None or clinical.is_empty():
        clinical = None
        missing.append("MESA 10-year CHD risk and troponin: no clinical context (risk factors, labs) is known")
    else:
        if agatston is None:
            missing.append("MESA 10-year CHD risk: needs an Agatston score")
        else:
            try:
                mesa = mesa_chd_risk(clinical, agatston)
                used.append("MESA 10-year CHD risk with CAC (McClelland et al., JACC 2015)")
            except RiskError as err:  # values missing or an age outside 45-85
                missing.append(str(err))
        if clinical.troponin_value is not None and clinical.troponin_unit:
            try:
                if clinical.sex is None:  # both sex-specific limits: a value above (or below) both still reads
                    both = troponin_against_both_limits(clinical.troponin_value, clinical.troponin_unit,
                                                        clinical.troponin_assay)
                    used.append(f"hs-cTnI vs both sex-specific 99th-percentile URLs ({both.assay})")
                else:
                    trop = interpret_troponin(clinical.troponin_value, clinical.troponin_unit, clinical.sex,
                                              clinical.troponin_assay)
                    used.append(f"hs-cTnI vs the sex-specific 99th-percentile URL ({trop.assay})")
            except TroponinError as err:
                missing.append(f"troponin: {err}")
        else:
            missing.append("troponin: no result in the clinical context")
    limits = [NO_MACE_MODEL,
              "CAC-DRS and plaque burden grade calcified plaque burden; they are not stenosis or event probabilities",
              "a troponin above the 99th percentile indicates myocardial injury, not its cause or a future risk"]
    known = clinical.known() if clinical is not None else {}
    return RiskContext(scores_used=used, agatston=agatston, agatston_source=agatston_source if agatston is not None
                       else None, cac_drs=drs, plaque_burden=burden, mesa=mesa, troponin=trop,
                       troponin_sex_unknown=both,
                       clinical_values=[clinical.shown(k) for k in known] if clinical is not None else [],
                       clinical_missing=clinical.missing() if clinical is not None else [FIELD_NAMES[f] for f in
                                                                                          MESA_FIELDS],
                       not_computed=missing, limits=limits)


def session_clinical(config: RunnableConfig | None, ctx: StudyContext) -> ClinicalContext | None:
    """The clinical context of the session (as the clinician edited it), else the study context's own."""
    edited = ((config or {}).get("configurable") or {}).get(CLINICAL_CONFIG_KEY)
    if edited is not None:
        return edited
    if ctx.clinical is not None:
        return as_clinical(ctx.clinical)
    return ClinicalContext.for_study(None, ctx.study.metadata)


MeasuredCalcium = tuple[float | None, str | None, dict[str, float] | None]


def measured_calcium(ctx: StudyContext) -> MeasuredCalcium:
    """(Agatston, where it was measured, per artery) from the loaded CT alone, or (None, why not, None).

    The image decides which loaded series is non-contrast (``cardiovlm.tools.quant.calcium.score_context``); a phantom's
    findings are never read. A session's score is measured once and reused.
    """
    from cardiovlm.tools.quant.calcium import score_context

    key = (id(ctx.study), id(ctx.cac), id(ctx.labels), id(ctx.cac_labels))
    cached = _MEASURED.get(id(ctx))
    if cached is not None and cached[0]() is ctx and cached[1] == key:
        return cached[2]
    found: MeasuredCalcium
    try:
        score = score_context(ctx)
    except StudyError as err:
        found = (None, f"the calcium score could not be measured: {err}", None)
    else:
        if score.kind != "agatston" or score.agatston is None:
            found = (None, "the loaded CT is contrast enhanced and no non-contrast calcium-scoring series is "
                           "loaded", None)
        else:
            found = (score.agatston, f"measured on {score.scored_series or 'the non-contrast series'}",
                     {artery: a.agatston for artery, a in score.per_artery.items() if a.agatston is not None})
    if id(ctx) not in _MEASURED:
        weakref.finalize(ctx, _MEASURED.pop, id(ctx), None)  # forgotten with the context
    _MEASURED[id(ctx)] = (weakref.ref(ctx), key, found)
    return found


# id(context) -> (weak reference, series ids, result); checked on read
_MEASURED: dict[int, tuple[weakref.ref, tuple, MeasuredCalcium]] = {}
