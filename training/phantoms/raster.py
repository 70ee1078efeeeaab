"""Rasterise a phantom (geometry + findings) into a label map and HU images at any voxel spacing.

Labels are decided at voxel centres in a fixed order (body, lungs, bone, heart, great vessels,
coronaries, findings: later ones win). HU images take per-tissue attenuation from the literature
(``shared/REFERENCE.md``), the coronary lumen gets analytic partial volume from its signed distance,
then a Gaussian point-spread blur and spatially correlated noise are applied.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.training.phantoms import physics as phys
from cardiovlm.training.phantoms.body import HUMERUS_LABEL, paint_body_wall
from cardiovlm.training.phantoms.geometry import APEX_WALL_FRACTION, AV_GROOVE_MM, Anatomy, Tube
from cardiovlm.training.phantoms.lesions import Calcification, SegmentLumen
from cardiovlm.training.phantoms.noise import kernel_noise
from cardiovlm.training.phantoms.physics import Physics
from cardiovlm.training.phantoms.thorax import Thorax
from cardiovlm.training.phantoms.thorax_raster import abdomen, paint_heart_detail, paint_segments, vessels_and_airways
from cardiovlm.training.phantoms.vertebrae import paint_spine

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
PSF_SIGMA_MM = 0.5  # scanner point-spread function, Gaussian sigma
NOISE_CORRELATION_MM = 0.6  # noise grain
VALVE_GAP_MM = 4.5  # generator 2.0: the atria's blood stops this far above the base plane (their floor)
ORIFICE_SHARE = 1.0  # an AV valve orifice's radius as a share of its atrium's cross-section at the floor
CORONARY_CLEARANCE_MM = 2.5  # fat kept between a coronary lumen and a great vessel it passes (generator 2.0)
FISSURE_TISSUE_FRACTION = 0.25  # share of a fissure's voxel that is pleura: about -600 HU, dark on a soft-tissue window


@dataclass(frozen=True)
class Grid:
    """An axial voxel grid: ``shape`` along (i left, j posterior, k superior), voxel (0,0,0) at ``origin``."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]

    @classmethod
    def centred(cls, centre, fov_mm: tuple[float, float, float], spacing: tuple[float, float, float]) -> Grid:
        n = [int(round(f / s)) for f, s in zip(fov_mm, spacing)]
        o = [round(float(c - (k - 1) * s / 2), 3) for c, k, s in zip(centre, n, spacing)]
        return cls((n[0], n[1], n[2]), (float(spacing[0]), float(spacing[1]), float(spacing[2])), (o[0], o[1], o[2]))

    @property
    def affine(self) -> np.ndarray:
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = self.origin
        return affine

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable LPS coordinates (I,1,1), (1,J,1), (1,1,K) in mm (float32)."""
        x, y, z = (
            (o + s * np.arange(n, dtype=np.float32)).reshape([-1 if a == b else 1 for b in range(3)])
            for a, (o, s, n) in enumerate(zip(self.origin, self.spacing, self.shape)))
        return x, y, z


@dataclass(frozen=True)
class Contrast:
    """Attenuation (HU) of every tissue in one acquisition."""

    blood_left: float  # LV, LA, aorta, coronary lumen
    blood_right: float  # RA, RV, pulmonary trunk (often less opacified)
    myocardium: float = 110.0
    fat: float = -100.0
    lung: float = -870.0
    muscle: float = 50.0
    cortical: float = 900.0
    cancellous: float = 250.0
    liver: float = 90.0
    plaque: float = 60.0  # non-calcified plaque: 30-130 HU
    stent: float = 2200.0  # metal before blur; blooming brings it to ~800-1500 HU
    air: float = -1000.0
    # thorax (generator 2.0); the defaults are an unenhanced scan
    svc: float = 40.0  # undiluted contrast arriving from the injected arm vein: 700-1600 HU in the arterial phase
    ivc: float = 40.0  # unopacified venous return from below
    cartilage: float = 140.0
    stomach: float = 25.0
    marrow: float = -20.0  # fatty marrow of the humeral shaft
    table_shell: float = 250.0  # carbon-fibre skin of the table top
    table_core: float = -900.0  # its foam core


def _capsule_dist(x, y, z, tube: Tube) -> np.ndarray:
    a, d = [float(c) for c in tube.start], [float(c) for c in tube.end - tube.start]
    t = ((x - a[0]) * d[0] + (y - a[1]) * d[1] + (z - a[2]) * d[2]) / (d[0] ** 2 + d[1] ** 2 + d[2] ** 2)
    t = np.clip(t, 0, 1)
    return np.sqrt((x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 + (z - a[2] - t * d[2]) ** 2)


def _ball(x, y, z, c, r) -> np.ndarray:
    c, r = [float(v) for v in c], float(r)
    return (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r * r


def _paint_ball(lab: np.ndarray, grid: Grid, centre, radius: float, label: int, only: int) -> None:
    """Label a ball ``label`` where it currently is ``only`` (inside its bounding box)."""
    org, sp = np.asarray(grid.origin), np.asarray(grid.spacing)
    lo = np.clip(np.floor((np.asarray(centre) - radius - org) / sp).astype(int), 0, grid.shape)
    hi = np.clip(np.ceil((np.asarray(centre) + radius - org) / sp).astype(int) + 1, 0, grid.shape)
    if np.any(hi <= lo):
        return
    xs, ys, zs = (org[a] + sp[a] * np.arange(lo[a], hi[a]) - centre[a] for a in range(3))
    ball = xs[:, None, None] ** 2 + ys[None, :, None] ** 2 + zs[None, None, :] ** 2 <= radius ** 2
    box = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    box[ball & (box == only)] = label


def _near_coronaries(anat: Anatomy, grid: Grid, mask: np.ndarray, clearance: float) -> np.ndarray:
    """Voxels of ``mask`` within a coronary's radius plus ``clearance`` mm of its centerline."""
    near = np.zeros(grid.shape, bool)
    idx = np.argwhere(mask)
    if len(idx) == 0 or not anat.vessels:
        return near
    pts = np.concatenate([v.points for v in anat.vessels.values()])
    radius = np.concatenate([v.radius for v in anat.vessels.values()])
    dist, nn = cKDTree(pts).query(np.asarray(grid.origin) + idx * np.asarray(grid.spacing))
    hit = idx[dist <= radius[nn] + clearance]
    near[tuple(hit.T)] = True
    return near


