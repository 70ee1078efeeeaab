"""Per-tool readers of results: the numbers (with units), citations and masks an answer shows.

One small reader per tool name, reading that tool's typed result (the ``artifact`` of its
ToolMessage); a tool without a reader contributes no findings (its result still appears in the
trace). Readers only copy values that are in the result.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from cardiovlm.assistant.tools.segment_anatomy import SegmentationResult
from cardiovlm.assistant.tools.study_info import StudyInfo
from cardiovlm.assistant.tools.vlm import VLMAskResult, VLMLocateResult, VLMSegmentResult
from cardiovlm.tools.core.anatomy import mask_color
from cardiovlm.tools.core.answer import AnswerFinding, Citation, MaskFile
from cardiovlm.tools.quant.cadrads import shown_percent
from cardiovlm.tools.quant.calcium import CalciumScore
from cardiovlm.tools.quant.risk import RiskContext
from cardiovlm.tools.quant.stenosis import Lesion, LesionMeasurement
from cardiovlm.tools.quant.stent import StentPlan

# Decimals shown per unit: stenosis in whole percent as reports give it, lengths to 0.1 mm.
DIGITS_BY_UNIT = {"%": 0, "AU": 1, "mm^3": 1, "mg": 1, "mm": 1, "ng/L": 1, "ratio": 2, "": 2}


def _f(name: str, value, unit: str, tool: str, digits: int | None = None) -> AnswerFinding:
    return AnswerFinding(name=name, value=rounded(value, DIGITS_BY_UNIT.get(unit, 1) if digits is None else digits),
                         unit=unit, tool=tool)


def rounded(value, digits: int = 1):
    """The one rounding of numbers shown to a clinician, so answer text and findings agree."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return round(float(value), digits)


def show(finding: AnswerFinding) -> str:
    """A finding as the answer text writes it: '70%', '12.5 mm', '245.3 AU', 'A2/N2'."""
    value = finding.value
    if isinstance(value, float):
        value = f"{value:.6f}".rstrip("0").rstrip(".")
    if not finding.unit or finding.unit == "ratio":
        return str(value)
    unit = {"mm^3": "mm³"}.get(finding.unit, finding.unit)
    return f"{value}{finding.unit}" if finding.unit == "%" else f"{value} {unit}"


def _calcium_categories(result: CalciumScore | RiskContext, tool: str) -> list[AnswerFinding]:
    """Agatston score, CAC-DRS and plaque burden, as the calcium and risk tools both report them."""
    out = []
    if result.agatston is not None:
        out.append(_f("Agatston score", result.agatston, "AU", tool))
    if result.cac_drs:
        out.append(_f("CAC-DRS", result.cac_drs, "", tool))
    if result.plaque_burden:
        out.append(_f("plaque burden", result.plaque_burden, "", tool))
    return out


def _calcium(result: CalciumScore) -> list[AnswerFinding]:
    tool = "calcium_score"
    out = _calcium_categories(result, tool)
    out.append(_f("calcium volume" if result.kind == "agatston" else "calcium volume (contrast CCTA)",
                  result.volume_mm3, "mm^3", tool))
    if result.mass_mg is not None:
        out.append(_f("calcium mass", result.mass_mg, "mg", tool))
    for artery, value in result.per_artery.items():
        if value.agatston is not None:
            out.append(_f(f"{artery} Agatston score", value.agatston, "AU", tool))
        else:
            out.append(_f(f"{artery} calcium volume", value.volume_mm3, "mm^3", tool))
    if result.excluded:
        out.append(_f("calcifications not counted", len(result.excluded), "lesions", tool))
    return out


def _segmentation(tool: str, result: SegmentationResult) -> list[AnswerFinding]:
    if not result.present:
        return [_f(f"{result.target} present", "no", "", tool)]
    return [_f(f"{result.target} volume", result.volume_mm3, "mm^3", tool)]


def lesion_findings(where: str, lesion: Lesion, tool: str) -> list[AnswerFinding]:
    """The numbers of one measured lesion, named after where it lies."""
    return [
        # whole percent, never rounded across a CAD-RADS band edge (69.5 % is shown 69 %, category 3)
        _f(f"{where} diameter stenosis", shown_percent(lesion.stenosis_percent), "%", tool),
        _f(f"{where} CAD-RADS", lesion.category, "", tool),
        _f(f"{where} lesion length", lesion.length_mm, "mm", tool),
        _f(f"{where} minimal lumen diameter", lesion.minimal_lumen_diameter_mm, "mm", tool),
        _f(f"{where} reference diameter", lesion.reference_diameter_mm, "mm", tool),
    ]


