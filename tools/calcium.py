"""Coronary artery calcium: Agatston, volume and mass scores per artery, and CAC-DRS.

Two pure cores and one LangChain tool (``calcium_score``):

* :func:`agatston_score` on a non-contrast calcium-scoring series (the standard definition, see
  ``shared/REFERENCE.md``): voxels >= 130 HU, lesions connected **in-slice** (8-connectivity in the
  i-j plane, never across slices) with an area of at least 1 mm^2, each weighted by its in-slice
  peak: 130-199 HU -> 1, 200-299 -> 2, 300-399 -> 3, >= 400 -> 4 (bands on the measured value, so
  199.6 HU is still weight 1). Score = sum of area (mm^2) x weight. The score is defined on 3 mm
  slices; other slice spacings are scaled by ``spacing_k / 3 mm`` (the "thickness/3 factor"
  method, stated in every result). Volume score = volume of the scored voxels (mm^3); mass score =
  ``calibration x sum(volume x mean HU)`` (mg, calibration in mg/(mm^3 HU) from a calcium phantom).
* :func:`contrast_calcium_volume` on a contrast CCTA, where Agatston is not defined: voxels above
  the local lumen attenuation (median of the nearest lumen voxels + k x noise SD) near the
  coronary lumen, reported as a **volume only**.

Both assign each 3D lesion (26-connected scored voxels) to an artery through its nearest labelled
coronary segment (SCCT lumen labels of ``tools.anatomy``), up to ``max_distance_mm`` away. Lesions
mostly inside a labelled non-coronary structure (aortic root, aorta, chambers, bone, labelled
extracoronary calcification) or farther than that from every coronary segment are excluded and
listed with their location and the reason. Only the region around the coronary labels (their
bounding box plus ``max_distance_mm`` + 10 mm) is searched, so bone far from the heart is never
scored or listed.
"""

from __future__ import annotations

from typing import Literal

import cc3d
import numpy as np
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field
from scipy import ndimage
from scipy.spatial import cKDTree

from tools.anatomy import (ARTERIES, CORONARY_LABELS, SEGMENTS_BY_LABEL, STRUCTURES_BY_LABEL, STRUCTURES_BY_NAME,
                           label_name, resolve_structure_or_segment)
from tools.cadrads import cac_drs, plaque_burden_from_cac
from tools.context import context_from_config
from tools.study import StudyError

AGATSTON_THRESHOLD_HU = 130.0
STENT_LABEL = STRUCTURES_BY_NAME["stent"].label_id
WEIGHT_BAND_EDGES_HU = (200.0, 300.0, 400.0)  # peak >= edge adds 1 to the base weight of 1
AGATSTON_SLICE_MM = 3.0
ROI_EXTRA_MARGIN_MM = 10.0
BLOOD_POOL_LABELS = tuple(STRUCTURES_BY_NAME[n].label_id for n in
                          ("aorta", "aortic_root", "lv_blood", "rv_blood", "la_blood", "ra_blood", "pulmonary_artery"))
CONTRAST_LABEL = "contrast CCTA calcium volume, not an Agatston score"


class CalciumError(StudyError):
    """Calcium cannot be scored on this input; the message says why and what to do."""


class NotHounsfieldError(CalciumError):
    """The study is not a CT in Hounsfield units (e.g. MR)."""


class NoCoronaryLabelsError(CalciumError):
    """No coronary segment labels to assign calcium to arteries."""


class EmptySeriesError(CalciumError):
    """The series holds no voxels."""


