"""High-sensitivity cardiac troponin I against the assay's sex-specific 99th-percentile URL.

A result above the 99th-percentile upper reference limit (URL) of the assay indicates myocardial
injury (Fourth Universal Definition of MI); it says nothing by itself about a 1-year MACE risk.
The URLs depend on the assay, so the assay is always named in the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

from cardiovlm.tools.core.errors import CardioVLMError


class TroponinError(CardioVLMError):
    """A troponin result cannot be read: a negative or non-finite value, or no sex to pick the limit by."""

    code = "troponin.invalid"


class TroponinUnitError(TroponinError):
    """The troponin's unit is not a concentration unit this module converts (ng/L, pg/mL, ng/mL, ug/L)."""

    code = "troponin.unit_unknown"


class TroponinAssayError(TroponinError):
    """No 99th-percentile limits are stored for the named assay, so the value is not read against any."""

    code = "troponin.assay_unknown"


class TroponinMarkerError(TroponinError):
    """A troponin T result: only troponin I limits are stored, and I and T limits are not interchangeable."""

    code = "troponin.marker_unknown"


Marker = Literal["I", "T"]
# Troponin I and T are different proteins measured by different assays with different 99th percentiles
# (hs-cTnT sits near 14 ng/L, Abbott hs-cTnI at 15.6 / 34.2 ng/L), so a T value is never read against I limits.
KNOWN_MARKERS: tuple[Marker, ...] = ("I",)


def check_marker(marker: str) -> None:
    """Raise :class:`TroponinMarkerError` for a troponin whose limits are not stored (troponin T)."""
    if marker.upper() not in KNOWN_MARKERS:
        raise TroponinMarkerError(
            f"only high-sensitivity troponin I limits are stored ({DEFAULT_ASSAY.name}); a troponin {marker.upper()} "
            "result is not read against them. Interpret it against its own assay's 99th-percentile URL, or give a "
            "troponin I value.")


@dataclass(frozen=True)
class TroponinAssay:
    name: str
    female_url_ng_l: float  # sex-specific 99th-percentile URL, ng/L
    male_url_ng_l: float
    source: str


# Abbott ARCHITECT STAT hs-cTnI package insert (USA, ages 18-75, all specimens, n = 4593): 99th
# percentile 15.6 ng/L women, 34.2 ng/L men (26.2 ng/L overall), as tabulated by Heart Asia 2016
# (Table 2, "Comparison of 99th percentile values ... Abbott ARCHITECT STAT hs troponin I") and
# quoted rounded as 16 / 34 ng/L in Heart 2018;104:632 (Table 1).
ABBOTT_ARCHITECT_HS_TNI = TroponinAssay(
    name="Abbott ARCHITECT STAT hs-cTnI", female_url_ng_l=15.6, male_url_ng_l=34.2,
    source="Abbott ARCHITECT STAT hs-cTnI package insert 99th percentiles (women 15.6, men 34.2 ng/L)")

ASSAYS: dict[str, TroponinAssay] = {"abbott architect": ABBOTT_ARCHITECT_HS_TNI}
DEFAULT_ASSAY = ABBOTT_ARCHITECT_HS_TNI

_TO_NG_PER_L = {"ng/l": 1.0, "pg/ml": 1.0, "ng/ml": 1000.0, "ug/l": 1000.0, "µg/l": 1000.0}


def to_ng_per_l(value: float, unit: str) -> float:
    """Convert a troponin concentration to ng/L (pg/mL = ng/L; ng/mL = ug/L = 1000 ng/L)."""
    factor = _TO_NG_PER_L.get(unit.strip().lower())
    if factor is None:
        raise TroponinUnitError(f"troponin unit {unit!r} is not known; give ng/L, pg/mL or ng/mL")
    if not math.isfinite(value) or value < 0:
        raise TroponinError(f"troponin must be a concentration >= 0, got {value}")
    return value * factor


def find_assay(name: str | None) -> TroponinAssay:
    """The assay named (case-insensitive substring match), or the default Abbott ARCHITECT one."""
    if not name:
        return DEFAULT_ASSAY
    key = name.lower()
    for alias, assay in ASSAYS.items():
        if alias in key or key in assay.name.lower():
            return assay
    raise TroponinAssayError(
        f"no 99th-percentile limits are stored for the troponin assay {name!r}; known: "
        f"{', '.join(a.name for a in ASSAYS.values())}. Interpret it against that assay's own URLs.")


class TroponinInterpretation(BaseModel):
    value_ng_l: float = Field(description="the result converted to ng/L")
    given: str = Field(description="the result as given, with its unit")
    sex: Literal["male", "female"]
    assay: str
    url_ng_l: float = Field(description="sex-specific 99th-percentile upper reference limit used, ng/L")
    above_url: bool = Field(description="above the 99th percentile: myocardial injury")
    times_url: float = Field(description="value / URL")
    interpretation: str
    source: str


def interpret_troponin(value: float, unit: str, sex: Literal["male", "female"],
                       assay: str | None = None, marker: Marker = "I") -> TroponinInterpretation:
    """Compare an hs-cTnI result with the assay's sex-specific 99th-percentile URL.

    Raises:
        TroponinMarkerError: ``marker`` is "T": no troponin T limits are stored.

    Example::

        interpret_troponin(0.02, "ng/mL", "female").above_url  # 20 ng/L > 15.6 ng/L -> True
    """
    if sex not in ("male", "female"):
        raise TroponinError(f"sex must be 'male' or 'female' for sex-specific troponin limits, got {sex!r}")
    check_marker(marker)
    ng_l = to_ng_per_l(value, unit)
    chosen = find_assay(assay)
    url = chosen.female_url_ng_l if sex == "female" else chosen.male_url_ng_l
    above = ng_l > url
    meaning = ("myocardial injury; a rise or fall on serial testing and the clinical picture decide whether "
               "it is an infarction" if above else "no myocardial injury on this value")
    text = (f"hs-cTnI {ng_l:g} ng/L is {'above' if above else 'not above'} the {sex} 99th-percentile URL of "
            f"{url:g} ng/L ({chosen.name}): {meaning}")
    return TroponinInterpretation(value_ng_l=ng_l, given=f"{value:g} {unit}", sex=sex, assay=chosen.name,
                                  url_ng_l=url, above_url=above, times_url=round(ng_l / url, 2),
                                  interpretation=text, source=chosen.source)
