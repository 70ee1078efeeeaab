"""Coronary artery calcium: Agatston, volume and mass scores, per artery when a coronary tree is
given, and CAC-DRS.

Cores and one LangChain tool (``calcium_score``):

* :func:`agatston_score` on a non-contrast calcium-scoring series, from the image alone (the
  standard definition, see ``shared/REFERENCE.md``): voxels >= 130 HU, lesions connected
  **in-slice** (8-connectivity in the i-j plane, never across slices) with an area of at least
  1 mm^2, each weighted by its in-slice peak: 130-199 HU -> 1, 200-299 -> 2, 300-399 -> 3,
  >= 400 -> 4 (bands on the measured value, so 199.6 HU is still weight 1). Score = sum of area
  (mm^2) x weight. Defined on 3 mm slices; other slice spacings are scaled by ``spacing_k / 3 mm``
  (the "thickness/3 factor" method, stated in every result, with a warning). Volume score =
  volume of the scored voxels (mm^3); mass score = ``c x sum(volume x mean HU)`` (mg) with ``c``
  from a calcium calibration phantom; without one the result says the mass uses an uncalibrated
  reference factor. Which calcium is coronary is decided from the image (``cardiovlm.tools.quant.calcium_anatomy``:
  heart region, bone, stent metal, depth inside the heart) and, when a label map is given, its
  aorta, aortic root and chambers. A lone voxel within ``noise_sd_limit`` (6) noise SDs of the
  heart's soft tissue is a noise speck, not a lesion (with ~10^6 voxels, 5-SD specks occur).
* Per artery, when a label map with coronary segments is given (an image-derived tree carried
  from the CCTA in patient coordinates, ``cardiovlm.tools.quant.calcium_labels``): nearest segment within 3 mm,
  else the nearest artery territory up to 15 mm, else unassigned with the distance; every lesion
  stays in the total.
* :func:`contrast_calcium_volume` on a contrast CCTA, where Agatston is not defined: voxels above
  the local lumen attenuation near the coronary lumen labels, reported as a **volume only**.
* :func:`score_context` picks the series by its kind read from the image and headers
  (``cardiovlm.tools.quant.calcium_series``), never by how many series are loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import cc3d
import numpy as np
from pydantic import BaseModel, Field, PrivateAttr
from scipy.spatial import cKDTree

from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    CORONARY_LABELS,
    SEGMENTS_BY_CODE,
    STRUCTURES_BY_LABEL,
    STRUCTURES_BY_NAME,
    resolve_structure_or_segment,
)
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.quant.cadrads import cac_drs, plaque_burden_from_cac
from cardiovlm.tools.quant.calcium_anatomy import REASONS, AnatomyConfig, find_noncoronary
from cardiovlm.tools.quant.calcium_labels import assign_territories, coronary_mask, labels_on_grid
from cardiovlm.tools.quant.calcium_series import acquisition_warnings, series_kind

AGATSTON_THRESHOLD_HU = 130.0
WEIGHT_BAND_EDGES_HU = (200.0, 300.0, 400.0)  # peak >= edge adds 1 to the base weight of 1
AGATSTON_SLICE_MM = 3.0
REFERENCE_MASS_FACTOR = 0.001  # mg/(mm^3 HU): a common default, NOT a calibration of this scanner
ROI_EXTRA_MARGIN_MM = 10.0
BLOOD_POOL_LABELS = tuple(STRUCTURES_BY_NAME[n].label_id for n in
                          ("aorta", "aortic_root", "lv_blood", "rv_blood", "la_blood", "ra_blood", "pulmonary_artery"))
CONTRAST_LABEL = "contrast CCTA calcium volume, not an Agatston score"
NO_TREE_NOTE = ("per-artery assignment needs a coronary tree (segment labels of this series or of a CCTA of the "
                "same patient); only the total is given")


class CalciumError(StudyError):
    """Calcium cannot be scored on this input; the message says why and what to do."""

    code = "calcium.unscorable"


class NotHounsfieldError(CalciumError):
    """The study is not a CT in Hounsfield units (e.g. MR)."""

    code = "calcium.not_hounsfield"


class NoCoronaryLabelsError(CalciumError):
    """No coronary segment labels, where the method needs them (calcium volume on a contrast CCTA)."""

    code = "calcium.no_coronary_labels"


class EmptySeriesError(CalciumError):
    """The series holds no voxels."""

    code = "calcium.empty_series"


class CalciumLesion(BaseModel):
    """One 3D calcified lesion (26-connected scored voxels)."""

    lesion_id: int
    artery: Literal["LM", "LAD", "LCx", "RCA"] | None = Field(
        description="null when excluded, unassigned, or when no coronary tree was given")
    segment: str | None = Field(description="nearest SCCT segment code, e.g. 'pLAD'")
    agatston: float | None = Field(description="Agatston contribution (null on a contrast CCTA)")
    volume_mm3: float
    mass_mg: float | None = Field(description="mass (null on a contrast CCTA); see mass_calibrated")
    peak_hu: float
    centroid_mm: tuple[float, float, float] = Field(description="patient LPS position, mm")
    distance_to_coronary_mm: float | None = Field(
        description="closest distance to a coronary lumen label; null without coronary labels")
    location: str = Field(description="the structure it lies in, or the nearest segment")
    assignment: str | None = Field(None, description="how the lesion was given to an artery, or why not")
    excluded_reason: str | None = Field(None, description="why it does not count, when excluded")


class ArteryCalcium(BaseModel):
    agatston: float | None = Field(description="Agatston score of the artery (null on a contrast CCTA)")
    volume_mm3: float
    mass_mg: float | None = None
    lesions: int


@dataclass(frozen=True)
class LesionVoxels:
    """Where the counted lesions lie on the scored series: flat indices into ``hu[roi]`` and the
    ``lesion_id`` of each (the ids of ``CalciumScore.lesions``)."""

    shape: tuple[int, int, int]  # the scored series' grid
    affine: np.ndarray  # its voxel index -> patient LPS mm
    roi: tuple[slice, slice, slice]
    vox: np.ndarray
    lab: np.ndarray


class CalciumScore(BaseModel):
    """Result of :func:`agatston_score` or :func:`contrast_calcium_volume`."""

    # The voxels behind the lesions, for a mask of exactly the calcium that was counted (not serialised).
    _voxels: LesionVoxels | None = PrivateAttr(None)

    kind: Literal["agatston", "contrast_volume"]
    label: str = Field(description="what the numbers are; read it before quoting them")
    agatston: float | None = Field(description="total coronary Agatston score (null on a contrast CCTA)")
    volume_mm3: float = Field(description="total coronary calcium volume, mm^3")
    mass_mg: float | None = Field(description="total calcium mass, mg; see mass_calibrated")
    mass_calibrated: bool | None = Field(
        None, description="false: the mass uses an uncalibrated reference factor, not a calibration phantom")
    per_artery: dict[str, ArteryCalcium] = Field(
        description="LM, LAD, LCx, RCA; empty when no coronary tree was given (see per_artery_note)")
    per_artery_note: str | None = Field(None, description="why there is no per-artery split, when there is none")
    unassigned_agatston: float | None = Field(
        None, description="Agatston of counted lesions not assigned to an artery (in the total)")
    cac_drs: str | None = Field(description="CAC-DRS, e.g. 'A2/N3' ('A2' without a coronary tree); null "
                                            "when no Agatston score")
    plaque_burden: str | None = Field(description="CAD-RADS 2.0 plaque burden P1-P4 from the Agatston score")
    lesions: list[CalciumLesion] = Field(description="coronary lesions counted")
    excluded: list[CalciumLesion] = Field(description="calcifications not counted, with the reason")
    slice_spacing_mm: float
    series_kind: str | None = Field(None, description="non_contrast or contrast, read from the image and headers")
    method: str = Field(description="thresholds, connectivity, slice method, exclusions, assignment rule")
    labels_source: str | None = None
    scored_series: str | None = Field(None, description="which loaded series was scored, as the answer names it")
    warnings: list[str] = Field(default_factory=list)


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
def _check_image(hu: np.ndarray, spacing: Iterable[float], *, modality: str,
                 hu_calibrated: bool) -> tuple[float, float, float]:
    """Validated spacing, or a CalciumError saying what is wrong with the image."""
    if modality.upper() != "CT" or not hu_calibrated:
        raise NotHounsfieldError(
            f"calcium scoring needs a CT in Hounsfield units; this study is {modality}"
            f"{'' if hu_calibrated else ' without Hounsfield calibration'}. Load a CT series.")
    if hu.ndim != 3 or hu.size == 0:
        raise EmptySeriesError(f"the series holds no volume (shape {tuple(hu.shape)}); load a complete CT series")
    values = tuple(float(s) for s in spacing)
    if len(values) != 3 or min(values) <= 0:
        raise CalciumError(f"voxel spacing must be three positive mm values, got {values}")
    return values[0], values[1], values[2]


def _check_labels(hu: np.ndarray, labels: np.ndarray | None) -> np.ndarray | None:
    """The label map when it fits the image grid; CalciumError when it is on another grid."""
    if labels is None:
        return None
    if labels.shape != hu.shape:
        raise CalciumError(f"label map shape {labels.shape} differs from the image shape {hu.shape}: "
                           "carry it to the scored series first (cardiovlm.tools.quant.calcium_labels.labels_on_grid)")
    return labels


# ------------------------------------------------------------------------------------------ agatston
@dataclass
class ScoredMask:
    """In-slice Agatston scoring of one voxel mask, grouped into 3D lesions 1..n."""

    vox: np.ndarray  # flat indices of the scored voxels
    lab: np.ndarray  # their 3D lesion ids
    n: int
    agatston: np.ndarray  # (n + 1,) per lesion
    volume: np.ndarray
    hu_sum: np.ndarray  # sum of HU x voxel volume, for the mass
    peak: np.ndarray
    specks: int  # in-slice specks under the minimum area


def score_mask(hu: np.ndarray, mask: np.ndarray, spacing, min_area_mm2: float) -> ScoredMask:
    pixel_area = spacing[0] * spacing[1]
    voxel_volume = pixel_area * spacing[2]
    slice_factor = spacing[2] / AGATSTON_SLICE_MM
    lesions2d, n2d = label_in_slice(mask)
    vox = np.flatnonzero(mask)
    lab2d = lesions2d.ravel()[vox]
    values = hu.ravel()[vox].astype(np.float64)
    area = np.bincount(lab2d, minlength=n2d + 1) * pixel_area
    weight = np.ones(n2d + 1)
    for edge in WEIGHT_BAND_EDGES_HU:
        weight += np.bincount(lab2d[values >= edge], minlength=n2d + 1) > 0
    kept2d = area >= min_area_mm2 - 1e-9  # tolerance for float pixel areas that should equal the limit
    keep = kept2d[lab2d]
    scored = np.zeros(hu.shape, dtype=bool)
    scored.ravel()[vox[keep]] = True
    lesions3d, n = cc3d.connected_components(scored, connectivity=26, return_N=True)
    lab3d = lesions3d.ravel()[vox[keep]].astype(np.int64)
    kept_values = values[keep]
    # Every voxel of an in-slice lesion carries pixel_area x that lesion's weight.
    voxel_agatston = pixel_area * weight[lab2d[keep]] * slice_factor
    peak = np.zeros(n + 1)
    np.maximum.at(peak, lab3d, kept_values)
    return ScoredMask(vox=vox[keep], lab=lab3d, n=int(n),
                   agatston=np.bincount(lab3d, weights=voxel_agatston, minlength=n + 1),
                   volume=np.bincount(lab3d, minlength=n + 1) * voxel_volume,
                   hu_sum=voxel_volume * np.bincount(lab3d, weights=kept_values, minlength=n + 1),
                   peak=peak, specks=int((area[1:] < min_area_mm2 - 1e-9).sum()))


def _noise_specks(hu: np.ndarray, mask: np.ndarray, region: np.ndarray, sd_limit: float) -> tuple[np.ndarray, str]:
    """``mask`` without lone voxels that noise explains, and the rule in words."""
    tissue = hu[region & (hu > -30) & (hu < 110)].astype(np.float64)
    if tissue.size < 100:
        return mask, "no noise estimate (too little soft tissue)"
    centre = float(np.median(tissue))
    sd = 1.4826 * float(np.median(np.abs(tissue - centre)))
    limit = centre + sd_limit * sd
    comps, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    size = np.bincount(comps.ravel(), minlength=n + 1)
    lone = (size == 1) & (np.arange(n + 1) > 0)
    drop = lone[comps] & (hu < limit)
    return mask & ~drop, (f"{int(drop.sum())} lone voxel(s) below {limit:.0f} HU (soft tissue {centre:.0f} HU + "
                          f"{sd_limit:g} x noise SD {sd:.0f} HU) taken as noise")


def agatston_score(hu: np.ndarray, spacing, labels: np.ndarray | None = None, *, affine: np.ndarray | None = None,
                   calibration: float | None = None, min_area_mm2: float = 1.0, max_distance_mm: float = 3.0,
                   territory_max_mm: float = 15.0, modality: str = "CT", hu_calibrated: bool = True,
                   labels_source: str | None = None, metadata: dict | None = None, noise_sd_limit: float = 6.0,
                   anatomy: AnatomyConfig = AnatomyConfig()) -> CalciumScore:  # noqa: B008
    """Agatston, volume and mass scores of a non-contrast calcium-scoring series, from the image.

    Args:
        hu: (I, J, K) Hounsfield units, axial slices along k (``cardiovlm.tools.ingest.study`` LPS convention).
        spacing: (di, dj, dk) mm; dk is the slice spacing.
        labels: optional (I, J, K) label map on the same grid (``cardiovlm.tools.core.anatomy`` ids), e.g. the
            image-derived tree carried from the CCTA: gives per-artery scores and outlines the aorta,
            aortic root and chambers. None: total only, from the image alone.
        affine: (4, 4) voxel index -> patient mm, for lesion positions (identity when None).
        calibration: mass factor, mg / (mm^3 HU), from a calcium calibration phantom. None: the
            reference factor 0.001 is used and the result says the mass is uncalibrated.
        min_area_mm2: smallest in-slice lesion area counted (1 mm^2 by the standard definition).
        max_distance_mm, territory_max_mm: segment and artery-territory assignment limits.
        modality, hu_calibrated, labels_source, metadata: from the ``Study``, for checks, warnings
            (slice thickness, kVp) and the evidence.
        noise_sd_limit: lone voxels below soft tissue + this many noise SDs are noise.
        anatomy: thresholds of the non-coronary exclusions (``cardiovlm.tools.quant.calcium_anatomy``).

    Raises:
        NotHounsfieldError, EmptySeriesError, CalciumError.

    Example::

        result = agatston_score(study.hu, study.spacing, affine=study.affine, metadata=study.metadata)
        print(result.agatston, result.cac_drs)
    """
    spacing = _check_image(hu, spacing, modality=modality, hu_calibrated=hu_calibrated)
    labels = _check_labels(hu, labels)
    # The label map when it holds coronary segments: the tree that per-artery scores need.
    tree = labels if labels is not None and bool(coronary_mask(labels).any()) else None
    has_tree = tree is not None
    voxel_volume = float(np.prod(spacing))
    calibrated = calibration is not None
    factor = REFERENCE_MASS_FACTOR if calibration is None else calibration

    found = find_noncoronary(hu, spacing, labels, anatomy)
    candidates = hu >= AGATSTON_THRESHOLD_HU
    keep, noise_text = _noise_specks(hu, candidates & (found.reason == 0), found.heart_region, noise_sd_limit)
    kept = score_mask(hu, keep, spacing, min_area_mm2)
    dropped = score_mask(hu, candidates & (found.reason > 0), spacing, min_area_mm2)

    coords = np.stack(np.unravel_index(kept.vox, hu.shape), axis=1)
    territories = (assign_territories(kept.lab, coords, kept.n, tree, spacing, max_distance_mm, territory_max_mm)
                   if tree is not None else {})
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    centroids = _centroids(coords, kept.lab, kept.n)
    lesions = []
    counted, unassigned = _Tally(), _Tally()
    by_artery = {a: _Tally() for a in ARTERIES}
    for i in range(1, kept.n + 1):
        t = territories.get(i)
        artery = t.artery if t is not None else None
        seg = SEGMENTS_BY_CODE.get(t.segment) if t is not None and t.segment else None
        on_segment = seg.code if seg is not None and artery is not None else None
        lesion = _lesion(i, kept, factor, centroids[i - 1], affine, artery=artery, segment=on_segment,
                         distance=t.distance_mm if t is not None else None,
                         location=(on_segment or "heart region, no coronary label nearby")
                         if has_tree else "heart region (no coronary tree given)",
                         assignment=t.note if t is not None else None)
        lesions.append(lesion)
        amounts = _amounts(kept, i, factor)
        counted.add(*amounts)
        (unassigned if artery is None else by_artery[artery]).add(*amounts)
    excluded = _excluded(hu, dropped, found, labels, factor, affine)

    total = round(counted.agatston, 3)
    per_artery: dict[str, ArteryCalcium] = {}
    if has_tree:
        per_artery = {a: ArteryCalcium(agatston=round(v.agatston, 3), volume_mm3=round(v.volume_mm3, 3),
                                       mass_mg=round(v.mass_mg, 3), lesions=v.lesions) for a, v in by_artery.items()}
        drs = cac_drs(total, {a: round(v.agatston, 3) for a, v in by_artery.items()}).text
    else:
        drs = cac_drs(total).category
    slice_factor = spacing[2] / AGATSTON_SLICE_MM
    slice_method = ("3 mm slices: Agatston as defined" if abs(slice_factor - 1) < 1e-6 else
                    f"{spacing[2]:g} mm slices: areas x weights scaled by {spacing[2]:g}/3 mm "
                    "(thickness/3 factor method; no resampling)")
    mass_text = (f"mass = {factor:g} mg/(mm^3 HU) (calibrated) x volume x mean HU" if calibrated else
                 f"mass = {factor:g} mg/(mm^3 HU) x volume x mean HU with an UNCALIBRATED reference factor "
                 "(no calcium calibration phantom for this scanner)")
    assign_text = (f"lesions (26-connected) assigned to the nearest coronary segment label within "
                   f"{max_distance_mm:g} mm, else to its artery territory up to {territory_max_mm:g} mm, else "
                   "unassigned (all counted in the total)" if has_tree else NO_TREE_NOTE)
    method = (f"threshold >= {AGATSTON_THRESHOLD_HU:g} HU; in-slice lesions with 8-connectivity; minimum area "
              f"{min_area_mm2:g} mm^2 ({kept.specks} smaller in-slice specks ignored); {noise_text}; weight by "
              "in-slice peak 130-199 -> 1, 200-299 -> 2, 300-399 -> 3, >= 400 HU -> 4; "
              f"{slice_method}; volume = scored voxels x {voxel_volume:.4g} mm^3; {mass_text}; {found.method}; "
              f"{assign_text}")
    warnings = acquisition_warnings(spacing, metadata, hu.shape[2])
    if not calibrated:
        warnings.append("the mass score uses an uncalibrated reference factor (0.001 mg per mm^3 and HU), not a "
                        "calibration of this scanner: compare masses only within this method")
    if not found.heart_found:
        warnings.append("the heart was not found in the image: calcium was searched in the whole field of view")
    score = CalciumScore(
        kind="agatston", label="Agatston calcium score (non-contrast calcium-scoring series)", agatston=total,
        volume_mm3=round(counted.volume_mm3, 3), mass_mg=round(counted.mass_mg, 3), mass_calibrated=calibrated,
        per_artery=per_artery, per_artery_note=None if has_tree else NO_TREE_NOTE,
        unassigned_agatston=round(unassigned.agatston, 3) if has_tree else None, cac_drs=drs,
        plaque_burden=plaque_burden_from_cac(total), lesions=lesions, excluded=excluded,
        slice_spacing_mm=spacing[2], series_kind="non_contrast", method=method, labels_source=labels_source,
        warnings=warnings)
    score._voxels = LesionVoxels(shape=hu.shape, affine=affine, roi=(slice(None),) * 3, vox=kept.vox, lab=kept.lab)
    return score


@dataclass
class _Tally:
    """Running sums of the reported (rounded) lesion amounts, so totals equal the sum of the listed lesions."""

    agatston: float = 0.0
    volume_mm3: float = 0.0
    mass_mg: float = 0.0
    lesions: int = 0

    def add(self, agatston: float, volume_mm3: float, mass_mg: float) -> None:
        self.agatston += agatston
        self.volume_mm3 += volume_mm3
        self.mass_mg += mass_mg
        self.lesions += 1


def _amounts(s: ScoredMask, i: int, factor: float) -> tuple[float, float, float]:
    """Agatston, volume (mm^3) and mass (mg) of lesion ``i``, rounded as a lesion reports them."""
    return round(float(s.agatston[i]), 3), round(float(s.volume[i]), 3), round(float(factor * s.hu_sum[i]), 3)


def _centroids(coords: np.ndarray, lab: np.ndarray, n: int) -> np.ndarray:
    counts = np.maximum(np.bincount(lab, minlength=n + 1)[1:], 1)
    return np.stack([np.bincount(lab, weights=c, minlength=n + 1)[1:] for c in coords.T], 1) / counts[:, None] \
        if n else np.zeros((0, 3))


def _lesion(i: int, s: ScoredMask, factor: float | None, centroid, affine, *, artery, segment, distance, location,
            assignment=None, reason=None, agatston=True) -> CalciumLesion:
    xyz = affine[:3, :3] @ np.asarray(centroid) + affine[:3, 3]
    agatston_i, volume_i, mass_i = _amounts(s, i, 0.0 if factor is None else factor)
    return CalciumLesion(
        lesion_id=i, artery=artery, segment=segment, agatston=agatston_i if agatston else None,
        volume_mm3=volume_i, mass_mg=None if factor is None else mass_i,
        peak_hu=float(s.peak[i]), centroid_mm=tuple(round(float(c), 2) for c in xyz),
        distance_to_coronary_mm=None if distance is None else round(float(distance), 2), location=location,
        assignment=assignment, excluded_reason=reason)


def _excluded(hu, s: ScoredMask, found, labels, factor, affine) -> list[CalciumLesion]:
    """Excluded lesions with the reason of most of their voxels (bone is listed only near the heart)."""
    if s.n == 0:
        return []
    coords = np.stack(np.unravel_index(s.vox, hu.shape), axis=1)
    centroids = _centroids(coords, s.lab, s.n)
    codes = found.reason.ravel()[s.vox]
    out = []
    for i in range(1, s.n + 1):
        mine = s.lab == i
        code = int(np.bincount(codes[mine]).argmax())
        if code in (1, 2):
            continue  # bone and tissue outside the heart: counted in the method, not listed
        location, reason = {1: "bone", 2: "outside the heart", 3: "stent", 4: "inside the heart",
                                                      6: "aortic root"}.get(code, ""), \
            REASONS[code]
        if code == 5:
            ids = labels.ravel()[s.vox[mine]]
            name = STRUCTURES_BY_LABEL[int(np.bincount(ids).argmax())].display
            location, reason = name, f"lies in the {name}, not in a coronary artery"
        out.append(_lesion(i, s, factor, centroids[i - 1], affine, artery=None, segment=None, distance=None,
                           location=location, reason=reason))
    return out


# ------------------------------------------------------------------------------------- contrast CCTA
def _roi(mask: np.ndarray, spacing, margin_mm: float) -> tuple[slice, slice, slice]:
    """Bounding box of ``mask`` grown by ``margin_mm``, clipped to the volume."""
    box = []
    for axis, (n, s) in enumerate(zip(mask.shape, spacing)):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        pad = int(np.ceil(margin_mm / s))
        box.append(slice(max(int(idx[0]) - pad, 0), min(int(idx[-1]) + pad + 1, n)))
    return tuple(box)  # type: ignore[return-value]


def _shift_affine(affine: np.ndarray | None, roi) -> np.ndarray:
    """Affine of the cropped region: index (0, 0, 0) of the crop is index roi.start of the volume."""
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in roi]
    return affine @ shift


@dataclass
class _ContrastCalcium:
    """Calcium voxels found on a contrast CCTA, inside the box ``roi`` around the coronary labels."""

    roi: tuple[slice, slice, slice]
    sub_labels: np.ndarray  # the label map inside the box
    vox: np.ndarray  # flat indices (into the box) of the calcium voxels kept
    lab: np.ndarray  # their lesion number, 1..n
    n: int
    spacing: tuple[float, float, float]
    pool_hu: float  # median HU of the labelled blood pool; -inf when none is labelled
    lines: list[str]  # how the threshold came out, for the method text


def _find_contrast_calcium(hu: np.ndarray, spacing, labels: np.ndarray | None, *, k_sd: float, min_sd_hu: float,
                           min_margin_hu: float, local_voxels: int, lumen_percentile: float, min_volume_mm3: float,
                           max_distance_mm: float, modality: str, hu_calibrated: bool) -> _ContrastCalcium:
    """The calcium voxels of :func:`contrast_calcium_volume` (its docstring gives the rule)."""
    spacing = _check_image(hu, spacing, modality=modality, hu_calibrated=hu_calibrated)
    labels = _check_labels(hu, labels)
    coronary = coronary_mask(labels) if labels is not None else None
    if labels is None or coronary is None or not coronary.any():
        raise NoCoronaryLabelsError(
            "this is a contrast CCTA, where the Agatston score is not defined, and no coronary tree is available "
            "to measure calcium volume along the lumen: load the non-contrast calcium-scoring series for an "
            "Agatston score, or segment the coronaries first (trained VLM or TotalSegmentator "
            f"'coronary_arteries', SCCT segment labels {min(CORONARY_LABELS)}-{max(CORONARY_LABELS)})")
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
    margin = max(k_sd * noise_sd, min_margin_hu)
    # Unlabelled contrast (a chamber or appendage an image-derived tree does not outline) can lie
    # next to a coronary and be brighter than its lumen, never brighter than the blood pool + margin.
    pool_hu = float(np.median(pool)) if pool.size >= 1000 else -np.inf

    # Voxels that cannot beat any local lumen value are skipped before the neighbour searches.
    floor = max(float(np.percentile(lumen_hu, 10)) + margin, AGATSTON_THRESHOLD_HU)
    cand = np.flatnonzero(flat_hu > floor)
    vox_all = np.zeros(0, np.int64)
    local_lumen = np.zeros(0)
    if len(cand):
        tree = cKDTree(np.stack(np.unravel_index(lumen_idx, sub.shape), axis=1) * scale)
        points = np.stack(np.unravel_index(cand, sub.shape), axis=1) * scale
        distance, _ = tree.query(points, k=1, distance_upper_bound=max_distance_mm + 1e-6)
        # Contrast-filled chambers and aorta next to a coronary are bright but never coronary calcium.
        near = np.isfinite(distance) & ~np.isin(flat_labels[cand], BLOOD_POOL_LABELS)
        cand, points = cand[near], points[near]
        if len(cand):
            _, neighbours = tree.query(points, k=min(local_voxels, len(lumen_idx)))
            local_lumen = np.percentile(lumen_hu[neighbours.reshape(len(cand), -1)], lumen_percentile, axis=1)
            base = np.maximum(local_lumen, pool_hu)
            vox_all = cand[flat_hu[cand] > np.maximum(base + margin, AGATSTON_THRESHOLD_HU)]
    lines = [f"noise SD {noise_sd:.0f} HU from the {noise_from}", f"margin {margin:.0f} HU",
             f"local lumen {local_lumen.min():.0f}-{local_lumen.max():.0f} HU" if len(local_lumen)
             else "no voxel near the lumen above the floor"]

    calcium = np.zeros(sub.shape, dtype=bool)
    calcium.ravel()[vox_all] = True
    lesions3d, n_all = cc3d.connected_components(calcium, connectivity=26, return_N=True)
    lab_all = lesions3d.ravel()[vox_all].astype(np.int64)
    voxel_volume = float(np.prod(spacing))
    # Drop lesions under the minimum volume (noise specks); the survivors are renumbered 1..n.
    big = np.bincount(lab_all, minlength=n_all + 1) * voxel_volume >= min_volume_mm3 - 1e-9
    keep = big[lab_all]
    vox = vox_all[keep]
    kept_ids, lab = np.unique(lab_all[keep], return_inverse=True)
    lab, n = lab.astype(np.int64).ravel() + 1, len(kept_ids)
    return _ContrastCalcium(roi=roi, sub_labels=sub_labels, vox=vox, lab=lab, n=n, spacing=spacing,
                            pool_hu=pool_hu, lines=lines)


def contrast_calcium_volume(hu: np.ndarray, spacing, labels: np.ndarray | None, *,
                            affine: np.ndarray | None = None, k_sd: float = 3.0, min_sd_hu: float = 10.0,
                            min_margin_hu: float = 50.0, local_voxels: int = 64, lumen_percentile: float = 90.0,
                            min_volume_mm3: float = 1.0, max_distance_mm: float = 3.0, modality: str = "CT",
                            hu_calibrated: bool = True, labels_source: str | None = None) -> CalciumScore:
    """Calcium volume on a contrast CCTA, where the Agatston score is not defined.

    Rule: a voxel within ``max_distance_mm`` of a coronary lumen label is calcium when it exceeds
    the LOCAL lumen attenuation, and the labelled blood pool (aorta, aortic root, left ventricle) when
    there is one, by ``max(k_sd x noise SD, min_margin_hu)`` (and 130 HU). The local
    lumen attenuation is the ``lumen_percentile`` (90th) of the ``local_voxels`` lumen voxels
    nearest to it: a few mm of vessel, because the lumen darkens along a vessel; a high
    percentile, because partial volume darkens the lumen edge voxels while calcium must beat the
    fully opacified centre. The margin has a floor of ``min_margin_hu`` (50 HU) because at low
    noise k x SD shrinks to a few tens of HU, below the spread of contrast next to the vessel; and
    calcium must also beat the blood pool, because contrast-filled structures that an image-derived
    tree does not outline lie next to coronaries and are brighter than a distal lumen. Voxels in labelled blood pools (aorta, chambers,
    pulmonary trunk) are never calcium. The noise SD is the robust SD (1.4826 x MAD) of the
    labelled blood pool (aorta, aortic root, left ventricle) when present, else of all lumen
    voxels, at least ``min_sd_hu``. Calcium voxels form 26-connected lesions; those under
    ``min_volume_mm3`` are ignored. Only volumes are reported (partial volume makes them
    approximate); the label says so.

    Args:
        hu, spacing, labels, affine, max_distance_mm, modality, hu_calibrated, labels_source: as
            :func:`agatston_score`, on the contrast series; ``labels`` must hold coronary segments.
        k_sd: how many noise SDs above the local lumen attenuation calcium starts.
        min_sd_hu: floor on the noise SD.
        min_margin_hu: floor on the margin above the local lumen attenuation.
        local_voxels: nearest lumen voxels that give the local lumen attenuation.
        lumen_percentile: percentile of those voxels taken as the local lumen attenuation.
        min_volume_mm3: smallest lesion counted.

    Raises:
        NotHounsfieldError, EmptySeriesError, NoCoronaryLabelsError, CalciumError.
    """  # noqa: E501
    found = _find_contrast_calcium(hu, spacing, labels, k_sd=k_sd, min_sd_hu=min_sd_hu, min_margin_hu=min_margin_hu,
                                   local_voxels=local_voxels, lumen_percentile=lumen_percentile,
                                   min_volume_mm3=min_volume_mm3, max_distance_mm=max_distance_mm, modality=modality,
                                   hu_calibrated=hu_calibrated)
    roi, sub_labels, vox, lab, n, spacing = found.roi, found.sub_labels, found.vox, found.lab, found.n, found.spacing
    pool_hu, lines = found.pool_hu, found.lines
    sub = hu[roi]
    flat_hu = sub.ravel()
    voxel_volume = float(np.prod(spacing))
    peak = np.zeros(n + 1)
    np.maximum.at(peak, lab, flat_hu[vox].astype(np.float64))
    scored = ScoredMask(vox=vox, lab=lab, n=n, agatston=np.zeros(n + 1), volume=np.bincount(lab, minlength=n + 1)
                     * voxel_volume, hu_sum=np.zeros(n + 1), peak=peak, specks=0)
    coords = np.stack(np.unravel_index(vox, sub.shape), axis=1)
    territories = assign_territories(lab, coords, n, sub_labels, spacing, max_distance_mm, max_distance_mm)
    sub_affine = _shift_affine(affine, roi)
    centroids = _centroids(coords, lab, n)
    per_artery = {a: ArteryCalcium(agatston=None, volume_mm3=0.0, mass_mg=None, lesions=0) for a in ARTERIES}
    lesions = []
    for i in range(1, n + 1):
        t = territories[i]
        lesion = _lesion(i, scored, None, centroids[i - 1], sub_affine, artery=t.artery, segment=t.segment,
                         distance=t.distance_mm, location=t.segment or "near the lumen", assignment=t.note,
                         agatston=False)
        lesions.append(lesion)
        if t.artery:
            per_artery[t.artery].lesions += 1
            per_artery[t.artery].volume_mm3 = round(per_artery[t.artery].volume_mm3 + lesion.volume_mm3, 3)
    method = (f"contrast CCTA: calcium = voxels within {max_distance_mm:g} mm of the coronary lumen above the "
              f"local lumen attenuation ({lumen_percentile:g}th percentile of the {local_voxels} nearest lumen voxels) "
              f"and the blood pool ({'none labelled' if not np.isfinite(pool_hu) else f'{pool_hu:.0f} HU'}) + max({k_sd:g} x noise "  # noqa: E501
              f"SD, {min_margin_hu:g} HU), and >= 130 HU ({'; '.join(lines)}); 26-connected "
              f"lesions >= {min_volume_mm3:g} mm^3; volume only: Agatston is defined on non-contrast scans")
    score = CalciumScore(
        kind="contrast_volume", label=CONTRAST_LABEL, agatston=None,
        volume_mm3=round(float(sum(l.volume_mm3 for l in lesions)), 3), mass_mg=None, per_artery=per_artery,  # noqa: E741
        cac_drs=None, plaque_burden=None, lesions=lesions, excluded=[], slice_spacing_mm=spacing[2],
        series_kind="contrast", method=method, labels_source=labels_source,
        warnings=["no non-contrast calcium-scoring series: calcium volume on the contrast CCTA instead"])
    score._voxels = LesionVoxels(shape=hu.shape, affine=np.eye(4) if affine is None else np.asarray(affine, float),
                                 roi=roi, vox=vox, lab=lab)
    return score


# ------------------------------------------------------------------------------------------- session
def _mass_calibration() -> float | None:
    """The site's mass calibration when one was set (environment or settings file), else None."""
    from cardiovlm.tools.core.settings import get_settings

    settings = get_settings()
    return settings.calcium_mass_calibration if "calcium_mass_calibration" in settings.model_fields_set else None


