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
from cardiovlm.training.phantoms.abdomen import paint_abdomen
from cardiovlm.training.phantoms.heart_detail import HeartDetail
from cardiovlm.training.phantoms.lungs import Fissures
from cardiovlm.training.phantoms.segments import Segments
from cardiovlm.training.phantoms.thorax import Thorax

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
KEEP_OUT_MM = 3.0  # fat kept between a coronary lumen and any other vessel or airway
# blood of an atrium kept from another chamber's or vessel's blood: the atrial wall and the interatrial septum
# are 2-5 mm (the septum 3-5 mm at its limbus, 1-2 mm at the fossa ovalis)
ATRIAL_WALL_MM = 3.0
BRONCHUS_MIN_RADIUS_MM = 1.0  # smaller bronchi are not drawn (CT shows airways down to ~2 mm across)
BRONCHIAL_WALL = 0.4  # wall thickness over lumen radius (wall about a fifth of the outer diameter)
BATCH_VOXELS = 2.5  # lung-tree capsules up to this radius (in voxels) are painted in one batch
SPARE_LABEL = 255  # no registry label: a scratch mark while painting
OSTIUM_MM = 4.0  # a vein is opened into its atrium through this far round the atrial blood pool (wall is ~2 mm)


def paint_segments(lab: np.ndarray, grid, segs: Segments, label: int, allowed: set[int] | None = None,
                   grow: float = 0.0, keep_out: tuple[cKDTree, np.ndarray] | None = None,
                   min_radius: float = 0.0, batch_voxels: float = 0.0) -> int:
    """Paint tapered capsules (radius + ``grow``, at least ``min_radius``) as ``label`` where the current
    label is in ``allowed`` (anywhere when None), oval where the segments say so; returns the voxel count.
    Round capsules no wider than ``batch_voxels`` voxels are painted all at once (:func:`_paint_small`, the
    same voxels, for trees of thousands of small branches)."""
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
    rmax_vox = np.maximum(r0s, r1s) / float(sp.min())
    small = ~thin & (rmax_vox <= batch_voxels) & (segs.eccentricity() >= 0.999)
    lower = 0.0
    for upper in (1.0, 1.75, batch_voxels):  # by size, so that each batch's stencil stays small
        sel = small & (rmax_vox > lower) & (rmax_vox <= upper)
        lower = upper
        if sel.any():
            painted += _paint_small(lab, grid, segs.p0[sel], segs.p1[sel], r0s[sel], r1s[sel], label,
                                    allowed_lut, keep_out)
    thick = ~thin & ~small
    for p0, p1, r0, r1, ecc in zip(segs.p0[thick], segs.p1[thick], r0s[thick], r1s[thick],
                                   segs.eccentricity()[thick]):
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