class CalciumLesion(BaseModel):
    """One 3D calcified lesion (26-connected scored voxels)."""

    lesion_id: int
    artery: Literal["LM", "LAD", "LCx", "RCA"] | None = Field(description="null when excluded")
    segment: str | None = Field(description="nearest SCCT segment code, e.g. 'pLAD'")
    agatston: float | None = Field(description="Agatston contribution (null on a contrast CCTA)")
    volume_mm3: float
    mass_mg: float | None = Field(description="calibrated mass (null on a contrast CCTA)")
    peak_hu: float
    centroid_mm: tuple[float, float, float] = Field(description="patient LPS position, mm")
    distance_to_coronary_mm: float | None = Field(
        description="closest distance to a coronary lumen label; null when farther than the search window")
    location: str = Field(description="the labelled structure it lies in, or the nearest segment")
    excluded_reason: str | None = Field(None, description="why it does not count, when excluded")


class ArteryCalcium(BaseModel):
    agatston: float | None = Field(description="Agatston score of the artery (null on a contrast CCTA)")
    volume_mm3: float
    mass_mg: float | None = None
    lesions: int


class CalciumScore(BaseModel):
    """Result of :func:`agatston_score` or :func:`contrast_calcium_volume`."""

    kind: Literal["agatston", "contrast_volume"]
    label: str = Field(description="what the numbers are; read it before quoting them")
    agatston: float | None = Field(description="total coronary Agatston score (null on a contrast CCTA)")
    volume_mm3: float = Field(description="total coronary calcium volume, mm^3")
    mass_mg: float | None = Field(description="total calibrated calcium mass, mg")
    per_artery: dict[str, ArteryCalcium]
    cac_drs: str | None = Field(description="CAC-DRS, e.g. 'A2/N3'; null when no Agatston score")
    plaque_burden: str | None = Field(description="CAD-RADS 2.0 plaque burden P1-P4 from the Agatston score")
    lesions: list[CalciumLesion] = Field(description="coronary lesions counted")
    excluded: list[CalciumLesion] = Field(description="calcifications not counted, with the reason")
    slice_spacing_mm: float
    method: str = Field(description="thresholds, connectivity, slice method, assignment rule")
    labels_source: str | None = None
    warnings: list[str] = Field(default_factory=list)


def coronary_mask(labels: np.ndarray) -> np.ndarray:
    """(I, J, K) bool: voxels with a coronary segment lumen label (ids from ``tools.anatomy``)."""
    lo, hi = min(CORONARY_LABELS), max(CORONARY_LABELS)
    if CORONARY_LABELS == tuple(range(lo, hi + 1)):  # a contiguous id range: two compares, not isin
        return (labels >= lo) & (labels <= hi)
    return np.isin(labels, CORONARY_LABELS)


