"""Stent coverage: will a stent of a given length cover a lesion from normal vessel to normal vessel?

Rule (a documented convention, not a guideline; see ``shared/REFERENCE.md``): the stent must cover
the whole lesion plus a healthy landing zone of ``settings.stent_landing_zone_mm`` beyond each end,
and neither end may land in plaque, i.e. in a neighbouring lesion or beyond the measured vessel.
The stent is centred on the lesion as far as the healthy vessel on each side allows, which gives
the largest smallest margin. The suggested diameter is the reference (healthy) diameter at the
lesion rounded to the nearest 0.25 mm (the usual catalogue step). A lesion below 50 % diameter
stenosis (CAD-RADS 0-2, non-obstructive by CT) is answered "no stent needed" with the geometry
still given: the decision to treat rests with the clinician.

A stent already in place is found from the image (:func:`stent_metal_mask`): metal struts bloom
above ``metal_hu`` along a traced coronary segment over a long core, which neither contrast lumen,
bone (centimetres from the vessels) nor a compact calcium nodule does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

from cardiovlm.tools.core.anatomy import (
    SEGMENT_PARENT,
    SEGMENTS_BY_CODE,
    resolve_structure_or_segment,
    segments_of_artery,
)
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.core.settings import Settings, get_settings
from cardiovlm.tools.quant.cadrads import OBSTRUCTIVE_PERCENT, shown_percent
from cardiovlm.tools.quant.centerline import label_boxes
from cardiovlm.tools.quant.stenosis import Lesion, VesselMeasurement, measure_lesion

TOLERANCE_MM = 1e-6  # a margin exactly equal to the landing zone counts as enough
DIAMETER_STEP_MM = 0.25


class StentError(CardioVLMError):
    """A stent question that cannot be answered as asked (e.g. a non-positive length)."""

    code = "stent.question_invalid"


class LesionSite(BaseModel):
    """Where a lesion lies on its vessel, all distances along the centerline in mm."""

    start_mm: float = Field(description="lesion start (arc length from the path start)")
    end_mm: float = Field(description="lesion end (arc length from the path start)")
    healthy_proximal_mm: float = Field(ge=0, description="plaque-free vessel available proximal to the lesion")
    healthy_distal_mm: float = Field(ge=0, description="plaque-free vessel available distal to the lesion")
    reference_diameter_mm: float = Field(gt=0, description="healthy reference diameter at the lesion")
    stenosis_percent: float = Field(ge=0, le=100)
    origins_mm: dict[str, float] = Field(
        default_factory=dict, description="side-branch origins and ostia on the path: name -> arc length")
    ostia: list[str] = Field(default_factory=list, description="names in origins_mm that are aorto-ostial")

    @property
    def length_mm(self) -> float:
        return self.end_mm - self.start_mm


class StentPlan(BaseModel):
    status: Literal["covers", "does_not_cover", "no_stent_needed", "no_lesion"]
    covers: bool = Field(description="the stent covers the lesion with a healthy landing zone at both ends")
    message: str = Field(description="one-sentence answer for the clinician")
    stent_length_mm: float
    landing_zone_mm: float = Field(description="required healthy margin per end (configurable convention)")
    lesion_length_mm: float | None = None
    required_length_mm: float | None = Field(None, description="lesion length + 2 landing zones")
    margin_proximal_mm: float | None = Field(None, description="healthy vessel covered proximal to the lesion, "
                                             "stent placed optimally; negative: lesion left uncovered")
    margin_distal_mm: float | None = None
    shortest_catalogue_length_mm: float | None = Field(
        None, description="shortest catalogue length that covers; null when none does")
    suggested_diameter_mm: float | None = None
    diameter_to_reference: float | None = Field(None, description="given stent diameter / reference diameter")
    bifurcation: list[str] = Field(default_factory=list,
                                   description="side branches whose origin lies within the lesion or a landing zone")
    ostial: bool = Field(False, description="the lesion or a landing zone reaches an aorto-ostial origin")
    reasons: list[str] = Field(default_factory=list)
    lesion: Lesion | None = None
    centerline_source: str | None = None


def _placement(site: LesionSite, length: float) -> tuple[float, float, bool]:
    """Margins (proximal, distal) of the best-centred stent and whether both ends stay out of plaque."""
    slack = length - site.length_mm
    # Centre, then shift away from whichever side lacks healthy vessel.
    prox = min(max(slack / 2, slack - site.healthy_distal_mm), site.healthy_proximal_mm)
    dist = slack - prox
    fits = slack < 0 or dist <= site.healthy_distal_mm + TOLERANCE_MM
    return prox, dist, fits


def _covers(site: LesionSite, length: float, landing: float) -> bool:
    prox, dist, fits = _placement(site, length)
    return fits and min(prox, dist) >= landing - TOLERANCE_MM


def plan_stent(site: LesionSite, stent_length_mm: float, *, landing_zone_mm: float,
               catalogue_mm: tuple[float, ...], stent_diameter_mm: float | None = None) -> StentPlan:
    """Coverage of one lesion by a stent of ``stent_length_mm`` (pure geometry, mm).

    Example::

        site = LesionSite(start_mm=10, end_mm=25, healthy_proximal_mm=10, healthy_distal_mm=30,
                          reference_diameter_mm=3.1, stenosis_percent=75)
        plan_stent(site, 20, landing_zone_mm=2.5, catalogue_mm=(8, 12, 20, 23)).covers  # True
    """
    if stent_length_mm <= 0:
        raise StentError(f"stent length must be positive, got {stent_length_mm} mm")
    if stent_diameter_mm is not None and stent_diameter_mm <= 0:
        raise StentError(f"stent diameter must be positive, got {stent_diameter_mm} mm")
    prox, dist, fits = _placement(site, stent_length_mm)
    covers = fits and min(prox, dist) >= landing_zone_mm - TOLERANCE_MM
    reasons = []
    if stent_length_mm < site.length_mm:
        reasons.append(f"the stent ({stent_length_mm:g} mm) is shorter than the lesion ({site.length_mm:.1f} mm)")
    elif not fits:
        reasons.append("one end would land in plaque or beyond the measured vessel: there is not enough "
                       "healthy vessel around the lesion for this length")
    elif not covers:
        reasons.append(f"a landing zone is below {landing_zone_mm:g} mm "
                       f"(proximal {prox:.1f} mm, distal {dist:.1f} mm)")
    catalogue = sorted(catalogue_mm)
    shortest = next((c for c in catalogue if _covers(site, c, landing_zone_mm)), None)
    lo, hi = site.start_mm - landing_zone_mm, site.end_mm + landing_zone_mm
    touched = [name for name, pos in site.origins_mm.items() if lo - TOLERANCE_MM <= pos <= hi + TOLERANCE_MM]
    ostial = any(name in site.ostia for name in touched)
    bifurcation = [name for name in touched if name not in site.ostia]
    suggested = round(site.reference_diameter_mm / DIAMETER_STEP_MM) * DIAMETER_STEP_MM
    ratio = None if stent_diameter_mm is None else round(stent_diameter_mm / site.reference_diameter_mm, 2)
    if ratio is not None and not 0.9 <= ratio <= 1.1:
        reasons.append(f"the stent diameter {stent_diameter_mm:g} mm is {ratio:.2f} x the reference "
                       f"diameter {site.reference_diameter_mm:.2f} mm")

    needed = site.stenosis_percent >= OBSTRUCTIVE_PERCENT
    status = ("covers" if covers else "does_not_cover") if needed else "no_stent_needed"
    verdict = "covers" if covers else "does not cover"
    message = (f"A {stent_length_mm:g} mm stent {verdict} the {site.length_mm:.1f} mm lesion with "
               f"{landing_zone_mm:g} mm landing zones (margins {prox:.1f} / {dist:.1f} mm)")
    message += (f"; shortest catalogue length that covers: {shortest:g} mm" if shortest
                else "; no catalogue length covers it")
    message += f"; suggested diameter {suggested:.2f} mm."
    if not needed:
        message = (f"No stent needed by CT criteria: the stenosis is {shown_percent(site.stenosis_percent)}% "
                   f"(< {OBSTRUCTIVE_PERCENT:g}%, non-obstructive). " + message)
    if ostial:
        message += " The lesion involves an ostium."
    if bifurcation:
        message += f" It touches a bifurcation ({', '.join(bifurcation)})."
    return StentPlan(
        status=status, covers=covers, message=message, stent_length_mm=stent_length_mm,
        landing_zone_mm=landing_zone_mm, lesion_length_mm=round(site.length_mm, 2),
        required_length_mm=round(site.length_mm + 2 * landing_zone_mm, 2),
        margin_proximal_mm=round(prox, 2), margin_distal_mm=round(dist, 2),
        shortest_catalogue_length_mm=shortest, suggested_diameter_mm=suggested,
        diameter_to_reference=ratio, bifurcation=bifurcation, ostial=ostial, reasons=reasons)


def lesion_site(measurement: VesselMeasurement, lesion: Lesion, labels: np.ndarray | None = None,
                affine: np.ndarray | None = None, centerlines=None) -> LesionSite:
    """The :class:`LesionSite` of ``lesion`` on its measured vessel.

    Healthy vessel on each side runs to the neighbouring lesion or the end of the path. Origins: the
    path's own start (an aorto-ostial origin for LM and pRCA, else the bifurcation from its parent)
    and every side branch whose parent segment is on the path, taken from the branch centerline's
    first point or, without centerlines, the branch lumen voxel nearest the path.
    """
    profile = measurement.profile
    if profile is None:
        raise StentError("the vessel measurement carries no profile to place a stent on")
    path = profile.path
    boxes = label_boxes(labels) if labels is not None else {}
    others = [les for les in measurement.lesions if (les.start_mm, les.end_mm) != (lesion.start_mm, lesion.end_mm)]
    before = max((les.end_mm for les in others if les.end_mm <= lesion.start_mm), default=0.0)
    after = min((les.start_mm for les in others if les.start_mm >= lesion.end_mm), default=path.length_mm)
    first = measurement.segments[0]
    parent = SEGMENT_PARENT[first]
    origins = {f"{first} ostium" if parent is None else f"{first} origin ({parent} bifurcation)": 0.0}
    ostia = [f"{first} ostium"] if parent is None else []
    on_path = set(measurement.segments)
    for code, seg_parent in SEGMENT_PARENT.items():
        if seg_parent not in on_path or code in on_path:
            continue
        origin = _branch_origin(code, path.points_mm, labels, affine, centerlines, boxes)
        if origin is None:
            continue
        d = np.linalg.norm(path.points_mm - origin, axis=1)
        if d.min() <= 2.0 * lesion.reference_diameter_mm + 2.0:
            origins[code] = float(path.arc_mm[int(np.argmin(d))])
    return LesionSite(start_mm=lesion.start_mm, end_mm=lesion.end_mm,
                      healthy_proximal_mm=max(lesion.start_mm - before, 0.0),
                      healthy_distal_mm=max(after - lesion.end_mm, 0.0),
                      reference_diameter_mm=lesion.reference_diameter_mm,
                      stenosis_percent=lesion.stenosis_percent, origins_mm=origins, ostia=ostia)


def _branch_origin(code, path_points, labels, affine, centerlines, boxes) -> np.ndarray | None:
    """LPS mm origin of side branch ``code``: its centerline's first point, else its lumen voxel nearest the path."""
    if centerlines is not None and centerlines.segments.get(code):
        return np.asarray(centerlines.segments[code][0].xyz, float)
    if labels is None or affine is None:
        return None
    box = boxes.get(SEGMENTS_BY_CODE[code].label_id)
    if box is None:
        return None
    lo, hi = box
    idx = np.argwhere(labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == SEGMENTS_BY_CODE[code].label_id) + lo
    xyz = idx @ affine[:3, :3].T + affine[:3, 3]
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(path_points).query(xyz)
    return xyz[int(np.argmin(dist))]


