"""The ``study_info`` tool: what is loaded in the session, and what the other tools can use."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from tools.context import StudyContext, context_from_config


class StudyInfoInput(BaseModel):
    """No arguments: the tool describes the session's current study."""


class StudyInfo(BaseModel):
    summary: dict = Field(description="modality, shape, spacing (mm), series chosen, warnings")
    has_calcium_scoring_series: bool = Field(description="a non-contrast 3 mm series for Agatston is loaded")
    labels_source: str | None = Field(description="where the session's masks come from, or null when none")
    has_clinical_context: bool = Field(description="risk factors and labs are known for this patient")
    case_id: str | None = None


def study_info(ctx: StudyContext) -> StudyInfo:
    return StudyInfo(
        summary=ctx.study.summary(),
        has_calcium_scoring_series=ctx.cac is not None,
        labels_source=ctx.labels_source if ctx.labels is not None else None,
        has_clinical_context=ctx.clinical is not None,
        case_id=ctx.case.manifest.case_id if ctx.case else None,
    )


@tool("study_info", args_schema=StudyInfoInput)
def study_info_tool(*, config: RunnableConfig) -> dict:
    """Describe the loaded study: modality, size, voxel spacing, which series was chosen, warnings,
    and which inputs (calcium-scoring series, masks, clinical context) are available."""
    return study_info(context_from_config(config)).model_dump()
