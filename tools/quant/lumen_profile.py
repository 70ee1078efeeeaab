"""Lumen and vessel wall of a coronary artery read from CT intensities on cross-sections of its centerline.

The centerline (and the label map it came from) only says where to look; every number here comes
from the Hounsfield units. Method, per cross-section (summarised in :data:`AREA_METHOD`):

1. Sampling: the CT is resampled trilinearly (``scipy.ndimage.map_coordinates``) on the plane
   perpendicular to the centerline, along ``n_rays`` rays every ``ray_step_mm`` (0.1 mm) out to
   ``window_mm``, from the unsmoothed CT and from a lightly smoothed copy (``smooth_mm``).
2. Lumen centre: the brightest non-calcium point of the smoothed CT within ``search_mm`` of the
   centerline, smoothed along the path; rays start there (an image-derived centerline may run
   off-centre, and an eccentric plaque pushes the lumen aside).
3. Contrast of this study: lumen attenuation ``L`` = the ``lumen_percentile`` of the per-plane lumen
   peaks along the path; calcium / metal threshold ``T = max(calcium_floor_hu, L + calcium_margin_hu)``.
   A path whose lumen is less than ``min_contrast_hu`` above its surroundings has no contrast-filled
   lumen (:class:`NoLumenFound`): a uniform image, a non-contrast series. A plane's peak contrast is
   read against the nearby lumen (a percentile of the peaks within ``local_lumen_mm``, never above
   ``L``), so the contrast's fall along the vessel is not read as narrowing.
4. Wall: a narrowed lumen lies in plaque, a healthy one in fat. The lumen edge is first sought
   against non-calcified plaque (``wall_start_hu``); where at least ``plaque_ray_fraction`` of the
   rays then meet a wall at least ``wall_min_mm`` thick before the first fat sample, the wall
   attenuation is read on that wall's inner plateau (clear of the lumen's blurred edge), else the
   wall is the fat just beyond the lumen's blurred edge (``blur_margin_mm``), iterated per ray.
5. Lumen boundary along each ray: where the smoothed profile first falls half-way between the
   plane's lumen peak (at most ``L``) and the wall, or climbs towards calcium / metal: at the dip
   before the climb where darker tissue lies between, else half-way between the lumen peak and the
   calcium's top (a blurred step is symmetric), so blooming is never read as lumen. Each ray's
   edge is the median over ``edge_median_rays`` neighbours (a ray grazing a nodule's blur is a spike). The half-maximum radius is corrected for the blur's pull on a curved
   edge (a disk blurred by a Gaussian: :func:`_radius_from_half_max`), the blur sigma measured on
   this path's resolved edges (25-75 % rise).
6. Unresolved lumens: a lumen narrower than about two blur sigmas (the 0.36 mm residual lumen of
   a 90 % stenosis at 1 mm voxels) never reaches full attenuation and its half-maximum contour is the
   blur's, not the lumen's. Its area comes from the peak instead: a disk of radius r blurred by a
   Gaussian keeps ``1 - exp(-r^2 / 2 sigma^2)`` of the lumen-to-wall contrast at its centre. The two
   readings are blended between peak contrasts ``resolved_from`` and ``resolved_full``.
7. Wall composition: samples beyond the lumen's blurred edge up to the first fat sample
   (< ``fat_below_hu``): calcified >= ``T``, non-calcified 30 HU to ``T``, low-attenuation -30 to
   30 HU; the outer vessel boundary is that first fat sample along each ray. A plaque thinner than
   the blur is not resolved and not counted.
8. Metal: a stent where metal (>= ``metal_hu``) rings at least ``stent_ring_fraction`` of the rays
   within 1.5 mm of the lumen boundary (a calcified plaque covers a sector and blooms less, struts
   ring the circumference); metal is not counted as calcium.
"""  # noqa: E501

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, Field
from scipy import ndimage

from cardiovlm.tools.core.errors import CardioVLMError

