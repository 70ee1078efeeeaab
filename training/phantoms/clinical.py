"""Clinical context of a synthetic phantom: a plausible patient whose risk profile fits its findings.

:func:`sample_clinical` draws age, sex, MESA race group, blood pressure, cholesterol, smoking,
diabetes, treatments, family history and a high-sensitivity troponin I result. Every draw leans on
one *disease burden* in [0, 1] computed from the ground-truth findings, so sicker coronaries come
with older, more often male patients carrying more risk factors, and with an hs-cTnI above the
assay's 99th-percentile URL more often (myocardial injury is more likely with severe disease, never
certain, and possible without it).

The troponin assay and its sex-specific URLs come from ``cardiovlm.tools.quant.troponin`` (the one place that stores
them), so ``cardiovlm.tools.quant.troponin.interpret_troponin`` reads every sampled value back to the intended
side of the URL. Units are consistent by construction: pg/mL equals ng/L, ng/mL is 1000 ng/L.

Example::

    >>> import numpy as np
    >>> from cardiovlm.tools.core.case_format import Findings
    >>> ctx = sample_clinical(np.random.default_rng(0), Findings(cad_rads="0"))
    >>> 18 <= ctx.age <= 100
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.core.case_format import ClinicalContext, Findings
from cardiovlm.tools.quant.troponin import ASSAYS, TroponinAssay

# MESA enrolment shares (about 38% white, 12% Chinese, 28% African American, 22% Hispanic).
RACE_SHARES: dict[str, float] = {"white": 0.38, "chinese": 0.12, "african_american": 0.28, "hispanic": 0.22}
# How often a result is reported in each unit; pg/mL and ng/L are the same quantity.
TROPONIN_UNIT_SHARES: dict[str, float] = {"ng/L": 0.45, "pg/mL": 0.35, "ng/mL": 0.20}
_NG_L_PER_UNIT = {"ng/L": 1.0, "pg/mL": 1.0, "ng/mL": 1000.0}


@dataclass(frozen=True)
class ClinicalPriors:
    """Population parameters of the sampler; each probability is ``base + slope * burden``."""

    age_mean: float = 57.0  # years, at burden 0
    age_slope: float = 12.0  # years added at burden 1
    age_sd: float = 8.0
    age_range: tuple[int, int] = (40, 88)  # clip: mostly 45-85, the MESA derivation range
    male: tuple[float, float] = (0.48, 0.30)
    sbp_mean: tuple[float, float] = (124.0, 12.0)  # mmHg
    sbp_sd: float = 16.0
    total_chol_mean: tuple[float, float] = (192.0, 12.0)  # mg/dL
    total_chol_sd: float = 34.0
    hdl_mean_female: float = 58.0  # mg/dL; men about 12 mg/dL lower
    hdl_male_offset: float = -12.0
    hdl_burden_slope: float = -6.0
    hdl_sd: float = 12.0
    smoker: tuple[float, float] = (0.11, 0.17)
    diabetes: tuple[float, float] = (0.09, 0.18)
    hypertension_treatment: tuple[float, float] = (0.28, 0.30)
    lipid_lowering: tuple[float, float] = (0.18, 0.32)
    lipid_lowering_with_stent: float = 0.9  # secondary prevention after PCI
    family_history: tuple[float, float] = (0.14, 0.16)
    troponin_reported: float = 0.8  # share of cases with a troponin result
    troponin_elevated: tuple[float, float] = (0.06, 0.55)


DEFAULT_PRIORS = ClinicalPriors()


def disease_burden(findings: Findings) -> float:
    """One number in [0, 1] for how diseased the coronaries are: worst stenosis, count and extent.

    Stents count as treated disease (their restenosis as stenosis); an occlusion counts as 100%.
    """
    if not findings.findings:
        return 0.0
    worst = max(f.stenosis_percent for f in findings.findings) / 100.0
    arteries = {_artery_of(f.segment) for f in findings.findings}
    stented = any(f.kind == "stent" for f in findings.findings)
    burden = 0.55 * worst + 0.1 * min(len(findings.findings), 4) / 4 + 0.15 * (len(arteries) - 1) / 3
    burden += 0.2 if stented else 0.0
    return float(min(1.0, burden))


def severe_disease(findings: Findings) -> bool:
    """A stenosis of 70% or more, an occlusion, or a severe in-stent restenosis."""
    return any(f.stenosis_percent >= 70 for f in findings.findings)


def sample_clinical(rng: np.random.Generator | random.Random, findings: Findings,
                    priors: ClinicalPriors = DEFAULT_PRIORS, sex: str | None = None) -> ClinicalContext:
    """Draw a patient whose risk factors and troponin fit ``findings``.

    Args:
        rng: numpy random generator (a ``random.Random`` is accepted, see :func:`as_generator`);
            the same seed gives the same patient.
        findings: the phantom's ground-truth findings (only read).
        priors: population parameters, see :class:`ClinicalPriors`.
        sex: the patient's sex when the images already have one (a realistic phantom); it replaces the
            drawn sex after the draw, so the rest of the patient stays the seed's.

    Raises:
        ValueError: when ``rng`` is neither kind of generator, ``findings`` is not a ``Findings`` or ``sex``
            is neither "male" nor "female".
    """
    rng = as_generator(rng)
    if sex not in (None, "male", "female"):
        raise ValueError(f"sex must be 'male' or 'female', got {sex!r}")
    if not isinstance(findings, Findings):
        raise ValueError(f"findings must be a cardiovlm.tools.core.case_format.Findings, got {type(findings).__name__}")
    b = disease_burden(findings)

    def chance(p: tuple[float, float]) -> bool:
        return bool(rng.random() < min(0.97, p[0] + p[1] * b))

    age = int(np.clip(round(rng.normal(priors.age_mean + priors.age_slope * b, priors.age_sd)),
                      *priors.age_range))
    drawn_sex = "male" if chance(priors.male) else "female"
    sex = drawn_sex if sex is None else sex
    race = str(rng.choice(list(RACE_SHARES), p=list(RACE_SHARES.values())))
    sbp = float(np.clip(rng.normal(priors.sbp_mean[0] + priors.sbp_mean[1] * b + 0.3 * (age - 57),
                                   priors.sbp_sd), 95, 200))
    total = float(np.clip(rng.normal(priors.total_chol_mean[0] + priors.total_chol_mean[1] * b,
                                     priors.total_chol_sd), 120, 320))
    hdl_mean = priors.hdl_mean_female + (priors.hdl_male_offset if sex == "male" else 0) + priors.hdl_burden_slope * b
    hdl = float(np.clip(rng.normal(hdl_mean, priors.hdl_sd), 25, min(100, total - 60)))
    stented = any(f.kind == "stent" for f in findings.findings)
    lipid_lowering = (bool(rng.random() < priors.lipid_lowering_with_stent) if stented
                      else chance(priors.lipid_lowering))
    # Treated hypertension is likelier when the measured pressure is high.
    htn_p = (priors.hypertension_treatment[0] + (0.15 if sbp >= 140 else 0.0), priors.hypertension_treatment[1])

    value = unit = assay_name = None
    if rng.random() < priors.troponin_reported:
        assay = _pick_assay(rng)
        # Injury follows severe disease; milder burden raises the chance only a little.
        weight = b if severe_disease(findings) else b / 3
        elevated_p = priors.troponin_elevated[0] + priors.troponin_elevated[1] * weight
        value, unit = sample_troponin(rng, assay, sex, elevated=bool(rng.random() < elevated_p))
        assay_name = assay.name

    return ClinicalContext(
        age=age, sex=sex, race=race, systolic_bp_mmhg=round(sbp), total_cholesterol_mg_dl=round(total),
        hdl_cholesterol_mg_dl=round(hdl), smoker=chance(priors.smoker), diabetes=chance(priors.diabetes),
        hypertension_treatment=chance(htn_p), lipid_lowering=lipid_lowering,
        family_history_mi=chance(priors.family_history), troponin_value=value, troponin_unit=unit,
        troponin_assay=assay_name)


def sample_troponin(rng: np.random.Generator, assay: TroponinAssay, sex: str, *,
                    elevated: bool) -> tuple[float, str]:
    """An hs-cTnI result (value, unit) strictly above or clearly below the sex-specific URL.

    Normal results lie between the assay's detection floor (about 1.5 ng/L) and 90% of the URL;
    elevated ones between 1.2 and about 40 times the URL (log-normal), so rounding in any unit
    never moves a value across the URL.
    """
    url = assay.male_url_ng_l if sex == "male" else assay.female_url_ng_l
    if elevated:
        ng_l = url * float(np.clip(rng.lognormal(np.log(3.0), 0.9), 1.2, 40.0))
    else:
        ng_l = float(np.clip(rng.lognormal(np.log(0.25 * url), 0.6), 1.5, 0.9 * url))
    unit = str(rng.choice(list(TROPONIN_UNIT_SHARES), p=list(TROPONIN_UNIT_SHARES.values())))
    value = ng_l / _NG_L_PER_UNIT[unit]
    # ng/L results are whole numbers or one decimal; ng/mL three decimals (1 ng/L resolution).
    value = round(value, 3) if unit == "ng/mL" else round(value, int(rng.integers(0, 2)))
    return value, unit


def as_generator(rng: np.random.Generator | random.Random) -> np.random.Generator:
    """A numpy Generator from either kind of rng; a ``random.Random`` gives up 64 bits as the seed.

    The phantom API takes numpy generators; some callers (benchmarks) hold a ``random.Random``.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, random.Random):
        return np.random.default_rng(rng.getrandbits(64))
    raise ValueError(f"rng must be a numpy.random.Generator or random.Random, got {type(rng).__name__}")


def _pick_assay(rng: np.random.Generator) -> TroponinAssay:
    assays = sorted(ASSAYS.values(), key=lambda a: a.name)
    return assays[int(rng.integers(len(assays)))]


def _artery_of(segment: str) -> str:
    return SEGMENTS_BY_CODE[segment].artery


__all__ = ["ClinicalPriors", "as_generator", "DEFAULT_PRIORS", "disease_burden", "sample_clinical", "sample_troponin",
           "severe_disease"]
