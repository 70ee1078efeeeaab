"""Coronary side branches and normal variants of the realistic (generator 2.0) phantom.

The SCCT segments of :mod:`cardiovlm.training.phantoms.geometry` are the measured tree. This module adds what a
real CCTA shows besides them and what no tool measures: septal perforators diving from the LAD into
the interventricular septum, a conus branch from the proximal RCA over the right ventricular outflow
tract, and acute marginals from the mid RCA down the RV free wall; and, in a few cases, a myocardial
bridge over the mid LAD or a high take-off of the RCA above the sinotubular junction.

The anatomy registry has no label for side branches, and a parent label on them would add branches
to the parent segment's label skeleton and volume (which evaluation measures). So branch voxels keep
their tissue label (fat or myocardium) and get lumen HU through the rasteriser's partial-volume band,
as every coronary lumen does. A bridge relabels the fat round the bridged stretch as cardiac wall
(myocardium HU): the phantom's LAD runs over the RV wall, and an LV-myocardium label there would add a
detached island to the LV mass that realism checks measure.

All draws come from the caller's generator (the case uses its own stream), so the seed's other draws
do not move. Order of use for one case::

    detail = sample_coronary_detail(anat, rng)          # before lesions: a high take-off moves the RCA
    lumens, calcs, gt = apply_findings(anat, requests)
    lab, parts = rasterise(anat, lumens, calcs, grid, extra)
    paint_coronary_detail(lab, parts, grid, anat, detail)
    hu = form_image(lab, parts, grid, contrast, noise_sd, rng, physics)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.geometry import APEX_WALL_FRACTION, Anatomy, Vessel, _spline, _unit

# Share of patients with each variant. Myocardial bridging is seen on CCTA in roughly 5-25 % of
# patients, most of them short and superficial (Konen et al., Radiology 2007;242:123); the phantoms
# keep the clear cases only. A high take-off of the RCA is rarer, about 1-3 % of angiograms (Angelini,
# Circulation 2007;115:1296). Together about 8 % of cases carry a variant.
P_BRIDGE = 0.06
P_HIGH_TAKEOFF = 0.025
BRIDGE_LENGTH_MM = (10.0, 25.0)  # typical tunnelled length on CCTA (Konen et al. 2007: mean ~20 mm)
HIGH_TAKEOFF_RISE_MM = (5.0, 12.0)  # ostium this far above the sinotubular junction (Angelini 2007: >5 mm)
BRIDGE_MUSCLE_MM = 2.5  # muscle band round the tunnelled lumen, reaching the myocardium under the groove
EPICARDIAL_OFFSET_MM = 2.0  # branch centerlines sit in the epicardial fat, as the segments do (geometry.py)
SEPTAL_COUNT = (2, 4)  # septal perforators large enough to see on CCTA (anatomy texts: 3-5 on angiography)
ACUTE_MARGINAL_COUNT = (1, 3)  # acute marginal branches of the mid RCA (anatomy texts: 1-3)
# Branch calibres (radius, mm, at the origin, for a tree of standard calibre). Dodge et al.,
# Circulation 1992;86:232 tabulate the main segments (proximal LAD 3.7 mm, distal LAD 1.9 mm diameter)
# but not these small branches; the origin diameters below (first septal 1.0-1.6 mm, later septals
# 0.7-1.1 mm, conus 0.9-1.4 mm, acute marginals 1.0-1.6 mm) follow angiographic anatomy texts.
FIRST_SEPTAL_R = (0.5, 0.8)
SEPTAL_R = (0.35, 0.55)
CONUS_R = (0.45, 0.7)
ACUTE_MARGINAL_R = (0.5, 0.8)
DISTAL_FRACTION = 0.55  # a branch's distal calibre relative to its origin (they taper to invisibility)

_FAT = STRUCTURES_BY_NAME["epicardial_fat"].label_id
_MYO = STRUCTURES_BY_NAME["lv_myocardium"].label_id
_WALL = STRUCTURES_BY_NAME["cardiac_wall"].label_id
# branch lumen is painted in fat and muscle only: where a drawn course crosses a blood pool or lung it
# stays unpainted (in contrast blood it would not show; in lung it would look like a lung vessel)
_TISSUE_AROUND_BRANCHES = {_FAT, _MYO} | {STRUCTURES_BY_NAME[n].label_id for n in ("cardiac_wall", "soft_tissue")}
_BRIDGEABLE = {_FAT, STRUCTURES_BY_NAME["soft_tissue"].label_id}


@dataclass
class Branch:
    """One side branch: centerline proximal -> distal (LPS mm) and lumen radius per point."""

    name: str  # e.g. "septal_1", "conus", "acute_marginal_2"
    parent: str  # SCCT segment it leaves
    points: np.ndarray
    radius: np.ndarray


@dataclass
class Bridge:
    """A myocardial bridge: the stretch ``start_mm``..``end_mm`` (arc length along the segment) is tunnelled."""

    segment: str
    start_mm: float
    end_mm: float

    @property
    def length_mm(self) -> float:
        return self.end_mm - self.start_mm


@dataclass
class HighTakeoff:
    """The RCA leaves the ascending aorta ``rise_mm`` above the sinotubular junction."""

    rise_mm: float
    ostium: tuple[float, float, float]


@dataclass
class CoronaryDetail:
    """What one case adds to its SCCT tree; :meth:`variants` is the ground truth for grading only."""

    branches: list[Branch] = field(default_factory=list)
    bridge: Bridge | None = None
    high_takeoff: HighTakeoff | None = None

    def variants(self) -> dict:
        """JSON-ready record of the normal variants (None where the case has none of that kind)."""
        return {"myocardial_bridge": None if self.bridge is None else
                {**asdict(self.bridge), "length_mm": round(self.bridge.length_mm, 1)},
                "rca_high_takeoff": None if self.high_takeoff is None else asdict(self.high_takeoff)}

    def variant_landmarks(self, anat: Anatomy) -> dict[str, list[float]]:
        """The variants as named points for the case's landmarks file (mm, LPS, two decimals)."""
        out: dict[str, list[float]] = {}
        if self.bridge is not None:
            v = anat.vessels[self.bridge.segment]
            arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(v.points, axis=0), axis=1))]
            for end, mm in (("start", self.bridge.start_mm), ("end", self.bridge.end_mm)):
                at = min(int(np.searchsorted(arc, mm)), len(arc) - 1)
                out[f"myocardial_bridge_{end}"] = [round(float(c), 2) for c in v.points[at]]
        if self.high_takeoff is not None:
            out["rca_high_takeoff_ostium"] = list(self.high_takeoff.ostium)
        return out


