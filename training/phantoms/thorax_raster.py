"""Paint the thorax of :mod:`cardiovlm.training.phantoms.thorax` into a label map (abdomen, mediastinum, airways, lung
trees).

The chest wall is painted by :mod:`cardiovlm.training.phantoms.body`, the spine by
:mod:`cardiovlm.training.phantoms.vertebrae`.
The heart's papillary muscles, trabeculae,
appendages and outflow tract (:mod:`cardiovlm.training.phantoms.heart_detail`) are painted here too.
Every structure is a registry label (``cardiovlm.tools.core.anatomy``). Tubes are painted segment by segment inside
each segment's bounding box, so a lung tree of thousands of branches costs well under a second. New
structures never paint within ``KEEP_OUT_MM`` of a coronary lumen: the coronaries run in their own fat.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.heart_detail import HeartDetail
from cardiovlm.training.phantoms.segments import Segments
from cardiovlm.training.phantoms.thorax import Thorax

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
KEEP_OUT_MM = 3.0  # fat kept between a coronary lumen and any other vessel or airway
# blood of an atrium kept from another chamber's or vessel's blood: the atrial wall and the interatrial septum
# are 2-5 mm (the septum 3-5 mm at its limbus, 1-2 mm at the fossa ovalis)
ATRIAL_WALL_MM = 3.0


def paint_segments(lab: np.ndarray, grid, segs: Segments, label: int, allowed: set[int] | None = None,
                   grow: float = 0.0, keep_out: tuple[cKDTree, np.ndarray] | None = None,
                   min_radius: float = 0.0) -> int:
    """Paint tapered capsules (radius + ``grow``, at least ``min_radius``) as ``label`` where the current
    label is in ``allowed`` (anywhere when None), oval where the segments say so; returns the voxel count."""
    if len(segs) == 0:
        return 0
    org, sp, shape = np.asarray(grid.origin), np.asarray(grid.spacing), np.asarray(grid.shape)
    allowed_lut = None
    if allowed is not None:
        allowed_lut = np.zeros(256, bool)
        allowed_lut[list(allowed)] = True
    painted = 0
    r0s = np.maximum(segs.r0 + grow, min_radius)
    r1s = np.maximum(segs.r1 + grow, min_radius)
    thin = np.maximum(r0s, r1s) <= min_radius if min_radius > 0 else np.zeros(len(r0s), bool)
    if thin.any():
        painted += _paint_lines(lab, grid, segs.p0[thin], segs.p1[thin], label, allowed_lut, keep_out)
    for p0, p1, r0, r1, ecc in zip(segs.p0[~thin], segs.p1[~thin], r0s[~thin], r1s[~thin], segs.eccentricity()[~thin]):
        rmax = max(r0, r1)
        lo = np.floor((np.minimum(p0, p1) - rmax - org) / sp).astype(int)
        hi = np.ceil((np.maximum(p0, p1) + rmax - org) / sp).astype(int) + 1
        lo, hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
        if np.any(hi <= lo):
            continue
        xs, ys, zs = (org[a] + sp[a] * np.arange(lo[a], hi[a], dtype=np.float32) for a in range(3))
        dx, dy, dz = (float(v) for v in p1 - p0)
        ln2 = dx * dx + dy * dy + dz * dz
        qx = xs[:, None, None] - float(p0[0])
        qy = ys[None, :, None] - float(p0[1])
        qz = zs[None, None, :] - float(p0[2])
        t = np.clip((qx * dx + qy * dy + qz * dz) / max(ln2, 1e-9), 0.0, 1.0)
        vx, vy, vz = qx - t * dx, qy - t * dy, qz - t * dz
        if ecc < 0.999:
            # oval section: the axis perpendicular to the segment nearest to anterior-posterior is shortened
            axis = (p1 - p0) / max(np.sqrt(ln2), 1e-9)
            ap = np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([0.0, 0.0, 1.0])
            n2 = ap - (ap @ axis) * axis
            n2 /= np.linalg.norm(n2)
            c2 = vx * float(n2[0]) + vy * float(n2[1]) + vz * float(n2[2])
            d2 = vx ** 2 + vy ** 2 + vz ** 2 + (1.0 / float(ecc) ** 2 - 1.0) * c2 ** 2
        else:
            d2 = vx ** 2 + vy ** 2 + vz ** 2
        r = float(r0) + (float(r1) - float(r0)) * t
        inside = d2 <= r * r
        box = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        if allowed_lut is not None:
            inside &= allowed_lut[box]
        if keep_out is not None and inside.any() and (
                keep_out[0].query(0.5 * (p0 + p1), distance_upper_bound=0.5 * float(np.linalg.norm(p1 - p0)) + rmax
                                  + float(keep_out[1].max()) + KEEP_OUT_MM)[0] < np.inf):
            tree, reach = keep_out
            idx = np.argwhere(inside)
            xyz = org + (idx + lo) * sp
            d, nn = tree.query(xyz, distance_upper_bound=float(reach.max()) + KEEP_OUT_MM)
            near = np.isfinite(d)
            near[near] = d[near] <= reach[nn[near]] + KEEP_OUT_MM
            inside[tuple(idx[near].T)] = False
        box[inside] = label
        painted += int(inside.sum())
    return painted


def _paint_lines(lab: np.ndarray, grid, p0: np.ndarray, p1: np.ndarray, label: int, allowed_lut,
                 keep_out) -> int:
    """Vessels at the voxel scale, all at once: every voxel a segment passes through (sampled every half
    voxel) takes ``label`` -- a continuous line one voxel across."""
    org, sp, shape = np.asarray(grid.origin), np.asarray(grid.spacing), np.asarray(grid.shape)
    length = np.linalg.norm(p1 - p0, axis=1)
    count = np.maximum(np.ceil(length / (0.5 * sp.min())).astype(int), 1) + 1
    seg = np.repeat(np.arange(len(p0)), count)
    t = (np.arange(len(seg)) - np.repeat(np.cumsum(count) - count, count)) / np.repeat(count - 1, count)
    pts = p0[seg] + t[:, None] * (p1 - p0)[seg]
    idx = np.rint((pts - org) / sp).astype(int)
    idx = idx[np.all((idx >= 0) & (idx < shape), axis=1)]
    flat = np.unique(np.ravel_multi_index(idx.T, grid.shape))
    labf = lab.reshape(-1)
    if allowed_lut is not None:
        flat = flat[allowed_lut[labf[flat]]]
    if keep_out is not None and len(flat):
        tree, reach = keep_out
        xyz = org + np.stack(np.unravel_index(flat, grid.shape), axis=1) * sp
        d, nn = tree.query(xyz, distance_upper_bound=float(reach.max()) + KEEP_OUT_MM)
        near = np.isfinite(d)
        near[near] = d[near] <= reach[nn[near]] + KEEP_OUT_MM
        flat = flat[~near]
    labf[flat] = label
    return len(flat)


def abdomen(lab: np.ndarray, grid, anat, thorax: Thorax, cavity: np.ndarray, heart_zone: np.ndarray) -> np.ndarray:
    """Below the diaphragm domes: liver (right), stomach with its air cap (left), other soft tissue.
    Returns the stomach's air mask (it shares the stomach label)."""
    x, y, z = grid.axes()
    dome_r, dome_l, curv = thorax.diaphragm
    dome = np.maximum(*(float(d[2]) - ((x - float(d[0])) ** 2 + (y - float(d[1])) ** 2) / (2 * curv)
                        for d in (dome_r, dome_l)))
    below = cavity & (z < dome) & ~heart_zone
    lab[below] = LABEL["soft_tissue"]
    lc, (la_, lb, lc_) = [float(v) for v in anat.liver_centre], anat.liver_axes
    liver = ((x - lc[0]) / la_) ** 2 + ((y - lc[1]) / lb) ** 2 + ((z - lc[2]) / lc_) ** 2 <= 1
    lab[below & (liver | ((x < float(anat.body_centre[0])) & (z > dome - 60)))] = LABEL["liver"]
    sc, (sa, sb, sc_) = thorax.stomach
    stomach = ((x - sc[0]) / sa) ** 2 + ((y - sc[1]) / sb) ** 2 + ((z - sc[2]) / sc_) ** 2 <= 1
    stomach &= below & (x > float(anat.body_centre[0]) + 10)
    lab[stomach] = LABEL["stomach"]
    air = stomach & (z > float(sc[2]) + 0.45 * sc_)
    return air


