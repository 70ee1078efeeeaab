"""The grounded answer returned for one question: text plus the evidence behind it.

Every number a clinician reads in ``answer`` also appears in ``findings`` with its unit and the
tool that measured it; ``tool_calls`` is the trace; ``citations`` the prior reports used; ``masks``
the mask files written. ``cardiovlm ask --json`` prints this model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class AnswerFinding(BaseModel):
    name: str = Field(description="what was measured, e.g. 'Agatston score' or 'pLAD diameter stenosis'")
    value: float | str
    unit: str = Field(description="unit of value; '' for categories such as CAD-RADS")
    tool: str = Field(description="tool whose result holds this value")


class ToolCallRecord(BaseModel):
    name: str
    args: dict
    ok: bool
    message: str | None = Field(None, description="the error text when ok is false")


class Citation(BaseModel):
    report_id: str
    date: str | None = None
    snippet: str


class MaskFile(BaseModel):
    name: str
    path: str
    format: Literal["nifti", "dicom-seg", "png"] = "nifti"
    note: str | None = Field(None, description="provenance, e.g. which CT series a DICOM SEG references")


class GroundedAnswer(BaseModel):
    question: str
    answer: str
    verdict: Literal["yes", "no", "unknown"] | None = Field(
        None, description="for a yes/no question: the answer's verdict; null for other questions")
    findings: list[AnswerFinding] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    masks: list[MaskFile] = Field(default_factory=list)
    overlay_png: str | None = Field(None, description="image of the study with the answer's masks drawn")
    backend: str = Field("default", description="chat model that planned and wrote the answer")
    disclaimer: str = "Research software, not for clinical use."