def sample_coronary_detail(anat: Anatomy, rng: np.random.Generator, *, bridge: bool | None = None,
                           high_takeoff: bool | None = None) -> CoronaryDetail:
    """Draw the side branches and variants of ``anat`` (whose SCCT tree must be built).

    A high take-off moves the start of ``anat``'s pRCA and its ostium landmark, so call this before
    lesions are placed. ``bridge`` / ``high_takeoff`` force a variant on (True) or off (False); the
    draws are made either way, so forcing one leaves the rest of the case unchanged.
    """
    missing = {"pLAD", "mLAD", "pRCA", "mRCA"} - set(anat.vessels)
    if missing:
        raise ValueError(f"the anatomy has no {', '.join(sorted(missing))}: sample its coronary tree first")
    drawn_bridge, drawn_takeoff = rng.random() < P_BRIDGE, rng.random() < P_HIGH_TAKEOFF
    bridge = drawn_bridge if bridge is None else bool(bridge)
    high_takeoff = drawn_takeoff if high_takeoff is None else bool(high_takeoff)
    bridge_len, bridge_at = rng.uniform(*BRIDGE_LENGTH_MM), rng.uniform(0.15, 0.85)
    rise = rng.uniform(*HIGH_TAKEOFF_RISE_MM)
    # calibre of this patient's tree, as the segments were drawn (pLAD starts at 1.9 mm radius times it)
    k = float(anat.vessels["pLAD"].radius[0]) / 1.9
    detail = CoronaryDetail()
    if high_takeoff:
        detail.high_takeoff = _high_takeoff(anat, rise)
    detail.branches += _septals(anat, rng, k)
    detail.branches.append(_conus(anat, rng, k))
    detail.branches += _acute_marginals(anat, rng, k)
    if bridge:
        mlad = anat.vessels["mLAD"].length_mm
        length = min(bridge_len, 0.8 * mlad)
        start = bridge_at * (mlad - length)
        detail.bridge = Bridge("mLAD", round(start, 1), round(start + length, 1))
    return detail