def score_context(ctx, *, calibration: float | None = None) -> CalciumScore:
    """Calcium of a session: Agatston on a non-contrast series, else calcium volume on the contrast CCTA.

    Each loaded series' kind is read from its image and headers (``cardiovlm.tools.quant.calcium_series``); a
    non-contrast series loaded alone is scored as one. Labels: the calcium series' own label map
    when the session has one, else the CCTA's label map carried in patient coordinates.
    """
    calibration = _mass_calibration() if calibration is None else calibration
    series = [(s, s is ctx.cac) for s in (ctx.cac, ctx.study) if s is not None]
    kinds = [(s, is_cac, series_kind(s.hu, s.spacing, s.metadata)) for s, is_cac in series]
    for study, is_cac, kind in kinds:
        if kind.kind != "non_contrast":
            continue
        if is_cac and ctx.cac_labels is not None and ctx.cac_labels.shape == study.shape:
            labels = ctx.cac_labels
        elif ctx.labels is not None and ctx.labels.shape == ctx.study.shape:
            labels = labels_on_grid(ctx.labels, ctx.study.affine, study.shape, study.affine)
        else:
            labels = None
        result = agatston_score(study.hu, study.spacing, labels, affine=study.affine, calibration=calibration,
                                modality=study.modality, hu_calibrated=study.hu_calibrated,
                                labels_source=ctx.labels_source if labels is not None else None,
                                metadata=study.metadata)
        result.method += f"; {kind.method}"
        result.warnings = kind.warnings + result.warnings
        result.scored_series = _series_name(study, "the calcium-scoring series loaded with the CCTA" if is_cac
                                            else "the loaded study")
        return result
    study = ctx.study
    result = contrast_calcium_volume(study.hu, study.spacing, ctx.labels, affine=study.affine,
                                     modality=study.modality, hu_calibrated=study.hu_calibrated,
                                     labels_source=ctx.labels_source)
    result.method += f"; {kinds[-1][2].method}"
    result.warnings = [w for _, _, k in kinds for w in k.warnings] + result.warnings
    result.scored_series = _series_name(study, "the contrast CCTA")
    return result


