"""Thoracic vertebrae: a kyphotic column of rounded bodies with discs, the spinal canal, each level's
posterior arch and the rib heads.

The column bows backwards in the sagittal plane (thoracic kyphosis): its axis is a circular arc whose
turn from T1 to T12 is the Cobb angle, with the apex near T7; bodies, discs and arches follow the arc and
tilt with it. A vertebral body's axial section is kidney-shaped: an ellipse whose posterior border is
pressed in by the canal and whose anterolateral sides are a little concave; it is waisted between its
endplates and a little larger at each level down. Behind it, per level, pedicles run back to the
laminae, which meet in the midline where the spinous process leaves, sloping steeply towards the feet as
thoracic spinous processes do (so an axial slice shows it as a separate bar behind the canal); transverse
processes point posterolaterally; at each disc a rib head meets the bodies and its neck runs out in front
of the transverse process to the rib. Arches and rib heads are tapered capsules (:class:`Segments`),
painted by the caller's capsule painter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.segments import Segments

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
LEVEL_MM = 27.0  # vertebral level height (body + disc), as in generator 1.0
DISC_HALF_MM = 2.0  # discs are ~4 mm thick between the bodies
BODY_CORTEX_MM = 1.8
# Normal thoracic kyphosis (Cobb angle T1-T12 on lateral radiographs) is about 20-50 degrees in adults and
# grows with age (Fon GT, Pitt MJ, Thies AC. Thoracic kyphosis: range in normal subjects. AJR 1980;134:979).
KYPHOSIS_DEG = (20.0, 50.0)
THORACIC_LEVELS = 12


@dataclass
class Spine:
    centre: tuple[float, float]  # x, y of the vertebral bodies' centre
    radius: float  # half width of a vertebral body
    depth_ratio: float  # AP depth / width of a body
    canal_r: float
    spinous_len: float
    spinous_slope_deg: float  # angle of the spinous process below the horizontal
    transverse_len: float
    waist: float  # a body is this much narrower at mid-height than at its endplates (concave sides)
    z_ref: float  # height at which the body has ``radius`` and the column sits at ``centre``
    kyphosis_deg: float = 0.0  # Cobb angle T1-T12: the column's turn over the twelve thoracic levels
    apex_z: float = 0.0  # height of the kyphosis' apex (most posterior point, about T7)
    concavity: float = 0.0  # depth of the anterolateral concavity of a body's section, relative to its radius

    @property
    def canal_centre(self) -> tuple[float, float]:
        """Centre of the canal at ``z_ref`` (the column's position there; :meth:`shift` gives it elsewhere)."""
        sx, sy = self.centre
        return sx, sy + self.depth_ratio * self.radius + self.canal_r - 1.5

    @property
    def arc_radius(self) -> float:
        """Radius of the sagittal arc (mm): twelve levels turn through the Cobb angle."""
        return THORACIC_LEVELS * LEVEL_MM / np.deg2rad(max(self.kyphosis_deg, 1e-3))

    def shift(self, z):
        """Posterior shift (mm) of the column's axis at height ``z`` relative to ``z_ref`` (0 there)."""
        r, half = self.arc_radius, 0.5 * THORACIC_LEVELS * LEVEL_MM

        def sag(dz):  # the arc's sagitta, continued along its tangent beyond T1 and T12
            d = np.abs(dz)
            return np.where(d <= half, d * d, half * half + 2 * half * (d - half)) / (2 * r)

        return sag(self.z_ref - self.apex_z) - sag(np.asarray(z, dtype=np.float64) - self.apex_z)

    def slope(self, z):
        """dy/dz of the column's axis (posterior per superior mm): the tilt of the endplates."""
        r, half = self.arc_radius, 0.5 * THORACIC_LEVELS * LEVEL_MM
        dz = np.asarray(z, dtype=np.float64) - self.apex_z
        return -np.clip(dz, -half, half) / r


def sample_spine(rng: np.random.Generator, anat) -> Spine:
    spine = Spine(centre=(float(anat.spine_centre[0]), float(anat.spine_centre[1])), radius=float(anat.spine_radius),
                  depth_ratio=float(rng.uniform(0.82, 0.95)), canal_r=float(rng.uniform(6.5, 8.0)),
                  spinous_len=float(rng.uniform(26, 36)), spinous_slope_deg=float(rng.uniform(35, 55)),
                  transverse_len=float(rng.uniform(17, 23)), waist=float(rng.uniform(0.05, 0.1)),
                  z_ref=float(anat.heart.base[2]))
    # a child stream: the thorax's own draws after the spine (vessels, airways) keep their values
    own = rng.spawn(1)[0]
    spine.kyphosis_deg = float(own.uniform(*KYPHOSIS_DEG))
    # the apex sits near T7, a level or so above the heart's base (the carina is at T4-T5)
    spine.apex_z = spine.z_ref + float(own.uniform(0, 25))
    spine.concavity = float(own.uniform(0.04, 0.09))
    return spine


def level_centres(z_lo: float, z_hi: float) -> np.ndarray:
    """z of each vertebral body's centre within [z_lo - one level, z_hi + one level] (discs at -300 + 27 k)."""
    k0, k1 = int(np.floor((z_lo + 300) / LEVEL_MM)) - 1, int(np.ceil((z_hi + 300) / LEVEL_MM)) + 1
    return -300.0 + LEVEL_MM * (np.arange(k0, k1 + 1) + 0.5)


def _to_column(spine: Spine, zc: float, pts: np.ndarray) -> np.ndarray:
    """Points drawn for a straight column at the level centred at ``zc`` moved onto the kyphotic arc: the
    level is shifted with the axis and tilted with its endplates (a rotation about the left-right axis)."""
    sx, sy = spine.centre
    m = float(spine.slope(zc))
    n = np.hypot(1.0, m)
    t_y, t_z, p_y, p_z = m / n, 1.0 / n, 1.0 / n, -m / n  # the column's axis and its posterior normal
    dy, dz = pts[..., 1] - sy, pts[..., 2] - zc
    out = pts.astype(np.float64).copy()
    out[..., 1] = sy + float(spine.shift(zc)) + dy * p_y + dz * t_y
    out[..., 2] = zc + dy * p_z + dz * t_z
    return out


def arch_segments(spine: Spine, zc: float) -> Segments:
    """Pedicles, laminae, transverse and spinous processes of the level centred at ``zc``."""
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    rad, rc = spine.radius, spine.canal_r
    a = np.deg2rad(spine.spinous_slope_deg)
    out = Segments.empty()
    zp = zc + 3.0  # the arch leaves the upper half of the body
    for side in (-1.0, 1.0):
        ped0 = np.array([sx + side * 0.55 * rad, sy + 0.6 * spine.depth_ratio * rad, zp])
        ped1 = np.array([cx + side * (rc + 1.5), cy, zp])
        lam1 = np.array([cx, cy + rc + 4.5, zp - 2.0])
        tp1 = ped1 + spine.transverse_len * np.array([side * 0.85, 0.5, 0.1])
        out = out + Segments(np.array([ped0, ped1, ped1]), np.array([ped1, lam1, tp1]),
                             np.array([3.6, 2.8, 3.4]), np.array([3.2, 2.6, 2.6]))
    sp0 = np.array([cx, cy + rc + 4.5, zp - 2.0])
    sp1 = sp0 + spine.spinous_len * np.array([0.0, np.cos(a), -np.sin(a)])
    out = out + Segments(sp0[None], sp1[None], np.array([3.0]), np.array([2.2]))
    return Segments(_to_column(spine, zc, out.p0), _to_column(spine, zc, out.p1), out.r0, out.r1)


def rib_head_segments(spine: Spine, zc: float) -> Segments:
    """The two ribs that articulate with the level centred at ``zc``: each head sits on the body's
    posterolateral corner at the disc above, the neck runs out just in front of the transverse process
    (the tubercle rests on its tip), and the shaft carries on laterally to the chest wall's rib."""
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    rad, rc = spine.radius, spine.canal_r
    zd = zc + 0.5 * LEVEL_MM - 4.0  # the head spans the disc and the upper demifacet; the neck runs nearly level
    out = Segments.empty()
    for side in (-1.0, 1.0):
        head = np.array([sx + side * 0.82 * rad, sy + 0.45 * spine.depth_ratio * rad, zd])
        tp_tip = (np.array([cx + side * (rc + 1.5), cy, zc + 3.0])
                  + spine.transverse_len * np.array([side * 0.85, 0.5, 0.1]))
        tubercle = tp_tip + np.array([side * 1.5, -5.0, 0.0])
        shaft = tubercle + np.array([side * 18.0, -2.0, -4.0])
        out = out + Segments(np.array([head, tubercle]), np.array([tubercle, shaft]),
                             np.array([4.5, 3.4]), np.array([3.4, 3.2]))
    return Segments(_to_column(spine, zc, out.p0), _to_column(spine, zc, out.p1), out.r0, out.r1)


def paint_spine(lab: np.ndarray, grid, spine: Spine, paint_segments) -> tuple[np.ndarray, np.ndarray]:
    """Label the vertebrae ``spine``, the rib heads and the canal soft tissue; returns (cortex mask, mask of
    the posterior arches and rib heads)."""
    x, y, z = grid.axes()
    full = grid.shape
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    shift = spine.shift(z).astype(np.float32)
    # the bodies and canal lie in a narrow box round the column: work there (a few per cent of the field)
    reach = 1.6 * spine.radius * (1 + 0.0015 * max(spine.z_ref - float(z.min()), 0.0))
    ix = np.nonzero(np.abs(x.ravel() - sx) <= reach)[0]
    jy = np.nonzero((y.ravel() >= sy + float(shift.min()) - reach)
                    & (y.ravel() <= cy + float(shift.max()) + spine.canal_r + 2))[0]
    cortex_full = np.zeros(full, bool)
    if len(ix) and len(jy):
        box = (slice(ix[0], ix[-1] + 1), slice(jy[0], jy[-1] + 1))
        cortex_full[box] = _paint_bodies(lab[box], x[box[0]], y[:, box[1]], z, spine, shift)
    zs = grid.origin[2] + grid.spacing[2] * np.arange(grid.shape[2])
    arch, heads = Segments.empty(), Segments.empty()
    for zc in level_centres(float(zs.min()), float(zs.max())):
        arch = arch + arch_segments(spine, float(zc))
        heads = heads + rib_head_segments(spine, float(zc))
    canal = np.zeros(full, bool)
    if len(ix) and len(jy):
        canal[box] = (x[box[0]] - cx) ** 2 + (y[:, box[1]] - cy - shift) ** 2 <= spine.canal_r ** 2
    before = lab == LABEL["spine"]
    allowed = {LABEL[n] for n in ("soft_tissue", "subcutaneous_fat", "epicardial_fat", "lung_left", "lung_right")}
    paint_segments(lab, grid, arch, LABEL["spine"], allowed)
    lab[canal & ~before & (lab == LABEL["spine"])] = LABEL["soft_tissue"]  # the arch rings the canal
    processes = (lab == LABEL["spine"]) & ~before
    ribs_before = lab == LABEL["ribs"]
    paint_segments(lab, grid, heads, LABEL["ribs"], allowed)
    processes |= (lab == LABEL["ribs"]) & ~ribs_before
    return cortex_full, processes


def _paint_bodies(lab: np.ndarray, x, y, z, spine: Spine, shift) -> np.ndarray:
    """Vertebral bodies, discs and canal in ``lab`` (a box round the column); returns the bodies' cortex."""
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    slope = spine.slope(z).astype(np.float32)
    dyb = y - (sy + shift)  # (1, J, K): posterior distance from the body's axis at this height
    # level coordinate along the arc: discs and endplates lie across the tilted column, not in axial planes
    u = z + dyb * slope
    phase = np.mod(u + 300.0, LEVEL_MM)  # 0 at a disc's centre
    to_disc = np.minimum(phase, LEVEL_MM - phase)
    # vertebral bodies widen towards the feet (~1.5 % per 10 mm) and are waisted between their endplates
    size = spine.radius * (1 + 0.0015 * (spine.z_ref - u)) * (1 - spine.waist * np.sin(np.pi * phase / LEVEL_MM) ** 2)
    dxb = x - sx
    rho = np.sqrt((dxb / size) ** 2 + (dyb / (spine.depth_ratio * size)) ** 2)
    # kidney-shaped section: the anterolateral sides are a little concave (where the segmental vessels run)
    ang = np.abs(np.arctan2(dyb, np.abs(dxb)) + np.pi / 2)  # 0 straight ahead, pi/2 lateral
    rho = rho * (1 + spine.concavity * np.exp(-((ang - 1.05) / 0.3) ** 2))
    d_canal = np.sqrt((x - cx) ** 2 + (y - cy - shift) ** 2)
    body2d = (rho <= 1) & (d_canal > spine.canal_r + 1.5)
    disc = to_disc < DISC_HALF_MM
    body = body2d & ~disc
    lab[body] = LABEL["spine"]
    lab[body2d & disc] = LABEL["soft_tissue"]
    shell2d = body2d & ((rho >= 1 - BODY_CORTEX_MM / size) | (d_canal <= spine.canal_r + 1.5 + BODY_CORTEX_MM))
    cortex = body & (shell2d | (to_disc < DISC_HALF_MM + 1.2))
    lab[np.broadcast_to(d_canal <= spine.canal_r, lab.shape)] = LABEL["soft_tissue"]  # cord and CSF
    return np.broadcast_to(cortex, lab.shape)