def vessels_and_airways(lab: np.ndarray, grid, anat, thorax: Thorax) -> np.ndarray:
    """Mediastinal and hilar tubes, then the lung trees; returns the airway lumen mask (air HU)."""
    codes = list(anat.vessels)
    pts = np.concatenate([anat.vessels[c].points for c in codes])
    radii = np.concatenate([anat.vessels[c].radius for c in codes]) + 1.5  # plaque and wall
    keep = (cKDTree(pts), radii)
    soft = {LABEL[n] for n in ("epicardial_fat", "soft_tissue", "lung_left", "lung_right", "subcutaneous_fat")}
    t = thorax
    # mediastinal fat: a sheath round every mediastinal tube, so the fat takes the shape of its contents
    lungs = {LABEL["lung_left"], LABEL["lung_right"]}
    for segs, sheath in ((t.oesophagus, 4.0), (t.trachea, 4.0), (t.arch, 4.0), (t.aorta, 3.0), (t.svc, 4.0),
                         (t.azygos, 3.0), (t.brachiocephalic_veins, 3.0), (t.bronchi, 2.0),
                         *((b, 3.0) for b in t.arch_branches.values())):
        paint_segments(lab, grid, segs, LABEL["epicardial_fat"], lungs, grow=sheath)
    paint_segments(lab, grid, t.oesophagus, LABEL["oesophagus"], soft, keep_out=keep)
    paint_segments(lab, grid, t.azygos, LABEL["azygos_vein"], soft, keep_out=keep)
    # airways: a 1.5 mm soft-tissue wall, then the air column
    walls = soft | {LABEL["oesophagus"]}
    for segs, name in ((t.trachea, "trachea"), (t.bronchi, "main_bronchi")):
        paint_segments(lab, grid, segs, LABEL["soft_tissue"], walls, grow=1.5, keep_out=keep)
        paint_segments(lab, grid, segs, LABEL[name], walls | {LABEL["soft_tissue"]}, keep_out=keep)
    air = np.isin(lab, [LABEL["trachea"], LABEL["main_bronchi"]])
    vessel_ok = soft | {LABEL["azygos_vein"]}
    paint_segments(lab, grid, t.arch, LABEL["aorta"], vessel_ok | {LABEL["trachea"], LABEL["main_bronchi"]},
                   keep_out=keep)
    for name, segs in t.arch_branches.items():
        paint_segments(lab, grid, segs, LABEL[name], vessel_ok, keep_out=keep)
    paint_segments(lab, grid, t.brachiocephalic_veins, LABEL["brachiocephalic_veins"], vessel_ok, keep_out=keep)
    paint_segments(lab, grid, t.svc, LABEL["superior_vena_cava"], vessel_ok | {LABEL["brachiocephalic_veins"]},
                   keep_out=keep)
    paint_segments(lab, grid, t.ivc, LABEL["inferior_vena_cava"], vessel_ok | {LABEL["liver"]}, keep_out=keep)
    # the smallest lung vessels are drawn at least about a voxel across: at the voxel scale a real CT shows
    # them as continuous (partial-volume) lines, where a thinner binary tube would break into dots
    thin = 0.55 * float(min(grid.spacing))
    paint_segments(lab, grid, t.pulmonary_arteries, LABEL["pulmonary_arteries"], vessel_ok, keep_out=keep,
                   min_radius=thin)
    paint_segments(lab, grid, t.pulmonary_veins, LABEL["pulmonary_veins"], vessel_ok, keep_out=keep,
                   min_radius=thin)
    air &= np.isin(lab, [LABEL["trachea"], LABEL["main_bronchi"]])
    return air


