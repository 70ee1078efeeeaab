"""Lesion and stenosis measurement along a coronary vessel from CT intensities, and CAD-RADS 2.0 from it.

The label map and centerline only say where to look (which path, which segment); they may be
image-derived and imperfect. Every lumen, plaque and stent reading comes from the Hounsfield units
(:mod:`cardiovlm.tools.quant.lumen_profile`), so a label map that disagrees with the CT is measured by the CT, and a
CT without a contrast-filled lumen is said to be unmeasurable rather than given a number.

Method (stated in every result):
- Path: the given centerline when it covers the segments, else traced from the label map
  (:mod:`cardiovlm.tools.quant.centerline`), evaluated every ``step_mm``.
- Lumen area per cross-section from the CT (:data:`cardiovlm.tools.quant.lumen_profile.AREA_METHOD`), smoothed along
  equivalent diameter ``2 sqrt(area / pi)`` smoothed along the path (Gaussian, ``path_sigma_mm``:
  image noise, not anatomy, varies over a fraction of a mm).
- Reference diameter: a straight line (normal taper) fitted to diameter against arc length over the
  healthy points only (no calcium, 0.85-1.25 x the current fit), refitted until stable.
- Percent diameter stenosis ``100 (1 - D / D_ref)``; a cross-section without contrast above its wall
  over at least ``min_occlusion_mm`` is an occlusion (100 %).
- A lesion is a stretch with calcified plaque in the wall or a stenosis at or above
  ``lesion_threshold_percent`` (over at least ``min_lesion_mm``); it extends to where the stenosis
  falls below ``extent_threshold_percent`` (linearly interpolated), and stretches closer than
  ``merge_gap_mm`` are one lesion.
- Plaque composition in the lesion's wall by HU (calcified >= the calcium threshold, non-calcified
  30 HU to it, low-attenuation -30 to 30 HU; :data:`cardiovlm.tools.quant.lumen_profile.WALL_METHOD`), and the
  remodeling index: outer vessel area at the minimal lumen diameter over the mean outer area of the
  healthy cross-sections within ``reference_window_mm`` on either side.
- Blood pool (sets the lumen level, its noise ceiling and the calcium threshold): the aorta of the label
  map, else the aortic root found in the CT at the coronary ostia (:func:`blood_at_ostia`).
- Stents: metal attenuation ringing the lumen (:mod:`cardiovlm.tools.quant.lumen_profile`); CAD-RADS 2.0 from the
  measured maximal stenosis per segment (:func:`cardiovlm.tools.quant.cadrads.cad_rads`), with S for a stent seen.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    CORONARY_LABELS,
    MAIN_VESSEL_PATHS,
    SEGMENT_PARENT,
    SEGMENTS_BY_CODE,
    STRUCTURES_BY_NAME,
    resolve_structure_or_segment,
)
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.quant.cadrads import (
    MILD_PERCENT,
    CadRads,
    cad_rads,
    shown_percent,
    stenosis_category,
    worst_lesion,
)
from cardiovlm.tools.quant.centerline import LabelBoxes, VesselPath, label_boxes, resample_polyline, vessel_path
from cardiovlm.tools.quant.lumen_profile import (
    AREA_METHOD,
    WALL_METHOD,
    CrossSectionConfig,
    CrossSections,
    NoLumenFound,
    read_cross_sections,
)

REFERENCE_METHOD = "linear taper fitted to the healthy (calcium-free, non-narrowed) diameters of the whole path"
MEASURED_FROM = "CT intensities (the label map and centerline only locate the vessel)"
# Measured on the hand-made tube study (0.4 mm voxels, 0.5 mm PSF): read through the struts, a patent
# stent's lumen reads 25-34 % narrowed and an 80 % in-stent restenosis 57 %, so a reading there could
# neither confirm patency nor grade restenosis.
IN_STENT_NOT_GRADED = ("the stent's metal blooms into its lumen at CT angiography resolution (read through the "
                       "struts, a patent stent looks 25-35 % narrowed and an 80 % restenosis about 57 %), so the "
                       "lumen inside a stent is not graded")


class StenosisError(CardioVLMError):
    """The vessel cannot be measured (wrong modality, no coronary tree, unknown vessel, no lumen in the CT)."""

    code = "stenosis.unmeasurable"


class NoLumenError(StenosisError):
    """The CT along the vessel holds no contrast-filled lumen: the vessel could not be measured."""

    code = "stenosis.no_lumen"


class BloodPoolConfig(BaseModel):
    """How the blood pool is found in the CT next to the coronary ostia when no aorta label exists."""

    window_mm: float = Field(15.0, gt=0, description="half-width of the cube around each ostium searched")
    depth_mm: float = Field(4.0, gt=0, description="a voxel this deep inside a bright region is blood pool: "
                            "deeper than any coronary lumen's radius (at most ~2.5 mm)")
    min_voxels: int = Field(50, ge=1, description="fewer deep voxels than this give no estimate")
    fat_hu: float = Field(-100.0, description="the darkest soft tissue the bright-region level is set against")


class StenosisConfig(BaseModel):
    """Measurement conventions (documented choices, not guideline values)."""

    step_mm: float = Field(0.25, gt=0, description="spacing of the measuring planes along the centerline")
    lesion_threshold_percent: float = Field(
        MILD_PERCENT, ge=0, le=100, description="diameter stenosis from which a stretch counts as a lesion without calcium: "  # noqa: E501
        "the CAD-RADS 2 bound; below it a narrowing without calcium is within the reading's spread on healthy "
        "phantom vessels (up to ~24 % where a vessel runs along a bright chamber)")
    extent_threshold_percent: float = Field(
        10.0, ge=0, le=100, description="a lesion extends along the path while its stenosis stays at or above this")
    full_depth_points: float = Field(4.0, gt=0, description="a lesion's full depth starts within this many "
                                     "points of its maximal stenosis (the noise of a plateau)")
    min_lesion_mm: float = Field(1.0, ge=0, description="shorter diseased stretches are ignored as noise")
    merge_gap_mm: float = Field(1.0, ge=0, description="diseased stretches closer than this are one lesion")
    min_occlusion_mm: float = Field(1.5, ge=0, description="a lumen absent over at least this length is an occlusion")
    path_sigma_mm: float = Field(0.75, ge=0, description="Gaussian sigma of the along-path smoothing of the lumen "
                                 "diameter (image noise, not anatomy, varies over a fraction of a mm)")
    min_calcium_mm2: float = Field(0.5, ge=0, description="calcified wall area that makes a plane's plaque evidence")
    branch_origin_mm: float = Field(2.0, ge=0, description="a side branch's calcium is not read this close to "
                                    "its origin (the parent's wall)")
    max_merge_fill_mm: float = Field(2.0, ge=0, description="a stretch this short where the lumen merges with a "
                                     "bright neighbour takes the stenosis of the planes around it; longer ones "
                                     "are not graded")
    mld_sigma_mm: float = Field(0.25, ge=0, description="along-path smoothing of the diameter a lesion's "
                                "minimal lumen diameter and stenosis are read from")
    min_reference_mm: float = Field(1.5, ge=0, description="stretches whose reference diameter is below this are "
                                    "not graded (CAD-RADS grades vessels of 1.5 mm and more; below, CT noise on a "
                                    "lumen of a few voxels reads 25-35 % dips on healthy phantom branches)")
    reference_window_mm: float = Field(10.0, gt=0, description="healthy planes this far around a lesion give "
                                       "the remodeling index's reference outer area")
    cross_section: CrossSectionConfig = Field(default_factory=CrossSectionConfig,
                                              description="how each cross-section is read from the CT")
    blood_pool: BloodPoolConfig = Field(default_factory=BloodPoolConfig,
                                        description="how the blood pool is found in the CT without an aorta label")


class VesselProfile(BaseModel):
    """Per-plane measurements along a path (arrays of length N, proximal to distal)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: VesselPath
    area_mm2: np.ndarray
    diameter_mm: np.ndarray
    reference_mm: np.ndarray
    stenosis_percent: np.ndarray
    mld_diameter_mm: np.ndarray  # diameter smoothed less, for a lesion's depth
    mld_stenosis_percent: np.ndarray
    plaque: np.ndarray  # bool: calcified plaque in the wall of this plane
    stent: np.ndarray  # bool: stent metal rings the lumen in this plane
    sections: CrossSections


