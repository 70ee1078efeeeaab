"""TotalSegmentator as an assistant tool (``totalsegmentator_anatomy``), registered only when its weights are installed.

TotalSegmentator (``task="total"``, open weights) labels the heart chambers' surroundings, aorta,
pulmonary artery, lungs, sternum and spine of any CT; its class names are mapped to the anatomy
registry by :data:`cardiovlm.tools.segmentation.totalseg.TOTALSEG_TO_REGISTRY`. It cannot segment the
coronary segments (the licensed ``coronary_arteries`` task gives all coronaries as one label), so
the coronary tools still need the VLM or a supplied label map. The label map is computed once per
study and kept for the session.
"""

from __future__ import annotations

import numpy as np
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.assistant.tools.segment_anatomy import SegmentationResult
from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME, resolve_structure_or_segment
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.quant.context import StudyContext, context_from_config
from cardiovlm.tools.segmentation.masks import save_mask_nifti
from cardiovlm.tools.segmentation.totalseg import TOTALSEG_TO_REGISTRY, label_with_totalsegmentator

TOTALSEG_TASKS = ("total",)  # open weights; heartchambers_highres needs a licence
_LABELS_KEY = "totalsegmentator_labels"


class TotalSegmentatorError(StudyError):
    """TotalSegmentator cannot label this structure or study; the message says why."""

    code = "totalsegmentator.cannot_label"


class TotalSegmentatorNotCT(TotalSegmentatorError):
    """The study is not CT: the 'total' task was trained on CT only."""

    code = "totalsegmentator.not_ct"


class TotalSegmentatorTargetUnsupported(TotalSegmentatorError):
    """The asked structure is not one TotalSegmentator labels (coronary arteries, for one)."""

    code = "totalsegmentator.target_unsupported"


def _label_map(ctx: StudyContext) -> np.ndarray:
    cached = ctx.extra_masks.get(_LABELS_KEY)
    if cached is not None:
        return cached
    from cardiovlm.tools.ingest.study import load_nifti, save_nifti
    folder = ctx.outputs()
    image = save_nifti(ctx.study, folder / "totalsegmentator_input.nii.gz")
    out = folder / "totalsegmentator_labels.nii.gz"
    label_with_totalsegmentator(image, out, tasks=TOTALSEG_TASKS, device="cpu")
    labels = load_nifti(out, labels=True).hu
    ctx.extra_masks[_LABELS_KEY] = labels
    return labels


class TotalSegmentatorInput(BaseModel):
    target: str = Field(description="non-coronary structure to segment: 'aorta', 'pulmonary trunk', 'left "
                        "ventricle', 'myocardium', 'sternum', 'spine', 'left lung'")


@tool("totalsegmentator_anatomy", args_schema=TotalSegmentatorInput, response_format="content_and_artifact")
def totalsegmentator_tool(target: str, *, config: RunnableConfig) -> tuple[dict, SegmentationResult]:
    """Segment a non-coronary structure (aorta, pulmonary trunk, heart chambers, lungs, sternum, spine)
    of any CT with TotalSegmentator; returns its volume and the mask file. Not for coronary arteries."""
    ctx = context_from_config(config)
    if ctx.study.modality != "CT":
        raise TotalSegmentatorNotCT(f"this is a {ctx.study.modality} study: TotalSegmentator's 'total' task needs CT")
    kind, key = resolve_structure_or_segment(target)
    if kind != "structure" or key not in set(TOTALSEG_TO_REGISTRY.values()):
        raise TotalSegmentatorTargetUnsupported(f"TotalSegmentator does not label {target!r}; it labels "
                                                + ", ".join(sorted(set(TOTALSEG_TO_REGISTRY.values()))))
    mask = _label_map(ctx) == STRUCTURES_BY_NAME[key].label_id
    voxels = int(mask.sum())
    path = None
    if voxels:
        path = str(save_mask_nifti(mask, ctx.study, ctx.outputs() / f"totalseg_{key}.nii.gz"))
        ctx.extra_masks[key] = mask
    result = SegmentationResult(target=key, present=voxels > 0, voxels=voxels,
                                volume_mm3=round(voxels * float(np.prod(ctx.study.spacing)), 1), mask_path=path,
                                labels_source="TotalSegmentator (task total)")
    return result.model_dump(), result