AREA_METHOD = ("CT resampled on cross-sections perpendicular to the centerline (48 rays, 0.1 mm steps); lumen "
               "boundary along each ray at half maximum between the local lumen peak and the surrounding wall "
               "(plaque plateau or fat), corrected for the measured blur; lumens too narrow to reach full "
               "attenuation sized from their peak contrast (blurred-disk model) against the lumen attenuation of the "
               "vessel's own nearby lumen (30 mm); where a lumen runs straight into calcium, its boundary half-way "
               "between lumen and calcium; calcium and metal (>= max(350 HU, lumen or blood pool + 100 HU)) "
               "excluded from the lumen")
WALL_METHOD = ("wall samples beyond the lumen's blurred edge up to the first fat sample (< -30 HU): calcified "
               ">= calcium threshold, non-calcified 30 HU to the threshold, low-attenuation -30 to 30 HU")
LAP_RANGE_HU = (-30.0, 30.0)  # low-attenuation plaque, below the 30 HU of fibrous tissue, above fat


class NoLumenFound(CardioVLMError):
    """The CT along the path holds no contrast-filled lumen (uniform image, non-contrast series, wrong path)."""

    code = "lumen.not_found"


class CrossSectionConfig(BaseModel):
    """How cross-sections are sampled and read (documented choices, not guideline values)."""

    n_rays: int = Field(48, ge=8, description="rays per cross-section")
    ray_step_mm: float = Field(0.1, gt=0, le=0.25, description="sample spacing along each ray (sub-voxel)")
    window_mm: float = Field(4.5, gt=1, description="ray length: lumen, wall and the fat around them")
    search_mm: float = Field(1.2, ge=0, description="how far from the centerline the lumen centre may lie")
    centre_sigma_mm: float = Field(1.0, ge=0, description="smoothing of the lumen centre along the path")
    smooth_mm: float = Field(0.15, ge=0, description="Gaussian smoothing of the CT for peaks and boundaries "
                             "(the area integral reads the unsmoothed CT)")
    blur_margin_mm: float = Field(1.0, gt=0, description="beyond the half-maximum boundary the lumen's blurred "
                                  "edge still carries contrast for about this far (2 sigma of a 0.5 mm PSF "
                                  "plus the voxel)")
    lumen_percentile: float = Field(60.0, gt=0, le=100, description="percentile of the per-plane lumen peaks "
                                    "taken as this study's lumen attenuation")
    local_lumen_mm: float = Field(30.0, ge=0, description="length of path whose lumen peaks give a plane's "
                                  "own lumen attenuation (0: the study's, for the whole path)")
    lumen_percentile_local: float = Field(75.0, gt=0, le=100, description="percentile of the nearby peaks taken "
                                          "as the local lumen attenuation (a lesion shorter than the window "
                                          "does not lower it)")
    calcium_floor_hu: float = Field(350.0, description="calcium / metal threshold never below this")
    calcium_margin_hu: float = Field(100.0, ge=0, description="calcium / metal threshold above the lumen "
                                     "attenuation (noise and contrast gradients stay below it)")
    min_contrast_hu: float = Field(150.0, gt=0, description="least lumen-minus-surroundings contrast of a "
                                   "contrast-filled coronary lumen")
    fat_below_hu: float = Field(-30.0, description="samples below this are fat: the outer vessel boundary")
    wall_min_mm: float = Field(1.2, gt=0, description="a wall at least this thick (lumen boundary to fat) is "
                               "read at its middle, clear of both blurred edges")
    resolved_from: float = Field(0.75, gt=0, lt=1, description="lumen peak contrast (share of the study's) "
                                 "below which the area is read from the peak alone (unresolved lumen)")
    resolved_full: float = Field(0.95, gt=0, le=1, description="peak contrast from which the half-maximum "
                                 "boundary alone gives the area (resolved lumen); blended in between")
    default_blur_mm: float = Field(0.8, gt=0, description="blur sigma used when no edge along the path is "
                                   "resolved enough to measure it")
    wall_start_hu: float = Field(60.0, description="wall attenuation the boundary search starts from (non-calcified "
                                 "plaque): starting high lets a narrowed lumen's edge be found inside its plaque, and "
                                 "a healthy wall settles to the fat beyond it within the passes")
    pool_ratio: float = Field(2.0, gt=1, description="a blood pool attenuation up to this many times the "
                              "vessel's lumen attenuation raises the calcium threshold (beyond it, it is not blood)")
    lumen_ceiling_hu: float = Field(80.0, gt=0, description="a lumen sample is never brighter than the lumen "
                                    "attenuation plus this (noise); brighter is calcium blooming or another structure")
    merged_ray_fraction: float = Field(0.25, gt=0, le=1, description="share of rays that never reach half "
                                       "maximum from which the lumen is merged with a larger bright structure")
    occlusion_sigma_mm: float = Field(1.0, ge=0, description="the centre contrast is averaged along the path "
                                      "(Gaussian sigma) before it is compared with occluded_below")
    occluded_below: float = Field(0.06, ge=0, lt=1, description="contrast of the lumen centre above tissue (the "
                                  "wall, at least non-calcified plaque), as a share of the lumen's, below which a "
                                  "cross-section has no lumen; a 90 % stenosis keeps 2-8 %, so the two overlap in "
                                  "noise at 0.5-1 mm voxels")
    plateau_from_mm: float = Field(0.5, ge=0, description="the wall plateau is read at least this far beyond "
                                   "the lumen boundary")
    plaque_ray_fraction: float = Field(0.75, gt=0, le=1, description="share of rays with a thick wall from "
                                       "which the lumen is taken to lie in plaque")
    edge_median_rays: int = Field(5, ge=1, description="the boundary radius of each ray is the median over "
                                  "this many neighbouring rays (37.5 degrees at 48 rays), so a ray grazing a bright "
                                  "neighbour does not draw a spike into the lumen")
    dip_fraction: float = Field(0.10, gt=0, lt=1, description="a ray heading into calcium whose profile first "
                                "dips by this share of the lumen's contrast ends at that dip (tissue between lumen "
                                "and calcium); a smaller dip is noise, and the lumen meets the calcium at half-way")
    metal_hu: float = Field(1000.0, description="stent metal: struts bloom to 1200-1800 HU at CCTA resolution, "
                            "calcium to at most ~850 HU on the phantoms (very dense calcium above this is a known "
                            "confusion)")
    stent_ring_fraction: float = Field(0.25, gt=0, le=1, description="share of rays meeting metal that makes "
                                       "a stent (blurred struts reach the metal level on 25-95 % of the rays)")


