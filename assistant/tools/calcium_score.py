"""The ``calcium_score`` LangChain tool: the assistant's way to :mod:`cardiovlm.tools.quant.calcium`."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.core.anatomy import resolve_structure_or_segment
from cardiovlm.tools.quant import calcium
from cardiovlm.tools.quant.calcium import CalciumScore
from cardiovlm.tools.quant.context import context_from_config


class CalciumScoreInput(BaseModel):
    artery: str | None = Field(
        None, description="optional artery or segment to focus on ('LAD', 'right coronary', 'pLAD'); the "
        "result then lists only that artery's lesions. Omit for the whole coronary tree.")


@tool("calcium_score", args_schema=CalciumScoreInput)
def calcium_score_tool(artery: str | None = None, *, config: RunnableConfig) -> dict:
    """Coronary calcium of the loaded study: total Agatston, volume and mass scores and CAC-DRS from the
    image alone (non-coronary calcium of bone, stents and valves excluded by anatomy found in the image),
    per artery (LM, LAD, LCx, RCA) when a coronary tree is available, the lesions counted and the
    calcifications excluded with the reason. Uses the series that is non-contrast by its blood-pool
    attenuation; on a contrast CCTA alone it reports calcium VOLUME only (read the 'label' field) and
    needs a coronary tree. Read 'warnings' (slice thickness, kVp, uncalibrated mass)."""
    result = calcium.score_context(context_from_config(config))
    if artery:
        kind, key = resolve_structure_or_segment(artery)
        if kind not in ("artery", "segment"):
            raise calcium.CalciumError(f"{artery!r} is not a coronary artery or segment")
        if not result.per_artery:  # answer with the total and say why there is no split
            result.warnings.append(f"asked about the {key}: {calcium.NO_TREE_NOTE}")
            return result.model_dump()
        result.lesions = [les for les in result.lesions if calcium._lies_in(les, kind, key)]
    return result.model_dump()


__all__ = ["calcium_score_tool", "CalciumScore"]