def _taper(n: int, r0: float) -> np.ndarray:
    return r0 * DISTAL_FRACTION ** np.linspace(0.0, 1.0, n)


def _angle_to(a: float, b: float) -> float:
    """Signed shortest turn from angle ``a`` to ``b`` (degrees)."""
    return (b - a + 180.0) % 360.0 - 180.0


def _septals(anat: Anatomy, rng: np.random.Generator, k: float) -> list[Branch]:
    """Perforators leaving the LAD's underside and running down and back inside the septal wall."""
    h = anat.heart
    lad = np.vstack([anat.vessels["pLAD"].points, anat.vessels["mLAD"].points])
    n_p = len(anat.vessels["pLAD"].points)
    n = int(rng.integers(SEPTAL_COUNT[0], SEPTAL_COUNT[1] + 1))
    # the first septal leaves near the first diagonal (the pLAD's end), the others along the mLAD
    at = np.sort(np.r_[rng.uniform(0.7, 1.0) * (n_p - 1), rng.uniform(n_p, len(lad) - 1, n - 1)]).astype(int)
    lv_len, lv_rad = anat.lv_outer
    w = anat.lv_wall_mm
    apex_w = APEX_WALL_FRACTION * w  # the realistic heart's thinner apex (its thorax is drawn after the tree)
    lvc = anat.lv_shift * np.array([np.cos(np.deg2rad(anat.phi_lv)), np.sin(np.deg2rad(anat.phi_lv))])
    septum_mid = anat.phi_lv + 180.0  # the LV wall that faces the RV
    out = []
    for i, idx in enumerate(at):
        o = lad[idx]
        su0, q1, q2 = (float(v) for v in h.local(o))
        psi0 = float(np.rad2deg(np.arctan2(q2 - lvc[1], q1 - lvc[0])))
        turn = _angle_to(psi0, septum_mid)
        drift = rng.uniform(8.0, 16.0)  # perforators course towards the apex as they dive
        sweep = rng.uniform(0.35, 0.7) * turn
        ctrl = [o]
        for t in (0.3, 0.65, 1.0):
            su = min(su0 + t * drift, 0.85 * lv_len)
            outer = lv_rad * np.sqrt(max(1 - (su / lv_len) ** 2, 0.05))
            inner = (lv_rad - w) * np.sqrt(max(1 - ((su - 4) / (lv_len - apex_w - 4)) ** 2, 0.0))
            rho = 0.5 * (outer + inner)  # mid-wall of the septum
            psi = np.deg2rad(psi0 + t * sweep)
            q = lvc + rho * np.array([np.cos(psi), np.sin(psi)])
            ctrl.append(h.base + su * h.u + q[0] * h.e1 + q[1] * h.e2)
        pts = _spline(np.asarray(ctrl))
        r0 = k * rng.uniform(*(FIRST_SEPTAL_R if i == 0 else SEPTAL_R))
        out.append(Branch(f"septal_{i + 1}", "pLAD" if idx < n_p else "mLAD", pts, _taper(len(pts), r0)))
    return out


