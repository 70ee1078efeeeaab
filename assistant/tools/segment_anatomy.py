"""The ``segment_anatomy`` tool: the mask of a named structure or finding, written as a file.

Masks come from the session's label map, whose source is always stated: the trained VLM, the
phantom's ground truth, TotalSegmentator or a supplied label map. Calcium that the label map does
not outline (a map traced from the image has vessels, not calcium) is the calcium score's own lesions
(:func:`cardiovlm.tools.quant.calcium.calcium_mask`); a stent it does not outline is the stent metal along the
traced vessels (:func:`cardiovlm.tools.quant.stent.stent_metal_mask`). Without any label map the tool says so instead
of guessing.
"""

from __future__ import annotations

import re

import numpy as np
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME, resolve_structure_or_segment
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.quant.calcium import calcium_mask
from cardiovlm.tools.quant.context import context_from_config
from cardiovlm.tools.quant.stent import StentMetalConfig, stent_metal_mask
from cardiovlm.tools.segmentation.masks import label_ids_for, mask_from_labels, save_mask_nifti

FINDING_TARGETS = {
    "calcification": "calcified_plaque",
    "plaque": "noncalcified_plaque",
    "stent": "stent",
}


class NoSegmentationAvailable(StudyError):
    """The session has no label map to take a mask from (the trained VLM is the next resort)."""

    code = "segmentation.unavailable"


class SegmentAnatomyInput(BaseModel):
    target: str = Field(description="what to segment: a coronary segment ('pLAD', 'proximal LAD'), an artery "
                        "('LAD', 'RCA'), a structure ('aorta', 'left ventricle'), or a finding "
                        "('calcification', 'plaque', 'stent')")
    on_artery: str | None = Field(None, description="for a finding: restrict it to this artery or segment, "
                                  "e.g. 'LAD'; omit for the whole heart")


class SegmentationResult(BaseModel):
    target: str = Field(description="registry name of what was segmented")
    present: bool = Field(description="false when the structure or finding is absent from the label map")
    voxels: int
    volume_mm3: float
    mask_path: str | None = Field(None, description="NIfTI file of the mask on the study grid")
    labels_source: str = Field(description="where the label map came from")


def segment(ctx, target: str, on_artery: str | None = None) -> tuple[SegmentationResult, np.ndarray]:
    """Mask of ``target`` (optionally a finding restricted to ``on_artery``) from the context's labels."""
    if ctx.labels is None:
        raise NoSegmentationAvailable(
            "no segmentation is available for this study: no label map was supplied and no TotalSegmentator "
            "weights are installed (masks from the trained VLM, where one is installed, come from vlm_segment)")
    finding = FINDING_TARGETS.get(target.lower().rstrip("s"))
    near: list[str] = []
    if on_artery:
        kind, key = resolve_structure_or_segment(on_artery)
        if kind not in ("artery", "segment"):
            raise ValueError(f"{on_artery!r} is not a coronary artery or segment")
        near = [key]
    source = ctx.labels_source or "unknown"
    if finding == "calcified_plaque" and not np.any(ctx.labels == STRUCTURES_BY_NAME[finding].label_id):
        # A label map traced from the image outlines vessels, not their calcium: the calcium is then the
        # calcium score's own lesions, so "show the calcium in the LAD" and "how much" agree.
        name = finding
        mask, score = calcium_mask(ctx, near[0] if near else None)
        source = (f"the lesions the calcium score counts ({score.scored_series or score.series_kind}), "
                  f"assigned to arteries along the {source}")
    elif finding == "stent" and not np.any(ctx.labels == STRUCTURES_BY_NAME[finding].label_id):
        # Nor does it outline a stent: the stent is then its metal, found along the traced vessels.
        name, config = finding, StentMetalConfig()
        mask = stent_metal_mask(ctx.study.hu, ctx.study.spacing, ctx.labels, near[0] if near else None, config)
        source = (f"stent metal (>= {config.metal_hu:g} HU over >= {config.min_extent_mm:g} mm) from the CT "
                  f"intensities along the {source}")
    else:
        if finding:
            name, ids = finding, [STRUCTURES_BY_NAME[finding].label_id]
        else:
            _, name = resolve_structure_or_segment(target)
            ids = label_ids_for(name)
        mask = mask_from_labels(ctx.labels, ids, spacing=ctx.study.spacing, near_segments=near)
    voxels = int(mask.sum())
    full_name = f"{name}_{near[0]}" if near else name
    path = None
    if voxels:
        path = str(save_mask_nifti(mask, ctx.study, ctx.outputs() / f"{_file_safe(full_name)}.nii.gz"))
        ctx.extra_masks[full_name] = mask
    result = SegmentationResult(
        target=full_name, present=voxels > 0, voxels=voxels,
        volume_mm3=round(voxels * float(np.prod(ctx.study.spacing)), 1), mask_path=path,
        labels_source=source)
    return result, mask


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)


@tool("segment_anatomy", args_schema=SegmentAnatomyInput)
def segment_anatomy_tool(target: str, on_artery: str | None = None, *, config: RunnableConfig) -> dict:
    """Segment a named coronary segment, artery, cardiac structure, or a finding (calcification,
    plaque, stent) on an artery, in the loaded study; returns whether it is present, its volume and
    the mask file."""
    result, _ = segment(context_from_config(config), target, on_artery)
    return result.model_dump()