def label_in_slice(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of ``mask`` within each axial slice: 8-connectivity in i-j, none along k.

    cc3d labels in 3D only, so the slices are interleaved with empty ones: 26-connectivity then
    links exactly the 8-neighbours of a slice and never two slices.

    Returns:
        ``(labels, n)``: (I, J, K) uint32 component ids 1..n, 0 outside ``mask``.
    """
    spaced = np.zeros(mask.shape[:2] + (2 * mask.shape[2],), dtype=bool)
    spaced[:, :, ::2] = mask
    labels, n = cc3d.connected_components(spaced, connectivity=26, return_N=True)
    return np.ascontiguousarray(labels[:, :, ::2]), int(n)


# --------------------------------------------------------------------------------------------- checks
def _check_inputs(hu: np.ndarray, spacing, labels: np.ndarray | None, *, modality: str,
                  hu_calibrated: bool) -> tuple[tuple[float, float, float], np.ndarray]:
    """Validated spacing and the (I, J, K) coronary mask, or a CalciumError saying what is wrong."""
    if modality.upper() != "CT" or not hu_calibrated:
        raise NotHounsfieldError(
            f"calcium scoring needs a CT in Hounsfield units; this study is {modality}"
            f"{'' if hu_calibrated else ' without Hounsfield calibration'}. Load a CT series.")
    if hu.ndim != 3 or hu.size == 0:
        raise EmptySeriesError(f"the series holds no volume (shape {tuple(hu.shape)}); load a complete CT series")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise CalciumError(f"voxel spacing must be three positive mm values, got {spacing}")
    coronary = coronary_mask(labels) if labels is not None and labels.shape == hu.shape else None
    if labels is None or (coronary is not None and not coronary.any()):
        raise NoCoronaryLabelsError(
            "no coronary artery labels are available for this series, so calcium cannot be assigned to "
            "the LM, LAD, LCx and RCA: segment the coronaries first (trained VLM or TotalSegmentator "
            "'coronary_arteries'), or load a case folder whose label map has the SCCT segment labels "
            f"{min(CORONARY_LABELS)}-{max(CORONARY_LABELS)}")
    if labels.shape != hu.shape:
        raise CalciumError(f"label map shape {labels.shape} differs from the image shape {hu.shape}: "
                           "the labels must be on the grid of the scored series")
    return spacing, coronary  # type: ignore[return-value]


def _roi(coronary: np.ndarray, spacing, margin_mm: float) -> tuple[slice, slice, slice]:
    """Bounding box of the coronary mask grown by ``margin_mm``, clipped to the volume."""
    box = []
    for axis, (n, s) in enumerate(zip(coronary.shape, spacing)):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(coronary.any(axis=other))
        pad = int(np.ceil(margin_mm / s))
        box.append(slice(max(int(idx[0]) - pad, 0), min(int(idx[-1]) + pad + 1, n)))
    return tuple(box)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------- assignment
def _assign_lesions(coords: np.ndarray, lab: np.ndarray, n: int, labels: np.ndarray, coronary: np.ndarray,
                    spacing, max_distance_mm: float) -> dict[int, tuple]:
    """For each 3D lesion 1..n: (segment label id or None, distance mm or None, location, exclusion reason).

    Args:
        coords: (V, 3) voxel indices of all lesion voxels; lab: (V,) their lesion ids 1..n.
        labels, coronary: (I, J, K) label map and its coronary mask.

    Each lesion is looked at in its own box (its bounding box grown by ``max_distance_mm`` + 1 mm):
    a Euclidean distance transform of the box's non-coronary voxels gives the distance from every
    lesion voxel to the nearest coronary voxel and that voxel's index; the lesion takes the segment
    of the coronary voxel closest to it. Per-lesion boxes keep this cheap on a 512 x 512 x 300
    series; a lesion with no coronary voxel in its box is farther than the window (distance null).
    """
    if n == 0:
        return {}
    window_mm = max_distance_mm + 1.0
    pad = np.array([int(np.ceil(window_mm / s)) for s in spacing])
    order = np.argsort(lab, kind="stable")
    groups = np.split(coords[order], np.cumsum(np.bincount(lab, minlength=n + 1)[1:])[:-1])
    out = {}
    for lesion, pts in enumerate(groups, start=1):
        lo = np.maximum(pts.min(0) - pad, 0)
        hi = np.minimum(pts.max(0) + pad + 1, labels.shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        ids, counts = np.unique(labels[tuple(pts.T)], return_counts=True)
        dominant = int(ids[np.argmax(counts)])
        box_coronary = coronary[box]
        seg_id, distance = None, None
        if box_coronary.any():
            dist, nearest = ndimage.distance_transform_edt(~box_coronary, sampling=spacing, return_indices=True)
            local = tuple((pts - lo).T)
            closest = int(np.argmin(dist[local]))
            distance = float(dist[local][closest])
            at = tuple(int(a[local][closest]) for a in nearest)
            seg_id = int(labels[box][at])
        location = label_name(dominant) if dominant else "unlabelled tissue"
        stent_fraction = counts[ids == STENT_LABEL].sum() / counts.sum()
        if stent_fraction >= 0.25:
            # Stent struts are metal, not calcium; stented segments are left out of calcium scoring.
            out[lesion] = (None, distance, "stent", "coronary stent struts (metal), not calcium: stented "
                                                    "segments are not scored")
        elif dominant in STRUCTURES_BY_LABEL and STRUCTURES_BY_LABEL[dominant].name not in (
                "calcified_plaque", "noncalcified_plaque", "stent", "epicardial_fat", "lv_myocardium"):
            # Mostly inside a labelled non-coronary structure: valve, aortic wall, chamber or bone.
            name = STRUCTURES_BY_LABEL[dominant].display
            out[lesion] = (None, distance, name, f"lies in the {name}, not in a coronary artery")
        elif distance is None or distance > max_distance_mm:
            how_far = (f"more than {window_mm:g} mm from every coronary segment" if distance is None else
                       f"{distance:.1f} mm from the nearest coronary segment ({SEGMENTS_BY_LABEL[seg_id].code})")
            out[lesion] = (None, distance, location, f"{how_far}, beyond the {max_distance_mm:g} mm assignment limit")
        else:
            out[lesion] = (seg_id, distance, SEGMENTS_BY_LABEL[seg_id].code, None)
    return out


def _build_result(*, kind, label, vox, lab, n, labels, coronary, spacing, affine, max_distance_mm,
                  lesion_agatston, lesion_volume, lesion_mass, lesion_peak, slice_spacing, method,
                  labels_source, warnings) -> CalciumScore:
    """Assign lesions (flat voxel indices ``vox`` into ``labels``' grid, lesion ids ``lab``) and total them."""
    coords = np.stack(np.unravel_index(vox, labels.shape), axis=1)
    assignment = _assign_lesions(coords, lab, n, labels, coronary, spacing, max_distance_mm)
    counts = np.maximum(np.bincount(lab, minlength=n + 1)[1:], 1)
    centroids = np.stack([np.bincount(lab, weights=c, minlength=n + 1)[1:] for c in coords.T], 1) / counts[:, None]
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    lesions, excluded = [], []
    per_artery = {a: ArteryCalcium(agatston=0.0 if kind == "agatston" else None, volume_mm3=0.0,
                                   mass_mg=0.0 if kind == "agatston" else None, lesions=0) for a in ARTERIES}
    for i in range(1, n + 1):
        seg_id, distance, location, reason = assignment[i]
        seg = SEGMENTS_BY_LABEL.get(seg_id) if seg_id is not None else None
        xyz = affine[:3, :3] @ np.asarray(centroids[i - 1]) + affine[:3, 3]
        lesion = CalciumLesion(
            lesion_id=i, artery=seg.artery if seg else None, segment=seg.code if seg else None,
            agatston=None if lesion_agatston is None else round(float(lesion_agatston[i]), 3),
            volume_mm3=round(float(lesion_volume[i]), 3),
            mass_mg=None if lesion_mass is None else round(float(lesion_mass[i]), 3),
            peak_hu=float(lesion_peak[i]), centroid_mm=tuple(round(float(c), 2) for c in xyz),
            distance_to_coronary_mm=None if distance is None else round(distance, 2), location=location,
            excluded_reason=reason)
        if seg is None:
            excluded.append(lesion)
            continue
        lesions.append(lesion)
        art = per_artery[seg.artery]
        art.lesions += 1
        art.volume_mm3 += lesion.volume_mm3
        if kind == "agatston":
            art.agatston += lesion.agatston
            art.mass_mg += lesion.mass_mg
    for art in per_artery.values():
        art.volume_mm3 = round(art.volume_mm3, 3)
        if kind == "agatston":
            art.agatston, art.mass_mg = round(art.agatston, 3), round(art.mass_mg, 3)
    volume = round(sum(a.volume_mm3 for a in per_artery.values()), 3)
    if kind == "agatston":
        total = round(sum(a.agatston for a in per_artery.values()), 3)
        drs = cac_drs(total, {a: v.agatston for a, v in per_artery.items()}).text
        return CalciumScore(
            kind=kind, label=label, agatston=total, volume_mm3=volume,
            mass_mg=round(sum(a.mass_mg for a in per_artery.values()), 3), per_artery=per_artery,
            cac_drs=drs, plaque_burden=plaque_burden_from_cac(total), lesions=lesions, excluded=excluded,
            slice_spacing_mm=slice_spacing, method=method, labels_source=labels_source, warnings=warnings)
    return CalciumScore(
        kind=kind, label=label, agatston=None, volume_mm3=volume, mass_mg=None, per_artery=per_artery,
        cac_drs=None, plaque_burden=None, lesions=lesions, excluded=excluded, slice_spacing_mm=slice_spacing,
        method=method, labels_source=labels_source, warnings=warnings)


# ------------------------------------------------------------------------------------------ agatston
def agatston_score(hu: np.ndarray, spacing, labels: np.ndarray | None, *, affine: np.ndarray | None = None,
                   calibration: float = 0.001, min_area_mm2: float = 1.0, max_distance_mm: float = 3.0,
                   modality: str = "CT", hu_calibrated: bool = True, labels_source: str | None = None,
                   ) -> CalciumScore:
    """Agatston, volume and mass scores of a non-contrast calcium-scoring series, per artery.

    Args:
        hu: (I, J, K) Hounsfield units, axial slices along k (``tools.study`` LPS convention).
        spacing: (di, dj, dk) mm; dk is the slice spacing (contiguous slices: = thickness).
        labels: (I, J, K) label map on the same grid with coronary segment labels (``tools.anatomy``).
        affine: (4, 4) voxel index -> patient mm, for lesion positions (identity when None).
        calibration: mass calibration factor, mg / (mm^3 HU) (``settings.calcium_mass_calibration``).
        min_area_mm2: smallest in-slice lesion area counted (1 mm^2 by the standard definition).
        max_distance_mm: farthest a lesion may lie from a coronary lumen label and still be assigned.
        modality, hu_calibrated, labels_source: from the ``Study``, for checks and the evidence.

    Raises:
        NotHounsfieldError, EmptySeriesError, NoCoronaryLabelsError, CalciumError.

    Example::

        result = agatston_score(study.hu, study.spacing, labels, affine=study.affine)
        print(result.agatston, result.cac_drs)
    """
    spacing, coronary = _check_inputs(hu, spacing, labels, modality=modality, hu_calibrated=hu_calibrated)
    roi = _roi(coronary, spacing, max_distance_mm + ROI_EXTRA_MARGIN_MM)
    sub, sub_labels, coronary = hu[roi], labels[roi], coronary[roi]
    pixel_area = spacing[0] * spacing[1]
    voxel_volume = pixel_area * spacing[2]
    slice_factor = spacing[2] / AGATSTON_SLICE_MM

    # In-slice lesions: area and peak-HU weight of each, from bincounts over the candidate voxels.
    candidates = sub >= AGATSTON_THRESHOLD_HU
    lesions2d, n2d = label_in_slice(candidates)
    vox = np.flatnonzero(candidates)
    lab2d = lesions2d.ravel()[vox]
    values = sub.ravel()[vox].astype(np.float64)
    area = np.bincount(lab2d, minlength=n2d + 1) * pixel_area
    weight = np.ones(n2d + 1)
    for edge in WEIGHT_BAND_EDGES_HU:
        weight += np.bincount(lab2d[values >= edge], minlength=n2d + 1) > 0
    kept2d = area >= min_area_mm2 - 1e-9  # tolerance for float pixel areas that should equal the limit
    keep = kept2d[lab2d]

    # 3D lesions from the kept voxels, for per-artery assignment and the lesion list.
    scored = np.zeros(sub.shape, dtype=bool)
    scored.ravel()[vox[keep]] = True
    lesions3d, n = cc3d.connected_components(scored, connectivity=26, return_N=True)
    lab3d = lesions3d.ravel()[vox[keep]]
    kept_values = values[keep]
    # Every voxel of an in-slice lesion carries pixel_area x that lesion's weight.
    voxel_agatston = pixel_area * weight[lab2d[keep]] * slice_factor
    lesion_agatston = np.bincount(lab3d, weights=voxel_agatston, minlength=n + 1)
    lesion_volume = np.bincount(lab3d, minlength=n + 1) * voxel_volume
    lesion_mass = calibration * voxel_volume * np.bincount(lab3d, weights=kept_values, minlength=n + 1)
    lesion_peak = np.zeros(n + 1)
    np.maximum.at(lesion_peak, lab3d, kept_values)

    dropped = int((area[1:] < min_area_mm2 - 1e-9).sum())
    slice_method = ("3 mm slices: Agatston as defined" if abs(slice_factor - 1) < 1e-6 else
                    f"{spacing[2]:g} mm slices: areas x weights scaled by {spacing[2]:g}/3 mm "
                    "(thickness/3 factor method; no resampling)")
    method = (f"threshold >= {AGATSTON_THRESHOLD_HU:g} HU; in-slice lesions with 8-connectivity; minimum area "
              f"{min_area_mm2:g} mm^2 ({dropped} smaller in-slice specks ignored); weight by in-slice peak "
              "130-199 -> 1, 200-299 -> 2, 300-399 -> 3, >= 400 HU -> 4; "
              f"{slice_method}; volume = scored voxels x {voxel_volume:.4g} mm^3; mass = "
              f"{calibration:g} mg/(mm^3 HU) x volume x mean HU; lesions (26-connected) assigned to the "
              f"nearest coronary segment label within {max_distance_mm:g} mm")
    warnings = []
    if spacing[2] > AGATSTON_SLICE_MM + 0.5:
        warnings.append(f"slices are {spacing[2]:g} mm, thicker than the 3 mm Agatston protocol")
    return _build_result(
        kind="agatston", label="Agatston calcium score (non-contrast calcium-scoring series)",
        vox=vox[keep], lab=lab3d, n=n, labels=sub_labels, coronary=coronary, spacing=spacing,
        affine=_shift_affine(affine, roi), max_distance_mm=max_distance_mm, lesion_agatston=lesion_agatston,
        lesion_volume=lesion_volume, lesion_mass=lesion_mass, lesion_peak=lesion_peak,
        slice_spacing=spacing[2], method=method, labels_source=labels_source, warnings=warnings)


def _shift_affine(affine: np.ndarray | None, roi) -> np.ndarray:
    """Affine of the cropped region: index (0, 0, 0) of the crop is index roi.start of the volume."""
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in roi]
    return affine @ shift


# ------------------------------------------------------------------------------------- contrast CCTA
def contrast_calcium_volume(hu: np.ndarray, spacing, labels: np.ndarray | None, *,
                            affine: np.ndarray | None = None, k_sd: float = 3.0, min_sd_hu: float = 10.0,
                            local_voxels: int = 64, lumen_percentile: float = 90.0, min_volume_mm3: float = 1.0, max_distance_mm: float = 3.0,
                            modality: str = "CT", hu_calibrated: bool = True,
                            labels_source: str | None = None) -> CalciumScore:
    """Calcium volume on a contrast CCTA, where the Agatston score is not defined.

    Rule: a voxel within ``max_distance_mm`` of a coronary lumen label is calcium when it exceeds
    the LOCAL lumen attenuation by ``k_sd`` noise SDs (and 130 HU). The local lumen attenuation is
    the ``lumen_percentile`` (90th) of the ``local_voxels`` lumen voxels nearest to it: a few mm of
    vessel, because the lumen darkens along a vessel; a high percentile, because partial volume
    darkens the lumen edge voxels while calcium must beat the fully opacified centre. Voxels in
    labelled blood pools (aorta, chambers, pulmonary trunk) are never calcium. Defaults (90th
    percentile, k = 3) found calcium per artery exactly on four phantoms (two with calcified or
    mixed plaque, two without); the volume is underestimated where calcium is blurred. The noise SD is the robust SD (1.4826 x median absolute deviation) of the labelled blood
    pool (aorta, aortic root, left ventricle) when present, else of all lumen voxels, at least
    ``min_sd_hu``. Calcium voxels form 26-connected lesions; those under ``min_volume_mm3`` are
    ignored. Only volumes are reported (partial volume makes them approximate); the label says so.

    Args:
        hu, spacing, labels, affine, max_distance_mm, modality, hu_calibrated, labels_source: as
            :func:`agatston_score`, on the contrast series.
        k_sd: how many noise SDs above the local lumen attenuation calcium starts.
        min_sd_hu: floor on the noise SD (a noiseless image would otherwise give no margin).
        local_voxels: nearest lumen voxels that give the local lumen attenuation.
        lumen_percentile: percentile of those voxels taken as the local lumen attenuation.
        min_volume_mm3: smallest lesion counted.
    """
    spacing, coronary = _check_inputs(hu, spacing, labels, modality=modality, hu_calibrated=hu_calibrated)
    roi = _roi(coronary, spacing, max_distance_mm + ROI_EXTRA_MARGIN_MM)
    sub, sub_labels, coronary = hu[roi], labels[roi], coronary[roi]
    flat_hu, flat_labels = sub.ravel(), sub_labels.ravel()
    scale = np.asarray(spacing)

    lumen_idx = np.flatnonzero(coronary)
    lumen_hu = flat_hu[lumen_idx].astype(np.float64)
    pool_ids = [STRUCTURES_BY_NAME[n].label_id for n in ("aorta", "aortic_root", "lv_blood")]
    pool = flat_hu[np.isin(flat_labels, pool_ids)].astype(np.float64)
    noise_from = "blood pool" if pool.size >= 1000 else "coronary lumen"
    sample = pool if pool.size >= 1000 else lumen_hu
    noise_sd = max(1.4826 * float(np.median(np.abs(sample - np.median(sample)))), min_sd_hu)

    # Voxels that cannot beat any local lumen value are skipped before the neighbour searches.
    floor = max(float(np.percentile(lumen_hu, 10)) + k_sd * noise_sd, AGATSTON_THRESHOLD_HU)
    cand = np.flatnonzero(flat_hu > floor)
    tree = cKDTree(np.stack(np.unravel_index(lumen_idx, sub.shape), axis=1) * scale)
    points = np.stack(np.unravel_index(cand, sub.shape), axis=1) * scale
    distance, _ = tree.query(points, k=1, distance_upper_bound=max_distance_mm + 1e-6)
    # Contrast-filled chambers and aorta next to a coronary are bright but never coronary calcium.
    near = np.isfinite(distance) & ~np.isin(flat_labels[cand], BLOOD_POOL_LABELS)
    cand, points = cand[near], points[near]
    _, neighbours = tree.query(points, k=min(local_voxels, len(lumen_idx)))
    local_lumen = np.percentile(lumen_hu[neighbours.reshape(len(cand), -1)], lumen_percentile, axis=1)
    is_calcium = flat_hu[cand] > np.maximum(local_lumen + k_sd * noise_sd, AGATSTON_THRESHOLD_HU)
    vox_all = cand[is_calcium]
    lines = [f"noise SD {noise_sd:.0f} HU from the {noise_from}",
             f"local lumen medians {np.min(local_lumen, initial=np.inf):.0f}-{np.max(local_lumen, initial=-np.inf):.0f} HU"
             if len(cand) else "no voxel near the lumen above the floor"]

    calcium = np.zeros(sub.shape, dtype=bool)
    calcium.ravel()[vox_all] = True
    lesions3d, n_all = cc3d.connected_components(calcium, connectivity=26, return_N=True)
    lab_all = lesions3d.ravel()[vox_all]
    voxel_volume = float(np.prod(spacing))
    # Drop lesions under the minimum volume (noise specks); dropping whole components keeps the
    # others' connectivity, so the survivors are only renumbered 1..n.
    big = np.bincount(lab_all, minlength=n_all + 1) * voxel_volume >= min_volume_mm3 - 1e-9
    keep = big[lab_all]
    vox = vox_all[keep]
    kept_ids, lab = np.unique(lab_all[keep], return_inverse=True)
    lab, n = lab.astype(np.int64) + 1, len(kept_ids)
    lesion_volume = np.bincount(lab, minlength=n + 1) * voxel_volume
    lesion_peak = np.zeros(n + 1)
    np.maximum.at(lesion_peak, lab, flat_hu[vox].astype(np.float64))
    method = (f"contrast CCTA: calcium = voxels within {max_distance_mm:g} mm of the coronary lumen above the "
              f"local lumen attenuation ({lumen_percentile:g}th percentile of the {local_voxels} nearest lumen voxels) + "
              f"{k_sd:g} x noise SD, "
              f"and >= 130 HU ({'; '.join(lines)}); 26-connected lesions >= {min_volume_mm3:g} mm^3; volume "
              "only: Agatston is defined on non-contrast scans")
    return _build_result(
        kind="contrast_volume", label=CONTRAST_LABEL, vox=vox, lab=lab, n=n, labels=sub_labels,
        coronary=coronary, spacing=spacing, affine=_shift_affine(affine, roi), max_distance_mm=max_distance_mm,
        lesion_agatston=None, lesion_volume=lesion_volume, lesion_mass=None, lesion_peak=lesion_peak,
        slice_spacing=spacing[2], method=method, labels_source=labels_source,
        warnings=["no non-contrast calcium-scoring series: calcium volume on the contrast CCTA instead"])


# ------------------------------------------------------------------------------------------- session
def score_context(ctx, *, calibration: float | None = None) -> CalciumScore:
    """Calcium of a session: Agatston on its calcium-scoring series, else contrast volume on the CCTA."""
    from tools.settings import get_settings

    calibration = get_settings().calcium_mass_calibration if calibration is None else calibration
    if ctx.cac is not None:
        cac, labels = ctx.cac, ctx.cac_labels
        if labels is None and ctx.labels is not None and ctx.labels.shape == cac.shape and np.allclose(
                ctx.study.affine, cac.affine, atol=1e-3):
            labels = ctx.labels  # the CCTA's labels are on the same grid
        return agatston_score(cac.hu, cac.spacing, labels, affine=cac.affine, calibration=calibration,
                              modality=cac.modality, hu_calibrated=cac.hu_calibrated,
                              labels_source=ctx.labels_source)
    study = ctx.study
    return contrast_calcium_volume(study.hu, study.spacing, ctx.labels, affine=study.affine,
                                   modality=study.modality, hu_calibrated=study.hu_calibrated,
                                   labels_source=ctx.labels_source)


class CalciumScoreInput(BaseModel):
    artery: str | None = Field(
        None, description="optional artery or segment to focus on ('LAD', 'right coronary', 'pLAD'); the "
        "result then lists only that artery's lesions. Omit for the whole coronary tree.")


@tool("calcium_score", args_schema=CalciumScoreInput)
def calcium_score_tool(artery: str | None = None, *, config: RunnableConfig) -> dict:
    """Coronary calcium of the loaded study: Agatston, volume and mass scores in total and per artery
    (LM, LAD, LCx, RCA), CAC-DRS and CAD-RADS plaque burden, the lesions counted and the calcifications
    excluded (valve, aorta, bone) with the reason. Uses the non-contrast calcium-scoring series; on a
    contrast CCTA alone it reports calcium VOLUME only (read the 'label' field)."""
    result = score_context(context_from_config(config))
    if artery:
        kind, key = resolve_structure_or_segment(artery)
        if kind not in ("artery", "segment"):
            raise CalciumError(f"{artery!r} is not a coronary artery or segment")
        keep = (lambda l: l.artery == key) if kind == "artery" else (lambda l: l.segment == key)
        result.lesions = [l for l in result.lesions if keep(l)]
    return result.model_dump()
