"""The ``study_info`` tool: what is loaded in the session, and what the other tools can use."""

from __future__ import annotations

from typing import Literal

from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.core.case_format import CaseManifest
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


ProvenanceKind = Literal["synthetic_phantom", "real_case", "dicom", "nifti", "not_recorded"]


class StudyProvenance(BaseModel):
    """Where the loaded images come from, as the study itself records it.

    Read only from metadata: a case folder's manifest (its ``source`` and ``generator_version``),
    the file format, and a PACS retrieval mark. Never from the pixels, and never from a phantom's
    labels or findings: whether a scan looks synthetic is no evidence that it is."""

    kind: ProvenanceKind = Field(description="synthetic_phantom / real_case: a case folder's manifest says so; "
                                 "dicom / nifti: only the file format is known; not_recorded: nothing says")
    description: str = Field(description="as an answer states it, e.g. 'synthetic phantom (CardioVLM generator "
                             "2.0)', 'DICOM from PACS', 'a NIfTI upload ...', 'not recorded'")
    synthetic: bool | None = Field(description="True: a generated phantom; False: a case folder of a real scan; "
                                   "None: not recorded (a DICOM or NIfTI file does not say)")
    generator_version: str | None = Field(None, description="the CardioVLM phantom generator's version, when "
                                          "the manifest records it")
    transfer: Literal["pacs", "file"] | None = Field(
        None, description="pacs: retrieved from a PACS (the study records the PACS study UID); file: loaded from "
        "a file or folder (an upload or a local path); None: neither is recorded")

    @classmethod
    def of(cls, study: Study, manifest: CaseManifest | None) -> StudyProvenance:
        """From a case folder's manifest when there is one, else from the study's format and header."""
        if manifest is not None and manifest.source == "phantom":
            version = manifest.generator_version
            made_by = f"CardioVLM generator {version}" if version else "CardioVLM generator, version not recorded"
            return cls(kind="synthetic_phantom", description=f"synthetic phantom ({made_by})", synthetic=True,
                       generator_version=version, transfer="file")
        if manifest is not None:
            return cls(kind="real_case", description="real scan (a CardioVLM case folder of real data)",
                       synthetic=False, transfer="file")
        fmt = study.metadata.get("format")
        if fmt == "DICOM":
            if study.metadata.get("pacs_study_uid"):
                return cls(kind="dicom", description="DICOM from PACS", synthetic=None, transfer="pacs")
            return cls(kind="dicom", description="DICOM from a file or folder (an upload or a local path)",
                       synthetic=None, transfer="file")
        if fmt == "NIfTI":
            return cls(kind="nifti", description="a NIfTI upload (a NIfTI file records no provenance)",
                       synthetic=None, transfer="file")
        return cls(kind="not_recorded", description="not recorded", synthetic=None)


class StudyInfo(BaseModel):
    summary: StudySummary = Field(description="modality, shape, spacing (mm), series chosen, warnings, header")
    has_calcium_scoring_series: bool = Field(description="a non-contrast 3 mm series for Agatston is loaded")
    labels_source: str | None = Field(description="where the session's masks come from, or null when none")
    has_clinical_context: bool = Field(description="risk factors and labs are known for this patient")
    case_id: str | None = None
    provenance: StudyProvenance = Field(description="synthetic phantom or real scan, and how it was loaded, "
                                        "as the study records it")


def study_info(ctx: StudyContext, clinical: ClinicalContext | None = None) -> StudyInfo:
    """``clinical``: the session's clinical context as the clinician edited it (the case's own otherwise)."""
    return StudyInfo(
        summary=StudySummary.of(ctx.study),
        has_calcium_scoring_series=ctx.cac is not None,
        labels_source=ctx.labels_source if ctx.labels is not None else None,
        has_clinical_context=clinical is not None and not clinical.is_empty(),
        case_id=ctx.case.manifest.case_id if ctx.case else None,
        provenance=StudyProvenance.of(ctx.study, ctx.case.manifest if ctx.case else None),
    )


@tool("study_info", args_schema=StudyInfoInput)
def study_info_tool(*, config: RunnableConfig) -> dict:
    """Describe the loaded study: modality, size, voxel spacing, which series was chosen, warnings,
    which inputs (calcium-scoring series, masks, clinical context) are available, and its provenance
    (a synthetic phantom or a real scan, DICOM or NIfTI, as the study records it)."""
    ctx = context_from_config(config)
    return study_info(ctx, session_clinical(config, ctx)).model_dump()
