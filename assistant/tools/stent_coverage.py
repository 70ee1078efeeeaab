"""The ``stent_coverage`` LangChain tool: the assistant's way to :mod:`cardiovlm.tools.quant.stent`."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.quant import stent
from cardiovlm.tools.quant.stent import StentPlan


class StentCoverageInput(BaseModel):
    vessel: str = Field(description="segment with the lesion ('pLAD', 'proximal RCA', 'segment 6') or an artery "
                        "('LAD': its most severe lesion)")
    stent_length_mm: float = Field(gt=0, description="stent length in mm, e.g. 20")
    stent_diameter_mm: float | None = Field(None, gt=0, description="stent diameter in mm, if one is proposed")
    landing_zone_mm: float | None = Field(
        None, ge=0, description="healthy vessel required beyond each lesion end (mm); default from settings (2.5)")


@tool("stent_coverage", args_schema=StentCoverageInput)
def stent_coverage_tool(vessel: str, stent_length_mm: float, stent_diameter_mm: float | None = None,
                        landing_zone_mm: float | None = None, *, config: RunnableConfig) -> dict:
    """Check whether a stent of a given length covers a coronary lesion from normal vessel to normal
    vessel with a healthy landing zone at each end; gives the margins, the shortest catalogue length
    that would, a diameter from the reference vessel, and flags ostial or bifurcation lesions."""
    from cardiovlm.tools.quant.context import context_from_config

    return stent.stent_coverage(context_from_config(config), vessel, stent_length_mm,
                                stent_diameter_mm=stent_diameter_mm,
                                landing_zone_mm=landing_zone_mm).model_dump()


__all__ = ["stent_coverage_tool", "StentPlan"]