class PlaqueComposition(BaseModel):
    """Plaque volume in a lesion's wall by attenuation (mm^3), as read from the CT."""

    calcified_mm3: float = Field(description="wall at or above the calcium threshold")
    noncalcified_mm3: float = Field(description="wall between 30 HU and the calcium threshold")
    low_attenuation_mm3: float = Field(description="wall between -30 and 30 HU (low-attenuation plaque)")
    kind: str = Field(description="calcified, non-calcified, mixed, or 'not resolved' when the wall is too thin")
    calcium_threshold_hu: float
    method: str = WALL_METHOD


class Lesion(BaseModel):
    segment: str = Field(description="SCCT segment at the minimal lumen diameter")
    segments: list[str] = Field(description="every segment the lesion spans, proximal first")
    start_mm: float = Field(description="arc length from the proximal end of the path to the lesion start")
    end_mm: float = Field(description="arc length from the proximal end of the path to the lesion end")
    length_mm: float
    start_in_segment_mm: float = Field(description="lesion start measured from the proximal end of its first segment")
    stenosis_percent: float = Field(description="maximal diameter stenosis; 100 = occlusion")
    category: str = Field(description="CAD-RADS 2.0 category of this stenosis alone")
    minimal_lumen_diameter_mm: float
    mld_position_mm: float = Field(description="arc length of the minimal lumen diameter from the path start")
    start_point_mm: tuple[float, float, float] = Field(description="lesion start on the centerline, LPS mm")
    end_point_mm: tuple[float, float, float] = Field(description="lesion end on the centerline, LPS mm")
    mld_point_mm: tuple[float, float, float] = Field(description="minimal lumen diameter position, LPS mm")
    minimal_lumen_area_mm2: float
    reference_diameter_mm: float = Field(description="reference (healthy) diameter at the minimal lumen diameter")
    occluded: bool
    occlusion_length_mm: float = 0.0
    plaque: bool = Field(description="plaque seen in the wall by CT attenuation (calcium, or a resolved wall)")
    in_stent: bool = Field(description="the lesion's deepest point lies inside a stent (the in-stent lumen itself "
                           "is not graded: metal blooming hides it)")
    composition: PlaqueComposition
    remodeling_index: float | None = Field(
        None, description="outer vessel area at the MLD / that of the nearby healthy vessel; null where no "
        "healthy reference lies within reach or the wall is not resolved")
    method: str = Field(MEASURED_FROM, description="what the measurement was read from")


