"""The ``study_info`` tool: what is loaded in the session, and what the other tools can use."""

from __future__ import annotations

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.clinical_context import ClinicalContext
from cardiovlm.tools.quant.context import StudyContext, context_from_config
from cardiovlm.tools.quant.risk import session_clinical


class StudyInfoInput(BaseModel):
    """No arguments: the tool describes the session's current study."""


HeaderValue = str | int | float | bool


class StudySummary(BaseModel):
    """The loaded volume as the answer describes it (the fields of
    :meth:`cardiovlm.tools.ingest.study_value.Study.summary`)."""

    modality: str = Field(description="DICOM modality, e.g. CT")
    hu_calibrated: bool = Field(description="intensities are Hounsfield units (CT)")
    shape: list[int] = Field(description="voxels along i (left), j (posterior), k (superior)")
    spacing_mm: list[float] = Field(description="voxel size along i, j, k in mm")
    series_choice: str | None = Field(None, description="which series was chosen among several, and why")
    warnings: list[str] = Field(default_factory=list, description="what the loader changed or doubts")
    source: str = Field("", description="where the study was loaded from")
    header: dict[str, HeaderValue] = Field(
        default_factory=dict, description="de-identified header values (series description, date, scanner, "
        "age and sex, ...); which ones depends on the file format")

    @classmethod
    def of(cls, study: Study) -> StudySummary:
        """The study's own summary record, its header values (every key not a field here) under ``header``."""
        record = study.summary()
        fields = {name: record.pop(name) for name in cls.model_fields if name in record}
        return cls.model_validate({**fields, "header": record})


class StudyInfo(BaseModel):
    summary: StudySummary = Field(description="modality, shape, spacing (mm), series chosen, warnings, header")
    has_calcium_scoring_series: bool = Field(description="a non-contrast 3 mm series for Agatston is loaded")
    labels_source: str | None = Field(description="where the session's masks come from, or null when none")
    has_clinical_context: bool = Field(description="risk factors and labs are known for this patient")
    case_id: str | None = None


def study_info(ctx: StudyContext, clinical: ClinicalContext | None = None) -> StudyInfo:
    """``clinical``: the session's clinical context as the clinician edited it (the case's own otherwise)."""
    return StudyInfo(
        summary=StudySummary.of(ctx.study),
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