def _conus(anat: Anatomy, rng: np.random.Generator, k: float) -> Branch:
    """The conus branch: from the first centimetre of the RCA, leftwards over the RV outflow tract."""
    h = anat.heart
    prca = anat.vessels["pRCA"].points
    o = prca[min(int(rng.uniform(3.0, 8.0) / 0.25), len(prca) - 1)]
    s = rng.uniform(-0.07, -0.03)
    # hugs the infundibulum (1 mm out, not the segments' 2 mm): above the AV plane lung lies close by
    ctrl = [o, h.surface(s, 350.0, 1.0), h.surface(s + 0.01, 5.0 + rng.uniform(-3, 3), 1.0),
            h.surface(s + 0.03, 18.0 + rng.uniform(-4, 4), 1.0)]
    pts = _spline(np.asarray(ctrl))
    return Branch("conus", "pRCA", pts, _taper(len(pts), k * rng.uniform(*CONUS_R)))


def _acute_marginals(anat: Anatomy, rng: np.random.Generator, k: float) -> list[Branch]:
    """Acute marginals: from the mid RCA down the RV free wall towards the apex."""
    h = anat.heart
    mrca = anat.vessels["mRCA"].points
    n = int(rng.integers(ACUTE_MARGINAL_COUNT[0], ACUTE_MARGINAL_COUNT[1] + 1))
    at = np.sort(rng.uniform(0.2, 0.95, n) * (len(mrca) - 1)).astype(int)
    out = []
    for i, idx in enumerate(at):
        o = mrca[idx]
        _, q1, q2 = h.local(o)
        phi = float(np.rad2deg(np.arctan2(q2, q1)))
        reach = rng.uniform(0.45, 0.7)  # how far towards the apex it is visible
        ctrl = [o] + [h.surface(s, phi - d, EPICARDIAL_OFFSET_MM)
                      for s, d in ((0.15, 4.0), (0.5 * reach + 0.1, 8.0), (reach, 12.0))]
        pts = _spline(np.asarray(ctrl))
        out.append(Branch(f"acute_marginal_{i + 1}", "mRCA", pts, _taper(len(pts), k * rng.uniform(*ACUTE_MARGINAL_R))))
    return out


def _high_takeoff(anat: Anatomy, rise: float) -> HighTakeoff:
    """Move the RCA ostium onto the ascending aorta ``rise`` mm above the sinotubular junction.

    The junction is the top of the sinuses (their balls reach 0.62 root radii up the root axis). The
    new proximal RCA runs from there down to rejoin the drawn RCA where the right AV groove begins."""
    root_c, axis, root_r = anat.aortic_root
    right_c, _ = anat.sinuses[1]
    side = _unit((right_c - root_c) - ((right_c - root_c) @ axis) * axis)
    height = 0.62 * root_r + rise
    wall = anat.aorta[0].radius if height <= np.linalg.norm(anat.aorta[0].end - root_c) else anat.aorta[1].radius
    ostium = root_c + height * axis + wall * side
    v = anat.vessels["pRCA"]
    join = min(int(0.6 * len(v.points)), len(v.points) - 2)
    lead = ostium + 6.0 * side  # leaves the aorta at right angles before turning down to the groove
    keep = np.unique(np.linspace(join, len(v.points) - 1, 4).astype(int))
    new = _spline(np.vstack([ostium, lead, v.points[keep]]))
    r = np.interp(np.linspace(0, 1, len(new)), np.linspace(0, 1, len(v.radius)), v.radius)
    anat.vessels["pRCA"] = Vessel("pRCA", new, r)
    anat.landmarks["right_coronary_ostium"] = ostium
    x, y, z = (round(float(c), 2) for c in ostium)
    return HighTakeoff(round(float(rise), 1), (x, y, z))