def _open_valves(lab: np.ndarray, anat: Anatomy, su, q1, q2, rho, psi, lv_epi, epicardium) -> None:
    """Generator 2.0: the mitral and tricuspid orifices, open as in diastole (the leaflets are too thin to
    show), so the atria's blood runs into the ventricles' through the base instead of stopping on a plate of
    muscle. An orifice is the atrium's footprint on the base, ORIFICE_SHARE of it, inside its ventricle's cavity;
    it fills the muscle between the atrium's floor and the cavity's roof (atrium's label above the base plane,
    ventricle's below). The annulus and the AV groove round it stay."""
    h, shape = anat.heart, anat.heart.shape
    assert shape is not None  # internal: called for generator 2.0's ventricles only
    w = float(anat.lv_wall_mm)
    plate = (su > -VALVE_GAP_MM) & (su < 4.0) & np.isin(lab, [LABEL["cardiac_wall"], LABEL["lv_myocardium"]])
    for (c, r), atrium, ventricle in ((anat.la, "la_blood", "lv_blood"), (anat.ra, "ra_blood", "rv_blood")):
        d = np.asarray(c) - h.base
        c_su, c1, c2 = float(d @ h.u), float(d @ h.e1), float(d @ h.e2)
        foot = float(r) ** 2 - (VALVE_GAP_MM + c_su) ** 2  # the atrium's cross-section at its floor
        if foot <= 0:
            continue
        inside = (q1 - c1) ** 2 + (q2 - c2) ** 2 <= ORIFICE_SHARE ** 2 * foot
        if ventricle == "lv_blood":
            cavity = rho <= float(shape.lv_rad) - w - 1.0
        else:
            cavity = (rho > lv_epi + 1.5) & (rho <= epicardium - shape.rv_wall(psi, float(anat.rv_wall_mm)))
        orifice = plate & inside & cavity
        lab[orifice & (su < 0)] = LABEL[atrium]
        lab[orifice & (su >= 0)] = LABEL[ventricle]


