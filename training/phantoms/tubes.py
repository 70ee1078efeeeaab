"""Straight coronary tubes with one narrowing of known degree: a CT and a label map for checking measurements.

The CT is formed the way the phantom generator forms it (:mod:`cardiovlm.training.phantoms.raster`): lumen at
``lumen_hu`` with analytic partial volume from the signed distance to the lumen circle (linear over
one voxel), non-calcified plaque around the narrowing, epicardial fat elsewhere, optional calcium
and stent metal, a Gaussian point-spread blur (``PSF_SIGMA_MM``) and spatially correlated noise.
The label map marks the lumen where the voxel centre lies inside it, as the phantoms rasterise it.

Example::

    tube = straight_tube(70.0, voxel=1.0)
    tube.hu, tube.labels, tube.affine, tube.centerlines
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.lesions import profile
from cardiovlm.training.phantoms.raster import NOISE_CORRELATION_MM, PSF_SIGMA_MM

PLAQUE = STRUCTURES_BY_NAME["noncalcified_plaque"].label_id
CALCIUM = STRUCTURES_BY_NAME["calcified_plaque"].label_id
STENT = STRUCTURES_BY_NAME["stent"].label_id
SEGMENTS = (("LM", 0.0), ("pLAD", 6.0), ("mLAD", 26.0))  # arc length where each segment starts (mm)
OBLIQUE = (0.3, 0.5, 0.81)  # an axis direction crossing the voxel grid at no special angle


@dataclass(frozen=True)
class TubeImage:
    """Attenuation of the tube's materials (HU) and the image formation (a contrast CCTA)."""

    lumen_hu: float = 430.0  # contrast-filled lumen (0.97 x a 440 HU blood pool)
    plaque_hu: float = 60.0  # non-calcified plaque: 30-130 HU
    fat_hu: float = -100.0  # epicardial fat
    stent_hu: float = 2200.0  # metal before blur
    noise_sd: float = 20.0  # HU, after the noise-grain filter
    seed: int = 0


@dataclass(frozen=True)
class Tube:
    """A tube phantom: CT (HU, float32), label map, affine (voxel index -> LPS mm) and centerlines."""

    hu: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    centerlines: cf.Centerlines


def healthy_radius(s):
    """Healthy lumen radius (mm) at arc length ``s``: 1.8 mm tapering 0.006 mm per mm."""
    return 1.8 - 0.006 * np.asarray(s, float)


def lesion_weight(s: np.ndarray, start: float, length: float, shape: str = "flat") -> np.ndarray:
    """Narrowing 0..1 along ``s``: 'flat' (the phantoms' lesion, full over its middle half), 'cosine', or
    'step' (full over the whole length, abrupt ends: the hardest case for a lesion-end rule)."""
    if shape == "flat":
        return profile(s, start, length)
    if shape == "cosine":
        x = (s - start) / length
        return np.where((x >= 0) & (x <= 1), (1 - np.cos(2 * np.pi * x)) / 2, 0.0)
    if shape == "step":
        return ((s >= start) & (s <= start + length)).astype(float)
    raise ValueError(f"unknown lesion shape {shape!r}: use 'flat', 'cosine' or 'step'")


def tube_image(dist: np.ndarray, radius: np.ndarray, voxel: float, *, plaque: np.ndarray | None = None,
               stent: np.ndarray | None = None, calcium_hu: np.ndarray | None = None,
               image: TubeImage = TubeImage()) -> np.ndarray:
    """CT (float32 HU) of a lumen of ``radius`` at distance ``dist`` from its axis (both per voxel, mm).

    Args:
        plaque: bool per voxel, non-calcified plaque (else fat) outside the lumen.
        stent: bool per voxel, metal struts.
        calcium_hu: per voxel calcium attenuation (0 where none), kept where it exceeds the tissue.
    """
    occ = np.clip(0.5 - (dist - radius) / voxel, 0.0, 1.0)  # partial volume over one voxel, as raster.py
    occ[radius <= 0] = 0.0
    wall = np.full(dist.shape, image.fat_hu, np.float32)
    if plaque is not None:
        wall[plaque] = image.plaque_hu
    hu = (wall * (1 - occ) + image.lumen_hu * occ).astype(np.float32)
    if calcium_hu is not None:
        hu = np.maximum(hu, calcium_hu.astype(np.float32))
    if stent is not None:
        hu[stent] = image.stent_hu
    hu = ndimage.gaussian_filter(hu, PSF_SIGMA_MM / voxel, mode="nearest")
    if image.noise_sd > 0:
        rng = np.random.default_rng(image.seed)
        noise = ndimage.gaussian_filter(rng.standard_normal(dist.shape, dtype=np.float32), NOISE_CORRELATION_MM / voxel)
        hu += noise * (image.noise_sd / max(float(noise.std()), 1e-6))
    return hu.astype(np.float32)


