"""Straight coronary tubes with one narrowing of known degree: label maps for checking measurements.

The lumen is labelled where the voxel centre lies inside it, as the phantoms rasterise it, so a
narrowing of a voxel or less is sampled the way a real label map samples it.

Example::

    labels, affine, centerlines = straight_tube(70.0, voxel=1.0)
"""

from __future__ import annotations

import numpy as np

from tools import case_format as cf
from tools.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from training.phantoms.lesions import profile

PLAQUE = STRUCTURES_BY_NAME["noncalcified_plaque"].label_id
SEGMENTS = (("LM", 0.0), ("pLAD", 6.0), ("mLAD", 26.0))  # arc length where each segment starts (mm)
OBLIQUE = (0.3, 0.5, 0.81)  # an axis direction crossing the voxel grid at no special angle


def healthy_radius(s):
    """Healthy lumen radius (mm) at arc length ``s``: 1.8 mm tapering 0.006 mm per mm."""
    return 1.8 - 0.006 * np.asarray(s, float)


def lesion_weight(s: np.ndarray, start: float, length: float, shape: str = "flat") -> np.ndarray:
    """Narrowing 0..1 along ``s``: 'flat' (the phantoms' lesion, full over its middle half) or 'cosine'."""
    if shape == "flat":
        return profile(s, start, length)
    if shape == "cosine":
        x = (s - start) / length
        return np.where((x >= 0) & (x <= 1), (1 - np.cos(2 * np.pi * x)) / 2, 0.0)
    raise ValueError(f"unknown lesion shape {shape!r}: use 'flat' or 'cosine'")


def straight_tube(percent: float, voxel: float, *, direction=OBLIQUE, offset=(0.37, 0.21, 0.0),
                  shape: str = "flat", start: float = 12.0, length: float = 12.0, total: float = 46.0
                  ) -> tuple[np.ndarray, np.ndarray, cf.Centerlines]:
    """(labels, affine, centerlines) of a tube along ``direction`` through LM, pLAD and mLAD.

    Args:
        percent: diameter stenosis at the lesion's narrowest point.
        voxel: isotropic voxel size (mm).
        direction: axis direction (any length).
        offset: the axis start relative to a voxel centre, in voxels.
        shape, start, length: the lesion (see :func:`lesion_weight`), arc lengths in mm.
        total: tube length (mm).
    """
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    origin = np.asarray(offset, float) * voxel + 6.0
    size = np.ceil((np.maximum(origin, origin + d * total) + 6.0) / voxel).astype(int) + 1
    grid = np.stack(np.meshgrid(*[np.arange(n) * voxel for n in size], indexing="ij"), -1)
    rel = grid - origin
    s = rel @ d
    dist = np.linalg.norm(rel - s[..., None] * d, axis=-1)
    w = lesion_weight(s, start, length, shape)
    r0 = healthy_radius(s)
    r = r0 * (1 - percent / 100 * w)
    valid = (s >= 0) & (s <= total)
    labels = np.zeros(s.shape, np.uint8)
    labels[valid & (w > 0) & (dist < r0 + 0.5) & (dist > r)] = PLAQUE
    for code, s0 in SEGMENTS:
        labels[valid & (s >= s0) & (dist <= r)] = SEGMENTS_BY_CODE[code].label_id
    arc = np.arange(0, total + 1e-9, 0.25)
    points = origin + arc[:, None] * d
    bounds = [s0 for _, s0 in SEGMENTS] + [total + 1]
    centerlines = cf.Centerlines(segments={
        code: [cf.CenterlinePoint(xyz=tuple(p), radius_mm=float(healthy_radius(a)))
               for p, a in zip(points, arc) if bounds[n] <= a < bounds[n + 1]]
        for n, (code, _) in enumerate(SEGMENTS)})
    return labels, np.diag([voxel, voxel, voxel, 1.0]), centerlines