def stent_coverage(ctx, vessel: str, stent_length_mm: float, *, stent_diameter_mm: float | None = None,
                   landing_zone_mm: float | None = None, settings: Settings | None = None) -> StentPlan:
    """Answer "will a ``stent_length_mm`` stent cover the lesion on ``vessel``?" for the session's study.

    ``vessel`` is a segment ("pLAD", "proximal RCA") or an artery ("LAD": its worst lesion).
    """
    settings = settings or get_settings()
    landing = settings.stent_landing_zone_mm if landing_zone_mm is None else landing_zone_mm
    if landing < 0:
        raise StentError(f"landing zone must be >= 0 mm, got {landing}")
    if stent_length_mm <= 0:
        raise StentError(f"stent length must be positive, got {stent_length_mm} mm")
    found = measure_lesion(ctx, vessel)
    if found.lesion is None:
        where = found.segment or found.vessel
        return StentPlan(status="no_lesion", covers=False, stent_length_mm=stent_length_mm, landing_zone_mm=landing,
                         message=f"No lesion found on the {where}: there is nothing for a stent to cover.",
                         centerline_source=found.measurement.centerline_source)
    site = lesion_site(found.measurement, found.lesion, ctx.labels, ctx.study.affine, ctx.centerlines)
    plan = plan_stent(site, stent_length_mm, landing_zone_mm=landing, catalogue_mm=settings.stent_lengths_mm,
                      stent_diameter_mm=stent_diameter_mm)
    return plan.model_copy(update={"lesion": found.lesion,
                                   "centerline_source": found.measurement.centerline_source})


