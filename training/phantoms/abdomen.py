"""The upper abdomen under the diaphragm: a liver whose dome follows the right hemidiaphragm, and a stomach
whose fundus fills the left dome, with an air-fluid level and rugal folds.

Geometry in patient LPS millimetres (x to the patient's left, y posterior, z superior) and the diaphragm of
:class:`~cardiovlm.training.phantoms.thorax.Thorax` (two paraboloid domes). The liver fills the space under
the right dome down to its lower edge; its left lobe crosses the midline in front of the stomach and thins
towards the feet; its medial and inferior borders are lobulated (a few smooth harmonics). The stomach is an
ellipsoid cut by the left dome (so its fundus is dome-shaped); with the patient supine, gas rises to the
front: everything in the lumen anterior to a flat level is air. The wall is a few millimetres thick, with
rugal folds running along the stomach that stand into the lumen (seen against the gas).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME

LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
DIAPHRAGM_MM = 3.0  # the diaphragm's muscle (2-5 mm) between the lung and the liver or stomach


@dataclass
class AbdomenShape:
    left_lobe_mm: float  # how far the left lobe reaches left of the midline just under the dome
    left_lobe_depth_mm: float  # height over which the left lobe thins away below the dome
    liver_height_mm: float  # the right lobe's height under the dome
    lobulation: np.ndarray  # (n, 3): amplitude (mm), wave number (rad/mm), phase of the borders' lobulation
    air_fraction: float  # share of the stomach's AP depth that is gas (anterior, supine)
    wall_mm: float  # gastric wall thickness between folds
    rugae: tuple[int, float, float]  # number of folds round the stomach, their height (mm), phase


def sample_abdomen(rng: np.random.Generator) -> AbdomenShape:
    return AbdomenShape(left_lobe_mm=float(rng.uniform(40, 90)), left_lobe_depth_mm=float(rng.uniform(60, 100)),
                        liver_height_mm=float(rng.uniform(140, 180)),
                        lobulation=np.c_[rng.uniform(2, 6, 4), rng.uniform(0.04, 0.12, 4),
                                         rng.uniform(0, 2 * np.pi, 4)],
                        air_fraction=float(rng.uniform(0.2, 0.5)), wall_mm=float(rng.uniform(3, 5)),
                        rugae=(int(rng.integers(7, 13)), float(rng.uniform(2.5, 5)), float(rng.uniform(0, 2 * np.pi))))


def domes(x, y, thorax) -> np.ndarray:
    """Height of the diaphragm (the higher of the two domes) over each (x, y)."""
    dome_r, dome_l, curv = thorax.diaphragm
    return np.maximum(*(float(d[2]) - ((x - float(d[0])) ** 2 + (y - float(d[1])) ** 2) / (2 * curv)
                        for d in (dome_r, dome_l)))


def paint_abdomen(lab: np.ndarray, grid, anat, thorax, shape: AbdomenShape, cavity: np.ndarray,
                  heart_zone: np.ndarray) -> np.ndarray:
    """Soft tissue below the domes, then the liver and the stomach; returns the stomach's gas mask (the gas
    shares the stomach label; its HU is air)."""
    x, y, z = grid.axes()
    dome = domes(x, y, thorax)
    below = cavity & (z < dome) & ~heart_zone
    lab[below] = LABEL["soft_tissue"]
    bx, by = (float(v) for v in anat.body_centre)
    h = dome - z  # depth under the diaphragm
    wave = sum(a * np.sin(k * (y + 0.6 * z) + p) for a, k, p in shape.lobulation)  # lobulated borders
    # the left lobe's edge: far left of the midline just under the dome, back to the midline lower down
    left_edge = bx + shape.left_lobe_mm * np.clip(1 - h / shape.left_lobe_depth_mm, 0, 1) + wave
    anterior = y < by + 0.15 * float(anat.body_axes[1])  # the left lobe lies in front of the stomach
    organs = below & (h > DIAPHRAGM_MM)
    liver = organs & (h < shape.liver_height_mm + wave) & ((x < bx + wave) | ((x < left_edge) & anterior))
    sc, (sa, sb, sc_) = thorax.stomach
    # the fundus rises into the left dome: above its centre the stomach reaches up to the diaphragm
    zc = float(sc[2])
    up = np.maximum(dome - DIAPHRAGM_MM - zc, 1.0)
    dz = np.where(z > zc, (z - zc) / up, (z - zc) / sc_)
    q = np.sqrt(((x - float(sc[0])) / sa) ** 2 + ((y - float(sc[1])) / sb) ** 2 + dz ** 2)
    stomach = organs & (q <= 1) & (x > bx + 5)
    lab[liver & ~stomach] = LABEL["liver"]
    lab[stomach] = LABEL["stomach"]
    # the wall: thicker along the rugal folds, which run along the stomach (round its long axis)
    n, height, phase = shape.rugae
    around = np.arctan2(y - float(sc[1]), x - float(sc[0]))
    fold = height * np.clip(np.cos(n * around + phase + 0.03 * (z - float(sc[2]))), 0, None) ** 3
    depth_in = (1 - q) * min(sa, sb, sc_)  # approximate depth under the stomach's surface (mm)
    lumen = stomach & (np.minimum(depth_in, h - DIAPHRAGM_MM) > shape.wall_mm + fold)
    # supine: the gas sits anteriorly, above a flat level across the lumen
    level = float(sc[1]) - sb + 2 * sb * shape.air_fraction
    return lumen & (y < level)