def _coronary_keep_out(anat) -> tuple[cKDTree, np.ndarray]:
    codes = list(anat.vessels)
    pts = np.concatenate([anat.vessels[c].points for c in codes])
    radii = np.concatenate([anat.vessels[c].radius for c in codes]) + 1.5  # plaque and wall
    return cKDTree(pts), radii


def paint_heart_detail(lab: np.ndarray, grid, anat, detail: HeartDetail) -> None:
    """Papillary muscles and LV trabeculae as LV myocardium inside the LV cavity, RV trabeculae as RV wall
    inside the RV cavity, then the appendages (their atrium's blood label, no registry label of their own)
    and the RV outflow tract (RV blood) with a muscular wall and a fat sheath where they leave the heart; last,
    a wall (``ATRIAL_WALL_MM``) between each atrium's blood and the aortic root's and the other atrium's."""
    lv_blood, rv_blood = {LABEL["lv_blood"]}, {LABEL["rv_blood"]}
    for segs in detail.papillary.values():
        paint_segments(lab, grid, segs, LABEL["lv_myocardium"], lv_blood | {LABEL["lv_myocardium"]})
    paint_segments(lab, grid, detail.lv_trabeculae, LABEL["lv_myocardium"], lv_blood)
    paint_segments(lab, grid, detail.rv_trabeculae, LABEL["cardiac_wall"], rv_blood)
    keep = _coronary_keep_out(anat)
    lungs = {LABEL["lung_left"], LABEL["lung_right"]}
    outside = lungs | {LABEL["epicardial_fat"], LABEL["soft_tissue"]}
    # atrial appendage wall ~1.5 mm, RV outflow tract wall the RV's own (3 mm)
    for segs, blood, wall, opens_into in ((detail.laa, "la_blood", 1.5, ()), (detail.raa, "ra_blood", 1.5, ()),
                                          (detail.rvot, "rv_blood", float(anat.rv_wall_mm), ("pulmonary_artery",))):
        paint_segments(lab, grid, segs, LABEL["epicardial_fat"], lungs, grow=wall + 3.0)
        paint_segments(lab, grid, segs, LABEL["cardiac_wall"], outside, grow=wall, keep_out=keep)
        paint_segments(lab, grid, segs, LABEL[blood], outside | {LABEL["cardiac_wall"], LABEL[blood]}, keep_out=keep)
        _wall_off(lab, grid, segs, LABEL[blood], wall, opens_into)
    # the atria's bodies: the aortic root sits between them and cuts into both spheres, and the two spheres
    # overlap where the interatrial septum is; each atrium keeps a wall against every other lumen except the
    # veins and ventricle it opens into. The right atrium goes first, so the septum is carved from its side
    # only and the left atrium's pass finds it already thick enough.
    for (centre, radius), blood, opens in ((anat.ra, "ra_blood", ("superior_vena_cava", "rv_blood")),
                                           (anat.la, "la_blood", ("pulmonary_veins", "lv_blood"))):
        body = Segments(np.asarray([centre], float), np.asarray([centre], float), np.array([float(radius)]),
                        np.array([float(radius)]))
        _wall_off(lab, grid, body, LABEL[blood], 0.0, opens, thickness=ATRIAL_WALL_MM)