def _tissues(anat: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray, dict]:
    """Label map of everything but the coronaries, a bone-cortex mask (HU differs, label does not) and
    the masks image formation needs besides labels (airway and stomach air)."""
    x, y, z = grid.axes()
    lab = np.zeros(grid.shape, np.uint8)
    bx, by = (float(v) for v in anat.body_centre)
    ax_, ay = (float(v) for v in anat.body_axes)
    thorax = anat.thorax if isinstance(anat.thorax, Thorax) else None
    extras: dict = {}
    if thorax is not None:
        cavity, rib_cortex, extras = paint_body_wall(lab, grid, anat, thorax.body, thorax.wall, thorax.ribs,
                                                     thorax.spine.canal_centre)
    else:
        ell = lambda dx, dy: ((x - bx) / (ax_ - dx)) ** 2 + ((y - by) / (ay - dx)) ** 2 <= 1  # noqa: E731
        body, below_fat, cavity = ell(0, 0), ell(anat.fat_mm, 0), ell(anat.fat_mm + anat.muscle_mm, 0)
        shape2 = np.broadcast_shapes(body.shape, (1, 1, grid.shape[2]))
        lab[np.broadcast_to(body, shape2)] = LABEL["subcutaneous_fat"]
        lab[np.broadcast_to(below_fat, shape2)] = LABEL["soft_tissue"]
        cavity = np.broadcast_to(cavity, grid.shape)
        lab[cavity & (x >= bx)] = LABEL["lung_left"]
        lab[cavity & (x < bx)] = LABEL["lung_right"]

    h = anat.heart
    # python floats keep the arithmetic in float32 (a float64 numpy scalar would promote it)
    b, u, e1, e2 = ([float(c) for c in v] for v in (h.base, h.u, h.e1, h.e2))
    dx, dy, dz = x - b[0], y - b[1], z - b[2]
    su = dx * u[0] + dy * u[1] + dz * u[2]
    q1 = dx * e1[0] + dy * e1[1] + dz * e1[2]
    q2 = dx * e2[0] + dy * e2[1] + dz * e2[2]
    rr = q1 ** 2 + q2 ** 2

    def half(a, b, grow=0.0):  # the ventricular half-ellipsoid (base plane su = 0), grown by ``grow`` mm
        a, b, grow = float(a + grow), float(b + grow), float(grow)
        return (su >= -grow) & ((su / a) ** 2 + rr / b ** 2 <= 1)

    # mediastinum: pericardial fat around the heart and a central strip (oesophagus, vessels in fat)
    # (with a thorax, the mediastinal fat is a sheath round its vessels and airways instead: a narrow strip)
    strip = ((np.abs(x - bx) < 22) & (y > by - ay + 10) & (y < anat.spine_centre[1]) if thorax is None
             else (np.abs(x - bx) < 10) & (y > by - ay + 10) & (y < float(h.base[1])))
    fat_zone = half(h.length, h.radius, 7.0) | strip
    shape = h.shape
    if shape is not None:  # generator 2.0: distance and angle round the LV axis
        rho, psi = shape.polar(q1, q2)
        lv_epi = shape.lv_radius(su)
        epicardium = lv_epi + np.where(lv_epi > 0, shape.rv_reach(su, psi), 0.0)
        # the atrioventricular groove: within AV_GROOVE_MM of the ventricles' (unrounded) rim the atria rise at
        # 45 degrees, so fat fills the sulcus over the rounded base where the RCA and the LCx run
        rim = shape.lv_rad + shape.rv_reach(0.0, psi)
        lift = np.clip(rho - (rim - AV_GROOVE_MM), 0.0, None)
        lift_blood = 2.0 + np.clip(rho + 2.0 - (rim - AV_GROOVE_MM), 0.0, None)
        # pericardial fat round the ventricles as they are drawn (the LV's free wall reaches past the half-ellipsoid)
        # and up the AV groove, where the proximal RCA runs
        fat_zone |= (su >= -14.0) & (rho <= shape.lv_radius(np.maximum(su, 0.0)) + shape.rv_reach(su, psi) + 7.0)
    for c, r in (anat.la, anat.ra):
        fat_zone |= _ball(x, y, z, c, r + 6)
    lab[fat_zone & cavity] = LABEL["epicardial_fat"]
    if thorax is not None:
        extras["stomach_air"] = abdomen(lab, grid, anat, thorax, cavity, half(h.length, h.radius, 7.0))
        extras["airway"] = vessels_and_airways(lab, grid, anat, thorax)
    # great vessels
    if thorax is None:
        for tube in anat.aorta[1:]:
            lab[_capsule_dist(x, y, z, tube) <= tube.radius] = LABEL["aorta"]
    else:
        paint_segments(lab, grid, thorax.aorta, LABEL["aorta"])
    trunk = _capsule_dist(x, y, z, anat.pulmonary) <= anat.pulmonary.radius
    if shape is not None:  # the left main and LAD pass behind the trunk, in fat, not through it
        trunk &= ~_near_coronaries(anat, grid, trunk, CORONARY_CLEARANCE_MM)
    lab[trunk] = LABEL["pulmonary_artery"]
    # atria, with a thin wall (generator 2.0: above the base and clear of the AV groove)
    for (c, r), name in ((anat.la, "la_blood"), (anat.ra, "ra_blood")):
        if shape is None:
            lab[_ball(x, y, z, c, r + 2)] = LABEL["cardiac_wall"]
            lab[_ball(x, y, z, c, r)] = LABEL[name]
        else:
            lab[_ball(x, y, z, c, r + 2) & (su < -lift)] = LABEL["cardiac_wall"]
            lab[_ball(x, y, z, c, r) & (su < -lift_blood)] = LABEL[name]
    lv_len, lv_rad = (float(v) for v in anat.lv_outer)
    if shape is None:
        # ventricles: RV fills the epicardial half-ellipsoid outside the LV; septum belongs to the LV
        lab[half(h.length, h.radius)] = LABEL["cardiac_wall"]
        lab[half(h.length - anat.rv_wall_mm, h.radius - anat.rv_wall_mm) & (su > 3)] = LABEL["rv_blood"]
        lv_dir = h.direction(anat.phi_lv)
        shift = float(anat.lv_shift)
        q1l, q2l = q1 - float(shift * (lv_dir @ h.e1)), q2 - float(shift * (lv_dir @ h.e2))
        rrl = q1l ** 2 + q2l ** 2
        lv_outer = (su >= 0) & ((su / lv_len) ** 2 + rrl / lv_rad ** 2 <= 1)
    else:
        # the RV crescent on the septal side of the LV, its free wall RV_WALL_MM thick; septum belongs to the LV
        lab[(su >= 0) & (rho <= epicardium)] = LABEL["cardiac_wall"]
        lab[(su > 3) & (rho <= epicardium - shape.rv_wall(psi, float(anat.rv_wall_mm)))] = LABEL["rv_blood"]
        rrl = rho ** 2
        lv_outer = (su >= 0) & (rho <= lv_epi)
    w = float(anat.lv_wall_mm)
    apex_wall = w if thorax is None else APEX_WALL_FRACTION * w  # 2.0: a thinner apex
    lv_inner = (su >= 4) & (((su - 4) / (lv_len - apex_wall - 4)) ** 2 + rrl / (lv_rad - w) ** 2 <= 1)
    lab[lv_outer] = LABEL["lv_myocardium"]
    lab[lv_inner] = LABEL["lv_blood"]
    if shape is not None:
        _open_valves(lab, anat, su, q1, q2, rho, psi, lv_epi, epicardium)
    if thorax is not None:
        for c, r in thorax.extra.get("trabeculae", ()):
            _paint_ball(lab, grid, c, r, LABEL["lv_myocardium"], LABEL["lv_blood"])
    # two papillary muscles: filling defects in the LV blood pool, part of the myocardium label (generator
    # 2.0 draws them anatomically, attached to the wall: heart_detail)
    for dphi in (-55.0, 55.0) if thorax is None and shape is None else ():
        p_dir = h.direction(anat.phi_lv + dphi)
        pc1 = 0.55 * (lv_rad - w) * float(p_dir @ h.e1)
        pc2 = 0.55 * (lv_rad - w) * float(p_dir @ h.e2)
        papillary = ((q1l - pc1) ** 2 + (q2l - pc2) ** 2 <= 16.0) & (su > 0.4 * lv_len) & (su < 0.75 * lv_len)
        lab[papillary & lv_inner] = LABEL["lv_myocardium"]
    # aortic root with its three sinuses, and the ascending aorta leaving it
    root_c, _, root_r = anat.aortic_root
    root = _capsule_dist(x, y, z, anat.aorta[0]) <= anat.aorta[0].radius
    for c, r in anat.sinuses:
        root |= _ball(x, y, z, c, r)
    lab[root] = LABEL["aortic_root"]
    if thorax is not None and thorax.heart_detail is not None:
        paint_heart_detail(lab, grid, anat, thorax.heart_detail)
    # bones: sternum; vertebral bodies with discs and the spinal canal behind them
    (stx, sty), (hw, hd) = (float(v) for v in anat.sternum[0]), anat.sternum[1]
    sternum = np.broadcast_to(((x - stx) / hw) ** 2 + ((y - sty) / hd) ** 2 <= 1, grid.shape)
    sternum_cortex = sternum & ~np.broadcast_to(((x - stx) / (hw - 1.5)) ** 2 + ((y - sty) / (hd - 1.5)) ** 2 <= 1,
                                                grid.shape)
    if thorax is not None:
        lab[sternum] = LABEL["sternum"]
        cortex, processes = paint_spine(lab, grid, thorax.spine, paint_segments)
        cortex = cortex | sternum_cortex | (rib_cortex & np.isin(lab, [LABEL["ribs"], HUMERUS_LABEL]))
        cortex |= processes & ~ndimage.binary_erosion(processes, iterations=1)
        return lab, cortex, extras
    sx, sy = (float(v) for v in anat.spine_centre)
    d_spine = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
    vb = np.broadcast_to(d_spine <= anat.spine_radius, grid.shape)
    disc = np.broadcast_to(np.abs(((z + 300) % 27.0) - 13.5) > 11.5, grid.shape)  # ~5 mm discs every 27 mm
    lab[vb] = LABEL["spine"]
    canal = np.broadcast_to(np.sqrt((x - sx) ** 2 + (y - sy - anat.spine_radius - 9) ** 2) <= 8, grid.shape)
    lab[canal] = LABEL["soft_tissue"]
    lab[sternum] = LABEL["sternum"]
    cortex = np.broadcast_to(d_spine >= anat.spine_radius - 1.8, grid.shape) & vb
    cortex |= sternum_cortex
    cortex &= ~disc
    lab[vb & disc] = LABEL["soft_tissue"]
    # liver dome under the right hemidiaphragm (lowest slices only)
    lc, (la_, lb, lc_) = [float(v) for v in anat.liver_centre], anat.liver_axes
    liver = ((x - lc[0]) / la_) ** 2 + ((y - lc[1]) / lb) ** 2 + ((z - lc[2]) / lc_) ** 2 <= 1
    lab[liver & cavity & ~half(h.length, h.radius, 7.0)] = LABEL["liver"]
    return lab, cortex, extras


