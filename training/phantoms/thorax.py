"""The thorax around the heart: great vessels, pulmonary trees, airways, oesophagus, chest wall and upper abdomen.

Geometry only, in patient LPS millimetres (x to the patient's left, y posterior, z superior), drawn from
the case's own random stream so that adding or changing a thoracic structure never moves the heart or
the coronary tree of a seed. :mod:`cardiovlm.training.phantoms.raster` paints it.

Vessels and airways are chains of tapered capsules (:class:`Segments`). Inside the lungs, the bronchi,
the pulmonary arteries beside them and the pulmonary veins between them are volume-filling trees, one per
lobe, that reach the pleura with a calibre shrinking by Murray's law (:mod:`cardiovlm.training.phantoms.lungs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cardiovlm.training.phantoms.abdomen import AbdomenShape, sample_abdomen
from cardiovlm.training.phantoms.body import Body, ChestWall, Ribs, cavity_depth, sample_body, wall_depths
from cardiovlm.training.phantoms.geometry import APEX_WALL_FRACTION, Anatomy, Tube, _spline, _unit
from cardiovlm.training.phantoms.heart_detail import HeartDetail, sample_heart_detail
from cardiovlm.training.phantoms.lungs import Fissures, Tree, beside, grow_tree, lobe_clouds, sample_fissures
from cardiovlm.training.phantoms.segments import Segments
from cardiovlm.training.phantoms.vertebrae import Spine, sample_spine

MIN_TREE_RADIUS_MM = 0.45  # no lung vessel or airway is drawn thinner (under half a small-size voxel)
PLEURA_GAP_MM = 3.0  # the trees' territories end this far inside the pleura
LUNG_LOOKUP_MM = 3.0  # grid on which the tree generator looks up whether a point is in the lung


@dataclass
class Thorax:
    sex: str
    body_diameter_mm: float  # effective (sqrt(4 a b)) diameter of the body ellipse
    wall: ChestWall
    ribs: Ribs
    svc: Segments
    ivc: Segments
    brachiocephalic_veins: Segments
    arch: Segments  # ascending top to descending aorta (labelled as aorta)
    arch_branches: dict[str, Segments]  # brachiocephalic trunk, left common carotid, left subclavian
    pulmonary_arteries: Segments  # right and left pulmonary arteries, trunk to hilum
    pulmonary_veins: Segments  # the four pulmonary veins' stems into the left atrium
    trachea: Segments
    bronchi: Segments
    oesophagus: Segments
    azygos: Segments
    stomach: tuple[np.ndarray, tuple[float, float, float]]  # centre, semi-axes
    diaphragm: tuple[np.ndarray, np.ndarray, float]  # right dome top, left dome top, dome curvature radius
    body: Body  # skin contour, paraspinal muscles, arms, table
    spine: Spine  # vertebral bodies and posterior arches
    aorta: Segments  # ascending and descending aorta (curved, calibre and section varying)
    contrast_inflow_hu: float = 0.0  # undiluted contrast arriving by the SVC (drawn per case)
    extra: dict = field(default_factory=dict)
    heart_detail: HeartDetail | None = None  # papillary muscles, trabeculae, appendages, RV outflow tract
    fissures: Fissures | None = None  # the lungs' major fissures and the right minor fissure
    # each lobe's arterial tree (from its hilum) and venous trees (from their vein's stem), with their label
    lung_trees: list[tuple[str, Tree]] = field(default_factory=list)
    airways: Segments = field(default_factory=Segments.empty)  # intrapulmonary bronchi (their lumen is lung)
    pulmonary_vein_stems: list[np.ndarray] = field(default_factory=list)  # outer end of each vein's stem
    abdomen: AbdomenShape | None = None  # liver dome and left lobe, gastric fundus, folds and gas


def _clearance(a: Segments, b: Segments) -> float:
    """Smallest gap (mm) between the surfaces of two chains of capsules, measured at their segments' ends
    and midpoints (the chains are sampled every ~2 mm)."""
    pa = np.concatenate([a.p0, 0.5 * (a.p0 + a.p1), a.p1])
    ra = np.concatenate([a.r0, 0.5 * (a.r0 + a.r1), a.r1])
    ab = b.p1 - b.p0
    t = np.clip(np.einsum("ijk,jk->ij", pa[:, None, :] - b.p0[None], ab) / np.maximum((ab ** 2).sum(1), 1e-9), 0, 1)
    dist = np.linalg.norm(pa[:, None, :] - (b.p0[None] + t[..., None] * ab[None]), axis=2)
    gap = dist - (b.r0[None] + t * (b.r1 - b.r0)[None]) - ra[:, None]
    return float(gap.min())


def _ventricle_clearance(anat: Anatomy, a: Segments) -> float:
    """Smallest gap (mm, roughly: measured along the heart's axes) between a chain of capsules and the
    ventricles' half-ellipsoid; negative where they overlap."""
    h = anat.heart
    pts = np.concatenate([a.p0, a.p1])
    rad = np.concatenate([a.r0, a.r1])
    q = pts - h.base
    su = q @ h.u
    rr = np.sqrt(np.maximum((q ** 2).sum(1) - su ** 2, 0.0))
    # distance outside the ellipse (length, radius) in the (su, rr) half-plane, to first order
    k = np.sqrt(np.maximum(su, 0.0) ** 2 / h.length ** 2 + rr ** 2 / h.radius ** 2)
    outside = (k - 1.0) * min(h.length, h.radius)
    outside = np.where(su < 0, np.maximum(-su, outside), outside)  # above the base plane: the atria's side
    return float((outside - rad).min())


def sample_thorax(rng: np.random.Generator, anat: Anatomy, sex: str | None = None) -> Thorax:
    """Draw the thorax of one patient around an already sampled heart (``anat`` is updated: the
    ascending aorta ends at the arch and the descending aorta sits beside the spine)."""
    if sex is None:
        sex = "male" if rng.random() < 0.6 else "female"
    if sex not in ("male", "female"):
        raise ValueError(f"sex must be 'male' or 'female', got {sex!r}")
    bx, by = (float(v) for v in anat.body_centre)
    ax_, ay = (float(v) for v in anat.body_axes)
    sx, sy = (float(v) for v in anat.spine_centre)
    sr = float(anat.spine_radius)
    la_c, la_r = anat.la
    ra_c, ra_r = anat.ra

    harmonics = (float(rng.uniform(0.1, 0.4)), float(rng.uniform(0, 2 * np.pi)),
                 float(rng.uniform(0.1, 0.3)), float(rng.uniform(0, 2 * np.pi)))
    wall = ChestWall(fat_mm=float(anat.fat_mm), fat_harmonics=harmonics,
                     muscle_mm=float(anat.muscle_mm), paraspinal_mm=float(rng.uniform(25, 40)),
                     rib_layer_mm=float(rng.uniform(7, 10)))
    ribs = Ribs(z_spine=np.arange(-230.0, 200.0, rng.uniform(24, 28)) + rng.uniform(0, 10),
                height_mm=float(rng.uniform(9, 12)),
                thickness_mm=min(wall.rib_layer_mm - 1.0, float(rng.uniform(5.5, 7.5))),
                drop_mm=float(rng.uniform(90, 130)), cartilage_deg=float(rng.uniform(30, 42)))
    body = sample_body(rng, anat, wall, sex)
    spine = sample_spine(rng, anat)
    # the sternum sits under the anterior wall of the drawn contour, level with the heart's base
    z0 = float(anat.heart.base[2])
    front = -np.pi / 2
    fat0, rib_top0 = (float(v) for v in wall_depths(body, wall, np.array(front), z0))
    front_y = by - float(body.outline.radius(np.array(front), z0))
    anat.sternum = (np.array([float(anat.sternum[0][0]), front_y + rib_top0 + 6.0]), anat.sternum[1])

    # descending aorta: left-anterolateral of the vertebral bodies
    asc = anat.aorta[1]
    desc_xy = np.array([sx + 28.0, sy - 20.0]) + rng.normal(0, 2, 2)
    asc_top = asc.end
    desc_top = np.array([desc_xy[0], desc_xy[1], asc_top[2] - rng.uniform(0, 10)])
    arch_top_z = asc_top[2] + rng.uniform(12, 20)
    trachea_xy = np.array([sx - 2.0, sy - sr - 26.0])
    arch_mid = np.array([0.5 * (asc_top[0] + desc_xy[0]) + 8, trachea_xy[1] - 14, arch_top_z])
    arch = Segments.polyline([asc_top - 5 * _unit(asc.end - asc.start), asc_top, arch_mid, desc_top,
                              desc_top - np.array([0, 0, 30.0])], asc.radius, anat.aorta[2].radius)
    anat.aorta[2] = Tube(np.array([desc_xy[0], desc_xy[1], -260.0]), desc_top - np.array([0, 0, 25.0]),
                         anat.aorta[2].radius)
    # the painted aorta bows a little: the ascending part to the right and forwards, the descending part
    # drifting towards the midline and forwards on its way to the aortic hiatus
    bow = _unit(np.cross(asc.end - asc.start, [0.0, 0.0, 1.0]) + [0.0, -0.5, 0.0]) * rng.uniform(2, 6)
    ascending = Segments.polyline([asc.start, 0.5 * (asc.start + asc.end) + bow, asc.end], asc.radius)
    d_top, d_bot = anat.aorta[2].end + np.array([0, 0, 5.0]), anat.aorta[2].start
    descending = Segments.polyline([d_top, 0.5 * (d_top + d_bot) + np.array([rng.uniform(0, 5), rng.uniform(-2, 3), 0]),
                                    d_bot + np.array([-rng.uniform(6, 14), -rng.uniform(6, 14), 0])],
                                   anat.aorta[2].radius, 0.9 * anat.aorta[2].radius)
    aorta = ascending.varied(rng, 0.03, (0.92, 1.0)) + descending.varied(rng, 0.04, (0.88, 1.0))
    # arch branches from the top of the arch, right to left
    pts = _spline(np.array([asc_top, arch_mid, desc_top]), 2.0)
    upper = pts[np.argsort(-pts[:, 2])[:max(len(pts) // 2, 3)]]
    upper = upper[np.argsort(upper[:, 0])]
    branches = {}
    for (name, frac, r, dx), rise in zip((("brachiocephalic_trunk", 0.15, rng.uniform(5.5, 7), -25.0),
                                          ("left_common_carotid_artery", 0.5, rng.uniform(3.5, 4.5), 5.0),
                                          ("left_subclavian_artery", 0.85, rng.uniform(4.5, 5.5), 35.0)),
                                         rng.uniform(60, 90, 3)):
        o = upper[int(frac * (len(upper) - 1))]
        branches[name] = Segments.polyline([o - np.array([0, 0, 4.0]), o + np.array([0.3 * dx, 0, 0.4 * rise]),
                                            o + np.array([dx, 4.0, rise])], r, 0.9 * r).varied(rng, 0.05, (0.85, 1.0))

    # superior vena cava: right of the ascending aorta, down into the roof of the right atrium
    def asc_at(z):
        t = np.clip((z - asc.start[2]) / (asc.end[2] - asc.start[2]), 0, 1)
        return asc.start + t * (asc.end - asc.start)

    svc_r = float(rng.uniform(8.5, 11))
    gap = asc.radius + svc_r + 4.0
    svc_ctrl = [ra_c + np.array([-0.45 * ra_r, 0.1 * ra_r, 0.35 * ra_r])]
    for z in (ra_c[2] + ra_r + 12, asc_top[2] - 10, asc_top[2] + 30):
        a = asc_at(z)
        svc_ctrl.append(np.array([min(a[0] - gap, svc_ctrl[0][0] - 3), a[1] + 8.0, z]))
    svc = Segments.polyline(svc_ctrl, svc_r).varied(rng, 0.06, (0.7, 0.9))
    # left brachiocephalic vein crosses in front of the arch branches into the top of the SVC
    top = svc_ctrl[-1]
    bcv = Segments.polyline([top + np.array([0, 0, 10.0]), top + np.array([35, -18, 25.0]),
                             top + np.array([90, -12, 35.0])], svc_r * 0.7, svc_r * 0.6)
    bcv = (bcv + Segments.polyline([top, top + np.array([-15, 0, 40.0])], svc_r * 0.8)).varied(rng, 0.08, (0.55, 0.8))
    # inferior vena cava: from the floor of the right atrium down, posterior, into the liver
    ivc_r = float(rng.uniform(10, 13))
    ivc = Segments.polyline([ra_c + np.array([0.0, 0.35 * ra_r, -0.3 * ra_r]),
                             ra_c + np.array([4.0, 0.6 * ra_r + 6, -ra_r - 20]),
                             ra_c + np.array([8.0, 0.6 * ra_r + 10, -ra_r - 120])],
                            ivc_r).varied(rng, 0.05, (0.75, 0.95))
    # azygos: up the right side of the spine, arching over the right hilum into the SVC
    azy = Segments.polyline([np.array([sx - 12, sy - sr + 2, ra_c[2] - 120]),
                             np.array([sx - 14, sy - sr + 2, ra_c[2] + 40]),
                             np.array([sx - 30, sy - sr - 10, svc_ctrl[2][2] - 20]),
                             svc_ctrl[2] + np.array([0, 5.0, -20])], rng.uniform(3.5, 5)).varied(rng, 0.08, (0.7, 0.95))

    # airways and oesophagus, front to back between the great vessels and the spine
    carina_z = float(anat.pulmonary.end[2] + rng.uniform(8, 18))
    trachea_r = float(rng.uniform(8, 10.5) if sex == "male" else rng.uniform(7, 9))
    carina = np.array([trachea_xy[0], trachea_xy[1], carina_z])
    trachea = Segments.polyline([carina, carina + np.array([-2, -6, 80.0]), carina + np.array([-3, -14, 200.0])],
                                trachea_r).varied(rng, 0.03, (0.85, 1.0))
    hil_z = carina_z - rng.uniform(18, 28)
    hil_r = np.array([bx - 0.45 * ax_, la_c[1] + 8, hil_z])
    hil_l = np.array([bx + 0.40 * ax_, la_c[1] + 10, hil_z + 6])
    rmb, lmb = 0.72 * trachea_r, 0.62 * trachea_r
    bronchi = Segments.polyline([carina, carina + np.array([-18, 4, -10.0]), hil_r + np.array([0, 12, 0])],
                                rmb, 0.8 * rmb)
    bronchi = bronchi + Segments.polyline([carina, carina + np.array([22, 0, -10.0]),
                                           hil_l + np.array([0, 12, 0])], lmb, 0.8 * lmb)
    oes_xy = np.array([sx + 3.0, sy - sr - 10.0])
    oesophagus = Segments.polyline([np.array([oes_xy[0] + 12, oes_xy[1] - 15, ra_c[2] - 120]),
                                    np.array([oes_xy[0] + 4, oes_xy[1], la_c[2]]),
                                    np.array([oes_xy[0], oes_xy[1], carina_z + 200])],
                                   rng.uniform(6, 8)).varied(rng, 0.1, (0.5, 0.75))  # collapsed: flat

    # pulmonary arteries: from the trunk's end to each hilum (the right one behind the aorta and SVC)
    pa = anat.pulmonary
    bif = pa.end
    r_main = 0.75 * pa.radius
    behind = asc_at(bif[2] - 4)
    rpa = Segments.polyline([bif, np.array([behind[0] + 5, behind[1] + asc.radius + r_main + 3, bif[2] - 4]),
                             np.array([svc_ctrl[1][0] - 4, svc_ctrl[1][1] + svc_r + r_main + 2, hil_r[2] + 4]),
                             hil_r], r_main, 0.8 * r_main)
    lpa = Segments.polyline([bif, bif + np.array([12, 18, 2.0]), hil_l + np.array([-8, 0, 10.0]), hil_l],
                            0.95 * r_main, 0.75 * r_main)

    # the lung as seen by the tree generator: inside the rib cage (a few mm off the pleura), off the
    # mediastinum and the heart
    heart_c = anat.heart.base + 0.45 * anat.heart.length * anat.heart.u
    dome_r = np.array([bx - 55, by - 5, anat.liver_centre[2] + anat.liver_axes[2] - 4])
    dome_l = np.array([bx + 55, by + 5, dome_r[2] - rng.uniform(5, 20)])
    dome_curv = float(rng.uniform(110, 150))

    # where the lung is, looked up on a coarse grid (a tree asks for thousands of points)
    step = LUNG_LOOKUP_MM
    lo = np.array([bx - 1.3 * ax_, by - 1.3 * ay, min(dome_r[2], dome_l[2]) - 60.0])
    n = np.ceil((np.array([bx + 1.3 * ax_, by + 1.3 * ay, carina_z + 125.0]) - lo) / step).astype(int) + 1
    gx, gy, gz = (lo[a] + step * np.arange(n[a]).reshape([-1 if a == b else 1 for b in range(3)]) for a in range(3))
    dome = np.maximum(*(d[2] - ((gx - d[0]) ** 2 + (gy - d[1]) ** 2) / (2 * dome_curv) for d in (dome_r, dome_l)))
    lung = (cavity_depth(body, wall, gx, gy, gz) >= PLEURA_GAP_MM) & (gz >= dome + 4) & (gz <= carina_z + 120)

    # the lung's lookup cells, off the mediastinum and the heart, each in its lobe; the trees fill the lobes
    cells = np.stack([np.broadcast_to(g, lung.shape)[lung] for g in (gx, gy, gz)], axis=1)
    keep = ~((np.abs(cells[:, 0] - bx) < 28) & (cells[:, 1] > by - 40))  # mediastinum
    keep &= np.linalg.norm(cells - heart_c, axis=1) > 0.62 * anat.heart.length + 8
    cells = cells[keep]
    # the lung trees draw from a stream of their own: redrawing them moves no other structure of the case
    lrng = np.random.default_rng(int(rng.integers(2 ** 63)))
    fissures = sample_fissures(lrng, hil_r, hil_l)
    arteries = (rpa + lpa).varied(rng, 0.04, (0.85, 1.0))
    airways = Segments.empty()
    veins = Segments.empty()
    lung_trees: list[tuple[str, Tree]] = []
    vein_stems = []
    # the coronaries as short capsules, for the vein stems to keep clear of
    coronaries = Segments.empty()
    for v in anat.vessels.values():
        pts, rad = v.points[::4], v.radius[::4]
        coronaries = coronaries + Segments(pts[:-1], pts[1:], rad[:-1], rad[1:])
    for side, hilum, bronchus_r, artery_r in ((-1.0, hil_r, 0.8 * rmb, 0.8 * r_main),
                                              (1.0, hil_l, 0.8 * lmb, 0.75 * r_main)):
        here = cells[np.sign(cells[:, 0] - bx) == side]
        lobes = fissures.lobe(here, side)
        n_lobes = 3
        a_clouds = lobe_clouds(lrng, here, step, lobes, n_lobes)
        v_clouds = lobe_clouds(lrng, here, step, lobes, n_lobes)
        n_side = max(sum(len(c) for c in a_clouds), 1)
        b_root = hilum + np.array([0.0, 12.0, 0.0])  # the main bronchus ends behind the hilar artery
        for cloud in a_clouds:
            if len(cloud) == 0:
                continue
            share = (len(cloud) / n_side) ** (1.0 / 3.0)
            airway = grow_tree(b_root, _unit(cloud.mean(0) - b_root), cloud, share * bronchus_r,
                               MIN_TREE_RADIUS_MM)
            airways = airways + airway.segments() + airway.segments(False)
            lung_trees.append(("pulmonary_arteries", beside(lrng, airway, hilum, share * artery_r, MIN_TREE_RADIUS_MM)))
        # two pulmonary veins a side into the back of the left atrium: the superior one drains the upper (and
        # on the right the middle) lobe, the inferior one the lower lobe
        for up, drained in ((1.0, (0, 1)), (-1.0, (2,))):
            length, r = float(lrng.uniform(14, 22)), float(lrng.uniform(5, 7))
            # backwards and outwards from the atrium; turned (first backwards, then forwards) until it keeps
            # 3 mm of fat from the descending aorta and 4.5 mm from any coronary (its 3 mm plus plaque)
            best = (-np.inf, Segments.empty(), np.zeros(3))
            for back, rise in ((0.45, 0.35), (0.6, 0.3), (0.3, 0.35), (0.75, 0.25), (0.45, 0.2), (0.15, 0.35),
                               (0.9, 0.15), (0.0, 0.35), (-0.15, 0.35)):
                d = _unit([side * 0.8, back, rise * up])
                o = la_c + 0.8 * la_r * d
                end = o + length * _unit(d + np.array([0.3 * side, 0, 0.1 * up]))
                stem = Segments.polyline([o, 0.5 * (o + end) + np.array([0, 2.0, 0]), end], r, 0.85 * r)
                margin = min(_clearance(stem, aorta + arch) - 3.0, _clearance(stem, coronaries) - 4.5,
                             _ventricle_clearance(anat, stem) - 3.0)
                if margin > best[0]:
                    best = (margin, stem, end)
                if margin >= 0:
                    break
            _, stem, stem_end = best
            veins = veins + stem
            vein_stems.append(stem_end)
            clouds = [v_clouds[k] for k in drained if len(v_clouds[k])]
            n_vein = max(sum(len(c) for c in clouds), 1)
            for cloud in clouds:
                share = (len(cloud) / n_vein) ** (1.0 / 3.0)
                lung_trees.append(("pulmonary_veins", grow_tree(stem_end, _unit(stem_end - o), cloud,
                                                                share * 0.85 * r, MIN_TREE_RADIUS_MM)))

    # LV trabeculae: small muscle ridges on the endocardium of the free wall and apex (not the septum)
    h = anat.heart
    lv_len, lv_rad = anat.lv_outer
    w = anat.lv_wall_mm
    inner_len, inner_rad = lv_len - APEX_WALL_FRACTION * w - 4.0, lv_rad - w
    lv_centre = h.base + anat.lv_shift * h.direction(anat.phi_lv)
    trabeculae = []
    for _ in range(int(rng.integers(25, 40))):
        frac = rng.uniform(0.35, 0.95)
        rad = inner_rad * np.sqrt(1 - frac ** 2)
        c = lv_centre + (4.0 + frac * inner_len) * h.u + rad * h.direction(anat.phi_lv + rng.uniform(-140, 140))
        trabeculae.append((c, float(rng.uniform(1.5, 2.8))))

    stomach_c = np.array([bx + 70, by - 5, dome_l[2] - 60])
    stomach = (stomach_c, (float(rng.uniform(40, 55)), float(rng.uniform(35, 45)), float(rng.uniform(45, 60))))
    inflow = float(rng.uniform(700, 1600))
    # the heart's detail draws from a child stream taken last, so it moves no earlier draw of the thorax
    detail = sample_heart_detail(np.random.default_rng(int(rng.integers(2 ** 63))), anat)
    # the abdomen's shape likewise, after it
    abdomen = sample_abdomen(np.random.default_rng(int(rng.integers(2 ** 63))))
    return Thorax(sex=sex, body_diameter_mm=float(2 * np.sqrt(ax_ * ay)), wall=wall, ribs=ribs, svc=svc, ivc=ivc,
                  brachiocephalic_veins=bcv, arch=arch, arch_branches=branches, pulmonary_arteries=arteries,
                  pulmonary_veins=veins, trachea=trachea, bronchi=bronchi, oesophagus=oesophagus, azygos=azy,
                  stomach=stomach, diaphragm=(dome_r, dome_l, dome_curv), body=body, spine=spine, aorta=aorta,
                  contrast_inflow_hu=inflow, extra={"trabeculae": trabeculae}, heart_detail=detail,
                  fissures=fissures, airways=airways, pulmonary_vein_stems=vein_stems, lung_trees=lung_trees,
                  abdomen=abdomen)