OTHER_LUMENS = ("lv_blood", "rv_blood", "la_blood", "ra_blood", "aorta", "aortic_root", "pulmonary_artery",
                "superior_vena_cava", "pulmonary_veins", "pulmonary_arteries")


def _wall_off(lab: np.ndarray, grid, segs: Segments, label: int, reach: float, opens_into: tuple[str, ...] = (),
              thickness: float | None = None) -> None:
    """Where a lumen (``label``, within its segments' box grown by ``reach``) touches another chamber's or
    vessel's lumen, the touching voxels become wall: two blood pools are never seen without a wall between them
    (except ``opens_into``, the vessels or chambers the lumen drains into, e.g. the outflow tract's pulmonary
    trunk). The wall is one voxel of ``label`` (a 26-neighbourhood) or, with ``thickness``, every voxel of
    ``label`` within ``thickness`` mm of the other lumen (at least one voxel, so the pools never touch even
    corner to corner)."""
    org, sp = np.asarray(grid.origin), np.asarray(grid.spacing)
    rmax = float(max(segs.r0.max(), segs.r1.max())) + reach + 2 * float(sp.max())
    lo = np.clip(np.floor((np.minimum(segs.p0.min(0), segs.p1.min(0)) - rmax - org) / sp).astype(int), 0, grid.shape)
    hi = np.clip(np.ceil((np.maximum(segs.p0.max(0), segs.p1.max(0)) + rmax - org) / sp).astype(int) + 1, 0,
                 grid.shape)
    box = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    other = np.isin(box, [LABEL[n] for n in OTHER_LUMENS if LABEL[n] != label and n not in opens_into])
    if thickness is None:
        near = ndimage.binary_dilation(other, np.ones((3, 3, 3), bool))
    else:
        if not other.any():
            return
        # a voxel's corner neighbour lies sqrt(sum sp^2) away: a thinner wall would leave pools touching
        reach_mm = max(thickness, float(np.sqrt((sp ** 2).sum()))) + 1e-3
        near = ndimage.distance_transform_edt(~other, sampling=sp) <= reach_mm
    box[(box == label) & near] = LABEL["cardiac_wall"]
