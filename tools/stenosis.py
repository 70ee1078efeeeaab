"""Lesion and stenosis measurement along a coronary vessel, and CAD-RADS 2.0 from it.

Method (stated in every result):
- Centerline: the phantom's when the context has one, else traced from the lumen mask
  (:mod:`tools.centerline`), evaluated every ``step_mm`` along the path.
- Lumen area: the lumen mask (every coronary segment label, 20-37) is interpolated trilinearly on a
  plane perpendicular to the centerline with ``plane_step_mm`` sub-voxel samples; samples above
  0.1 form regions, the region nearest the centerline is kept (so a side branch leaving the same
  plane is not counted) and its area is the sum of the interpolated fractions (partial volume).
  Before the regions are formed the fractions are smoothed along the path (Gaussian, sigma
  ``path_sigma_voxels`` voxel lengths): a binary mask holds a lumen about a voxel wide only where
  voxel centres fall inside it, so along an oblique vessel its per-plane area flickers by up to
  +-40 % and drops to 0 between voxel centres; the minimum of that flicker (averaged over two
  voxel lengths only) read high-grade stenoses 5-10 points too high at 1 mm voxels, or a 70 %
  lesion as occluded. The price: a short lesion without a flat bottom (an 8 mm cosine at 1 mm
  voxels) reads up to ~10 points low (``benchmarks/stenosis_accuracy.py``). Equivalent diameter
  ``2 sqrt(area / pi)``. A mask cannot resolve a lumen much narrower than a voxel: at 1 mm voxels a
  90 % stenosis of a 3.6 mm artery (0.36 mm lumen) is absent from it and reads as occlusion or a
  one-voxel lumen (about 70 %), whatever the sampling.
- Reference diameter: a straight line (normal taper) fitted to diameter against arc length over the
  healthy points only (no plaque, 0.85-1.25 x the current fit), refitted until stable.
- Percent diameter stenosis ``100 (1 - D / D_ref)``; lumen absent (area 0) counts as 100 % (occlusion).
- A lesion is a stretch with plaque (labels 40/41) in the plane or with stenosis at or above
  ``lesion_threshold_percent``; stretches closer than ``merge_gap_mm`` are merged and stretches
  shorter than ``min_lesion_mm`` dropped. A narrowing with neither plaque nor a closed lumen must
  also span ``min_plaque_free_voxels`` voxel lengths: shorter dips are the mask's sampling ripple
  (a 2 mm distal vessel at 1 mm voxels ripples by 25-35 % over 1-2 mm). Its ends lie midway between the last normal and the first
  diseased sample (at threshold crossings, linearly interpolated).
"""

from __future__ import annotations

from collections.abc import Sequence
import numpy as np
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage

from tools import case_format as cf
from tools.anatomy import (ARTERIES, CORONARY_LABELS, MAIN_VESSEL_PATHS, SEGMENTS_BY_CODE,
                           STRUCTURES_BY_NAME, resolve_structure_or_segment)
from tools.cadrads import CadRads, cad_rads, stenosis_category
from tools.centerline import LabelBoxes, VesselPath, label_boxes, resample_polyline, vessel_path

PLAQUE_LABELS = (STRUCTURES_BY_NAME["calcified_plaque"].label_id, STRUCTURES_BY_NAME["noncalcified_plaque"].label_id)
STENT_LABEL = STRUCTURES_BY_NAME["stent"].label_id
AREA_METHOD = ("lumen mask sampled trilinearly on planes perpendicular to the centerline "
               "(sub-voxel grid, partial-volume area of the lumen region nearest the centerline)")
REGION_LEVEL = 0.1  # interpolated lumen fraction above which a plane sample joins a lumen region
REFERENCE_METHOD = "linear taper fitted to the healthy (plaque-free, non-narrowed) diameters of the whole path"


class StenosisError(ValueError):
    """The vessel cannot be measured (wrong modality, no coronary labels, unknown vessel)."""


class StenosisConfig(BaseModel):
    """Measurement conventions (documented choices, not guideline values)."""

    step_mm: float = Field(0.25, gt=0, description="spacing of the measuring planes along the centerline")
    plane_step_mm: float = Field(0.1, gt=0, description="sample spacing within each measuring plane")
    lesion_threshold_percent: float = Field(
        20.0, ge=0, le=100, description="diameter stenosis from which a stretch counts as a lesion without plaque")
    min_lesion_mm: float = Field(1.0, ge=0, description="shorter diseased stretches are ignored as noise")
    merge_gap_mm: float = Field(1.0, ge=0, description="diseased stretches closer than this are one lesion")
    min_plaque_free_voxels: float = Field(
        4.0, ge=0, description="a narrowing without plaque must span this many voxel lengths to be a lesion: "
        "shorter dips are the binary mask's sampling ripple along thin oblique vessels (plaque-bearing lesions "
        "keep min_lesion_mm)")
    path_sigma_voxels: float = Field(
        1.0, ge=0, description="Gaussian sigma (voxel lengths) of the along-path smoothing of the lumen fraction "
        "(anti-aliasing of the binary mask; larger steadies thin lumens, smaller keeps short lesions sharp)")


