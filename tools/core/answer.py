"""The grounded answer returned for one question: the typed record of the whole turn.

Every number a clinician reads in ``answer`` also appears in ``findings`` with its unit and the
tool that measured it; ``plan`` is how the question was understood; ``tool_calls`` the trace, each
call with its typed result or its failure code; ``citations`` the prior reports used; ``masks`` the
mask files written. The session, the CLI (``cardiovlm ask --json`` prints this model), the app and
the exports all consume this one object.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer
from pydantic_core import to_jsonable_python


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
    code: str | None = Field(None, description="the failure's stable code when ok is false (what routing reads)")
    result: Any = Field(None, description="the tool's typed result when ok (a model from tools/, or a list of "
                        "them); written out as JSON")

    @field_serializer("result")
    def _result_as_json(self, value: Any) -> Any:
        # dates and tuples of a result are written as JSON types, so a dump can go straight to json.dumps
        return to_jsonable_python(value)


class PlannedPart(BaseModel):
    """One request of the question as the assistant understood it."""

    text: str = Field(description="the words of this request")
    task: str = Field(description="what was answered, e.g. 'stenosis', 'calcium_score'; 'unknown' when not understood")
    yes_no: bool = Field(False, description="a yes/no request, answered with a verdict")


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
    plan: list[PlannedPart] = Field(default_factory=list, description="the requests of the question, in order")
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    citations: list[Citation] = Field(default_factory=list)
    masks: list[MaskFile] = Field(default_factory=list)
    overlay_png: str | None = Field(None, description="image of the study with the answer's masks drawn")
    backend: str = Field("default", description="chat model that planned and wrote the answer")
    disclaimer: str = "Research software, not for clinical use."