def _measure(result: LesionMeasurement) -> list[AnswerFinding]:
    where = result.segment or result.vessel
    lesion = result.lesion
    if lesion is None:
        return [_f(f"{where} lesion", "none found", "", "measure_lesion")]
    points = [_f(f"{where} {name} (LPS)", _point(xyz), "mm", "measure_lesion")
              for xyz, name in ((lesion.start_point_mm, "lesion start"), (lesion.end_point_mm, "lesion end"),
                                (lesion.mld_point_mm, "minimal lumen position")) if xyz]
    return lesion_findings(where, lesion, "measure_lesion") + points


def _point(xyz) -> str:
    return ", ".join(f"{v:.1f}" for v in xyz)


def _stent(result: StentPlan) -> list[AnswerFinding]:
    tool = "stent_coverage"
    out = [_f("stent length", result.stent_length_mm, "mm", tool),
           _f("stent coverage", result.status.replace("_", " "), "", tool)]
    # stent diameters come in 0.25 mm steps: two decimals; every other figure takes its unit's digits
    for value, name, unit, digits in ((result.lesion_length_mm, "lesion length", "mm", None),
                                      (result.required_length_mm, "required stent length", "mm", None),
                                      (result.landing_zone_mm, "landing zone per end", "mm", None),
                                      (result.margin_proximal_mm, "proximal margin", "mm", None),
                                      (result.margin_distal_mm, "distal margin", "mm", None),
                                      (result.shortest_catalogue_length_mm, "shortest covering catalogue length",
                                       "mm", None),
                                      (result.suggested_diameter_mm, "suggested stent diameter", "mm", 2),
                                      (result.diameter_to_reference, "stent / reference diameter", "ratio", None)):
        if value is not None:
            out.append(_f(name, value, unit, tool, digits=digits))
    if result.lesion:
        out.append(_f("lesion diameter stenosis", shown_percent(result.lesion.stenosis_percent), "%", tool))
        out.append(_f("reference diameter", result.lesion.reference_diameter_mm, "mm", tool))
    return out


def _risk(result: RiskContext) -> list[AnswerFinding]:
    tool = "risk_context"
    out = _calcium_categories(result, tool)
    mesa = result.mesa
    if mesa:
        out.append(_f("MESA 10-year hard CHD risk", mesa.ten_year_chd_risk_percent, "%", tool, digits=1))
        x = mesa.inputs  # every value known: the score is not given otherwise
        for value, name, unit in ((x.age_years, "age", "years"), (x.systolic_bp_mmhg, "systolic BP", "mmHg"),
                                  (x.total_cholesterol_mg_dl, "total cholesterol", "mg/dL"),
                                  (x.hdl_cholesterol_mg_dl, "HDL cholesterol", "mg/dL")):
            out.append(_f(name, value, unit, tool, digits=0))
    trop = result.troponin
    if trop:
        out.append(_f("hs-cTnI", trop.value_ng_l, "ng/L", tool))
        out.append(_f(f"hs-cTnI 99th-percentile URL ({trop.sex})", trop.url_ng_l, "ng/L", tool))
        out.append(_f("hs-cTnI / URL", trop.times_url, "ratio", tool))
    both = result.troponin_sex_unknown
    if both and not trop:
        out.append(_f("hs-cTnI", both.value_ng_l, "ng/L", tool))
        out.append(_f("hs-cTnI 99th-percentile URL (female)", both.female_url_ng_l, "ng/L", tool))
        out.append(_f("hs-cTnI 99th-percentile URL (male)", both.male_url_ng_l, "ng/L", tool))
    return out


def _study_info(result: StudyInfo) -> list[AnswerFinding]:
    tool = "study_info"
    summary = result.summary
    out = [_f("modality", summary.modality, "", tool)]
    if summary.shape:
        out.append(_f("matrix", " x ".join(str(n) for n in summary.shape), "voxels", tool))
    if summary.spacing_mm:
        out.append(_f("voxel spacing", " x ".join(f"{s:g}" for s in summary.spacing_mm), "mm", tool))
    return out


def _vlm_segment(result: VLMSegmentResult) -> list[AnswerFinding]:
    tool = "vlm_segment"
    out = [_f(f"{result.target} volume (VLM)", result.volume_mm3, "mm^3", tool),
           _f("VLM mask confidence", result.mask_confidence, "", tool)]
    if result.measured_dice is not None:
        out.append(_f("VLM held-out phantom Dice", result.measured_dice, "", tool))
    return out


def _vlm_locate(result: VLMLocateResult) -> list[AnswerFinding]:
    tool = "vlm_locate"
    return [_f(f"{result.target} position (VLM)", _point(result.landmark_mm), "mm", tool),
            _f("VLM landmark confidence", result.landmark_confidence, "", tool)]