class VesselProfile(BaseModel):
    """Per-plane measurements along a path (arrays of length N, proximal to distal)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    path: VesselPath
    area_mm2: np.ndarray
    diameter_mm: np.ndarray
    reference_mm: np.ndarray
    stenosis_percent: np.ndarray
    plaque: np.ndarray  # bool: plaque label present around the lumen in this plane
    stent: np.ndarray  # bool: stent struts present in this plane


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
    plaque: bool = Field(description="plaque labels were found along the lesion")
    in_stent: bool = Field(description="the narrowing lies inside a stent (in-stent restenosis)")


class VesselMeasurement(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    vessel: str = Field(description="artery or segment measured, e.g. 'LAD' or 'D1'")
    segments: list[str] = Field(description="segments of the path, proximal to distal")
    length_mm: float = Field(description="centerline length measured")
    lesions: list[Lesion]
    segment_max_stenosis: dict[str, float] = Field(
        description="maximal diameter stenosis (%) per segment that has a lesion")
    stent_present: bool
    centerline_source: str
    area_method: str = AREA_METHOD
    reference_method: str = REFERENCE_METHOD
    lesion_threshold_percent: float
    profile: VesselProfile | None = Field(None, exclude=True, description="per-plane arrays (not serialised)")

    def worst_lesion(self, segment: str | None = None) -> Lesion | None:
        """The most severe lesion, optionally only those touching ``segment``."""
        pool = [les for les in self.lesions if segment is None or segment in les.segments]
        return max(pool, key=lambda les: (les.stenosis_percent, les.length_mm), default=None)


# ----------------------------------------------------------------------------------------------
# Pure core
# ----------------------------------------------------------------------------------------------

def lumen_profile(labels: np.ndarray, affine: np.ndarray, path: VesselPath,
                  plane_step_mm: float = 0.1, path_sigma_voxels: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lumen area (mm^2), plaque presence and stent presence on each plane along ``path``.

    Args:
        labels: (I, J, K) label map (ids from ``tools.anatomy``) on the grid of ``affine``.
        affine: (4, 4) voxel index -> LPS mm.
        path: the centerline, proximal to distal, evenly spaced.
        plane_step_mm: sample spacing within each plane.
        path_sigma_voxels: Gaussian sigma, in voxel lengths, of the smoothing of the lumen fraction
            along the path (0 = none).

    Returns:
        ``(area_mm2 (N,), plaque (N,) bool, stent (N,) bool)``.
    """
    inv = np.linalg.inv(affine[:3, :3])
    ijk_path = (path.points_mm - affine[:3, 3]) @ inv.T
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    # Crop around the path so the float lumen mask stays small on a full-size study.
    margin = np.ceil(8.0 / spacing).astype(int)
    lo = np.maximum(np.floor(ijk_path.min(0)).astype(int) - margin, 0)
    hi = np.minimum(np.ceil(ijk_path.max(0)).astype(int) + margin + 1, labels.shape)
    sub = labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    lumen = np.isin(sub, CORONARY_LABELS).astype(np.float32)
    if not lumen.any():
        return np.zeros(len(ijk_path)), np.zeros(len(ijk_path), bool), np.zeros(len(ijk_path), bool)

    # Largest lumen radius near the path: distance from the path to the lumen boundary (mm).
    from scipy.spatial import cKDTree

    boundary = np.argwhere((lumen > 0) & ~ndimage.binary_erosion(lumen > 0)) * spacing
    depth, _ = cKDTree(boundary).query((ijk_path - lo) * spacing)
    r_max = max(float(depth.max()), 1.0)
    half = r_max + 1.0  # the lumen, and plaque up to 1 mm beyond the widest lumen
    g = np.arange(-half, half + plane_step_mm / 2, plane_step_mm)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    rr = np.hypot(uu, vv)

    t = path.tangents()
    helper = np.where(np.abs(t[:, [0]]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(t, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(t, u)
    pts = (path.points_mm[:, None, None, :] + uu[None, ..., None] * u[:, None, None, :]
           + vv[None, ..., None] * v[:, None, None, :])  # (N, G, G, 3) mm
    coords = ((pts - affine[:3, 3]) @ inv.T - lo).reshape(-1, 3).T
    fraction = ndimage.map_coordinates(lumen, coords, order=1, mode="constant", cval=0.0)
    fraction = fraction.reshape(len(t), *uu.shape)
    # Anti-aliasing along the path (see the module docstring): a Gaussian over neighbouring planes
    # keeps the area a partial-volume sum while the mask's voxel-centre pattern averages out.
    step = float(np.median(np.diff(path.arc_mm))) if len(t) > 1 else 0.0
    if path_sigma_voxels > 0 and step > 0:
        sigma = path_sigma_voxels * float(spacing.max()) / step
        fraction = ndimage.gaussian_filter1d(fraction, sigma, axis=0, mode="nearest", truncate=3.0)
    inside = fraction >= REGION_LEVEL
    found = ndimage.map_coordinates(sub, coords, order=0, mode="constant", cval=0).reshape(inside.shape)

    # Connected lumen regions within each plane (no connectivity across planes), all planes at once.
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    comps, count = ndimage.label(inside, structure=in_plane)
    # The region nearest the centerline is the vessel (beyond r_max it is another vessel): the
    # first lumen pixel met walking outwards from the centre, the same ring order for every plane.
    ring = np.argsort(rr.ravel(), kind="stable")
    ring = ring[rr.ravel()[ring] <= r_max]
    walk = comps.reshape(len(t), -1)[:, ring]
    hit = walk[np.arange(len(t)), np.argmax(walk > 0, axis=1)]
    # Partial-volume area: the interpolated lumen fraction summed over the region, which keeps a
    # lumen narrower than a voxel measurable instead of flickering between 0 and 1 voxel.
    size = np.bincount(comps.ravel(), weights=fraction.ravel(), minlength=count + 1)
    area = np.where(hit > 0, size[hit], 0.0) * plane_step_mm ** 2
    near = found[:, rr <= r_max + 1.0]
    plaque = np.isin(near, PLAQUE_LABELS).any(axis=1)
    stent = (near == STENT_LABEL).any(axis=1)
    return area, plaque, stent


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


def measure_vessel(labels: np.ndarray, affine: np.ndarray, segments: Sequence[str], *,
                   vessel: str | None = None, centerlines: cf.Centerlines | None = None,
                   config: StenosisConfig | None = None, boxes: LabelBoxes | None = None) -> VesselMeasurement:
    """Measure lumen, reference, stenosis and lesions along the path through ``segments``.

    Args:
        labels: (I, J, K) label map with ids from ``tools.anatomy``; coronary lumen per segment label.
        affine: (4, 4) voxel index -> LPS mm.
        segments: SCCT codes proximal to distal, e.g. ``MAIN_VESSEL_PATHS["LAD"]``.
        vessel: name reported (defaults to the joined segment codes).
        centerlines: the phantom's centerlines, used when they cover the segments.
        boxes: :func:`tools.centerline.label_boxes` of ``labels`` when already computed.

    Example::

        m = measure_vessel(labels, affine, ("pLAD", "mLAD", "dLAD"), vessel="LAD")
        print(m.worst_lesion().stenosis_percent)
    """
    config = config or StenosisConfig()
    path = vessel_path(labels, affine, segments, centerlines, boxes=boxes)
    points, arc = resample_polyline(path.points_mm, config.step_mm)
    near = np.clip(np.searchsorted(path.arc_mm, arc), 0, len(path.arc_mm) - 1)
    path = VesselPath(points, arc, path.segments[near], path.source)

    # Lesion ends come from plaque labels, which are not smoothed along the path.
    area, plaque, stent = lumen_profile(labels, affine, path, config.plane_step_mm, config.path_sigma_voxels)
    diameter = 2.0 * np.sqrt(area / np.pi)
    reference = reference_diameter(arc, diameter, plaque)
    percent = np.clip(100.0 * (1.0 - diameter / reference), 0.0, 100.0)
    percent = _ignore_end_gaps(percent, area, arc, config.min_lesion_mm)
    profile = VesselProfile(path=path, area_mm2=area, diameter_mm=diameter, reference_mm=reference,
                            stenosis_percent=percent, plaque=plaque, stent=stent)
    voxel_mm = float(np.linalg.norm(affine[:3, :3], axis=0).max())
    lesions = [_lesion(profile, run, config) for run in _lesion_runs(profile, config, voxel_mm)]
    seg_max: dict[str, float] = {}
    for les in lesions:
        for seg in les.segments:
            i0, i1 = np.searchsorted(arc, [les.start_mm, les.end_mm])
            in_seg = percent[i0:i1 + 1][path.segments[i0:i1 + 1] == seg]
            value = float(in_seg.max()) if in_seg.size else 0.0
            seg_max[seg] = round(max(seg_max.get(seg, 0.0), value), 1)
    return VesselMeasurement(
        vessel=vessel or "+".join(segments), segments=[s for s in segments if s in set(path.segments)],
        length_mm=round(float(arc[-1]), 2), lesions=lesions, segment_max_stenosis=seg_max,
        stent_present=bool(stent.any()), centerline_source=path.source,
        lesion_threshold_percent=config.lesion_threshold_percent, profile=profile)


def _ignore_end_gaps(percent: np.ndarray, area: np.ndarray, arc: np.ndarray, tol_mm: float) -> np.ndarray:
    """Zero area within ``tol_mm`` of a path end is the blunt end of the mask, not an occlusion."""
    percent = percent.copy()
    end_zone = (arc <= tol_mm) | (arc >= arc[-1] - tol_mm)
    percent[end_zone & (area == 0)] = 0.0
    return percent


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive index ranges of consecutive True values."""
    edges = np.flatnonzero(np.diff(np.r_[0, flag.astype(np.int8), 0]))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def _lesion_runs(p: VesselProfile, config: StenosisConfig, voxel_mm: float) -> list[tuple[int, int]]:
    arc = p.path.arc_mm
    flag = p.plaque | (p.stenosis_percent >= config.lesion_threshold_percent)
    runs = _runs(flag)
    merged: list[tuple[int, int]] = []
    for a, b in runs:
        if merged and arc[a] - arc[merged[-1][1]] <= config.merge_gap_mm:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    spans = [(a, b, *_edge(p, a, b, config)) for a, b in merged]
    plaque_free_mm = max(config.min_lesion_mm, config.min_plaque_free_voxels * voxel_mm)

    def shortest(a: int, b: int) -> float:
        # Plaque or a closed lumen is evidence of its own; a bare narrowing must outlast the ripple.
        evidence = p.plaque[a:b + 1].any() or p.area_mm2[a:b + 1].min() == 0
        return config.min_lesion_mm if evidence else plaque_free_mm

    return [(a, b) for a, b, start, end in spans if end - start >= shortest(a, b)]


def _edge(p: VesselProfile, a: int, b: int, config: StenosisConfig) -> tuple[float, float]:
    """Lesion start and end (mm): midway to the neighbouring normal sample, or the interpolated
    threshold crossing when the end is defined by narrowing alone."""
    arc, pct, thr = p.path.arc_mm, p.stenosis_percent, config.lesion_threshold_percent

    def boundary(inner: int, outer: int) -> float:
        if outer < 0 or outer >= len(arc):
            return float(arc[inner])
        if not p.plaque[inner] and pct[inner] >= thr > pct[outer]:
            frac = (pct[inner] - thr) / (pct[inner] - pct[outer])
            return float(arc[inner] + frac * (arc[outer] - arc[inner]))
        return float((arc[inner] + arc[outer]) / 2)

    return boundary(a, a - 1), boundary(b, b + 1)


def _lesion(p: VesselProfile, run: tuple[int, int], config: StenosisConfig) -> Lesion:
    a, b = run
    arc, seg = p.path.arc_mm, p.path.segments
    start, end = _edge(p, a, b, config)
    window = slice(a, b + 1)
    worst = a + int(np.argmax(p.stenosis_percent[window] - 1e-6 * p.diameter_mm[window]))
    percent = float(p.stenosis_percent[worst])
    zero = p.area_mm2[window] == 0
    occl = max((arc[a + j] - arc[a + i] + config.step_mm for i, j in _runs(zero)), default=0.0)
    spanned = list(dict.fromkeys(seg[window].tolist()))
    first_seg_start = float(arc[np.flatnonzero(seg == spanned[0])[0]])
    return Lesion(
        segment=str(seg[worst]), segments=spanned,
        start_mm=round(start, 2), end_mm=round(end, 2), length_mm=round(end - start, 2),
        start_in_segment_mm=round(max(start - first_seg_start, 0.0), 2),
        stenosis_percent=round(percent, 1), category=stenosis_category(round(percent, 1)),
        minimal_lumen_diameter_mm=round(float(p.diameter_mm[worst]), 2),
        mld_position_mm=round(float(arc[worst]), 2),
        start_point_mm=_point_at(p.path, start), end_point_mm=_point_at(p.path, end),
        mld_point_mm=_point_at(p.path, float(arc[worst])),
        minimal_lumen_area_mm2=round(float(p.area_mm2[worst]), 2),
        reference_diameter_mm=round(float(p.reference_mm[worst]), 2),
        occluded=bool(zero.any() and percent >= 100), occlusion_length_mm=round(float(occl), 2),
        plaque=bool(p.plaque[window].any()), in_stent=bool(p.stent[worst]),
    )


def _point_at(path: VesselPath, arc_mm: float) -> tuple[float, float, float]:
    return tuple(round(float(np.interp(arc_mm, path.arc_mm, path.points_mm[:, d])), 2) for d in range(3))


class StudyStenosis(BaseModel):
    vessels: list[VesselMeasurement]
    segment_max_stenosis: dict[str, float] = Field(description="per segment with a lesion, maximal stenosis %")
    cad_rads: CadRads
    stent_present: bool
    labels_source: str | None = None


def vessels_present(labels: np.ndarray, ids: set[int] | None = None) -> dict[str, tuple[str, ...]]:
    """Vessel name -> its path segments, for the main vessels and side branches with lumen labels."""
    ids = set(label_boxes(labels)) if ids is None else ids
    present = {code for code, seg in SEGMENTS_BY_CODE.items() if seg.label_id in ids}
    out = {name: tuple(s for s in segs if s in present) for name, segs in MAIN_VESSEL_PATHS.items()}
    on_main = {s for segs in MAIN_VESSEL_PATHS.values() for s in segs}
    out.update({code: (code,) for code in sorted(present - on_main, key=lambda c: SEGMENTS_BY_CODE[c].number)})
    return {k: v for k, v in out.items() if v}


def measure_study(labels: np.ndarray, affine: np.ndarray, *, centerlines: cf.Centerlines | None = None,
                  vessels: Sequence[str] | None = None, config: StenosisConfig | None = None,
                  labels_source: str | None = None) -> StudyStenosis:
    """Every vessel's lesions and the patient's CAD-RADS 2.0 (LM and three-vessel rules, S modifier).

    Args:
        vessels: names from :func:`vessels_present` (e.g. ``["LAD", "LCx", "RCA"]``); default all.
    """
    boxes = label_boxes(labels)
    available = vessels_present(labels, set(boxes))
    if not available:
        raise StenosisError("the label map has no coronary artery labels: segment the coronaries first")
    names = list(vessels) if vessels is not None else list(available)
    measured = [measure_vessel(labels, affine, available[n], vessel=n, centerlines=centerlines, config=config,
                               boxes=boxes) for n in names if n in available]
    seg_max: dict[str, float] = {}
    for m in measured:
        for seg, value in m.segment_max_stenosis.items():
            seg_max[seg] = max(seg_max.get(seg, 0.0), value)
    stent = STENT_LABEL in boxes
    return StudyStenosis(vessels=measured, segment_max_stenosis=seg_max, cad_rads=cad_rads(seg_max, stent=stent),
                         stent_present=stent, labels_source=labels_source)


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


class MeasureLesionInput(BaseModel):
    vessel: str = Field(description="coronary artery ('LAD', 'LCx', 'RCA', 'LM') or SCCT segment "
                        "('pLAD', 'proximal RCA', 'D1', 'segment 6') to measure")


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
    m = measure_vessel(ctx.labels, ctx.study.affine, available[name], vessel=name,
                       centerlines=ctx.centerlines, config=config, boxes=boxes)
    lesion = m.worst_lesion(segment)
    where = segment or name
    if lesion is None:
        msg = f"No lesion found on the {where} (threshold {m.lesion_threshold_percent:g}% or plaque)."
    else:
        msg = (f"{where}: {lesion.stenosis_percent:.0f}% diameter stenosis (CAD-RADS {lesion.category}), "
               f"{lesion.length_mm:.1f} mm long, minimal lumen diameter {lesion.minimal_lumen_diameter_mm:.1f} mm "
               f"vs reference {lesion.reference_diameter_mm:.1f} mm"
               + (", occluded" if lesion.occluded else "") + (", inside a stent" if lesion.in_stent else "") + ".")
    return LesionMeasurement(vessel=name, segment=segment, lesion=lesion, message=msg, measurement=m,
                             labels_source=ctx.labels_source)


@tool("measure_lesion", args_schema=MeasureLesionInput)
def measure_lesion_tool(vessel: str, *, config: RunnableConfig) -> dict:
    """Measure the most severe lesion of a coronary artery or segment: percent diameter stenosis,
    lesion start, end and length (mm), minimal lumen diameter, reference diameter and the CAD-RADS 2.0
    category, with the centerline and masks used as evidence."""
    from tools.context import context_from_config

    return measure_lesion(context_from_config(config), vessel).model_dump()
