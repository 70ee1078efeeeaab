"""Coronary findings of a phantom: what is asked for (:class:`FindingRequest`) and how it changes the lumen.

A lesion narrows the lumen of one segment with a smooth profile: full narrowing over the middle half
of its length, cosine-squared tapers over the outer quarters. The lumen stays a circle (so the
diameter stenosis of the rasterised lumen equals the requested one), shifted towards the
myocardial side; plaque fills the space up to the outer wall, which remodels outwards a little.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.tools.core.anatomy import FINDING_KINDS, SEGMENTS_BY_CODE
from cardiovlm.tools.core.case_format import Finding
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.training.phantoms.geometry import CENTERLINE_STEP_MM, Anatomy

END_MARGIN_MM = 3.0  # lesions stay this far from segment ends, where neighbouring tubes overlap


class PhantomFindingError(CardioVLMError):
    """A requested finding cannot be placed on this anatomy."""

    code = "phantom.finding_unplaceable"


@dataclass(frozen=True)
class FindingRequest:
    """One finding to place. Sizes in mm, attenuation in HU.

    Args:
        segment: SCCT segment code from ``cardiovlm.tools.core.anatomy`` (e.g. "pLAD").
        kind: one of ``cardiovlm.tools.core.anatomy.FINDING_KINDS``.
        stenosis_percent: diameter stenosis of the plaque (ignored for stents and occlusions).
        length_mm: lesion length along the centerline (for a stent, the stent length, 8-38 mm).
        position: centre of the lesion as a fraction of the segment's length.
        calcium_peak_hu, calcium_size_mm: calcified component (calcified and mixed plaques).
        stent_diameter_mm: stent calibre; defaults to the healthy lumen diameter.
        restenosis_percent: in-stent restenosis (0 = patent stent).
    """

    segment: str
    kind: str
    stenosis_percent: float = 0.0
    length_mm: float = 10.0
    position: float = 0.5
    calcium_peak_hu: float | None = None
    calcium_size_mm: float | None = None
    stent_diameter_mm: float | None = None
    restenosis_percent: float = 0.0

    def __post_init__(self) -> None:
        if self.segment not in SEGMENTS_BY_CODE:
            raise PhantomFindingError(f"unknown coronary segment {self.segment!r}")
        if self.kind not in FINDING_KINDS:
            raise PhantomFindingError(f"unknown finding kind {self.kind!r}; expected one of {', '.join(FINDING_KINDS)}")
        if not 0 <= self.stenosis_percent <= 100 or not 0 <= self.restenosis_percent < 100:
            raise PhantomFindingError("stenosis and restenosis must be percentages between 0 and 100")
        if not 0 <= self.position <= 1:
            raise PhantomFindingError(f"position is a fraction of the segment, got {self.position}")
        if self.length_mm <= 0:
            raise PhantomFindingError(f"lesion length must be positive, got {self.length_mm} mm")
        if self.kind == "stent" and not 8 <= self.length_mm <= 38:
            raise PhantomFindingError(f"coronary stents are 8-38 mm long, got {self.length_mm} mm")
        if self.calcium_peak_hu is not None and not 130 <= self.calcium_peak_hu <= 1500:
            raise PhantomFindingError(f"calcium peak must be 130-1500 HU, got {self.calcium_peak_hu}")
        if self.calcium_size_mm is not None and not 1 <= self.calcium_size_mm <= 6:
            raise PhantomFindingError(f"calcified plaques are 1-6 mm, got {self.calcium_size_mm} mm")


@dataclass
class SegmentLumen:
    """Per centerline point of one segment: lumen and wall after the findings."""

    lumen_radius: np.ndarray  # (N,) mm; 0 where occluded
    outer_radius: np.ndarray  # (N,) mm; > healthy radius where plaque remodels outwards
    lumen_shift: np.ndarray  # (N,) mm, lumen centre offset along ``normal`` (negative: towards the heart)
    normal: np.ndarray  # (N, 3) unit, pointing away from the heart (epicardial side)
    stent: np.ndarray  # (N,) bool, struts present
    stent_radius: np.ndarray  # (N,) mm


@dataclass
class Calcification:
    centre: np.ndarray  # (3,) mm
    radius: float  # mm
    peak_hu: float


def sample_requests(rng: np.random.Generator, anatomy: Anatomy) -> list[FindingRequest]:
    """Draw 0-3 findings (about a third of cases healthy) on this anatomy's larger segments."""
    n = int(rng.choice([0, 1, 2, 3], p=[0.3, 0.35, 0.25, 0.1]))
    big = [c for c, v in anatomy.vessels.items() if v.length_mm > 20 and v.radius.mean() > 1.0]
    requests = []
    for seg in rng.choice(big, size=min(n, len(big)), replace=False):
        kind = str(rng.choice(FINDING_KINDS, p=[0.35, 0.25, 0.2, 0.07, 0.13]))
        room = anatomy.vessels[seg].length_mm - 2 * END_MARGIN_MM - 1
        calcified = kind in ("calcified_plaque", "mixed_plaque")
        stenosis = {"calcified_plaque": rng.uniform(0, 50), "occlusion": 100.0, "stent": 0.0}.get(
            kind, rng.uniform(20, 90))
        requests.append(FindingRequest(
            segment=str(seg), kind=kind, stenosis_percent=float(stenosis),
            length_mm=float(np.clip(rng.choice([8, 12, 15, 18, 23]), 8, max(8.0, room))) if kind == "stent"
            else float(np.clip(rng.uniform(5, 20), 4, room)),
            position=float(rng.uniform(0.35, 0.65)),
            calcium_peak_hu=float(rng.uniform(300, 1400)) if calcified else None,
            calcium_size_mm=float(rng.uniform(1.5, 5)) if calcified else None,
            restenosis_percent=float(rng.choice([0, 0, 0, 60])) if kind == "stent" else 0.0))
    return requests


