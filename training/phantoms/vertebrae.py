"""Thoracic vertebrae: rounded bodies with discs, the spinal canal, and each level's posterior arch.

A vertebral body is an ellipse in the axial plane whose posterior border is pressed in by the canal,
waisted between its endplates and a little larger at each level down;
behind it, per level, pedicles run back to the laminae, which meet in the midline where the spinous
process leaves, sloping steeply towards the feet as thoracic spinous processes do (so an axial slice
shows it as a separate bar behind the canal); transverse processes point posterolaterally towards the
ribs. The arch is a set of tapered capsules (:class:`Segments`), painted by the caller's capsule painter.
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
    z_ref: float  # height at which the body has ``radius``; bodies grow towards the feet

    @property
    def canal_centre(self) -> tuple[float, float]:
        sx, sy = self.centre
        return sx, sy + self.depth_ratio * self.radius + self.canal_r - 1.5


def sample_spine(rng: np.random.Generator, anat) -> Spine:
    return Spine(centre=(float(anat.spine_centre[0]), float(anat.spine_centre[1])), radius=float(anat.spine_radius),
                 depth_ratio=float(rng.uniform(0.82, 0.95)), canal_r=float(rng.uniform(6.5, 8.0)),
                 spinous_len=float(rng.uniform(26, 36)), spinous_slope_deg=float(rng.uniform(35, 55)),
                 transverse_len=float(rng.uniform(17, 23)), waist=float(rng.uniform(0.05, 0.1)),
                 z_ref=float(anat.heart.base[2]))


def level_centres(z_lo: float, z_hi: float) -> np.ndarray:
    """z of each vertebral body's centre within [z_lo - one level, z_hi + one level] (discs at -300 + 27 k)."""
    k0, k1 = int(np.floor((z_lo + 300) / LEVEL_MM)) - 1, int(np.ceil((z_hi + 300) / LEVEL_MM)) + 1
    return -300.0 + LEVEL_MM * (np.arange(k0, k1 + 1) + 0.5)


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
    return out + Segments(sp0[None], sp1[None], np.array([3.0]), np.array([2.2]))


def paint_spine(lab: np.ndarray, grid, spine: Spine, paint_segments) -> tuple[np.ndarray, np.ndarray]:
    """Label the vertebrae ``spine`` and the canal soft tissue; returns (cortex mask, posterior-arch mask)."""
    x, y, z = grid.axes()
    full = grid.shape
    sx, sy = spine.centre
    cx, cy = spine.canal_centre
    phase = np.mod(z + 300.0, LEVEL_MM)  # 0 at a disc's centre
    to_disc = np.minimum(phase, LEVEL_MM - phase)
    # vertebral bodies widen towards the feet (~1.5 % per 10 mm) and are waisted between their endplates
    size = spine.radius * (1 + 0.0015 * (spine.z_ref - z)) * (1 - spine.waist * np.sin(np.pi * phase / LEVEL_MM) ** 2)
    rho = np.sqrt(((x - sx) / size) ** 2 + ((y - sy) / (spine.depth_ratio * size)) ** 2)
    d_canal = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
    body2d = (rho <= 1) & (d_canal > spine.canal_r + 1.5)
    disc = to_disc < DISC_HALF_MM
    body = body2d & ~disc
    lab[body] = LABEL["spine"]
    lab[body2d & disc] = LABEL["soft_tissue"]
    shell2d = body2d & ((rho >= 1 - BODY_CORTEX_MM / size) | (d_canal <= spine.canal_r + 1.5 + BODY_CORTEX_MM))
    cortex = body & (shell2d | (to_disc < DISC_HALF_MM + 1.2))
    canal = np.broadcast_to(d_canal <= spine.canal_r, full)
    lab[canal] = LABEL["soft_tissue"]  # cord and CSF
    zs = grid.origin[2] + grid.spacing[2] * np.arange(grid.shape[2])
    arch = Segments.empty()
    for zc in level_centres(float(zs.min()), float(zs.max())):
        arch = arch + arch_segments(spine, float(zc))
    before = lab == LABEL["spine"]
    allowed = {LABEL[n] for n in ("soft_tissue", "subcutaneous_fat", "epicardial_fat", "lung_left", "lung_right")}
    paint_segments(lab, grid, arch, LABEL["spine"], allowed)
    lab[canal & ~before & (lab == LABEL["spine"])] = LABEL["soft_tissue"]  # the arch rings the canal
    processes = (lab == LABEL["spine"]) & ~before
    return cortex, processes
