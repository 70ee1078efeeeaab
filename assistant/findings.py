"""Per-tool readers of results: the numbers (with units), citations and masks an answer shows.

One small reader per tool name; a tool without a reader contributes no findings (its result still
appears in the trace). Readers only copy values that are in the result.
"""

from __future__ import annotations

from collections.abc import Callable

from assistant.answer import AnswerFinding, Citation, MaskFile
from assistant.evidence import ToolOutcome
from assistant.question import ParsedQuestion


def _f(name: str, value, unit: str, tool: str) -> AnswerFinding:
    if isinstance(value, float):
        value = round(value, 1)
    return AnswerFinding(name=name, value=value, unit=unit, tool=tool)


def _calcium(result: dict) -> list[AnswerFinding]:
    tool = "calcium_score"
    out = []
    if result.get("agatston") is not None:
        out.append(_f("Agatston score", float(result["agatston"]), "", tool))
    out.append(_f("calcium volume" if result.get("kind") == "agatston" else "calcium volume (contrast CCTA)",
                  float(result["volume_mm3"]), "mm^3", tool))
    if result.get("mass_mg") is not None:
        out.append(_f("calcium mass", float(result["mass_mg"]), "mg", tool))
    if result.get("cac_drs"):
        out.append(_f("CAC-DRS", result["cac_drs"], "", tool))
    for artery, value in (result.get("per_artery") or {}).items():
        if value.get("agatston") is not None:
            out.append(_f(f"{artery} Agatston score", float(value["agatston"]), "", tool))
        elif value.get("volume_mm3"):
            out.append(_f(f"{artery} calcium volume", float(value["volume_mm3"]), "mm^3", tool))
    return out


def _segmentation(result: dict) -> list[AnswerFinding]:
    if not result.get("present"):
        return [_f(f"{result['target']} present", "no", "", "segment_anatomy")]
    return [_f(f"{result['target']} volume", float(result["volume_mm3"]), "mm^3", "segment_anatomy")]


FINDING_READERS: dict[str, Callable[[dict], list[AnswerFinding]]] = {
    "calcium_score": _calcium,
    "segment_anatomy": _segmentation,
}


def findings_of(tool: str, result: dict) -> list[AnswerFinding]:
    reader = FINDING_READERS.get(tool)
    return reader(result) if reader else []


def citations_of(tool: str, result: dict) -> list[Citation]:
    if tool != "retrieve_reports":
        return []
    return [Citation(report_id=hit["report_id"], date=hit.get("study_date"), snippet=hit["snippet"])
            for hit in result.get("items", [])]


def masks_of(tool: str, result: dict) -> list[MaskFile]:
    out = []
    if result.get("mask_path"):
        out.append(MaskFile(name=result.get("target", tool), path=result["mask_path"], format="nifti"))
    if result.get("dicom_seg_path"):
        out.append(MaskFile(name=result.get("target", tool), path=result["dicom_seg_path"], format="dicom-seg"))
    return out


def overlay_for(masks: list[MaskFile], context) -> str | None:
    """PNG of the study slice that best shows the answer's masks, drawn in their registry colours."""
    nifti = [m for m in masks if m.format == "nifti"]
    if not nifti or context is None:
        return None
    import numpy as np

    from tools.render import best_slice, render, save_png

    drawn = []
    for m in nifti:
        mask = context.extra_masks.get(m.name)
        if mask is not None:
            drawn.append((mask, _colour(m.name)))
    if not drawn:
        return None
    union = np.logical_or.reduce([d[0] for d in drawn])
    rgb = render(context.study.hu, "axial", best_slice(union, "axial"), "cardiac", drawn)
    path = context.outputs() / ("overlay_" + "_".join(m.name for m in nifti)[:80] + ".png")
    save_png(rgb, path)
    return str(path)


def _colour(name: str) -> tuple[int, int, int]:
    from tools.anatomy import ARTERIES, SEGMENT_COLORS, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME

    base = name.split("_")[0] if name.split("_")[0] in ARTERIES else name
    if base in SEGMENTS_BY_CODE:
        return SEGMENT_COLORS[SEGMENTS_BY_CODE[base].artery]
    if base in SEGMENT_COLORS:
        return SEGMENT_COLORS[base]
    for structure in STRUCTURES_BY_NAME.values():
        if name.startswith(structure.name):
            return structure.color
    return (255, 255, 0)


def verdict_for(q: ParsedQuestion, done: list[ToolOutcome]) -> str:
    """'yes' / 'no' from tool results for a yes/no question; 'unknown' when they do not decide it."""
    from assistant.verdicts import VERDICT_RULES

    rule = VERDICT_RULES.get(q.intent)
    return rule(q, done) if rule else "unknown"
