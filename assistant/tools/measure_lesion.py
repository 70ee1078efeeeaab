"""The ``measure_lesion`` LangChain tool: the assistant's way to :mod:`cardiovlm.tools.quant.stenosis`."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.quant import stenosis
from cardiovlm.tools.quant.stenosis import LesionMeasurement


class MeasureLesionInput(BaseModel):
    vessel: str = Field(description="coronary artery ('LAD', 'LCx', 'RCA', 'LM') or SCCT segment "
                        "('pLAD', 'proximal RCA', 'D1', 'segment 6') to measure")


@tool("measure_lesion", args_schema=MeasureLesionInput)
def measure_lesion_tool(vessel: str, *, config: RunnableConfig) -> dict:
    """Measure the most severe lesion of a coronary artery or segment from the CT intensities: percent
    diameter stenosis, lesion start, end and length (mm), minimal lumen diameter, reference diameter,
    plaque composition, remodeling index and the CAD-RADS 2.0 category, with the centerline and masks
    used to locate the vessel as evidence."""
    from cardiovlm.tools.quant.context import context_from_config

    return stenosis.measure_lesion(context_from_config(config), vessel).model_dump()


__all__ = ["measure_lesion_tool", "LesionMeasurement"]