@dataclass(frozen=True)
class StentMetalConfig:
    """How stent metal is told from contrast, calcium and bone on a CCTA."""

    metal_hu: float = 1000.0  # struts bloom to 1200-1800 HU at CCTA resolution; contrast lumen stays below 600
    gap_mm: float = 2.0  # blurred struts of one stent break into fragments this far apart: joined across it
    near_vessel_mm: float = 3.0  # metal this close to a traced coronary segment (spine and sternum lie >= 3 cm away)
    min_extent_mm: float = 6.0  # a stent core is long (8-38 mm stents), a dense calcium nodule compact


def stent_metal_mask(hu: np.ndarray, spacing, labels: np.ndarray, on: str | None = None,
                     config: StentMetalConfig | None = None) -> np.ndarray:
    """Voxels of coronary stent metal, from the Hounsfield units and a coronary label map.

    Metal (>= ``metal_hu``) is grouped across gaps of ``gap_mm``; a group is a stent when part of it
    lies within ``near_vessel_mm`` of a coronary segment's lumen (of ``on``, an artery or segment,
    when given) and its metal spans at least ``min_extent_mm``. Returns a bool mask on the study grid.

    Raises:
        ValueError: ``on`` is not a coronary artery or segment.
    """
    config = config or StentMetalConfig()
    spacing = np.asarray(spacing, float)
    if on is None:
        codes = list(SEGMENTS_BY_CODE)
    else:
        kind, key = resolve_structure_or_segment(on)
        if kind not in ("artery", "segment"):
            raise ValueError(f"{on!r} is not a coronary artery or segment")
        codes = [key] if kind == "segment" else [s.code for s in segments_of_artery(key)]
    metal = hu >= config.metal_hu
    lumen = np.isin(labels, [SEGMENTS_BY_CODE[c].label_id for c in codes])
    out = np.zeros(hu.shape, bool)
    if not metal.any() or not lumen.any():
        return out
    steps = max(int(np.ceil(config.gap_mm / float(spacing.min()))), 1)
    groups, _ = ndimage.label(ndimage.binary_dilation(metal, iterations=steps))
    near = ndimage.distance_transform_edt(~lumen, sampling=spacing) <= config.near_vessel_mm
    for i in np.unique(groups[metal & near]):
        part = metal & (groups == i)
        pts = np.argwhere(part) * spacing
        if np.linalg.norm(pts.max(0) - pts.min(0)) >= config.min_extent_mm:
            out |= part
    return out
