"""The study context a session's tools act on, and how LangChain tools reach it.

A clinician's question names anatomy and numbers; the image, the label map and the clinical data
come from the session. LangChain tools therefore take only the clinical arguments in their input
schema (what the language model sees) and read the session's :class:`StudyContext` from the
``RunnableConfig`` LangChain injects: ``config["configurable"]["study_context"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from langchain_core.runnables import RunnableConfig

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.ingest.study_value import Study

CONFIG_KEY = "study_context"
# Where a study's anatomy comes from: the image itself (the default for every answer), or the label
# map shipped in a case folder, used only when the caller asks for it by name (e.g. a benchmark
# comparing the two, or a user supplying their own segmentation on purpose).
AnatomySource = Literal["image", "case_labels"]
LOW_CONFIDENCE = 0.6  # an image-derived segment below this was joined across a gap or placed by a length rule


@dataclass
class ReferenceTruth:
    """A case folder's own label map, centerlines and findings: for grading and for a comparison the
    user asks for explicitly, never an input to an answer."""

    source: str  # "phantom ground truth" or "supplied label map"
    labels: np.ndarray | None = None
    centerlines: cf.Centerlines | None = None
    cac_labels: np.ndarray | None = None
    findings: cf.Findings | None = None


class NoStudyLoaded(StudyError):
    """A tool was called before any study was loaded in the session."""

    code = "study.not_loaded"


@dataclass
class StudyContext:
    """Everything the quantification tools may use for one loaded study.

    ``labels`` is a label map on the grid of ``study`` with ids from ``cardiovlm.tools.core.anatomy`` and
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
    reference: ReferenceTruth | None = None  # only for an explicit comparison, never for answers
    segment_confidence: dict[str, float] = field(default_factory=dict)  # of an image-derived tree
    anatomy_note: str | None = None  # why there is no label map, when there is none

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


def load_context(path: str | Path, *, anatomy: AnatomySource = "image") -> StudyContext:
    """Load a study; its anatomy comes from the image unless ``anatomy="case_labels"`` asks otherwise.

    A case folder also brings its paired calcium-scoring series and clinical context; its label
    map, centerlines and findings are kept aside as :class:`ReferenceTruth` and become the working
    label map only when ``anatomy="case_labels"`` (stated as such in every result).
    """
    from cardiovlm.tools.ingest.study import load_nifti, load_study

    path = Path(path)
    study = load_study(path)
    if not cf.is_case_dir(path):
        return with_image_anatomy(StudyContext(study=study))
    case = cf.load_case(path)
    source = "phantom ground truth" if case.manifest.source == "phantom" else "supplied label map"
    reference = ReferenceTruth(
        source=source,
        labels=load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu if case.has(cf.LABELS_NIFTI) else None,
        centerlines=case.centerlines() if case.has(cf.CENTERLINES_FILE) else None,
        cac_labels=(load_nifti(case.path(cf.CAC_LABELS_NIFTI), labels=True).hu
                    if case.has(cf.CAC_LABELS_NIFTI) else None),
        findings=case.findings)
    cac = load_study(case.path(cf.CAC_NIFTI)) if case.has(cf.CAC_NIFTI) else None
    ctx = StudyContext(study=study, cac=cac, clinical=case.clinical, case=case, reference=reference)
    if anatomy == "case_labels":
        if reference.labels is None:
            raise StudyError(f"the case folder {path.name} has no label map to use")
        ctx.labels, ctx.centerlines, ctx.cac_labels = reference.labels, reference.centerlines, reference.cac_labels
        ctx.labels_source = f"{source} (the case's own label map, used on request)"
        return ctx
    return with_image_anatomy(ctx)


def with_image_anatomy(ctx: StudyContext) -> StudyContext:
    """Give ``ctx`` the coronary tree found in its CT (``cardiovlm.tools.quant.coronary_tree``), or say why there is
    none."""
    from cardiovlm.tools.quant.coronary_tree import SOURCE, CoronaryTreeError, extract_coronary_tree

    try:
        tree = extract_coronary_tree(ctx.study)
    except CoronaryTreeError as err:
        ctx.anatomy_note = f"no coronary tree was found in this image: {err}"
        return ctx
    ctx.labels, ctx.centerlines = tree.labels, tree.centerlines
    # every answer quotes its masks' source: say how sure the tracing is, so that "no lesion found"
    # on a segment traced with low confidence is read as what it is
    weak = sorted(code for code, c in tree.confidence.items() if c < LOW_CONFIDENCE)
    caveat = (f"; traced with low confidence: {', '.join(weak)} (a lesion there may be missed)" if weak else "")
    ctx.labels_source = f"{SOURCE} ({tree.method}{caveat})"
    ctx.segment_confidence = tree.confidence
    if ctx.cac is not None:
        ctx.cac_labels = labels_on_grid(tree.labels, ctx.study.affine, ctx.cac)
    return ctx


def labels_on_grid(labels: np.ndarray, affine: np.ndarray, target: Study) -> np.ndarray:
    """A label map carried to another series' grid in patient coordinates (nearest label)."""
    from scipy import ndimage

    to_source = np.linalg.inv(affine) @ target.affine  # target voxel index -> source voxel index
    return ndimage.affine_transform(labels, to_source[:3, :3], offset=to_source[:3, 3], output_shape=target.shape,
                                    order=0, mode="constant", cval=0).astype(labels.dtype)
