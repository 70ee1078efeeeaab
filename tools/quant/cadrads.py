"""CAD-RADS 2.0 stenosis categories and plaque burden, and CAC-DRS, as pure functions.

Sources (see ``shared/REFERENCE.md``): CAD-RADS 2.0 (Cury et al., JCCT 2022) and CAC-DRS (Hecht et
al., JCCT 2018;12:185). Used by the phantom generator to label its ground truth, by the
quantification tools on measured values, and by the report parser to check extracted categories.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pydantic import BaseModel, Field

from cardiovlm.tools.core.anatomy import ARTERIES, SEGMENTS_BY_CODE

L = TypeVar("L")


class CadRads(BaseModel):
    category: str = Field(description="0, 1, 2, 3, 4A, 4B or 5")
    modifiers: list[str] = Field(default_factory=list, description="e.g. ['P2', 'S']")
    reason: str = Field(description="which rule decided the category")

    @property
    def text(self) -> str:
        """The category as reported, e.g. '4A/P2/S'."""
        return "/".join([self.category, *self.modifiers])


@dataclass(frozen=True)
class StenosisBand:
    """One CAD-RADS 2.0 stenosis band: a measured stenosis ``p`` is in it when ``low <= p < high``."""

    grade: str  # the grading word reports use
    category: str  # CAD-RADS category of a lesion in this band
    low: float  # lowest percent in the band (inclusive)
    high: float  # first percent of the next band (exclusive); the occlusion band is 100 alone
    written: tuple[int, int]  # the band as reports write it, in whole percent


# The one table of stenosis bands (CAD-RADS 2.0: 0 / 1-24 / 25-49 / 50-69 / 70-99 / 100 %). Bands are
# half-open, so a measured 24.5 % is minimal, 69.5 % moderate and 99.5 % severe: only a lumen with no
# contrast at all is an occlusion. A plaque without narrowing (0 %) is a CAD-RADS 1 lesion.
STENOSIS_BANDS: tuple[StenosisBand, ...] = (
    StenosisBand("minimal", "1", 0.0, 25.0, (0, 24)),
    StenosisBand("mild", "2", 25.0, 50.0, (25, 49)),
    StenosisBand("moderate", "3", 50.0, 70.0, (50, 69)),
    StenosisBand("severe", "4A", 70.0, 100.0, (70, 99)),
    StenosisBand("occluded", "5", 100.0, math.inf, (100, 100)),
)
MILD_PERCENT = 25.0  # a stenosis from here on (CAD-RADS >= 2); below it a plaque is "minimal"
OBSTRUCTIVE_PERCENT = 50.0  # obstructive by CT (CAD-RADS >= 3), "significant"
SEVERE_PERCENT = 70.0  # CAD-RADS 4A, "severe"
LEFT_MAIN_4B_PERCENT = 50.0  # a left main stenosis from here on makes CAD-RADS 4B


def stenosis_band(percent: float) -> StenosisBand:
    """The CAD-RADS band holding a measured diameter stenosis (0-100 %)."""
    if math.isnan(percent) or not 0 <= percent <= 100:
        raise ValueError(f"stenosis must be between 0 and 100 %, got {percent}")
    return next(b for b in STENOSIS_BANDS if b.low <= percent < b.high)


def stenosis_category(percent: float) -> str:
    """CAD-RADS category of one stenosis; 0% means a plaque without narrowing (category 1)."""
    return stenosis_band(percent).category


def shown_percent(percent: float) -> int:
    """A stenosis in whole percent as a report writes it, never rounded across a band edge
    (69.5 % is shown as 69 %, moderate; 99.5 % as 99 %, not an occlusion)."""
    band = stenosis_band(percent)
    return int(min(max(math.floor(percent + 0.5), band.written[0]), band.written[1]))


def worst_lesion(lesions: Iterable[L]) -> L | None:
    """The most severe of ``lesions`` (objects or dicts with ``stenosis_percent``, ``length_mm`` and
    optionally ``start_mm``): the highest stenosis, then the longer, then the more proximal."""
    def get(les, name: str, default: float = 0.0) -> float:
        value = les.get(name, default) if isinstance(les, Mapping) else getattr(les, name, default)
        return default if value is None else float(value)

    return max(lesions, key=lambda les: (get(les, "stenosis_percent"), get(les, "length_mm"),
                                         -get(les, "start_mm")), default=None)


def cad_rads(stenoses: Mapping[str, float], *, stent: bool = False, plaque_burden: str | None = None) -> CadRads:
    """CAD-RADS 2.0 for a patient from the maximal stenosis per SCCT segment.

    Args:
        stenoses: segment code -> maximal diameter stenosis in % of every segment that has plaque
            (0 for plaque without narrowing). Segments without plaque are left out. In-stent
            restenosis counts as stenosis of its segment.
        stent: a coronary stent is present (adds the S modifier).
        plaque_burden: "P1".."P4" when known (e.g. from :func:`plaque_burden_from_cac`).

    4B applies when the left main has >= 50 % stenosis or when all three of the LAD, LCx and RCA
    territories have a >= 70 % stenosis (occlusions included). It does not override 5.
    """
    for seg in stenoses:
        if seg not in SEGMENTS_BY_CODE:
            raise ValueError(f"unknown coronary segment {seg!r}")
    modifiers = [m for m in (plaque_burden, "S" if stent else None) if m]
    if not stenoses:
        return CadRads(category="0", modifiers=modifiers, reason="no plaque and no stenosis")
    worst_seg = max(stenoses, key=lambda s: stenoses[s])
    worst = stenoses[worst_seg]
    category = stenosis_category(worst)
    reason = f"maximal stenosis {worst:g}% in {worst_seg}"
    if category != "5":
        left_main = stenoses.get("LM", 0.0)
        severe_territories = ({SEGMENTS_BY_CODE[s].artery for s, p in stenoses.items() if p >= SEVERE_PERCENT}
                              - {"LM"})
        if left_main >= LEFT_MAIN_4B_PERCENT:
            category, reason = "4B", f"left main stenosis {left_main:g}% (>= {LEFT_MAIN_4B_PERCENT:g}%)"
        elif severe_territories >= {"LAD", "LCx", "RCA"}:
            category, reason = "4B", "three-vessel obstructive disease (>= 70% in LAD, LCx and RCA)"
    return CadRads(category=category, modifiers=modifiers, reason=reason)


def plaque_burden_from_cac(agatston: float) -> str | None:
    """CAD-RADS 2.0 plaque burden from the Agatston score: P1 1-100, P2 101-300, P3 301-999, P4 >= 1000.

    The guideline writes P4 as "> 1000"; a score of exactly 1000 is given P4 here (documented choice).
    Returns None for a score of 0 (no plaque-burden modifier).
    """
    if agatston < 0 or math.isnan(agatston):
        raise ValueError(f"calcium score must be >= 0, got {agatston}")
    if agatston == 0:
        return None
    if agatston <= 100:
        return "P1"
    if agatston <= 300:
        return "P2"
    if agatston < 1000:
        return "P3"
    return "P4"


class CacDrs(BaseModel):
    category: str = Field(description="A0, A1, A2 or A3")
    vessels: int = Field(ge=0, le=4, description="number of arteries (LM, LAD, LCx, RCA) with calcium")

    @property
    def text(self) -> str:
        """E.g. 'A2/N3'; 'A0' alone when there is no calcium."""
        return self.category if self.vessels == 0 else f"{self.category}/N{self.vessels}"


def cac_drs(agatston: float, per_artery: Mapping[str, float] | None = None) -> CacDrs:
    """CAC-DRS: A0 = 0, A1 = 1-99, A2 = 100-299, A3 >= 300, with the vessel count N1-N4.

    Args:
        agatston: total Agatston score.
        per_artery: artery ("LM", "LAD", "LCx", "RCA") -> its Agatston score; vessels with a score
            above 0 are counted.
    """
    if agatston < 0 or math.isnan(agatston):
        raise ValueError(f"calcium score must be >= 0, got {agatston}")
    if agatston == 0:
        category = "A0"
    elif agatston < 100:
        category = "A1"
    elif agatston < 300:
        category = "A2"
    else:
        category = "A3"
    per_artery = per_artery or {}
    unknown = set(per_artery) - set(ARTERIES)
    if unknown:
        raise ValueError(f"unknown arteries {sorted(unknown)}; expected {', '.join(ARTERIES)}")
    vessels = sum(1 for v in per_artery.values() if v > 0)
    return CacDrs(category=category, vessels=vessels)