def ct_from_labels(labels: np.ndarray, voxel: float, *, calcium_hu: float = 600.0, stent_hu: float = 4000.0,
                   image: TubeImage = TubeImage()) -> np.ndarray:
    """A contrast CT (float32 HU) painted from a label map: lumen, plaque, calcium and stent metal in fat.

    For hand-made label maps whose CT is not the point of the study; partial volume comes from the
    blur only (the lumen is whole voxels), so prefer :func:`tube_image` where the geometry is analytic.
    Metal is painted at ``stent_hu`` (beyond the HU scale, as real struts are) so that one-voxel
    struts still bloom to 1000-2000 HU after the blur, as they do on scanners.
    """
    hu = np.full(labels.shape, image.fat_hu, np.float32)
    hu[np.isin(labels, [seg.label_id for seg in SEGMENTS_BY_CODE.values()])] = image.lumen_hu
    hu[labels == PLAQUE] = image.plaque_hu
    hu[labels == CALCIUM] = calcium_hu
    hu[labels == STENT] = stent_hu
    hu = ndimage.gaussian_filter(hu, PSF_SIGMA_MM / voxel, mode="nearest")
    if image.noise_sd > 0:
        rng = np.random.default_rng(image.seed)
        noise = ndimage.gaussian_filter(rng.standard_normal(labels.shape, dtype=np.float32),
                                        NOISE_CORRELATION_MM / voxel)
        hu += noise * (image.noise_sd / max(float(noise.std()), 1e-6))
    return hu.astype(np.float32)


def straight_tube(percent: float, voxel: float, *, direction=OBLIQUE, offset=(0.37, 0.21, 0.0),
                  shape: str = "flat", start: float = 12.0, length: float = 12.0, total: float = 46.0,
                  image: TubeImage = TubeImage()) -> Tube:
    """A tube along ``direction`` through LM, pLAD and mLAD with one narrowing.

    Args:
        percent: diameter stenosis at the lesion's narrowest point (100: occlusion).
        voxel: isotropic voxel size (mm).
        direction: axis direction (any length).
        offset: the axis start relative to a voxel centre, in voxels.
        shape, start, length: the lesion (see :func:`lesion_weight`), arc lengths in mm.
        total: tube length (mm).
        image: materials, noise and its seed.
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
    r = np.where(valid, r, 0.0)
    plaque = valid & (w > 0) & (dist < r0 + 0.5) & (dist > r)
    labels = np.zeros(s.shape, np.uint8)
    labels[plaque] = PLAQUE
    for code, s0 in SEGMENTS:
        labels[valid & (s >= s0) & (dist <= r)] = SEGMENTS_BY_CODE[code].label_id
    hu = tube_image(dist, r, voxel, plaque=plaque, image=image)
    arc = np.arange(0, total + 1e-9, 0.25)
    points = origin + arc[:, None] * d
    bounds = [s0 for _, s0 in SEGMENTS] + [total + 1]
    centerlines = cf.Centerlines(segments={
        code: [cf.CenterlinePoint(xyz=tuple(p), radius_mm=float(healthy_radius(a)))
               for p, a in zip(points, arc) if bounds[n] <= a < bounds[n + 1]]
        for n, (code, _) in enumerate(SEGMENTS)})
    return Tube(hu=hu, labels=labels, affine=np.diag([voxel, voxel, voxel, 1.0]), centerlines=centerlines)