@dataclass(frozen=True)
class CrossSections:
    """Per cross-section readings along a path (arrays of length N, proximal to distal)."""

    area_mm2: np.ndarray  # lumen area (half-maximum boundary, or the peak where unresolved)
    boundary_mm2: np.ndarray  # area inside the half-maximum boundary (for reference only)
    contrast: np.ndarray  # lumen peak above the wall, as a share of the study's lumen contrast
    outer_area_mm2: np.ndarray  # area inside the outer vessel boundary (first fat sample)
    peak_hu: np.ndarray  # lumen peak of the smoothed CT (calcium excluded)
    wall_hu: np.ndarray  # median local wall attenuation around the lumen
    calcified_mm2: np.ndarray
    noncalcified_mm2: np.ndarray
    low_attenuation_mm2: np.ndarray
    metal_ring: np.ndarray  # share of rays meeting metal near the lumen boundary
    stent: np.ndarray  # bool
    centre_offset_mm: np.ndarray  # lumen centre's distance from the given centerline
    thick_share: np.ndarray  # share of rays meeting a wall thick enough to be plaque
    merged: np.ndarray  # bool: the lumen runs into a larger bright structure here (no area of its own)
    no_lumen: np.ndarray  # bool: no contrast above the wall (occluded, or off the vessel)
    lumen_hu: float
    surroundings_hu: float
    calcium_threshold_hu: float
    blur_sigma_mm: float  # effective blur measured on this path's resolved edges
    in_plaque: np.ndarray  # bool: the lumen lies in a resolved wall (plaque), not directly in fat