class VesselMeasurement(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    vessel: str = Field(description="artery or segment measured, e.g. 'LAD' or 'D1'")
    segments: list[str] = Field(description="segments of the path, proximal to distal")
    length_mm: float = Field(description="centerline length measured")
    lesions: list[Lesion]
    segment_max_stenosis: dict[str, float] = Field(
        description="maximal diameter stenosis (%) per segment that has a lesion")
    stent_present: bool
    in_stent_graded: bool = Field(False, description="whether the lumen inside a stent was graded: never, "
                                  "metal blooming at CCTA resolution hides it (in-stent restenosis not assessed)")
    in_stent_note: str | None = Field(None, description="why the lumen inside the stent found here is not graded; "
                                      "null without a stent")
    centerline_source: str
    measured_from: str = MEASURED_FROM
    area_method: str = AREA_METHOD
    reference_method: str = REFERENCE_METHOD
    lumen_hu: float = Field(description="lumen attenuation of this study along the vessel (HU)")
    calcium_threshold_hu: float = Field(description="attenuation read as calcium or metal, never as lumen (HU)")
    blur_sigma_mm: float = Field(description="effective blur measured on this vessel's resolved edges")
    lesion_threshold_percent: float
    profile: VesselProfile | None = Field(None, exclude=True, description="per-plane arrays (not serialised)")

    def worst_lesion(self, segment: str | None = None) -> Lesion | None:
        """The most severe lesion (:func:`cardiovlm.tools.quant.cadrads.worst_lesion`), optionally only those touching
        ``segment``."""
        return worst_lesion(les for les in self.lesions if segment is None or segment in les.segments)


# ----------------------------------------------------------------------------------------------
# Pure core
# ----------------------------------------------------------------------------------------------

def reference_diameter(arc_mm: np.ndarray, diameter_mm: np.ndarray, diseased: np.ndarray,
                       iterations: int = 10) -> np.ndarray:
    """Healthy reference diameter along the path: a robust straight-line (taper) fit.

    Args:
        arc_mm: (N,) arc length.
        diameter_mm: (N,) measured equivalent diameters.
        diseased: (N,) bool, points known not to be healthy (plaque); never used for the fit.

    Points below 0.85 or above 1.25 times the current fit (narrowings, bifurcations) are left out
    and the line refitted until the set is stable.
    """
    usable = ~diseased & (diameter_mm > 0)
    if usable.sum() < 4:
        usable = diameter_mm > 0
    if usable.sum() < 2:
        raise StenosisError("too little patent lumen along the vessel to estimate a reference diameter")
    healthy = usable.copy()
    fit = np.full_like(diameter_mm, np.median(diameter_mm[usable]))
    for _ in range(iterations):
        coef = np.polyfit(arc_mm[healthy], diameter_mm[healthy], 1)
        fit = np.polyval(coef, arc_mm)
        new = usable & (diameter_mm >= 0.85 * fit) & (diameter_mm <= 1.25 * fit)
        if new.sum() < 4 or np.array_equal(new, healthy):
            break
        healthy = new
    return np.maximum(fit, 1e-3)


def measure_vessel(hu: np.ndarray, affine: np.ndarray, segments: Sequence[str], *, labels: np.ndarray | None = None,
                   vessel: str | None = None, centerlines: cf.Centerlines | None = None,
                   config: StenosisConfig | None = None, boxes: LabelBoxes | None = None) -> VesselMeasurement:
    """Measure lumen, reference, stenosis, plaque and lesions along the path through ``segments`` from the CT.

    Args:
        hu: (I, J, K) contrast CT in Hounsfield units.
        affine: (4, 4) voxel index -> LPS mm.
        segments: SCCT codes proximal to distal, e.g. ``MAIN_VESSEL_PATHS["LAD"]``.
        labels: label map on the CT grid (ids from ``cardiovlm.tools.core.anatomy``): only where the vessel runs,
            used when ``centerlines`` do not cover the segments.
        vessel: name reported (defaults to the joined segment codes).
        centerlines: centerlines to follow (image-derived, or a phantom's as a stand-in).
        boxes: :func:`cardiovlm.tools.quant.centerline.label_boxes` of ``labels`` when already computed.

    Raises:
        NoLumenError: the CT holds no contrast-filled lumen along the path.

    Example::

        m = measure_vessel(study.hu, study.affine, ("pLAD", "mLAD", "dLAD"), labels=labels, vessel="LAD")
        print(m.worst_lesion().stenosis_percent)
    """
    config = config or StenosisConfig()
    hu = np.asarray(hu)
    if hu.ndim != 3 or np.asarray(affine).shape != (4, 4):
        raise StenosisError(f"expected a 3-D CT and a 4x4 affine, got shapes {hu.shape} and {np.shape(affine)}")
    path = vessel_path(labels, affine, segments, centerlines, boxes=boxes)
    points, arc = resample_polyline(path.points_mm, config.step_mm)
    near = np.clip(np.searchsorted(path.arc_mm, arc), 0, len(path.arc_mm) - 1)
    path = VesselPath(points, arc, path.segments[near], path.source)
    name = vessel or "+".join(segments)
    try:
        sections = read_cross_sections(hu, affine, points, path.tangents(), config.step_mm, config.cross_section,
                                       blood_hu=blood_attenuation(hu, labels, boxes, affine=affine,
                                                                  centerlines=centerlines, config=config.blood_pool))
    except NoLumenFound as err:
        raise NoLumenError(f"{name}: {err}") from err

    # Smoothing the diameter rather than the area keeps a short lesion's minimum (the area is
    # quadratic in the radius, so averaging areas lifts a sharp minimum about twice as much).
    raw_diameter = 2.0 * np.sqrt(np.maximum(sections.area_mm2, 0.0) / np.pi)
    # A stent's ends ring the lumen only partly: metal and blooming near a stent are not plaque.
    reach = max(int(round(1.5 / config.step_mm)), 1)
    stent = ndimage.binary_closing(sections.stent, iterations=reach)  # struts between the sampled rays
    near_stent = ndimage.binary_dilation(stent, iterations=reach)
    # The in-stent lumen is not graded (IN_STENT_NOT_GRADED says why), so in-stent restenosis is not assessed.
    ungraded_stent = near_stent
    plaque = (sections.calcified_mm2 >= config.min_calcium_mm2) & ~near_stent
    closed = _long_runs(sections.no_lumen & ~near_stent, arc, config.min_occlusion_mm)
    # A plane without contrast that is not part of an occlusion (the path grazing the lumen's edge,
    # a noise dip) is not read: it takes its neighbours' reading like a short merge.
    merged = sections.merged | (sections.no_lumen & ~closed)
    if SEGMENT_PARENT.get(segments[0]) is not None:
        # A side branch's first millimetres lie in its parent's lumen and wall: what is read there
        # belongs to the parent (measured on the parent's own path).
        origin = arc <= config.branch_origin_mm
        plaque &= ~origin
        merged |= origin

    def smoothed(sigma_mm: float) -> np.ndarray:
        d = raw_diameter
        if sigma_mm > 0 and len(d) > 1:
            d = ndimage.gaussian_filter1d(d, sigma_mm / config.step_mm, mode="nearest")
        return np.where(closed, 0.0, np.maximum(d, 0.0))

    def grade(d: np.ndarray, reference: np.ndarray) -> np.ndarray:
        percent = np.clip(100.0 * (1.0 - d / reference), 0.0, 100.0)
        # No lumen of its own where it joins a larger bright structure (taken from the neighbouring
        # planes, or none at the path's ends), nor inside a stent where metal blooming at this
        # resolution hides the in-stent lumen.
        percent[ungraded_stent | merged | (reference < config.min_reference_mm)] = 0.0
        short = merged & ~_long_runs(merged, arc, config.max_merge_fill_mm + config.step_mm)
        if short.any() and not merged.all():
            # A short merge inside a narrowing (a chamber touching the plaque) takes its neighbours' reading.
            ok = ~merged
            inner = short & (arc > arc[ok][0]) & (arc < arc[ok][-1])
            percent[inner] = np.interp(arc[inner], arc[ok], percent[ok])
        percent = np.where(closed, 100.0, np.minimum(percent, 99.0))
        return _ignore_end_gaps(percent, closed, arc, config.min_lesion_mm)

    diameter = smoothed(config.path_sigma_mm)
    area = np.pi * diameter ** 2 / 4
    reference = reference_diameter(arc, diameter, plaque | near_stent | merged)
    percent = grade(diameter, reference)
    # The lesion's own minimum is read with less smoothing: its position and extent come from the
    # steadier profile, its depth from one that does not lift a pointed minimum.
    mld_diameter = smoothed(config.mld_sigma_mm)
    mld_percent = grade(mld_diameter, reference)
    profile = VesselProfile(path=path, area_mm2=area, diameter_mm=diameter, reference_mm=reference,
                            stenosis_percent=percent, mld_diameter_mm=mld_diameter, mld_stenosis_percent=mld_percent,
                            plaque=plaque, stent=stent, sections=sections)
    lesions = [_lesion(profile, run, config) for run in _lesion_runs(profile, config)]
    seg_max: dict[str, float] = {}
    for les in lesions:
        for seg in les.segments:
            # Read from the same profile as the lesion's own stenosis, so a segment's CAD-RADS is
            # its worst lesion's category (the steadier profile lifts a pointed minimum).
            i0, i1 = np.searchsorted(arc, [les.start_mm, les.end_mm])
            in_seg = mld_percent[i0:i1 + 1][path.segments[i0:i1 + 1] == seg]
            value = float(in_seg.max()) if in_seg.size else 0.0
            seg_max[seg] = round(max(seg_max.get(seg, 0.0), value), 1)
    return VesselMeasurement(
        vessel=name, segments=[s for s in segments if s in set(path.segments)],
        length_mm=round(float(arc[-1]), 2), lesions=lesions, segment_max_stenosis=seg_max,
        stent_present=bool(stent.any()), centerline_source=path.source,
        in_stent_note=IN_STENT_NOT_GRADED if stent.any() else None,
        lumen_hu=round(sections.lumen_hu, 1), calcium_threshold_hu=round(sections.calcium_threshold_hu, 1),
        blur_sigma_mm=round(sections.blur_sigma_mm, 3),
        lesion_threshold_percent=config.lesion_threshold_percent, profile=profile)


def blood_attenuation(hu: np.ndarray, labels: np.ndarray | None, boxes: LabelBoxes | None = None, *,
                      affine: np.ndarray | None = None, centerlines: cf.Centerlines | None = None,
                      config: BloodPoolConfig | None = None) -> float | None:
    """Median HU of the blood pool: the aorta (or aortic root) where the label map has it, else the aortic
    root found in the CT at the coronary ostia (:func:`blood_at_ostia`), else None."""
    if labels is not None:
        boxes = label_boxes(labels) if boxes is None else boxes
        for name in ("aorta", "aortic_root"):
            lid = STRUCTURES_BY_NAME[name].label_id
            if lid in boxes:
                lo, hi = boxes[lid]
                sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
                inside = ndimage.binary_erosion(labels[sub] == lid, iterations=2)
                if inside.sum() >= 20:
                    return float(np.median(hu[sub][inside]))
    if affine is not None and centerlines is not None:
        return blood_at_ostia(hu, affine, centerlines, config)
    return None


def blood_at_ostia(hu: np.ndarray, affine: np.ndarray, centerlines: cf.Centerlines,
                   config: BloodPoolConfig | None = None) -> float | None:
    """Blood pool attenuation read in the CT around the coronary ostia (first points of LM and pRCA).

    An image-derived tree has no aorta label, yet a coronary's lumen has the blood's attenuation: without
    it a vessel's lumen level is read from its own, distally dimmer and blurred peaks, and the brighter
    lumen next to its origin lies above that level's ceiling and is read as calcium (an area of 0 on a
    healthy vessel). The aortic root is the large bright region at an ostium: the median of the voxels at
    least ``depth_mm`` inside the region brighter than half-way between fat and the brightest tissue there
    (the deep region nearest the ostium).
    """
    config = config or BloodPoolConfig()
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    inv = np.linalg.inv(np.asarray(affine))
    values = []
    for code in ("LM", "pRCA"):
        points = centerlines.segments.get(code)
        if not points:
            continue
        ijk = np.round(inv[:3, :3] @ np.asarray(points[0].xyz) + inv[:3, 3]).astype(int)
        half = np.ceil(config.window_mm / spacing).astype(int)
        lo, hi = np.maximum(ijk - half, 0), np.minimum(ijk + half + 1, hu.shape)
        if np.any(hi <= lo):
            continue
        crop = np.asarray(hu[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], np.float32)
        # half-way between the brightest tissue and the darkest soft tissue there (fat; lung and air below it)
        level = (np.percentile(crop, 99) + float(np.clip(np.percentile(crop, 5), config.fat_hu, 0.0))) / 2
        depth = ndimage.distance_transform_edt(crop > level, sampling=spacing)
        # the deep region nearest the ostium: its aortic root, not a chamber (the right heart is dimmer)
        pieces, count = ndimage.label(depth >= config.depth_mm)
        if count == 0:
            continue
        seed = tuple(int(c) for c in np.clip(ijk - lo, 0, hi - lo - 1))
        _, nearest = ndimage.distance_transform_edt(pieces == 0, sampling=spacing, return_indices=True)
        piece = pieces[tuple(nearest[(slice(None),) + seed])]
        deep = crop[pieces == piece]
        if deep.size >= config.min_voxels:
            values.append(float(np.median(deep)))
    return float(np.median(values)) if values else None


def _long_runs(flag: np.ndarray, arc: np.ndarray, min_mm: float) -> np.ndarray:
    """``flag`` kept only on runs spanning at least ``min_mm``."""
    out = np.zeros_like(flag, dtype=bool)
    for a, b in _runs(flag):
        if arc[b] - arc[a] + (arc[1] - arc[0] if len(arc) > 1 else 0.0) >= min_mm:
            out[a:b + 1] = True
    return out


def _ignore_end_gaps(percent: np.ndarray, closed: np.ndarray, arc: np.ndarray, tol_mm: float) -> np.ndarray:
    """No lumen within ``tol_mm`` of a path end is where the path overruns the vessel, not an occlusion."""
    percent = percent.copy()
    end_zone = (arc <= tol_mm) | (arc >= arc[-1] - tol_mm)
    percent[end_zone & closed] = 0.0
    return percent


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive index ranges of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.r_[0, flag.astype(np.int8), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _lesion_runs(p: VesselProfile, config: StenosisConfig) -> list[tuple[int, int]]:
    """Index ranges of lesions: a core (calcium or stenosis >= threshold) grown to the extent threshold."""
    arc, pct = p.path.arc_mm, p.stenosis_percent
    core = p.plaque | (pct >= config.lesion_threshold_percent)
    extent = core | (pct >= config.extent_threshold_percent)
    runs = [(a, b) for a, b in _runs(extent) if core[a:b + 1].any()]
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and arc[a] - arc[merged[-1][1]] <= config.merge_gap_mm:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    out = []
    for a, b in merged:
        start, end = _edge(p, a, b, config)
        idx = np.flatnonzero(core[a:b + 1]) + a
        core_len = arc[idx[-1]] - arc[idx[0]] + config.step_mm
        if end - start >= config.min_lesion_mm and core_len >= config.min_lesion_mm:
            out.append((a, b))
    return out


def _edge(p: VesselProfile, a: int, b: int, config: StenosisConfig) -> tuple[float, float]:
    """Lesion start and end (mm) along the path.

    A narrowing's taper is taken as symmetric about its half-depth point (true of linear, cosine and
    the phantoms' cos^2 tapers): each end lies as far before the half-depth crossing as the full
    depth (within ``full_depth_points`` of the lesion's maximum) lies after it. Calcium alone, or a stretch without a
    narrowing, ends midway to the neighbouring sample.
    """
    arc, pct = p.path.arc_mm, p.stenosis_percent
    window = pct[a:b + 1]
    top = float(window.max())

    def midway(inner: int, outer: int) -> float:
        return float(arc[inner]) if outer < 0 or outer >= len(arc) else float((arc[inner] + arc[outer]) / 2)

    if top < config.lesion_threshold_percent:
        return midway(a, a - 1), midway(b, b + 1)
    full = np.flatnonzero(window >= top - config.full_depth_points) + a

    def end(first_full: int, direction: int) -> float:
        i = first_full
        while 0 <= i - direction < len(arc) and pct[i - direction] >= top / 2:
            i -= direction
        j = i - direction  # first sample below half depth (or off the path)
        if not 0 <= j < len(arc):
            return float(arc[i])
        frac = (pct[i] - top / 2) / max(pct[i] - pct[j], 1e-9)
        half = arc[i] + frac * (arc[j] - arc[i])
        return float(np.clip(2 * half - arc[first_full], arc[0], arc[-1]))

    return end(int(full[0]), 1), end(int(full[-1]), -1)


def _composition(p: VesselProfile, window: slice, step: float) -> PlaqueComposition:
    s = p.sections
    calc = float(s.calcified_mm2[window].sum() * step)
    noncal = float(s.noncalcified_mm2[window].sum() * step)
    lap = float(s.low_attenuation_mm2[window].sum() * step)
    soft = noncal + lap
    kind = ("not resolved" if calc + soft < 1.0 else "mixed" if calc >= 1.0 and soft >= 1.0
            else "calcified" if calc >= soft else "non-calcified")
    return PlaqueComposition(calcified_mm3=round(calc, 1), noncalcified_mm3=round(noncal, 1),
                             low_attenuation_mm3=round(lap, 1), kind=kind,
                             calcium_threshold_hu=round(s.calcium_threshold_hu, 1))


def _remodeling(p: VesselProfile, a: int, b: int, worst: int, config: StenosisConfig) -> float | None:
    """Outer vessel area at the MLD over the mean outer area of healthy planes within reach on each side."""
    arc, s = p.path.arc_mm, p.sections
    if not s.in_plaque[worst]:
        return None
    healthy = (p.stenosis_percent < config.extent_threshold_percent) & ~p.plaque & ~p.stent
    before = healthy & (arc < arc[a]) & (arc >= arc[a] - config.reference_window_mm)
    after = healthy & (arc > arc[b]) & (arc <= arc[b] + config.reference_window_mm)
    pool = before | after
    if pool.sum() < 4:
        return None
    return round(float(s.outer_area_mm2[worst] / np.mean(s.outer_area_mm2[pool])), 2)


def _lesion(p: VesselProfile, run: tuple[int, int], config: StenosisConfig) -> Lesion:
    a, b = run
    arc, seg = p.path.arc_mm, p.path.segments
    start, end = _edge(p, a, b, config)
    window = slice(a, b + 1)
    worst = a + int(np.argmax(p.mld_stenosis_percent[window] - 1e-6 * p.mld_diameter_mm[window]))
    percent = float(p.mld_stenosis_percent[worst])
    zero = p.area_mm2[window] == 0
    occl = max((arc[a + j] - arc[a + i] + config.step_mm for i, j in _runs(zero)), default=0.0)
    spanned = list(dict.fromkeys(seg[window].tolist()))
    first_seg_start = float(arc[np.flatnonzero(seg == spanned[0])[0]])
    composition = _composition(p, window, config.step_mm)
    return Lesion(
        segment=str(seg[worst]), segments=spanned,
        start_mm=round(start, 2), end_mm=round(end, 2), length_mm=round(end - start, 2),
        start_in_segment_mm=round(max(start - first_seg_start, 0.0), 2),
        stenosis_percent=round(percent, 1), category=stenosis_category(round(percent, 1)),
        minimal_lumen_diameter_mm=round(float(p.mld_diameter_mm[worst]), 2),
        mld_position_mm=round(float(arc[worst]), 2),
        start_point_mm=_point_at(p.path, start), end_point_mm=_point_at(p.path, end),
        mld_point_mm=_point_at(p.path, float(arc[worst])),
        minimal_lumen_area_mm2=round(float(np.pi * p.mld_diameter_mm[worst] ** 2 / 4), 2),
        reference_diameter_mm=round(float(p.reference_mm[worst]), 2),
        occluded=bool(zero.any() and percent >= 100), occlusion_length_mm=round(float(occl), 2),
        plaque=bool(p.plaque[window].any() or composition.kind != "not resolved"),
        in_stent=bool(p.stent[worst]), composition=composition,
        remodeling_index=_remodeling(p, a, b, worst, config),
    )


def _point_at(path: VesselPath, arc_mm: float) -> tuple[float, float, float]:
    x, y, z = (round(float(np.interp(arc_mm, path.arc_mm, path.points_mm[:, d])), 2) for d in range(3))
    return x, y, z


class StudyStenosis(BaseModel):
    vessels: list[VesselMeasurement]
    segment_max_stenosis: dict[str, float] = Field(description="per segment with a lesion, maximal stenosis %")
    cad_rads: CadRads
    stent_present: bool
    labels_source: str | None = None
    unmeasured: dict[str, str] = Field(default_factory=dict, description="side branch -> why it was not graded "
                                       "(no contrast-filled lumen along it)")


def vessels_present(labels: np.ndarray, ids: set[int] | None = None) -> dict[str, tuple[str, ...]]:
    """Vessel name -> its path segments, for the main vessels and side branches with lumen labels."""
    ids = set(label_boxes(labels)) if ids is None else ids
    present = {code for code, seg in SEGMENTS_BY_CODE.items() if seg.label_id in ids}
    out = {name: tuple(s for s in segs if s in present) for name, segs in MAIN_VESSEL_PATHS.items()}
    on_main = {s for segs in MAIN_VESSEL_PATHS.values() for s in segs}
    out.update({code: (code,) for code in sorted(present - on_main, key=lambda c: SEGMENTS_BY_CODE[c].number)})
    return {k: v for k, v in out.items() if v}


def measure_study(hu: np.ndarray, affine: np.ndarray, *, labels: np.ndarray,
                  centerlines: cf.Centerlines | None = None, vessels: Sequence[str] | None = None,
                  config: StenosisConfig | None = None, labels_source: str | None = None) -> StudyStenosis:
    """Every vessel's lesions, read from the CT, and the patient's CAD-RADS 2.0 (LM and three-vessel
    rules, S modifier for a stent seen by its metal).

    Args:
        hu: (I, J, K) contrast CT in Hounsfield units; affine: (4, 4) voxel index -> LPS mm.
        labels: label map on the CT grid: which coronaries are there and where they run.
        vessels: names from :func:`vessels_present` (e.g. ``["LAD", "LCx", "RCA"]``); default all.

    Raises:
        StenosisError: no coronary labels; NoLumenError: a main artery holds no contrast-filled lumen (a side
            branch without one is listed in ``unmeasured``).
    """
    boxes = label_boxes(labels)
    available = vessels_present(labels, set(boxes))
    if not available:
        raise StenosisError("the label map has no coronary artery labels: segment the coronaries first")
    names = list(vessels) if vessels is not None else list(available)
    measured, unmeasured = [], {}
    for n in (n for n in names if n in available):
        try:
            measured.append(measure_vessel(hu, affine, available[n], labels=labels, vessel=n,
                                           centerlines=centerlines, config=config, boxes=boxes))
        except NoLumenError as err:
            # A side branch traced into fat or muscle holds no lumen to grade; the study's grading goes on
            # without it. A main artery without one stops it: its disease would go unreported.
            if n in MAIN_VESSEL_PATHS:
                raise
            unmeasured[n] = str(err)
    seg_max: dict[str, float] = {}
    for m in measured:
        for seg, value in m.segment_max_stenosis.items():
            seg_max[seg] = max(seg_max.get(seg, 0.0), value)
    stent = any(m.stent_present for m in measured)
    return StudyStenosis(vessels=measured, segment_max_stenosis=seg_max, cad_rads=cad_rads(seg_max, stent=stent),
                         stent_present=stent, labels_source=labels_source, unmeasured=unmeasured)


def segments_for(name: str) -> tuple[str, str | None]:
    """(vessel, segment) for a user's name: 'LAD' -> ('LAD', None); 'proximal LAD' -> ('LAD', 'pLAD');
    a side branch 'D1' -> ('D1', 'D1').

    Raises:
        StenosisError: the name is neither a coronary artery nor a coronary segment.
    """
    try:
        kind, key = resolve_structure_or_segment(name)
    except ValueError as err:
        raise StenosisError(f"{name!r} is not a coronary artery or segment name CardioVLM knows; "
                            f"try an artery ({', '.join(ARTERIES)}) or a segment such as pLAD") from err
    if kind == "artery":
        return key, None
    if kind != "segment":
        raise StenosisError(f"{name!r} is not a coronary artery or segment; stenosis is measured on coronaries")
    for vessel, segs in MAIN_VESSEL_PATHS.items():
        if key in segs:
            return vessel, key
    return key, key


# ----------------------------------------------------------------------------------------------
# Session entry point and LangChain tool
# ----------------------------------------------------------------------------------------------

def check_context(ctx) -> LabelBoxes:
    """Refuse what cannot be measured, with a message a clinician understands; returns the label boxes."""
    if ctx.study.modality != "CT" or not ctx.study.hu_calibrated:
        raise StenosisError(f"this is a {ctx.study.modality} study: stenosis measurement needs a contrast CT "
                            "angiography of the coronaries")
    boxes = label_boxes(ctx.labels) if ctx.labels is not None else {}
    if not set(boxes) & set(CORONARY_LABELS):
        raise StenosisError("no coronary artery segmentation is available for this study, so the vessel "
                            "cannot be measured: segment the coronaries first (VLM, phantom ground truth "
                            "or a supplied label map)")
    return boxes


class LesionMeasurement(BaseModel):
    vessel: str
    segment: str | None = Field(description="segment asked about, or null for the whole artery")
    lesion: Lesion | None = Field(description="the most severe lesion there, or null when none is found")
    message: str = Field(description="one-sentence answer for the clinician")
    measurement: VesselMeasurement
    labels_source: str | None


def measure_lesion(ctx, vessel: str, config: StenosisConfig | None = None) -> LesionMeasurement:
    """The worst lesion of an artery or segment in the session's study (see :func:`measure_vessel`)."""
    boxes = check_context(ctx)
    name, segment = segments_for(vessel)
    available = vessels_present(ctx.labels, set(boxes))
    if name not in available:
        raise StenosisError(f"the {name} is not present in this study's coronary segmentation")
    m = measure_vessel(ctx.study.hu, ctx.study.affine, available[name], labels=ctx.labels, vessel=name,
                       centerlines=ctx.centerlines, config=config, boxes=boxes)
    lesion = m.worst_lesion(segment)
    where = segment or name
    if lesion is None:
        msg = f"No lesion found on the {where} (threshold {m.lesion_threshold_percent:g}% or calcified plaque)."
    else:
        msg = (f"{where}: {shown_percent(lesion.stenosis_percent)}% diameter stenosis (CAD-RADS {lesion.category}), "
               f"{lesion.length_mm:.1f} mm long, minimal lumen diameter {lesion.minimal_lumen_diameter_mm:.1f} mm "
               f"vs reference {lesion.reference_diameter_mm:.1f} mm"
               + (", occluded" if lesion.occluded else "") + (", inside a stent" if lesion.in_stent else "")
               + f"; plaque {lesion.composition.kind}"
               + (f", remodeling index {lesion.remodeling_index:.2f}" if lesion.remodeling_index is not None else "")
               + ".")
    if m.stent_present:
        msg += f" A stent was found by its metal: {m.in_stent_note}."
    msg += " Measured from the CT intensities (the segmentation only locates the vessel)."
    return LesionMeasurement(vessel=name, segment=segment, lesion=lesion, message=msg, measurement=m,
                             labels_source=ctx.labels_source)