def _series_name(study, part: str) -> str:
    """'the calcium-scoring series loaded with the CCTA (series 2 'Calcium Score 3.0 mm')': an answer's provenance."""
    meta = study.metadata or {}
    if meta.get("series_description") or meta.get("series_number"):
        return f"{part} (series {meta.get('series_number', '?')} '{meta.get('series_description', '')}')"
    return part


def _lies_in(lesion: CalciumLesion, kind: str, key: str) -> bool:
    """A lesion is "in" an artery when assigned to it, "in" a segment when that is its nearest segment."""
    return lesion.artery == key if kind == "artery" else lesion.segment == key


def calcium_mask(ctx, where: str | None = None) -> tuple[np.ndarray, CalciumScore]:
    """The calcium the calcium score counts, as a mask on the session's study grid: every counted lesion,
    or those in the artery or segment ``where`` names (as :func:`calcium_score_tool` reports them). So
    "show the calcium in the LAD" shows the lesions behind "how much calcium is in the LAD".

    Returns:
        the boolean mask, and the score it comes from.

    Raises:
        CalciumError: ``where`` is not a coronary artery or segment, or no series could be scored.
    """
    result = score_context(ctx)
    ids = {les.lesion_id for les in result.lesions}
    if where is not None:
        kind, key = resolve_structure_or_segment(where)
        if kind not in ("artery", "segment"):
            raise CalciumError(f"{where!r} is not a coronary artery or segment")
        ids = {les.lesion_id for les in result.lesions if _lies_in(les, kind, key)}
    v = result._voxels
    if v is None:
        raise CalciumError("the calcium score kept no lesion voxels to draw")
    scored = np.zeros(v.shape, dtype=np.uint8)
    box = np.zeros(scored[v.roi].shape, dtype=bool)
    box.ravel()[v.vox[np.isin(v.lab, sorted(ids))]] = True
    scored[v.roi] = box
    study = ctx.study
    # A 3 mm calcium-scoring series is sampled onto the study's grid (nearest neighbour, patient mm).
    mask = labels_on_grid(scored, v.affine, study.shape, study.affine).astype(bool)
    return mask, result