def _frame(tangents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors spanning each plane perpendicular to ``tangents`` (N, 3)."""
    helper = np.where(np.abs(tangents[:, [0]]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    u = np.cross(tangents, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u, np.cross(tangents, u)


class _Sampler:
    """Trilinear samples of a cropped CT (raw and smoothed) at LPS mm points."""

    def __init__(self, hu: np.ndarray, affine: np.ndarray, points_mm: np.ndarray, margin_mm: float,
                 smooth_mm: float):
        self.inv = np.linalg.inv(affine[:3, :3])
        self.t = affine[:3, 3]
        spacing = np.linalg.norm(affine[:3, :3], axis=0)
        ijk = (points_mm - self.t) @ self.inv.T
        margin = np.ceil(margin_mm / spacing).astype(int) + 2
        self.lo = np.maximum(np.floor(ijk.min(0)).astype(int) - margin, 0)
        hi = np.minimum(np.ceil(ijk.max(0)).astype(int) + margin + 1, hu.shape)
        if np.any(hi <= self.lo):
            raise NoLumenFound("the vessel's path lies outside the image")
        self.raw = np.asarray(hu[self.lo[0]:hi[0], self.lo[1]:hi[1], self.lo[2]:hi[2]], np.float32)
        self.smooth = (ndimage.gaussian_filter(self.raw, smooth_mm / spacing, mode="nearest")
                       if smooth_mm > 0 else self.raw)
        self.outside = float(np.median(self.raw))

    def __call__(self, pts_mm: np.ndarray, smooth: bool) -> np.ndarray:
        coords = ((pts_mm.reshape(-1, 3) - self.t) @ self.inv.T - self.lo).T
        vol = self.smooth if smooth else self.raw
        out = ndimage.map_coordinates(vol, coords, order=1, mode="nearest")
        return out.reshape(pts_mm.shape[:-1])


def read_cross_sections(hu: np.ndarray, affine: np.ndarray, points_mm: np.ndarray, tangents: np.ndarray,
                        step_mm: float, config: CrossSectionConfig | None = None,
                        blood_hu: float | None = None) -> CrossSections:
    """Lumen area, wall composition and metal on the cross-section at each path point (see module doc).

    Args:
        hu: (I, J, K) CT in Hounsfield units.
        affine: (4, 4) voxel index -> LPS mm.
        points_mm: (N, 3) path points, proximal to distal, ``step_mm`` apart.
        tangents: (N, 3) unit tangents of the path.
        blood_hu: attenuation of the study's blood pool (aorta) when known: the calcium threshold
            is then never below it plus the margin, so a parent vessel or chamber is not calcium.

    Raises:
        NoLumenFound: no contrast-filled lumen along the path.
    """
    cfg = config or CrossSectionConfig()
    n = len(points_mm)
    u, v = _frame(tangents)
    sample = _Sampler(hu, affine, points_mm, cfg.window_mm + cfg.search_mm + 1.0, cfg.smooth_mm)

    # Lumen centre: brightest point near the path, twice (the second pass without calcium/metal).
    g = np.arange(-cfg.search_mm, cfg.search_mm + 1e-9, 0.2)
    gu, gv = np.meshgrid(g, g, indexing="ij")
    disk = np.hypot(gu, gv) <= cfg.search_mm + 1e-9
    gu, gv = gu[disk], gv[disk]
    offsets = gu[None, :, None] * u[:, None, :] + gv[None, :, None] * v[:, None, :]  # (N, G, 3)
    near = sample(points_mm[:, None, :] + offsets, smooth=True)
    first_guess = float(np.median(near.max(1)))  # robust to calcium in fewer than half the planes
    threshold = max(cfg.calcium_floor_hu, first_guess + cfg.calcium_margin_hu)
    near = np.where(near >= min(threshold, first_guess + cfg.lumen_ceiling_hu), -np.inf, near)
    peak_at = near.argmax(1)
    peaks = near[np.arange(n), peak_at]
    finite = np.isfinite(peaks)
    lumen_hu = float(np.percentile(peaks[finite], cfg.lumen_percentile)) if finite.any() else first_guess
    lumen_pool = lumen_hu
    if blood_hu is not None and blood_hu <= cfg.pool_ratio * lumen_hu:
        # A small vessel's blurred peaks stay below the blood's attenuation, which its lumen has.
        lumen_pool = max(lumen_pool, blood_hu)
        lumen_hu = max(lumen_hu, blood_hu - cfg.lumen_ceiling_hu / 2)
    threshold = max(cfg.calcium_floor_hu, lumen_pool + cfg.calcium_margin_hu)
    shift = offsets[np.arange(n), peak_at]
    shift[~finite] = 0.0
    if cfg.centre_sigma_mm > 0 and n > 1:
        shift = ndimage.gaussian_filter1d(shift, cfg.centre_sigma_mm / step_mm, axis=0, mode="nearest")
    centre = points_mm + shift

    # Rays from the lumen centre.
    theta = np.arange(cfg.n_rays) * (2 * np.pi / cfg.n_rays)
    rho = (np.arange(int(round(cfg.window_mm / cfg.ray_step_mm))) + 0.5) * cfg.ray_step_mm
    dirs = np.cos(theta)[None, :, None] * u[:, None, :] + np.sin(theta)[None, :, None] * v[:, None, :]
    pts = centre[:, None, None, :] + rho[None, None, :, None] * dirs[:, :, None, :]  # (N, R, P, 3)
    raw = sample(pts, smooth=False)
    smooth = sample(pts, smooth=True)
    bright = (raw >= threshold) | (smooth >= threshold)

    surroundings = float(np.percentile(smooth[:, :, -int(1.0 / cfg.ray_step_mm):], 25))
    if lumen_hu - surroundings < cfg.min_contrast_hu:
        raise NoLumenFound(
            f"no contrast-filled lumen found along the vessel: its brightest core ({lumen_hu:.0f} HU) is only "
            f"{lumen_hu - surroundings:.0f} HU above its surroundings ({surroundings:.0f} HU), less than the "
            f"{cfg.min_contrast_hu:.0f} HU of a contrast CT angiogram; the vessel could not be measured")

    over = bright | (smooth > max(lumen_hu, lumen_pool) + cfg.lumen_ceiling_hu)
    # The lumen peak is the smoothed CT at the lumen centre (itself the brightest point near the path),
    # averaged over the innermost samples: a maximum over many samples would add the noise's extremes.
    centre_vals = np.where(over, np.nan, smooth)[:, :, rho <= 0.25]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        core = np.nanmean(centre_vals, axis=(1, 2))
    peak = np.minimum(np.where(np.isfinite(core), core, surroundings), lumen_hu)

    # Boundary at half maximum between the lumen peak and the wall that surrounds the lumen. A narrowed
    # lumen sits in plaque, a healthy one in fat: the edge is first looked for against non-calcified
    # plaque (``wall_start_hu``); where most rays then find a wall thick enough to hold a plateau
    # between the two blurred edges (lumen boundary to the first fat sample), the wall is read on that
    # plateau, else the lumen is taken to meet fat and the wall is read just beyond its blurred edge.
    idx = np.arange(len(rho))
    steps = lambda mm: int(round(mm / cfg.ray_step_mm))  # noqa: E731

    def edges(wall, stop=bright):
        level = (peak[:, None] + wall) / 2
        below = (smooth < level[..., None]) | stop
        first = np.where(below.any(2), below.argmax(2), len(rho) - 1)
        fat = (smooth < cfg.fat_below_hu) & (idx[None, None, :] > first[..., None])
        last = np.where(fat.any(2), fat.argmax(2), len(rho) - 1)
        return first, last

    def band_mean(lo_i, hi_i):
        lo_i = np.clip(lo_i, 0, len(rho) - 2)
        hi_i = np.clip(hi_i, lo_i, len(rho) - 1)
        # the wall is darker than the lumen: brighter samples there are blooming or another structure
        in_band = ((idx[None, None, :] >= lo_i[..., None]) & (idx[None, None, :] <= hi_i[..., None]) & ~over
                   & (smooth < peak[:, None, None]))
        cnt = in_band.sum(2)
        mean = (smooth * in_band).sum(2) / np.maximum(cnt, 1)
        return np.where(cnt > 0, mean, np.nan)

    start = np.full((n, cfg.n_rays), min(cfg.wall_start_hu, lumen_hu - 1.0))
    first, last = edges(start)
    thick = (last - first) >= steps(cfg.wall_min_mm)
    # The plateau: the inner part of the wall, clear of the lumen's blurred edge, before the fat's.
    plateau = band_mean(np.maximum(first + (last - first) // 4, first + steps(cfg.plateau_from_mm)),
                        first + (last - first) * 9 // 20)
    plateau = np.where(thick, plateau, np.nan)
    thick_share = thick.mean(1)
    in_plaque = thick_share >= cfg.plaque_ray_fraction
    plaque_hu = np.full(n, np.nan)
    if in_plaque.any():
        with warnings.catch_warnings():  # a plane whose thick rays all met metal has no plateau
            warnings.simplefilter("ignore", RuntimeWarning)
            plaque_hu[in_plaque] = np.nanmedian(np.where(thick, plateau, np.nan)[in_plaque], axis=1)
    in_plaque &= np.isfinite(plaque_hu)
    # Fat side: iterate the half maximum against the wall just beyond the blurred edge.
    wall = np.full((n, cfg.n_rays), surroundings, np.float64)
    for _ in range(3):
        first_f, last_f = edges(wall)
        beyond = band_mean(first_f + steps(cfg.blur_margin_mm), first_f + steps(cfg.blur_margin_mm + 0.5))
        wall = ndimage.uniform_filter1d(np.where(np.isnan(beyond), surroundings, beyond), 5, axis=1, mode="wrap")
        wall = np.minimum(wall, peak[:, None] - 1.0)
    wall[in_plaque] = np.minimum(plaque_hu[in_plaque], peak[in_plaque] - 1.0)[:, None]
    # The final boundary also ends where a ray heads for something brighter than a lumen can be (the
    # lumen attenuation plus ``lumen_ceiling_hu`` of noise: calcium and its blooming, a brighter
    # chamber). Where darker tissue lies between the two (the profile dips by ``dip_fraction`` of the
    # lumen's contrast before the climb), the lumen ends at that valley. Where the lumen runs straight
    # into calcium, the blurred edge between them is symmetric: the boundary lies half-way between the
    # lumen peak and the calcium's top, so the blooming's outer half is not read as lumen and its inner
    # half (the lumen's own blurred edge) is not read as calcium. A side branch of the same attenuation
    # does not stop a ray.
    climbs = np.asarray(over.any(2), bool)
    first_over = np.where(climbs, over.argmax(2), len(rho))
    before = idx[None, None, :] < first_over[..., None]
    valley = np.where(before, smooth - 1e-3 * idx[None, None, :], np.inf).argmin(2)
    valley_hu = np.take_along_axis(smooth, valley[..., None], 2)[..., 0]
    dip = (peak[:, None] - valley_hu) / np.maximum(peak[:, None] - wall, 1.0)
    climb = (idx[None, None, :] >= first_over[..., None]) & (idx[None, None, :] <= first_over[..., None] + steps(1.5))
    top = np.where(climb, smooth, -np.inf).max(2)
    rising = (idx[None, None, :] >= valley[..., None]) & (smooth >= ((peak[:, None] + top) / 2)[..., None])
    midpoint = np.where(rising.any(2), rising.argmax(2), first_over)
    stop_at = np.where(dip >= cfg.dip_fraction, valley, np.minimum(midpoint, first_over + steps(1.5)))
    stop = climbs[..., None] & (idx[None, None, :] >= stop_at[..., None])
    first, last = edges(wall, stop)
    # A lumen's boundary is a smooth closed curve: a ray or two reaching far beyond their neighbours
    # graze something bright (a calcified nodule's blur beside the lumen, a side branch's origin).
    edge = ndimage.median_filter(rho[first], size=(1, cfg.edge_median_rays), mode="wrap")
    # A lumen that never falls to half maximum on many rays runs into a larger bright structure
    # (aorta at an ostium, a parent vessel, a chamber): no lumen area of its own can be read there.
    merged = (first >= len(rho) - 1).mean(1) >= cfg.merged_ray_fraction
    with np.errstate(invalid="ignore"):
        merged |= np.median(wall, 1) > (lumen_hu + surroundings) / 2  # walled by blood, not tissue
    outer = rho[last]
    wall_plane = np.median(wall, 1)
    # Contrast dims along a vessel (the transluminal gradient): the lumen a plane's peak is compared
    # with is the vessel's own nearby lumen (a high percentile of the peaks within ``local_lumen_mm``),
    # never above the study's, so a dimmer distal lumen is not read as a narrower one.
    near_lumen = np.full(n, lumen_hu)
    if cfg.local_lumen_mm > 0 and np.isfinite(core).sum() >= 4:
        filled = np.where(np.isfinite(core), core, np.nanmedian(core))
        size = max(int(round(cfg.local_lumen_mm / step_mm)), 1)
        near_lumen = np.minimum(ndimage.percentile_filter(filled, cfg.lumen_percentile_local, size=size,
                                                          mode="nearest"), lumen_hu)
    contrast = np.clip((np.minimum(peak, near_lumen) - wall_plane) / np.maximum(near_lumen - wall_plane, 1.0),
                       0.0, None)
    sigma = _blur_sigma(smooth, rho, peak, wall, first, contrast, cfg, affine)
    # Resolved lumen: the half-maximum radius, corrected for the blur's pull on a curved edge.
    radius = sigma * _radius_from_half_max(edge / sigma)
    area_hm = 0.5 * (radius ** 2).sum(1) * (2 * np.pi / cfg.n_rays)
    # Unresolved lumen: a blurred disk's centre keeps 1 - exp(-r^2 / 2 sigma^2) of the contrast.
    area_pk = -2 * np.pi * sigma ** 2 * np.log1p(-np.minimum(contrast, 0.99))
    weight = np.clip((contrast - cfg.resolved_from) / (cfg.resolved_full - cfg.resolved_from), 0.0, 1.0)
    area = weight * area_hm + (1 - weight) * area_pk
    da = rho * cfg.ray_step_mm * (2 * np.pi / cfg.n_rays)  # polar area element per sample
    reach = np.minimum(edge + cfg.blur_margin_mm, rho[-1])
    boundary = 0.5 * (edge ** 2).sum(1) * (2 * np.pi / cfg.n_rays)

    metal = raw >= cfg.metal_hu
    ring = (metal & (rho[None, None, :] <= edge[..., None] + 1.5)).any(2).mean(1)
    in_wall = (rho[None, None, :] > reach[..., None]) & (rho[None, None, :] <= outer[..., None])
    in_vessel = rho[None, None, :] <= outer[..., None] + 0.3
    calcified = ((bright & ~metal & in_vessel) * da).sum((1, 2))
    calcified[ring >= cfg.stent_ring_fraction] = 0.0  # a stent's metal and blooming are not calcium
    noncal = (((raw >= LAP_RANGE_HU[1]) & ~bright & in_wall) * da).sum((1, 2))
    lap = (((raw >= LAP_RANGE_HU[0]) & (raw < LAP_RANGE_HU[1]) & in_wall) * da).sum((1, 2))
    # No lumen: no contrast above the wall (averaged along the path), where the lumen is neither merged
    # with a bright neighbour nor hidden by a stent's metal.
    # The occlusion test reads the unsmoothed CT over the central 0.5 mm (the lumen centre is already
    # smoothed along the path), averaged along the path: a maximum would add the noise's extremes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre_raw = np.nanmean(np.where(over, np.nan, raw)[:, :, rho <= 0.5], axis=(1, 2))
    centre_raw = np.where(np.isfinite(centre_raw), centre_raw, wall_plane)
    # An occluded lumen holds tissue at least as dense as non-calcified plaque, whatever wall was read.
    tissue = np.maximum(wall_plane, cfg.wall_start_hu)
    centre_contrast = (centre_raw - tissue) / np.maximum(lumen_hu - tissue, 1.0)
    no_lumen = ((_along(centre_contrast, cfg.occlusion_sigma_mm / step_mm) < cfg.occluded_below) & ~merged
                & (ring < cfg.stent_ring_fraction))
    return CrossSections(
        area_mm2=area, boundary_mm2=boundary, blur_sigma_mm=sigma, contrast=contrast,
        outer_area_mm2=0.5 * (outer ** 2).sum(1) * (2 * np.pi / cfg.n_rays),
        peak_hu=peak, wall_hu=np.median(wall, 1), calcified_mm2=calcified, noncalcified_mm2=noncal,
        low_attenuation_mm2=lap, metal_ring=ring, stent=ring >= cfg.stent_ring_fraction,
        centre_offset_mm=np.linalg.norm(shift, axis=1), in_plaque=in_plaque, thick_share=thick_share,
        merged=merged, no_lumen=no_lumen, lumen_hu=lumen_hu, surroundings_hu=surroundings,
        calcium_threshold_hu=threshold)


def _half_max_table(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(half-maximum radius, disk radius), both in sigmas, of a disk blurred by a Gaussian of sigma 1.

    The blurred disk at distance rho from its centre is the non-central chi-square CDF
    ``ncx2.cdf(r^2, 2, rho^2)``; its half-maximum contour lies inside the disk edge by ~sigma^2 / 2r and
    never below 1.18 sigma (the Gaussian's half width), however small the disk.
    """
    from scipy.stats import ncx2

    radii = np.linspace(0.02, 12.0, n)
    rho = np.linspace(0.0, 14.0, 2801)
    half = []
    for r in radii:
        prof = ncx2.cdf(r * r, 2, rho * rho)
        half.append(rho[np.argmax(prof < prof[0] / 2)])
    return np.asarray(half), radii


_HALF_MAX, _DISK = _half_max_table()


def _radius_from_half_max(half_max_sigmas: np.ndarray) -> np.ndarray:
    """Disk radius (sigmas) whose blurred half-maximum contour lies at ``half_max_sigmas``; 0 below 1.18."""
    r = np.interp(half_max_sigmas, _HALF_MAX, _DISK, left=0.0, right=np.nan)
    return np.where(np.isnan(r), half_max_sigmas, r)


def _blur_sigma(smooth, rho, peak, wall, first, contrast, cfg: CrossSectionConfig, affine) -> float:
    """Effective blur (Gaussian sigma, mm) of the smoothed CT, from the 25-75 % rise of resolved lumen edges."""
    sel = contrast >= 0.95
    if sel.sum() < 4:
        return cfg.default_blur_mm
    prof = smooth[sel]
    rel = (prof - wall[sel][..., None]) / np.maximum(peak[sel][:, None, None] - wall[sel][..., None], 1.0)
    idx = np.arange(len(rho))
    inner = idx[None, None, :] <= first[sel][..., None] + int(round(1.5 / cfg.ray_step_mm))
    r75 = rho[np.argmax((rel < 0.75) & inner, axis=2)]
    r25 = rho[np.argmax((rel < 0.25) & inner, axis=2)]
    width = (r25 - r75) / 1.349
    ok = (width > 0) & (r75 > 0.5)
    if ok.sum() < 8:
        return cfg.default_blur_mm
    return float(np.median(width[ok]))


def _along(values: np.ndarray, sigma_planes: float) -> np.ndarray:
    """Gaussian smoothing along the path (``sigma_planes`` in plane steps; 0: none)."""
    if sigma_planes <= 0 or len(values) < 2:
        return values
    return ndimage.gaussian_filter1d(values, sigma_planes, mode="nearest")