def _paint_small(lab: np.ndarray, grid, p0: np.ndarray, p1: np.ndarray, r0: np.ndarray, r1: np.ndarray, label: int,
                 allowed_lut, keep_out, chunk: int = 20000) -> int:
    """Small round capsules all at once: the voxels round samples taken every voxel along each axis are the
    candidates, and a candidate is painted where it lies within the capsule's radius at its projection on the
    axis (the test of :func:`paint_segments`), so the result is the same as painting them one by one."""
    org, sp, shape = np.asarray(grid.origin), np.asarray(grid.spacing), np.asarray(grid.shape)
    vox = float(sp.min())
    axis = p1 - p0
    length = np.linalg.norm(axis, axis=1)
    count = np.maximum(np.ceil(length / vox).astype(int), 1) + 1
    seg = np.repeat(np.arange(len(p0)), count)
    t = (np.arange(len(seg)) - np.repeat(np.cumsum(count) - count, count)) / np.repeat(count - 1, count)
    centre = np.rint((p0[seg] + t[:, None] * axis[seg] - org) / sp).astype(np.int64)
    # a capsule voxel lies within r + half a sample step of a sample, and the sample's voxel within half a
    # voxel diagonal of the sample
    reach = float(np.maximum(r0, r1).max()) + 0.5 * vox + 0.5 * float(np.linalg.norm(sp))
    n = int(np.ceil(reach / vox))
    inside = np.all((centre >= -n) & (centre < shape + n), axis=1)
    seg, centre = seg[inside], centre[inside]
    off = np.stack(np.meshgrid(*[np.arange(-n, n + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    off = off[np.linalg.norm(off * sp, axis=1) <= reach]
    mark = np.zeros(int(np.prod(shape)), bool)
    for a in range(0, len(seg), chunk):
        idx = (centre[a:a + chunk, None, :] + off[None]).reshape(-1, 3)
        sg = np.repeat(seg[a:a + chunk], len(off))
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        idx, sg = idx[ok], sg[ok]
        q = org + idx * sp - p0[sg]
        ln2 = np.maximum(np.einsum("ij,ij->i", axis[sg], axis[sg]), 1e-9)
        tt = np.clip(np.einsum("ij,ij->i", q, axis[sg]) / ln2, 0.0, 1.0)
        d2 = np.square(q - tt[:, None] * axis[sg]).sum(axis=1)
        r = r0[sg] + (r1[sg] - r0[sg]) * tt
        hit = d2 <= r * r
        mark[np.ravel_multi_index(idx[hit].T, tuple(shape))] = True
    flat = np.flatnonzero(mark)
    labf = lab.reshape(-1)
    if allowed_lut is not None:
        flat = flat[allowed_lut[labf[flat]]]
    if keep_out is not None and len(flat):
        tree, reach_k = keep_out
        d, nn = tree.query(org + np.stack(np.unravel_index(flat, tuple(shape)), axis=1) * sp,
                           distance_upper_bound=float(reach_k.max()) + KEEP_OUT_MM)
        near = np.isfinite(d)
        near[near] = d[near] <= reach_k[nn[near]] + KEEP_OUT_MM
        flat = flat[~near]
    labf[flat] = label
    return len(flat)


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
    """Below the diaphragm domes: liver, stomach with its gas, other soft tissue. Returns the stomach's gas mask
    (the gas shares the stomach label; its HU is air)."""
    if thorax.abdomen is None:
        raise ValueError("the thorax was drawn without its abdomen")
    return paint_abdomen(lab, grid, anat, thorax, thorax.abdomen, cavity, heart_zone)


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
    # the hilar vessels cross the mediastinal fat: the main branches and the vein stems keep clear of the
    # coronaries, each lobar tree's root branch also of the great vessels and ventricles painted after it; past
    # its root branch a tree stays in its lung
    hilar_keep = _keep_out_with(keep, (t.aorta, t.arch, t.svc, t.ivc), anat)
    # the smallest lung vessels are drawn at least about a voxel across: at the voxel scale a real CT shows
    # them as continuous (partial-volume) lines, where a thinner binary tube would break into dots
    thin = 0.55 * float(min(grid.spacing))
    paint_segments(lab, grid, t.pulmonary_arteries, LABEL["pulmonary_arteries"], vessel_ok, keep_out=keep)
    paint_segments(lab, grid, t.pulmonary_veins, LABEL["pulmonary_veins"], vessel_ok, keep_out=keep)
    for name, tree in t.lung_trees:
        paint_segments(lab, grid, tree.segments(), LABEL[name], vessel_ok, keep_out=hilar_keep, min_radius=thin)
    for name, tree in t.lung_trees:
        paint_segments(lab, grid, tree.segments(False), LABEL[name], lungs, keep_out=keep, min_radius=thin,
                       batch_voxels=BATCH_VOXELS)
    # bronchi and fissures last, in the lung that is left: a vessel is never cut by either
    paint_bronchi(lab, grid, t.airways, float(anat.body_centre[0]), keep)
    if t.fissures is not None:
        paint_fissures(lab, grid, t.fissures, float(anat.body_centre[0]))
    air &= np.isin(lab, [LABEL["trachea"], LABEL["main_bronchi"]])
    return air


def paint_fissures(lab: np.ndarray, grid, fissures: Fissures, midline_x: float) -> int:
    """The major fissures and the right minor fissure as a sheet of pleura (its own label) one voxel thick
    through the lung: the thinnest sheet that leaves no face-to-face contact between the lobes
    (:meth:`Fissure.sheet`). Returns the voxel count."""
    lungs = np.isin(lab, [LABEL["lung_left"], LABEL["lung_right"]])
    idx = np.nonzero(lungs)
    if not len(idx[0]):
        return 0
    org, sp = np.asarray(grid.origin, np.float32), np.asarray(grid.spacing, np.float32)
    p = np.stack(idx, axis=1).astype(np.float32) * sp + org
    right = p[:, 0] < midline_x
    sheet = np.zeros(len(p), bool)
    sheet[right] = fissures.right_oblique.sheet(p[right], sp)
    sheet[~right] = fissures.left_oblique.sheet(p[~right], sp)
    front = np.nonzero(right)[0]
    front = front[fissures.right_oblique.value(p[front]) < 0]  # the minor fissure runs only in front of the major
    sheet[front] |= fissures.right_horizontal.sheet(p[front], sp)
    lab[tuple(i[sheet] for i in idx)] = LABEL["lung_fissure"]
    return int(sheet.sum())


def paint_bronchi(lab: np.ndarray, grid, airways: Segments, midline_x: float,
                  keep: tuple[cKDTree, np.ndarray]) -> None:
    """Intrapulmonary bronchi down to ``BRONCHUS_MIN_RADIUS_MM``: a soft-tissue wall (about a fifth of the
    lumen's diameter, ``BRONCHIAL_WALL``) round an air lumen that keeps its lung's label."""
    big = np.maximum(airways.r0, airways.r1) >= BRONCHUS_MIN_RADIUS_MM
    if not big.any():
        return
    mid_x = 0.5 * (airways.p0[:, 0] + airways.p1[:, 0])
    for lung, here in ((LABEL["lung_right"], mid_x < midline_x), (LABEL["lung_left"], mid_x >= midline_x)):
        sel = big & here
        if not sel.any():
            continue
        p0, p1, r0, r1 = airways.p0[sel], airways.p1[sel], airways.r0[sel], airways.r1[sel]
        wall = Segments(p0, p1, r0 * (1 + BRONCHIAL_WALL) + 0.3, r1 * (1 + BRONCHIAL_WALL) + 0.3)
        # the wall is marked with a spare label first, so that only this pass's lumen turns back into lung
        paint_segments(lab, grid, wall, SPARE_LABEL, {lung}, keep_out=keep)
        paint_segments(lab, grid, Segments(p0, p1, r0, r1), lung, {SPARE_LABEL})
        lab[lab == SPARE_LABEL] = LABEL["soft_tissue"]


def _keep_out_with(keep: tuple[cKDTree, np.ndarray], tubes, anat) -> tuple[cKDTree, np.ndarray]:
    """The coronaries' keep-out grown by other tubes (points every mm along them, with their radii) and the
    ventricles (balls along the heart's long axis). Not the pulmonary trunk: the hilar arteries start on it."""
    pts, reach = [keep[0].data], [keep[1]]
    for segs in tubes:
        if len(segs) == 0:
            continue
        n = np.maximum(np.ceil(np.linalg.norm(segs.p1 - segs.p0, axis=1)), 1).astype(int) + 1
        seg = np.repeat(np.arange(len(segs)), n)
        t = (np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n)) / np.repeat(n - 1, n)
        pts.append(segs.p0[seg] + t[:, None] * (segs.p1 - segs.p0)[seg])
        reach.append(segs.r0[seg] + t * (segs.r1 - segs.r0)[seg])
    h = anat.heart  # the ventricles: balls along the long axis of their half-ellipsoid
    s = np.linspace(0.0, 0.95, 20)
    pts.append(np.asarray(h.base)[None] + (s * float(h.length))[:, None] * np.asarray(h.u)[None])
    reach.append(float(h.radius) * np.sqrt(1 - s ** 2))
    return cKDTree(np.concatenate(pts)), np.concatenate(reach)


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
    if isinstance(anat.thorax, Thorax):
        join_veins(lab, grid, anat, anat.thorax, keep)
    # the atria's bodies: the aortic root sits between them and cuts into both spheres, and the two spheres
    # overlap where the interatrial septum is; each atrium keeps a wall against every other lumen except the
    # veins and ventricle it opens into. The right atrium goes first, so the septum is carved from its side
    # only and the left atrium's pass finds it already thick enough.
    for (centre, radius), blood, opens in ((anat.ra, "ra_blood", ("superior_vena_cava", "inferior_vena_cava",
                                                                  "rv_blood")),
                                           (anat.la, "la_blood", ("pulmonary_veins", "lv_blood"))):
        body = Segments(np.asarray([centre], float), np.asarray([centre], float), np.array([float(radius)]),
                        np.array([float(radius)]))
        _wall_off(lab, grid, body, LABEL[blood], 0.0, opens, thickness=ATRIAL_WALL_MM)


def join_veins(lab: np.ndarray, grid, anat, thorax: Thorax, keep: tuple[cKDTree, np.ndarray]) -> None:
    """Open the SVC and IVC into the right atrium and each pulmonary vein into the left atrium.

    The veins are painted before the heart, whose atrial wall (a shell round each atrial blood pool) then
    closes their mouths: a vein would end blind a few mm short of its chamber. Each vein's last few mm are
    painted again through that shell (its wall and fat only, never another lumen or a coronary's fat), so
    the vein's blood runs into the atrium's as it does on a real scan."""
    lumens = {LABEL["cardiac_wall"], LABEL["epicardial_fat"], LABEL["soft_tissue"]}
    for segs, vein, (centre, radius) in ((thorax.svc, "superior_vena_cava", anat.ra),
                                         (thorax.ivc, "inferior_vena_cava", anat.ra),
                                         (thorax.pulmonary_veins, "pulmonary_veins", anat.la)):
        centre = np.asarray(centre, float)
        reach = float(radius) + OSTIUM_MM
        near = (np.linalg.norm(segs.p0 - centre, axis=1) < reach) | (np.linalg.norm(segs.p1 - centre, axis=1) < reach)
        if not near.any():
            continue
        mouth = Segments(segs.p0[near], segs.p1[near], segs.r0[near], segs.r1[near],
                         None if segs.ecc is None else segs.ecc[near])
        # painted on a copy first, then kept only inside the shell round this atrium: elsewhere the capsule
        # could cut another chamber's wall
        tmp = lab.copy()
        paint_segments(tmp, grid, mouth, LABEL[vein], lumens, keep_out=keep)
        org, sp = np.asarray(grid.origin), np.asarray(grid.spacing)
        lo = np.clip(np.floor((centre - reach - org) / sp).astype(int), 0, grid.shape)
        hi = np.clip(np.ceil((centre + reach - org) / sp).astype(int) + 1, 0, grid.shape)
        xs, ys, zs = (org[a] + sp[a] * np.arange(lo[a], hi[a]) - centre[a] for a in range(3))
        ball = xs[:, None, None] ** 2 + ys[None, :, None] ** 2 + zs[None, None, :] ** 2 <= reach ** 2
        box, new = lab[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], tmp[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        box[ball & (new == LABEL[vein])] = LABEL[vein]


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
