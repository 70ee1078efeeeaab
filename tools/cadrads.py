"""CAD-RADS 2.0 stenosis categories and plaque burden, and CAC-DRS, as pure functions.

Sources (see ``shared/REFERENCE.md``): CAD-RADS 2.0 (Cury et al., JCCT 2022) and CAC-DRS (Hecht et
al., JCCT 2018;12:185). Used by the phantom generator to label its ground truth, by the
quantification tools on measured values, and by the report parser to check extracted categories.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import BaseModel, Field

from tools.anatomy import ARTERIES, SEGMENTS_BY_CODE


class CadRads(BaseModel):
    category: str = Field(description="0, 1, 2, 3, 4A, 4B or 5")
    modifiers: list[str] = Field(default_factory=list, description="e.g. ['P2', 'S']")
    reason: str = Field(description="which rule decided the category")

    @property
    def text(self) -> str:
        """The category as reported, e.g. '4A/P2/S'."""
        return "/".join([self.category, *self.modifiers])


def stenosis_category(percent: float) -> str:
    """CAD-RADS category of one stenosis; 0% means a plaque without narrowing (category 1)."""
    if not 0 <= percent <= 100 or math.isnan(percent):
        raise ValueError(f"stenosis must be between 0 and 100 %, got {percent}")
    if percent >= 100:
        return "5"
    if percent >= 70:
        return "4A"
    if percent >= 50:
        return "3"
    if percent >= 25:
        return "2"
    return "1"


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
        severe_territories = {SEGMENTS_BY_CODE[s].artery for s, p in stenoses.items() if p >= 70} - {"LM"}
        if left_main >= 50:
            category, reason = "4B", f"left main stenosis {left_main:g}% (>= 50%)"
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