def _vlm_ask(result: VLMAskResult) -> list[AnswerFinding]:
    tool = "vlm_ask"
    out = [_f("VLM answer", result.answer, "", tool), _f("VLM answer confidence", result.answer_confidence, "", tool)]
    if result.measured_accuracy is not None:
        out.append(_f("VLM held-out phantom accuracy", result.measured_accuracy, "", tool))
    return out


FINDING_READERS: dict[str, Callable[[Any], list[AnswerFinding]]] = {
    "calcium_score": _calcium,
    "segment_anatomy": partial(_segmentation, "segment_anatomy"),
    "measure_lesion": _measure,
    "stent_coverage": _stent,
    "risk_context": _risk,
    "study_info": _study_info,
    "vlm_segment": _vlm_segment,
    "vlm_locate": _vlm_locate,
    "vlm_ask": _vlm_ask,
    "totalsegmentator_anatomy": partial(_segmentation, "segment_anatomy"),
}


def findings_of(tool: str, result: Any) -> list[AnswerFinding]:
    """The findings of one tool's typed result (none for a tool without a reader).

    ``result`` may also be the dump a direct ``tool.invoke(args)`` returns: it is validated into the
    tool's result type first, so every reader works on the type alone.
    """
    reader = FINDING_READERS.get(tool)
    if reader is None:
        return []
    if isinstance(result, dict):
        from cardiovlm.assistant.registry import result_adapter

        adapter = result_adapter(tool)
        result = adapter.validate_python(result) if adapter is not None else result
    return reader(result)


def citations_of(tool: str, result: Any) -> list[Citation]:
    if tool != "retrieve_reports":
        return []
    return [Citation(report_id=hit.report_id, date=None if hit.study_date is None else hit.study_date.isoformat(),
                     snippet=hit.snippet) for hit in result]


def masks_of(tool: str, result: Any) -> list[MaskFile]:
    # A tool that keeps its mask under another name than its target (the VLM's "vlm_aorta") says so in
    # mask_name: the overlay, the DICOM SEG and the app look the mask up by this name.
    path = getattr(result, "mask_path", None)
    if not path:
        return []
    name = getattr(result, "mask_name", None) or getattr(result, "target", tool)
    return [MaskFile(name=name, path=path, format="nifti")]


LANDMARK_COLOR = (0, 255, 255)  # cyan: no registry structure uses it
LANDMARK_RADIUS_MM = 2.5  # a visible dot on a 0.4-1 mm grid that does not hide the vessel


def points_of(tool: str, result: Any, landmark: str | None = None) -> list[tuple[str, tuple[float, float, float]]]:
    """Points an answer marks on the image (patient LPS mm): a located landmark, or a lesion end asked for."""
    if tool == "vlm_locate":
        return [(result.target, tuple(result.landmark_mm))]
    lesion = result.lesion if tool == "measure_lesion" else None
    key = {"lesion_start": "start_point_mm", "lesion_end": "end_point_mm", "lesion_mld": "mld_point_mm"}.get(
        landmark or "")
    if lesion is not None and landmark is not None and key is not None:
        return [(landmark, tuple(getattr(lesion, key)))]
    return []


def _point_mask(context, xyz) -> np.ndarray | None:
    study = context.study
    ijk = np.asarray(study.mm_to_index(np.asarray(xyz, dtype=float)[None, :])).reshape(-1)
    grid = np.indices(study.shape, sparse=True)
    spacing = np.linalg.norm(study.affine[:3, :3], axis=0)
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, ijk, spacing))
    mask = dist2 <= LANDMARK_RADIUS_MM ** 2
    return mask if mask.any() else None


def overlay_for(masks: list[MaskFile], context, points=()) -> str | None:
    """PNG of the study slice that best shows the answer's masks (registry colours) and points (cyan dots)."""
    nifti = [m for m in masks if m.format == "nifti"]
    if not (nifti or points) or context is None:
        return None
    from cardiovlm.tools.views.render import best_slice, render, save_png

    drawn = []
    for m in nifti:
        mask = context.extra_masks.get(m.name)
        if mask is not None:
            drawn.append((mask, mask_color(m.name)))
    marked = [(name, dot) for name, xyz in points if (dot := _point_mask(context, xyz)) is not None]
    if marked:
        # The slice through the point, whatever masks are drawn with it.
        index = best_slice(np.logical_or.reduce([dot for _, dot in marked]), "axial")
        drawn += [(dot, LANDMARK_COLOR) for _, dot in marked]
    elif drawn:
        index = best_slice(np.logical_or.reduce([d[0] for d in drawn]), "axial")
    else:
        return None
    rgb = render(context.study.hu, "axial", index, "cardiac", drawn)
    names = [m.name for m in nifti] + [str(name).replace(" ", "_") for name, _ in marked]
    path = context.outputs() / ("overlay_" + "_".join(names)[:80] + ".png")
    save_png(rgb, path)
    return str(path)
