"""Structured findings extracted from a free-text CCTA report.

Every report-understanding backend (the embedded parser, an OpenAI-compatible endpoint, ...) returns
a :class:`ReportFindings`, so backends can be compared on the same reports. Field descriptions are
what a language model sees in the JSON schema, so they say exactly what to fill in.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from cardiovlm.tools.core.anatomy import ARTERIES, SEGMENTS_BY_CODE
from cardiovlm.tools.quant.cadrads import STENOSIS_BANDS, stenosis_band

StenosisGrade = Literal["none", "minimal", "mild", "moderate", "severe", "occluded"]
PlaqueType = Literal["calcified", "noncalcified", "mixed"]

# The grading words and their CAD-RADS categories come from the one table of bands in cardiovlm.tools.quant.cadrads;
# "none" is the report's own word for a stated absence of stenosis.
GRADE_CATEGORY: dict[str, str] = {"none": "0", **{b.grade: b.category for b in STENOSIS_BANDS}}


def grade_of_percent(percent: float) -> StenosisGrade:
    """The grading word of a stenosis a report gives as a number: "none" for a stated 0 %, else the
    word of the CAD-RADS band holding it (:func:`cardiovlm.tools.quant.cadrads.stenosis_band`, so 24.5 % is minimal,
    69.5 % moderate and 99.5 % severe, as the measured answers grade them)."""
    if percent == 0:
        return "none"
    return stenosis_band(percent).grade  # type: ignore[return-value]


class SegmentFinding(BaseModel):
    """What one passage of the report says about one coronary segment or artery."""

    segment: str | None = Field(None, description="SCCT segment code, e.g. 'pLAD'; null if only the artery is named")
    artery: str = Field(description="main artery: LM, LAD, LCx or RCA")
    stenosis_percent: float | None = Field(None, ge=0, le=100, description="stenosis in %, if a number is given")
    stenosis_low: float | None = Field(None, ge=0, le=100, description="lower bound of a range such as 50-69%")
    stenosis_high: float | None = Field(None, ge=0, le=100, description="upper bound of a range")
    stenosis_grade: StenosisGrade | None = Field(None, description="grading word or the grade of the number")
    plaque_type: PlaqueType | None = None
    calcium: bool | None = Field(None, description="calcification mentioned (true) or explicitly denied (false)")
    lesion_length_mm: float | None = None
    stent: bool | None = Field(None, description="a stent in this segment (true) or explicitly none (false)")
    stent_length_mm: float | None = None
    stent_diameter_mm: float | None = None
    in_stent_restenosis: bool | None = None
    occluded: bool = False
    negated: bool = Field(False, description="the passage denies disease here ('no plaque in the RCA')")
    uncertain: bool = Field(False, description="hedged: 'possible', 'probable', 'cannot be excluded'")
    span: tuple[int, int] = Field(description="character span of the passage in the report")
    text: str = Field(description="the passage itself")

    def model_post_init(self, __context) -> None:
        if self.segment is not None and self.segment not in SEGMENTS_BY_CODE:
            raise ValueError(f"unknown SCCT segment code {self.segment!r}")
        if self.artery not in ARTERIES:
            raise ValueError(f"unknown artery {self.artery!r}; expected one of {', '.join(ARTERIES)}")

    @property
    def stenosis_category(self) -> str | None:
        """CAD-RADS stenosis category of this finding ('0'..'5'), None when the report gives none."""
        if self.occluded:
            return "5"
        if self.stenosis_grade is not None:
            return GRADE_CATEGORY[self.stenosis_grade]
        return None


class ReportFindings(BaseModel):
    """Everything a report says about the coronary arteries, passage by passage."""

    findings: list[SegmentFinding] = Field(default_factory=list)
    dominance: Literal["right", "left", "codominant"] | None = None
    cad_rads: str | None = Field(None, description="CAD-RADS as written, e.g. '4A/S'")
    calcium_score: float | None = Field(None, ge=0, description="Agatston score, if reported")

    def positive(self) -> list[SegmentFinding]:
        """Findings that assert disease or a stent (negated ones left out)."""
        return [f for f in self.findings if not f.negated]

    def for_segment(self, code: str) -> list[SegmentFinding]:
        """Positive findings naming this segment."""
        return [f for f in self.positive() if f.segment == code]

    def for_artery(self, artery: str) -> list[SegmentFinding]:
        """Positive findings in this artery, whether a segment or only the artery is named."""
        return [f for f in self.positive() if f.artery == artery]