def _normals(points: np.ndarray, heart_centre: np.ndarray) -> np.ndarray:
    """Unit vectors perpendicular to the centerline pointing away from the heart centre."""
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    out = points - heart_centre
    normal = out - (out * tangent).sum(1, keepdims=True) * tangent
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


def profile(arc: np.ndarray, start: float, length: float) -> np.ndarray:
    """1 over the middle half of [start, start + length], cos^2 tapers to 0 over the outer quarters."""
    x = (arc - start) / length
    ramp = np.clip(np.minimum(x, 1 - x) / 0.25, 0.0, 1.0)
    return np.where((x >= 0) & (x <= 1), np.sin(0.5 * np.pi * ramp) ** 2, 0.0)


def apply_findings(anatomy: Anatomy, requests: list[FindingRequest], *, nodule_in_wall: bool = False
                   ) -> tuple[dict[str, SegmentLumen], list[Calcification], list[Finding]]:
    """Lumen and wall per segment, calcium nodules and the ground-truth :class:`Finding` list.

    ``nodule_in_wall`` (generator 2.0) puts a calcium nodule in the wall beside the lumen, the wall
    remodelled round it; generator 1.0 centres it near the centreline, where a nodule wider than the
    artery rings the lumen, and scanner blooming from all sides then fills the lumen of a mild stenosis.

    Raises:
        PhantomFindingError: a requested segment is absent in this anatomy (e.g. L-PDA in a
            right-dominant heart) or too short to hold a lesion.
    """
    h = anatomy.heart
    heart_centre = h.base + 0.4 * h.length * h.u
    lumens: dict[str, SegmentLumen] = {}
    for code, v in anatomy.vessels.items():
        n = len(v.points)
        lumens[code] = SegmentLumen(v.radius.copy(), v.radius.copy(), np.zeros(n), _normals(v.points, heart_centre),
                                    np.zeros(n, bool), v.radius.copy())
    calcs: list[Calcification] = []
    findings: list[Finding] = []
    for idx, req in enumerate(requests, start=1):
        if req.segment not in anatomy.vessels:
            raise PhantomFindingError(
                f"{req.segment} does not exist in this {anatomy.dominance}-dominant anatomy; "
                f"present segments: {', '.join(anatomy.vessels)}")
        v, lum = anatomy.vessels[req.segment], lumens[req.segment]
        arc = np.arange(len(v.points)) * CENTERLINE_STEP_MM
        usable = arc[-1] - 2 * END_MARGIN_MM
        if usable < 4:
            raise PhantomFindingError(f"{req.segment} is only {arc[-1]:.0f} mm long here; too short for a lesion")
        length = min(req.length_mm, usable)
        start = float(np.clip(req.position * arc[-1] - length / 2, END_MARGIN_MM, arc[-1] - END_MARGIN_MM - length))
        w = profile(arc, start, length)
        ref = v.radius
        calcified = req.kind in ("calcified_plaque", "mixed_plaque")
        stent_d = None
        if req.kind == "stent":
            stent_d = req.stent_diameter_mm or float(2 * ref[w > 0].mean())
            inside = (arc >= start) & (arc <= start + length)
            lum.stent |= inside
            lum.stent_radius = np.where(inside, stent_d / 2, lum.stent_radius)
            lum.lumen_radius = np.where(inside, stent_d / 2, lum.lumen_radius)
            lum.outer_radius = np.where(inside, stent_d / 2 + 0.3, lum.outer_radius)
            if req.restenosis_percent > 0:  # neointima: concentric narrowing inside the struts
                lum.lumen_radius = np.minimum(lum.lumen_radius, stent_d / 2 * (1 - req.restenosis_percent / 100 * w))
            stenosis = req.restenosis_percent
        else:
            stenosis = 100.0 if req.kind == "occlusion" else req.stenosis_percent
            lum.lumen_radius = np.minimum(lum.lumen_radius, ref * (1 - stenosis / 100 * w))
            lum.outer_radius = np.maximum(lum.outer_radius, ref * (1 + 0.15 * w))  # positive remodelling
            # eccentric plaque on the epicardial side: the lumen moves towards the myocardium
            lum.lumen_shift = np.where(w > 0, -0.6 * (lum.outer_radius - lum.lumen_radius), lum.lumen_shift)
            if calcified:
                size = req.calcium_size_mm or 3.0
                i = int(np.argmin(np.abs(arc - (start + length / 2))))
                depth = lum.outer_radius[i] - 0.35 * size
                if nodule_in_wall:
                    # against the lumen's epicardial edge (the lumen is shifted away from the plaque)
                    depth = lum.lumen_shift[i] + lum.lumen_radius[i] + 0.5 * size
                    lum.outer_radius = np.maximum(lum.outer_radius, np.where(w > 0, depth + 0.5 * size, 0.0))
                centre = v.points[i] + lum.normal[i] * depth
                calcs.append(Calcification(centre, size / 2, req.calcium_peak_hu or 700.0))
        findings.append(Finding(
            id=f"f{idx}", segment=req.segment, kind=req.kind, stenosis_percent=round(float(stenosis), 1),
            length_mm=round(length, 1), start_mm=round(start, 1),
            calcium_peak_hu=req.calcium_peak_hu or (700.0 if calcified else None) if calcified else None,
            calcium_diameter_mm=(req.calcium_size_mm or 3.0) if calcified else None,
            stent_diameter_mm=round(stent_d, 2) if stent_d else None,
            in_stent_restenosis=req.kind == "stent" and req.restenosis_percent > 0))
    return lumens, calcs, findings