def _tube_occupancy(points: np.ndarray, radius: np.ndarray, grid, margin: float = 1.5
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat voxel indices near a centerline, the lumen occupancy there (linear over one voxel, as the
    rasteriser's segments) and the index of each voxel's nearest centerline point."""
    org, sp, shape = np.asarray(grid.origin), np.asarray(grid.spacing), np.asarray(grid.shape)
    reach = float(radius.max()) + margin + sp.max()
    lo = np.clip(np.floor((points.min(0) - reach - org) / sp).astype(int), 0, shape)
    hi = np.clip(np.ceil((points.max(0) + reach - org) / sp).astype(int) + 1, 0, shape)
    if np.any(hi <= lo):
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64)
    ijk = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1).reshape(-1, 3)
    dist, nn = cKDTree(points).query(org + ijk * sp, distance_upper_bound=reach)
    keep = np.isfinite(dist)
    ijk, dist, nn = ijk[keep], dist[keep], nn[keep]
    occ = np.clip(0.5 - (dist - radius[nn]) / float(np.mean(sp)), 0.0, 1.0)
    return np.ravel_multi_index(ijk.T, tuple(shape)), occ, nn


def paint_coronary_detail(lab: np.ndarray, parts: dict, grid, anat: Anatomy, detail: CoronaryDetail) -> None:
    """Add the branches' lumen to the rasteriser's partial-volume band and tunnel a bridge (in place).

    ``lab`` and ``parts`` are :func:`cardiovlm.training.phantoms.raster.rasterise`'s output for ``anat``; the
    segment lumens and labels already painted are never reduced.
    """
    labf = lab.reshape(-1)
    add_idx, add_occ = [], []
    for b in detail.branches:
        flat, occ, _ = _tube_occupancy(b.points, b.radius, grid)
        ok = (occ > 0) & np.isin(labf[flat], list(_TISSUE_AROUND_BRANCHES))
        add_idx.append(flat[ok])
        add_occ.append(occ[ok])
    if add_idx:
        _merge_band(parts, np.concatenate(add_idx), np.concatenate(add_occ))
    if detail.bridge is not None:
        _tunnel(labf, grid, anat, detail.bridge)


def _merge_band(parts: dict, idx: np.ndarray, occ: np.ndarray) -> None:
    """Union of the band with new voxels: where a voxel is in both, the larger occupancy wins."""
    order = np.argsort(-occ, kind="stable")
    idx, first = np.unique(idx[order], return_index=True)
    occ = occ[order][first]
    band = parts["band"]
    sort = np.argsort(band, kind="stable")
    at = np.clip(np.searchsorted(band, idx, sorter=sort), 0, max(len(band) - 1, 0))
    shared = sort[at] if len(band) else np.zeros(len(idx), np.int64)
    old = (band[shared] == idx) if len(band) else np.zeros(len(idx), bool)
    parts["occ"][shared[old]] = np.maximum(parts["occ"][shared[old]], occ[old])
    new = ~old
    parts["band"] = np.r_[band, idx[new]]
    parts["occ"] = np.r_[parts["occ"], occ[new]]
    parts["ca_hu"] = np.r_[parts["ca_hu"], np.zeros(int(new.sum()), parts["ca_hu"].dtype)]
    parts["struts"] = np.r_[parts["struts"], np.zeros(int(new.sum()), bool)]


def _tunnel(labf: np.ndarray, grid, anat: Anatomy, bridge: Bridge) -> None:
    """Fat round the bridged stretch becomes muscle (cardiac wall): the artery runs inside the myocardium."""
    v = anat.vessels[bridge.segment]
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(v.points, axis=0), axis=1))]
    inside = (arc >= bridge.start_mm) & (arc <= bridge.end_mm)
    flat, _, nn = _tube_occupancy(v.points, v.radius, grid, margin=BRIDGE_MUSCLE_MM + 1.0)
    org, sp = np.asarray(grid.origin), np.asarray(grid.spacing)
    xyz = org + np.stack(np.unravel_index(flat, grid.shape), -1) * sp
    dist = np.linalg.norm(xyz - v.points[nn], axis=1)
    sleeve = inside[nn] & (dist <= v.radius[nn] + BRIDGE_MUSCLE_MM) & np.isin(labf[flat], list(_BRIDGEABLE))
    labf[flat[sleeve]] = _WALL
