"""The study context a session's tools act on, and how LangChain tools reach it.

A clinician's question names anatomy and numbers; the image, the label map and the clinical data
come from the session. LangChain tools therefore take only the clinical arguments in their input
schema (what the language model sees) and read the session's :class:`StudyContext` from the
``RunnableConfig`` LangChain injects: ``config["configurable"]["study_context"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from langchain_core.runnables import RunnableConfig

from tools import case_format as cf
from tools.study import Study, StudyError

CONFIG_KEY = "study_context"


class NoStudyLoaded(StudyError):
    """A tool was called before any study was loaded in the session."""


@dataclass
class StudyContext:
    """Everything the quantification tools may use for one loaded study.

    ``labels`` is a label map on the grid of ``study`` with ids from ``tools.anatomy`` and
    ``labels_source`` says where it came from ("phantom ground truth", "VLM", "TotalSegmentator",
    "supplied"), so every measurement can state the masks it was made on.
    """

    study: Study
    labels: np.ndarray | None = None
    labels_source: str | None = None
    centerlines: cf.Centerlines | None = None
    cac: Study | None = None  # paired non-contrast calcium-scoring series, if any
    cac_labels: np.ndarray | None = None
    clinical: cf.ClinicalContext | None = None
    case: cf.Case | None = None
    extra_masks: dict[str, np.ndarray] = field(default_factory=dict)  # masks produced this session
    output_dir: Path | None = None  # where this session's tools write files (masks, reports)

    def outputs(self) -> Path:
        """This session's output folder, created on first use (a temporary one if none was set)."""
        if self.output_dir is None:
            import tempfile

            self.output_dir = Path(tempfile.mkdtemp(prefix="cardiovlm-session-"))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return self.output_dir

    def as_config(self) -> RunnableConfig:
        return {"configurable": {CONFIG_KEY: self}}


def context_from_config(config: RunnableConfig | None) -> StudyContext:
    """The session's study context, or NoStudyLoaded with a message saying what to do."""
    ctx = ((config or {}).get("configurable") or {}).get(CONFIG_KEY)
    if ctx is None:
        raise NoStudyLoaded("no study is loaded: load a CT study (DICOM folder, zip or NIfTI) first")
    return ctx


def load_context(path: str | Path) -> StudyContext:
    """Load a study, and when ``path`` is a CardioVLM case folder also its ground truth.

    A case folder brings its label map (as "phantom ground truth" for phantoms), centerlines,
    paired calcium-scoring series and clinical context; any other path gives an image-only context.
    """
    from tools.study import load_nifti, load_study

    path = Path(path)
    study = load_study(path)
    if not cf.is_case_dir(path):
        return StudyContext(study=study)
    case = cf.load_case(path)
    source = "phantom ground truth" if case.manifest.source == "phantom" else "supplied label map"
    labels = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu if case.has(cf.LABELS_NIFTI) else None
    cac = load_study(case.path(cf.CAC_NIFTI)) if case.has(cf.CAC_NIFTI) else None
    cac_labels = (load_nifti(case.path(cf.CAC_LABELS_NIFTI), labels=True).hu
                  if case.has(cf.CAC_LABELS_NIFTI) else None)
    centerlines = case.centerlines() if case.has(cf.CENTERLINES_FILE) else None
    return StudyContext(study=study, labels=labels, labels_source=source if labels is not None else None,
                        centerlines=centerlines, cac=cac, cac_labels=cac_labels, clinical=case.clinical,
                        case=case)
