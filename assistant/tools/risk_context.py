"""The ``risk_context`` LangChain tool: the assistant's way to :mod:`cardiovlm.tools.quant.risk`."""

from __future__ import annotations

from typing import Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.quant import risk
from cardiovlm.tools.quant.clinical_context import ClinicalContext
from cardiovlm.tools.quant.context import context_from_config
from cardiovlm.tools.quant.risk import RiskContext


class RiskContextInput(BaseModel):
    agatston: float | None = Field(
        None, ge=0, description="Agatston calcium score to use (e.g. quoted from a report); omit to measure it "
        "on the session's CT (its non-contrast calcium-scoring series when one is loaded)")
    troponin_value: float | None = Field(
        None, ge=0, description="hs-cTnI result given in the question (e.g. 40); replaces the one in the clinical "
        "context; needs troponin_unit")
    troponin_unit: Literal["pg/mL", "ng/L", "ng/mL"] | None = Field(None, description="unit of troponin_value")
    sex: Literal["male", "female"] | None = Field(
        None, description="the patient's sex as the question states it; used only when no clinical context records it")


@tool("risk_context", args_schema=RiskContextInput)
def risk_context_tool(agatston: float | None = None, troponin_value: float | None = None,
                      troponin_unit: str | None = None, sex: str | None = None, *, config: RunnableConfig) -> dict:
    """Established risk scores for the loaded patient: MESA 10-year hard CHD risk with CAC, CAC-DRS,
    CAD-RADS plaque burden, and high-sensitivity troponin I against the sex-specific 99th-percentile
    limit, each with its inputs and limits. Use for questions about cardiac risk or MACE; it never
    gives a 1-year MACE probability because no validated model provides one."""
    ctx = context_from_config(config)
    source, per_artery, note = ("given" if agatston is not None else None), None, None
    if agatston is None:
        agatston, found, per_artery = risk.measured_calcium(ctx)
        source, note = (found, None) if agatston is not None else (None, found)
    clinical = risk.session_clinical(config, ctx) or ClinicalContext()
    # A value given in the question replaces the stored one; a bad one (a troponin without its unit)
    # raises ClinicalContextError, whose message names the value.
    if troponin_value is not None:
        clinical = clinical.updated({"troponin_value": troponin_value, "troponin_unit": troponin_unit},
                                    source="given in the question")
    if sex is not None and clinical.sex is None:
        clinical = clinical.updated({"sex": sex}, source="given in the question")
    return risk.risk_context(clinical, agatston, agatston_source=source, per_artery=per_artery,
                             calcium_note=note).model_dump()


__all__ = ["risk_context_tool", "RiskContext"]
