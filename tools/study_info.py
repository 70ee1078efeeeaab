"""The ``study_info`` tool: what is loaded in the session, and what the other tools can use."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from tools.clinical_context import ClinicalContext
from tools.context import StudyContext, context_from_config
from tools.risk import session_clinical


class StudyInfoInput(BaseModel):
    """No arguments: the tool describes the session's current study."""


class StudyInfo(BaseModel):
    summary: dict = Field(description="modality, shape, spacing (mm), series chosen, warnings")
    has_calcium_scoring_series: bool = Field(description="a non-contrast 3 mm series for Agatston is loaded")
    labels_source: str | None = Field(description="where the session's masks come from, or null when none")
    has_clinical_context: bool = Field(description="risk factors and labs are known for this patient")
    case_id: str | None = None


def study_info(ctx: StudyContext, clinical: ClinicalContext | None = None) -> StudyInfo:
    """``clinical``: the session's clinical context as the clinician edited it (the case's own otherwise)."""
    return StudyInfo(
        summary=ctx.study.summary(),
        has_calcium_scoring_series=ctx.cac is not None,
        labels_source=ctx.labels_source if ctx.labels is not None else None,
        has_clinical_context=clinical is not None and not clinical.is_empty(),
        case_id=ctx.case.manifest.case_id if ctx.case else None,
    )


@tool("study_info", args_schema=StudyInfoInput)
def study_info_tool(*, config: RunnableConfig) -> dict:
    """Describe the loaded study: modality, size, voxel spacing, which series was chosen, warnings,
    and which inputs (calcium-scoring series, masks, clinical context) are available."""
    ctx = context_from_config(config)
    return study_info(ctx, session_clinical(config, ctx)).model_dump()