def _coronaries(anat: Anatomy, lumens: dict[str, SegmentLumen], calcs: list[Calcification], grid: Grid,
                lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Paint coronary lumen, plaque, calcium and stent labels into ``lab`` (in place).

    Returns flat voxel indices of the vessel band, the lumen occupancy (0..1) there, the calcium HU
    per band voxel (0 where none) and the stent mask per band voxel.
    """
    codes = list(anat.vessels)
    pts = np.concatenate([anat.vessels[c].points for c in codes])
    seg_of = np.concatenate([np.full(len(anat.vessels[c].points), i) for i, c in enumerate(codes)])
    cat = lambda attr: np.concatenate([getattr(lumens[c], attr) for c in codes])  # noqa: E731
    lumen_r, outer_r, shift, normal, stent, stent_r = (cat(a) for a in (
        "lumen_radius", "outer_radius", "lumen_shift", "normal", "stent", "stent_radius"))
    sp = np.asarray(grid.spacing)
    # candidate voxels: within max radius + margin of any centerline point
    reach = float(outer_r.max()) + 4.5 + 2 * sp.max()
    lo = np.floor((pts.min(0) - reach - np.asarray(grid.origin)) / sp).astype(int).clip(0, np.array(grid.shape) - 1)
    hi = np.ceil((pts.max(0) + reach - np.asarray(grid.origin)) / sp).astype(int).clip(0, np.array(grid.shape) - 1)
    seed = np.zeros(tuple(hi - lo + 1), bool)
    idx = np.round((pts - np.asarray(grid.origin)) / sp).astype(int) - lo
    ok = np.all((idx >= 0) & (idx < seed.shape), axis=1)
    seed[tuple(idx[ok].T)] = True
    near = ndimage.distance_transform_edt(~seed, sampling=sp) <= reach - sp.max()
    band = np.argwhere(near) + lo
    xyz = np.asarray(grid.origin) + band * sp
    dist, nn = cKDTree(pts).query(xyz)
    # the tube of groove fat around every artery
    flat = np.ravel_multi_index(band.T, grid.shape)
    labf = lab.reshape(-1)
    fat_ok = np.isin(labf[flat], [LABEL["epicardial_fat"], LABEL["lung_left"], LABEL["lung_right"],
                                  LABEL["cardiac_wall"], LABEL["soft_tissue"]])
    labf[flat[(dist <= outer_r[nn] + 3.0) & fat_ok]] = LABEL["epicardial_fat"]
    # lumen: signed distance to the (shifted) lumen circle -> linear occupancy over one voxel
    centre = pts[nn] + (shift[nn])[:, None] * normal[nn]
    d_lumen = np.linalg.norm(xyz - centre, axis=1)
    h = float(np.mean(sp))
    occ = np.clip(0.5 - (d_lumen - lumen_r[nn]) / h, 0.0, 1.0)
    occ[lumen_r[nn] <= 0] = 0.0
    in_wall = dist <= outer_r[nn]
    plaque = in_wall & (d_lumen > lumen_r[nn]) & (outer_r[nn] > _healthy_radius(anat, codes, nn) + 1e-3)
    labf[flat[plaque]] = LABEL["noncalcified_plaque"]
    seg_labels = np.array([SEGMENTS_BY_CODE[c].label_id for c in codes])
    lumen_mask = d_lumen <= lumen_r[nn]
    labf[flat[lumen_mask]] = seg_labels[seg_of[nn[lumen_mask]]]
    # stent struts: a thin metal shell, at least ~0.7 voxel thick so it survives rasterisation, pressed
    # into the wall just outside the stent's inner radius, so a patent stent keeps its full lumen
    shell = max(0.35, 0.35 * h)
    struts = stent[nn] & (np.abs(dist - (stent_r[nn] + shell)) <= shell)
    labf[flat[struts]] = LABEL["stent"]
    # calcium nodules: dome-shaped HU profile, peak at the centre
    ca_hu = np.zeros(len(flat), np.float32)
    for c in calcs:
        r = np.linalg.norm(xyz - c.centre, axis=1)
        inside = (r <= c.radius + 0.5 * h) & ~lumen_mask
        value = 130 + (c.peak_hu - 130) * np.clip(1 - (r / (c.radius + 0.5 * h)) ** 2, 0, 1) ** 0.5
        ca_hu = np.where(inside, np.maximum(ca_hu, value), ca_hu)
    labf[flat[ca_hu >= 130]] = LABEL["calcified_plaque"]
    return flat, occ, ca_hu, struts


def _healthy_radius(anat: Anatomy, codes, nn) -> np.ndarray:
    """Healthy lumen radius at each band voxel's nearest centerline point."""
    return np.concatenate([anat.vessels[c].radius for c in codes])[nn]


def rasterise(anat: Anatomy, lumens: dict[str, SegmentLumen], calcs: list[Calcification], grid: Grid,
              extra_calcium: Sequence[Calcification] = ()) -> tuple[np.ndarray, dict]:
    """The label map (uint8, ``grid.shape``) and what image formation needs (band, occupancy...)."""
    lab, cortex, extras = _tissues(anat, grid)
    flat, occ, ca_hu, struts = _coronaries(anat, lumens, calcs, grid, lab)
    x, y, z = grid.axes()
    extra = np.zeros(grid.shape, np.float32)
    for c in extra_calcium:  # valve / annulus calcium: label 43
        r = np.sqrt((x - c.centre[0]) ** 2 + (y - c.centre[1]) ** 2 + (z - c.centre[2]) ** 2)
        value = np.where(r <= c.radius, c.peak_hu * np.sqrt(np.clip(1 - (r / c.radius) ** 2, 0, 1)) + 130, 0)
        extra = np.maximum(extra, value)
    lab[extra >= 130] = STRUCTURES_BY_NAME["extracoronary_calcification"].label_id
    return lab, {"cortex": cortex, "band": flat, "occ": occ, "ca_hu": ca_hu, "struts": struts, "extra_ca": extra,
                 **extras}


OPACIFIED = ("lv_blood", "rv_blood", "la_blood", "ra_blood", "aorta", "aortic_root", "pulmonary_artery",
             "superior_vena_cava", "brachiocephalic_veins", "brachiocephalic_trunk", "left_common_carotid_artery",
             "left_subclavian_artery", "pulmonary_arteries", "pulmonary_veins")


def form_image(lab: np.ndarray, parts: dict, grid: Grid, contrast: Contrast, noise_sd: float,
               rng: np.random.Generator, physics: Physics | None = None) -> np.ndarray:
    """HU image (int16) from a label map: tissue HU, lumen partial volume, PSF blur, correlated noise.

    With ``physics`` (generator 2.0) also: blood inhomogeneity and right-atrial mixing, calcium and
    stent blooming, motion blur round the mid RCA, streaks from the dense SVC, and noise with a
    reconstruction kernel's texture (:mod:`cardiovlm.training.phantoms.noise`) instead of blurred white noise.
    """
    c = contrast
    lut = np.full(256, c.air, np.float32)
    for name, tissue_hu in (("soft_tissue", c.muscle), ("subcutaneous_fat", c.fat), ("lung_left", c.lung),
                     ("lung_right", c.lung), ("spine", c.cancellous), ("sternum", c.cancellous),
                     ("epicardial_fat", c.fat), ("liver", c.liver), ("lv_blood", c.blood_left),
                     ("rv_blood", c.blood_right), ("la_blood", c.blood_left), ("ra_blood", c.blood_right),
                     ("lv_myocardium", c.myocardium), ("aorta", c.blood_left), ("aortic_root", c.blood_left),
                     ("pulmonary_artery", c.blood_right), ("cardiac_wall", c.myocardium),
                     ("noncalcified_plaque", c.plaque), ("calcified_plaque", c.plaque), ("stent", c.stent),
                     ("extracoronary_calcification", c.myocardium),
                     ("superior_vena_cava", c.svc), ("brachiocephalic_veins", c.svc), ("inferior_vena_cava", c.ivc),
                     ("azygos_vein", 0.5 * (c.ivc + c.blood_right)), ("brachiocephalic_trunk", c.blood_left),
                     ("left_common_carotid_artery", c.blood_left), ("left_subclavian_artery", c.blood_left),
                     ("pulmonary_arteries", c.blood_right), ("pulmonary_veins", c.blood_left),
                     ("trachea", c.air), ("main_bronchi", c.air), ("oesophagus", c.muscle - 5),
                     ("ribs", c.cancellous), ("costal_cartilage", c.cartilage), ("stomach", c.stomach),
                     # two pleural layers, a fraction of a millimetre, averaged into a voxel of lung
                     ("lung_fissure", c.lung + FISSURE_TISSUE_FRACTION * (c.muscle - c.lung))):
        lut[LABEL[name]] = tissue_hu
    for seg in SEGMENTS_BY_CODE.values():
        lut[seg.label_id] = c.fat  # lumen HU is mixed in below from the analytic occupancy
    hu = lut[lab]
    hu[parts["cortex"]] = c.cortical
    for mask, value in (("stomach_air", c.air), ("marrow", c.marrow), ("table_shell", c.table_shell),
                        ("table_core", c.table_core)):
        if mask in parts:
            hu[parts[mask]] = value
    huf = hu.reshape(-1)
    band, occ = parts["band"], parts["occ"]
    huf[band] = huf[band] * (1 - occ) + 0.97 * c.blood_left * occ
    # calcium replaces tissue only where there is calcium; elsewhere the groove fat keeps its own HU
    calcified = parts["ca_hu"] > 0
    huf[band[calcified]] = np.maximum(huf[band[calcified]], parts["ca_hu"][calcified])
    huf[band[parts["struts"]]] = c.stent
    hu = np.where(parts["extra_ca"] >= 130, np.maximum(hu, parts["extra_ca"]), hu)
    sp = np.asarray(grid.spacing)
    if physics is None:
        hu = ndimage.gaussian_filter(hu, PSF_SIGMA_MM / sp, mode="nearest")
        noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape, dtype=np.float32), NOISE_CORRELATION_MM / sp)
        noise *= noise_sd / max(float(noise.std()), 1e-6)
        return np.clip(np.rint(hu + noise), -1024, 3071).astype(np.int16)
    blood = np.isin(lab, [LABEL[n] for n in OPACIFIED])
    phys.blood_inhomogeneity(hu, blood, grid, physics.blood_texture, physics.blood_texture_mm, rng)
    phys.atrial_mixing(hu, lab == LABEL["ra_blood"], grid, physics, c.svc, c.ivc, rng)
    dense = np.zeros(grid.shape, bool).reshape(-1)
    dense[band[(parts["ca_hu"] >= 130) | parts["struts"]]] = True
    dense = dense.reshape(grid.shape) | (parts["extra_ca"] >= 130)
    hu = phys.bloom(hu, dense, c.plaque, grid, physics.bloom_sigma_mm, PSF_SIGMA_MM)
    hu = phys.motion_blur(hu, grid, physics)
    hu = ndimage.gaussian_filter(hu, PSF_SIGMA_MM / sp, mode="nearest")
    svc = lab == LABEL["superior_vena_cava"]
    phys.svc_streaks(hu, svc, lab != 0, grid, physics, c.svc)
    hu += kernel_noise(grid.shape, grid.spacing, noise_sd, rng, physics.nps_peak_per_mm)
    return np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
