"""Image formation effects beyond tissue HU: contrast mixing, blooming, cardiac motion, streaks from dense contrast.

Each effect is a small array transform on the HU volume, applied by
:func:`cardiovlm.training.phantoms.raster.form_image`
in acquisition order (object first, then scanner): contrast inhomogeneity in the blood pool, mixing of
dense and unopacified inflow in the right atrium, calcium/stent blooming, motion blur around the mid
RCA, the scanner's point-spread function, streaks next to the dense superior vena cava, kernel noise.

Sources for the ranges: the mid RCA moves fastest of the coronaries (peak about 50-100 mm/s in systole,
much less in the diastolic window; Achenbach et al. and Husmann et al. on coronary motion by ECG phase),
so a CT of 66-175 ms temporal resolution blurs it by about 1-3 mm at 55-80 bpm. Blooming widens dense
objects by about a PSF width: calcium looks larger on CT than on histology.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from cardiovlm.training.phantoms.noise import NoiseModel, smooth_field


@dataclass(frozen=True)
class Physics:
    """What the scanner and the circulation add to one phantom's tissue HU."""

    heart_rate_bpm: float  # 50-80 in beta-blocked CCTA
    motion_mm: float  # blur length at the mid RCA
    motion_dir: tuple[float, float, float]  # unit direction of the mid-RCA motion (LPS)
    rca_path: np.ndarray  # (N, 3) mid-RCA centerline, where motion is worst
    bloom_sigma_mm: float = 0.6  # extra blur of calcium and metal (beyond the PSF)
    blood_texture: float = 0.07  # SD of opacified-blood inhomogeneity, as a fraction of its enhancement
    blood_texture_mm: float = 1.5  # correlation length of that inhomogeneity
    svc_inflow: np.ndarray | None = None  # (3,) where the SVC jet enters the right atrium
    ivc_inflow: np.ndarray | None = None  # (3,) where unopacified IVC blood enters
    streak_scale: float = 0.06  # streak amplitude per HU of SVC contrast above 300 HU
    streak_angles: tuple[float, ...] = ()  # directions of the streaks through the SVC (radians)
    nps_peak_per_mm: float = NoiseModel.peak_per_mm  # reconstruction kernel (acquisition.KERNELS)


def sample_physics(anat, rng: np.random.Generator, heart_rate_bpm: float | None = None) -> Physics:
    """Draw heart rate, motion and streak directions for one case (``anat`` with a thorax)."""
    hr = float(rng.uniform(50, 80)) if heart_rate_bpm is None else float(heart_rate_bpm)
    if not 30 <= hr <= 150:
        raise ValueError(f"heart rate must be 30-150 bpm, got {hr}")
    # blur grows with heart rate: about 1 mm at 55 bpm to 3 mm at 80 bpm (faster motion in a shorter diastole)
    motion = float(np.clip(1.0 + 2.0 * (hr - 55.0) / 25.0, 0.5, 4.0))
    h = anat.heart
    direction = h.u + 0.5 * h.e1
    direction = direction / np.linalg.norm(direction)
    t = anat.thorax
    svc_in = t.svc.p0[0] if t is not None and len(t.svc) else None
    ivc_in = t.ivc.p0[0] if t is not None and len(t.ivc) else None
    angles = tuple(float(a) for a in rng.uniform(0, np.pi, int(rng.integers(5, 9))))
    motion_dir = (float(direction[0]), float(direction[1]), float(direction[2]))
    return Physics(heart_rate_bpm=hr, motion_mm=motion, motion_dir=motion_dir,
                   rca_path=anat.vessels["mRCA"].points, svc_inflow=svc_in, ivc_inflow=ivc_in, streak_angles=angles)


def _points_weight(grid, shape_box, lo, points: np.ndarray, scale_mm: float) -> np.ndarray:
    """exp(-d^2 / 2 s^2), d the distance from each voxel of a box to the nearest of ``points``."""
    sp, org = np.asarray(grid.spacing), np.asarray(grid.origin)
    idx = np.indices(shape_box).reshape(3, -1).T
    d, _ = cKDTree(points).query(org + (idx + lo) * sp, distance_upper_bound=4.0 * scale_mm)
    return np.exp(-0.5 * (d / scale_mm) ** 2).reshape(shape_box).astype(np.float32)  # inf (far) -> 0


def blood_inhomogeneity(hu: np.ndarray, blood: np.ndarray, grid, amount: float, corr_mm: float,
                        rng: np.random.Generator, baseline: float = 40.0) -> None:
    """Add incompletely mixed contrast (in place): a smooth field scaled by each voxel's enhancement."""
    field = smooth_field(hu.shape, grid.spacing, corr_mm, rng)
    hu[blood] += amount * (hu[blood] - baseline) * field[blood]


