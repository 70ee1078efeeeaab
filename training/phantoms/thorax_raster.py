"""Paint the thorax of :mod:`training.phantoms.thorax` into a label map (chest wall, ribs, spine, abdomen, vessels).

Every structure is a registry label (``tools.anatomy``). Tubes are painted segment by segment inside
each segment's bounding box, so a lung tree of thousands of branches costs well under a second. New
structures never paint within ``KEEP_OUT_MM`` of a coronary lumen: the coronaries run in their own fat.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from tools.anatomy import STRUCTURES_BY_NAME
from training.phantoms.thorax import Segments, Thorax

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
KEEP_OUT_MM = 3.0  # fat kept between a coronary lumen and any other vessel or airway


def paint_segments(lab: np.ndarray, grid, segs: Segments, label: int, allowed: set[int] | None = None,
                   grow: float = 0.0, keep_out: tuple[cKDTree, np.ndarray] | None = None) -> int:
    """Paint tapered capsules (radius + ``grow``) as ``label`` where the current label is in ``allowed``
    (anywhere when None); returns the number of voxels painted."""
    if len(segs) == 0:
        return 0
    org, sp, shape = np.asarray(grid.origin), np.asarray(grid.spacing), np.asarray(grid.shape)
    allowed_lut = None
    if allowed is not None:
        allowed_lut = np.zeros(256, bool)
        allowed_lut[list(allowed)] = True
    painted = 0
    for p0, p1, r0, r1 in zip(segs.p0, segs.p1, segs.r0 + grow, segs.r1 + grow):
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
        d2 = (qx - t * dx) ** 2 + (qy - t * dy) ** 2 + (qz - t * dz) ** 2
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


def _polar(grid, centre, axes):
    """In-plane angle around the body centre and depth below the skin (mm), both (I, J, 1)."""
    x, y, _ = grid.axes()
    bx, by = (float(v) for v in centre)
    a, b = (float(v) for v in axes)
    theta = np.arctan2(y - by, x - bx)
    rho = np.sqrt(((x - bx) / a) ** 2 + ((y - by) / b) ** 2)
    radius = 1.0 / np.sqrt((np.cos(theta) / a) ** 2 + (np.sin(theta) / b) ** 2)
    return theta, (1.0 - rho) * radius


def body_wall(lab: np.ndarray, grid, anat, thorax: Thorax) -> tuple[np.ndarray, np.ndarray]:
    """Skin to pleura: subcutaneous fat and muscle of angle-dependent thickness, ribs with costal
    cartilage, the lungs inside. Returns (cavity mask, rib cortex mask)."""
    x, y, z = grid.axes()
    theta, depth = _polar(grid, anat.body_centre, anat.body_axes)
    w = thorax.wall
    fat, muscle = w.fat(theta), w.muscle(theta)
    full = grid.shape
    body = np.broadcast_to(depth >= 0, full)
    lab[body] = LABEL["subcutaneous_fat"]
    lab[np.broadcast_to(depth >= fat, full)] = LABEL["soft_tissue"]
    rib_top = fat + muscle
    cavity = np.broadcast_to(depth >= rib_top + w.rib_layer_mm, full)
    bx = float(anat.body_centre[0])
    lab[cavity & (x >= bx)] = LABEL["lung_left"]
    lab[cavity & (x < bx)] = LABEL["lung_right"]
    # ribs: angle from the posterior midline decides how far the rib has descended
    r = thorax.ribs
    from_back = np.abs(np.angle(np.exp(1j * (theta - np.pi / 2))))  # 0 at the spine, pi at the sternum
    z_rib = z + r.drop_mm * (1 - np.cos(from_back)) / 2  # the rib's height at the spine
    step = float(np.mean(np.diff(r.z_spine)))
    phase = np.mod(z_rib - float(r.z_spine[0]), step)
    in_layer = (depth >= rib_top) & (depth < rib_top + r.thickness_mm) & (from_back > np.deg2rad(12)) \
        & (from_back < np.pi - np.deg2rad(9))
    rib = in_layer & (phase < r.height_mm)
    cartilage = rib & (from_back > np.pi - np.deg2rad(r.cartilage_deg))
    bone = rib & ~cartilage
    lab[bone] = LABEL["ribs"]
    lab[cartilage] = LABEL["costal_cartilage"]
    shell = bone & ((phase < 1.2) | (phase > r.height_mm - 1.2) | (depth < rib_top + 1.2)
                    | (depth > rib_top + r.thickness_mm - 1.2))
    return cavity, np.broadcast_to(shell, full)


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
    desc = anat.aorta[2]
    desc = Segments(desc.start[None], desc.end[None], np.array([desc.radius]), np.array([desc.radius]))
    for segs, sheath in ((t.oesophagus, 4.0), (t.trachea, 4.0), (t.arch, 4.0), (desc, 3.0), (t.svc, 4.0),
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
    paint_segments(lab, grid, t.pulmonary_arteries, LABEL["pulmonary_arteries"], vessel_ok, keep_out=keep)
    paint_segments(lab, grid, t.pulmonary_veins, LABEL["pulmonary_veins"], vessel_ok, keep_out=keep)
    air &= np.isin(lab, [LABEL["trachea"], LABEL["main_bronchi"]])
    return air


def posterior_elements(lab: np.ndarray, grid, anat) -> np.ndarray:
    """Pedicles, laminae, transverse and spinous processes behind each vertebral body (spine label);
    returns their mask (they take cancellous bone HU with a cortex like the bodies)."""
    x, y, z = grid.axes()
    sx, sy = (float(v) for v in anat.spine_centre)
    sr = float(anat.spine_radius)
    cy = sy + sr + 9.0  # spinal canal centre
    d_canal = np.sqrt((x - sx) ** 2 + (y - cy) ** 2)
    arch = (d_canal > 8.0) & (d_canal <= 14.5) & (y > sy + 0.5 * sr)
    spinous = (np.abs(x - sx) <= 3.5) & (y > cy) & (y < cy + 38.0)
    transverse = (np.abs(y - cy + 2.0) <= 4.5) & (np.abs(x - sx) <= 30.0) & (np.abs(x - sx) >= 8.0)
    # segmental: processes are present over most of each vertebral level, not across the joints
    level = np.abs(((z + 300) % 27.0) - 13.5) < 10.5
    mask = np.broadcast_to((arch | spinous | transverse) & level, grid.shape)
    target = np.isin(lab, [LABEL["soft_tissue"], LABEL["subcutaneous_fat"], LABEL["epicardial_fat"],
                           LABEL["lung_left"], LABEL["lung_right"]])
    mask = mask & target
    lab[mask] = LABEL["spine"]
    return mask