def atrial_mixing(hu: np.ndarray, ra: np.ndarray, grid, physics: Physics, svc_hu: float, ivc_hu: float,
                  rng: np.random.Generator) -> None:
    """Right atrium (in place): swirls of dense SVC contrast meeting unopacified IVC blood."""
    if not ra.any():
        return
    lo = np.argwhere(ra).min(0)
    hi = np.argwhere(ra).max(0) + 1
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = ra[box]
    swirl = smooth_field(sub.shape, grid.spacing, 5.0, rng)
    vals = hu[box]
    vals[sub] += 0.25 * abs(svc_hu - ivc_hu) * np.tanh(swirl[sub])
    for inflow, value in ((physics.svc_inflow, 0.8 * svc_hu), (physics.ivc_inflow, ivc_hu)):
        if inflow is None:
            continue
        w = _points_weight(grid, sub.shape, lo, np.asarray(inflow)[None], 9.0)
        w *= 0.5 + 0.5 * (swirl > 0)  # the jet breaks up into the swirl
        vals[sub] = (1 - w[sub]) * vals[sub] + w[sub] * value
    hu[box] = vals


def bloom(hu: np.ndarray, dense: np.ndarray, background: float, grid, sigma_mm: float,
          psf_sigma_mm: float = 0.0) -> np.ndarray:
    """Blooming of dense objects (calcium, metal): their HU excess spreads by ``sigma_mm`` beyond the PSF.

    A requested calcium peak is what a reader measures, so each object is made denser (as real
    calcium is, at 1000-3000 HU) until, after this spread and the scanner PSF of ``psf_sigma_mm``,
    its peak is the requested one again: the object looks larger at the same peak, which is blooming.
    """
    if sigma_mm <= 0 or not dense.any():
        return hu
    excess = np.where(dense, np.maximum(hu - background, 0.0), 0.0).astype(np.float32)
    sig = np.asarray([sigma_mm / s for s in grid.spacing])
    spread = ndimage.gaussian_filter(excess, sig, mode="constant")
    total = np.sqrt(sigma_mm ** 2 + psf_sigma_mm ** 2) / sigma_mm * sig
    comps, _ = ndimage.label(dense, np.ones((3, 3, 3), bool))
    pad = np.ceil(4 * total).astype(int)
    for n, box in enumerate(ndimage.find_objects(comps), start=1):
        if box is None:
            continue
        box = tuple(slice(max(b.start - p, 0), min(b.stop + p, dim)) for b, p, dim in zip(box, pad, hu.shape))
        own = np.where(comps[box] == n, excess[box], 0.0)
        measured = ndimage.gaussian_filter(own, total, mode="constant").max()
        if measured > 0:
            gain = float(own.max() / measured)
            near = ndimage.binary_dilation(comps[box] == n, iterations=int(pad.max()))
            spread[box][near] *= gain
    return hu - excess + spread


def motion_blur(hu: np.ndarray, grid, physics: Physics, reach_mm: float = 15.0) -> np.ndarray:
    """Average along the motion direction, weighted by closeness to the mid RCA (worst there)."""
    if physics.motion_mm <= 0 or len(physics.rca_path) == 0:
        return hu
    sp, org = np.asarray(grid.spacing), np.asarray(grid.origin)
    pad = 2.5 * reach_mm
    lo = np.clip(np.floor((physics.rca_path.min(0) - pad - org) / sp).astype(int), 0, np.array(hu.shape))
    hi = np.clip(np.ceil((physics.rca_path.max(0) + pad - org) / sp).astype(int) + 1, 0, np.array(hu.shape))
    if np.any(hi <= lo):
        return hu
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    sub = hu[box]
    direction = np.asarray(physics.motion_dir) / sp  # voxels per mm of motion
    blurred = np.zeros_like(sub)
    offsets = np.linspace(-0.5, 0.5, 7) * physics.motion_mm
    for o in offsets:
        blurred += ndimage.shift(sub, o * direction, order=1, mode="nearest")
    blurred /= len(offsets)
    w = _points_weight(grid, sub.shape, lo, physics.rca_path, reach_mm)
    out = hu.copy()
    out[box] = (1 - w) * sub + w * blurred
    return out


def svc_streaks(hu: np.ndarray, svc: np.ndarray, body: np.ndarray, grid, physics: Physics, svc_hu: float) -> None:
    """Dark and bright streaks radiating from the dense SVC in its axial slices (in place)."""
    amp = physics.streak_scale * max(svc_hu - 300.0, 0.0)
    if amp <= 0 or not svc.any() or not physics.streak_angles:
        return
    x, y, _ = grid.axes()
    x, y = x[:, :, 0], y[:, :, 0]
    sx, sy = grid.spacing[0], grid.spacing[1]
    for k in np.flatnonzero(svc.any(axis=(0, 1))):
        ij = np.argwhere(svc[:, :, k])
        cx, cy = grid.origin[0] + sx * ij[:, 0].mean(), grid.origin[1] + sy * ij[:, 1].mean()
        r_svc = np.sqrt(len(ij) * sx * sy / np.pi)
        dx, dy = x - cx, y - cy
        r = np.sqrt(dx * dx + dy * dy)
        field = np.zeros_like(r)
        for n, a in enumerate(physics.streak_angles):
            perp = np.abs(dx * np.sin(a) - dy * np.cos(a))
            sign = -1.0 if n % 3 else 0.6  # photon starvation: mostly dark bands, some bright
            field += sign * np.exp(-0.5 * (perp / 1.2) ** 2)
        field *= amp * np.exp(-np.maximum(r - r_svc, 0) / 45.0) * (r > r_svc)
        sl = hu[:, :, k]
        sl[body[:, :, k]] += field[body[:, :, k]]
