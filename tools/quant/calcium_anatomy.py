"""Non-coronary calcium on a non-contrast calcium-scoring series, found from the image itself.

Every candidate voxel (>= 130 HU) gets a reason code: 0 = may be coronary calcium, else why not.
Rules, in order (a later rule never clears an earlier one):

1. **Bone.** 3D connected (26-neighbour) regions >= 130 HU of at least ``bone_min_volume_mm3``
   (2,000 mm^3): vertebral bodies and sternum are tens of millilitres, a coronary calcification a
   few hundred mm^3 at most. Where a heart is found (rule 2), a region cut by the in-plane edge of
   the field of view is bone too: it goes on outside the field, so its volume is unknown, and the
   field is centred on that heart (on realistic phantoms, as on real CT, only the front of each
   vertebral body is in the field, 10-250 mm^3 a piece). Bone voxels and a ``bone_margin_mm`` shell around them (the
   cortex blur) are excluded.
2. **Heart region.** Soft tissue (1 mm Gaussian > -40 HU) without bone is eroded by
   ``heart_erosion_mm`` (6 mm, a Euclidean distance transform, so thin chest-wall and vessel
   bridges break); the largest piece not touching the in-plane edge of the image (the chest wall
   does) is the heart with its great vessels. Where the heart touches the chest wall, the aorta
   or the spine over a broad front (real CT, realistic phantoms), every piece reaches the edge:
   the erosion then deepens in ``heart_erosion_step_mm`` steps up to ``heart_erosion_max_mm``, as
   the heart is thicker than any bridge to the chest wall. It is dilated back by the same distance (an opening),
   its holes filled slice by slice, and grown by ``heart_margin_mm`` (10 mm) to take in the
   epicardial fat where the coronaries run. A lesion with less than half its voxels in this region
   (ribs, chest wall, descending aorta beside the spine, lung) is excluded.
3. **Stent metal.** A lesion whose peak reaches ``metal_core_hu`` (1,000 HU) over a core of at
   least ``metal_core_extent_mm`` (6 mm) is a stent: calcium does not hold that attenuation over a
   long core at 3 mm slices (phantom stents measure 1,120-1,710 HU peaks with 7-18 mm cores, the
   densest phantom calcium 900 HU). The lesion is split by a watershed on HU from its maxima
   (h-maxima, ``watershed_h_hu`` prominence): basins flooded from a peak of metal attenuation, or
   from a peak above half the stent's peak, are strut and bloom; basins of other peaks (calcium
   touching the stent) stay candidates.
4. **Inside the heart.** The coronary arteries are epicardial: a lesion whose every voxel lies
   deeper than ``intracardiac_depth_mm`` (8 mm) inside the heart's soft tissue is in a valve,
   the annulus or the aortic root, not in a coronary artery.
5. **Labelled structures** (when a label map is given, e.g. the image-derived tree carried from
   the CCTA): voxels inside the aorta, aortic root, heart chambers, pulmonary artery, bone or a
   labelled extracoronary calcification are excluded voxel by voxel, so coronary calcium that
   touches them keeps its own voxels.

6. **Aortic root traced in the image.** In the top slice of the heart region, round soft-tissue
   vessels of at least ``aorta_min_radius_mm`` (9 mm; in-plane distance transform maxima) more
   than 25 mm from bone are the great vessels; the one furthest to the patient's right is the
   ascending aorta (the pulmonary trunk lies to its left, the descending aorta against the spine).
   It is followed down slice by slice while it stays round and of similar radius; where it widens
   into the heart the root begins. Calcium peaking within the aorta's radius + 10 mm, from 8 mm
   above to 15 mm below that level, is aortic valve or root calcium (split from touching calcium
   by the watershed above). Measured on phantoms: the nearest coronary calcium lay 20 mm beyond
   that radius, aortic-valve calcium within 0-9 mm of it.

Limits, stated in every result: without a label map the aortic valve is excluded only by its
depth and the traced root (ostial left main or RCA calcium inside that zone is excluded with it),
and mitral-annulus calcium at the base of the wall can be counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME

REASONS = {
    1: "bone (a large calcified structure: spine, sternum or rib)",
    2: "outside the heart region found in the image",
    3: "coronary stent metal and its blooming",
    4: "inside the heart (deeper than the epicardial coronaries run): valve, annulus or aortic root",
    5: "inside a labelled non-coronary structure",
    6: "at the aortic root traced in the image (aortic valve or root calcium)",
}
NON_CORONARY_STRUCTURES = ("aorta", "aortic_root", "lv_blood", "rv_blood", "la_blood", "ra_blood",
                           "pulmonary_artery", "spine", "sternum", "extracoronary_calcification")


@dataclass(frozen=True)
class AnatomyConfig:
    threshold_hu: float = 130.0
    bone_min_volume_mm3: float = 2000.0  # bigger than any coronary calcification, smaller than a vertebra
    bone_margin_mm: float = 2.0  # cortex blur around bone
    soft_tissue_hu: float = -40.0  # above: soft tissue, blood, bone (1 mm Gaussian); below: fat, lung, air
    heart_erosion_mm: float = 6.0  # breaks the heart from the chest wall and thin bridges
    heart_erosion_step_mm: float = 3.0  # deeper erosion while every piece still reaches the image edge
    heart_erosion_max_mm: float = 18.0  # no deeper: a heart's half-thickness is 40+ mm, the chest wall's bridges less
    heart_margin_mm: float = 10.0  # epicardial fat band where the coronaries run
    metal_core_hu: float = 1000.0  # stent metal at 3 mm slices; calcium does not reach it over a long core
    metal_core_extent_mm: float = 6.0  # a stent core is long (8-38 mm stents), a calcium core compact
    watershed_h_hu: float = 80.0  # prominence of a separate peak (4+ noise SD of a calcium-scoring series)
    intracardiac_depth_mm: float = 8.0  # deeper inside the heart's soft tissue: not epicardial
    region_pixel_mm: float = 1.0  # in-plane pixel on which the heart region is outlined
    aorta_min_radius_mm: float = 9.0  # ascending aorta in the top slice: a round vessel at least this wide
    aorta_spine_gap_mm: float = 25.0  # a round vessel this close to bone is the descending aorta
    aorta_step_window_mm: float = 8.0  # how far the aorta's centre may move from one slice to the next
    aortic_root_margin_mm: float = 10.0  # root and sinuses bulge beyond the ascending aorta's radius
    aortic_root_above_mm: float = 8.0  # zone above the level where the round aorta meets the heart
    aortic_root_below_mm: float = 15.0  # and below it, down to the valve


@dataclass
class NonCoronary:
    """Per-voxel reason codes (0 = candidate) and what was found, with the method in words."""

    reason: np.ndarray  # (I, J, K) uint8, codes of REASONS; 0 where a voxel may be coronary calcium
    heart_region: np.ndarray  # (I, J, K) bool
    heart_found: bool
    labelled_names: dict  # label id -> display name of the structures rule 5 excludes
    method: str


def _edt(mask: np.ndarray, spacing) -> np.ndarray:
    return ndimage.distance_transform_edt(mask, sampling=spacing)


def heart_region(hu: np.ndarray, spacing, bone: np.ndarray, config: AnatomyConfig) -> tuple[np.ndarray, np.ndarray, bool]:  # noqa: E501
    """(region, heart soft tissue, found): the heart found from HU, see rule 2 of the module doc."""
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), [1.0 / s for s in spacing])
    soft = (smooth > config.soft_tissue_hu) & ~bone
    depth = _edt(soft, spacing)
    # in-plane distance to just outside the field: tissue leaving the field (chest wall, back) is no
    # deeper than its distance to the edge, or its core would run along the edge at any erosion
    ii = np.minimum(np.arange(hu.shape[0]) + 1, hu.shape[0] - np.arange(hu.shape[0])) * spacing[0]
    jj = np.minimum(np.arange(hu.shape[1]) + 1, hu.shape[1] - np.arange(hu.shape[1])) * spacing[1]
    border = np.minimum(ii[:, None], jj[None, :])[:, :, None]
    erosion, deeper = config.heart_erosion_mm, False
    while True:
        core = (np.minimum(depth, border) if deeper else depth) > erosion
        labels, n = cc3d.connected_components(core, connectivity=6, return_N=True)
        inner = np.bincount(labels.ravel(), minlength=n + 1)
        inner[0] = 0
        rim = np.broadcast_to(border <= (erosion if deeper else 0.0) + 1.01 * max(spacing[:2]), labels.shape)
        inner[np.unique(labels[rim])] = 0  # pieces reaching the field's edge: chest wall, back
        deeper = True
        if n and inner.max() > 0:
            break
        erosion += config.heart_erosion_step_mm
        if n == 0 or erosion > config.heart_erosion_max_mm:  # every piece reaches the image edge: no heart
            return np.ones(hu.shape, bool), np.zeros(hu.shape, bool), False
    best = int(np.argmax(inner))
    heart = (_edt(labels != best, spacing) <= erosion) & soft
    heart = np.stack([ndimage.binary_fill_holes(heart[:, :, k]) for k in range(heart.shape[2])], axis=2)
    region = _edt(~heart, spacing) <= config.heart_margin_mm
    return region, heart, True


def _basins(sub: np.ndarray, comp: np.ndarray, h_hu: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Watershed of one candidate region on HU from its h-maxima: (basin ids, marker ids, n)."""
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    markers, n = ndimage.label(h_maxima(sub, h_hu) & comp, structure=np.ones((3, 3, 3)))
    if n == 0:
        return np.where(comp, 1, 0), np.where(comp & (sub == sub.max()), 1, 0), 1
    return watershed(-sub, markers, mask=comp), markers, n


def _stent_split(hu: np.ndarray, comp: np.ndarray, box, config: AnatomyConfig, spacing) -> np.ndarray | None:
    """Stent voxels of one candidate region (bool, box-shaped), or None when it holds no stent."""
    sub = np.where(comp, hu[box].astype(np.float32), np.float32(config.threshold_hu - 1))
    peak = float(sub.max())
    core = comp & (sub >= config.metal_core_hu)
    if not core.any():
        return None
    pts = np.argwhere(core) * np.asarray(spacing)
    if np.linalg.norm(pts.max(0) - pts.min(0)) < config.metal_core_extent_mm:
        return None
    basins, markers, n = _basins(sub, comp, config.watershed_h_hu)
    marker_peak = ndimage.maximum(sub, markers, index=np.arange(1, n + 1))
    metal = np.zeros(n + 1, bool)
    metal[1:] = marker_peak >= min(config.metal_core_hu, 0.5 * peak)
    return metal[basins] & comp


def _labelled_split(hu: np.ndarray, comp: np.ndarray, inside: np.ndarray, box, config: AnatomyConfig) -> np.ndarray:
    """Voxels of one candidate region that belong to calcium peaking inside a labelled structure:
    the labelled voxels and the blur around them, split from touching coronary calcium at the
    saddle between the two peaks."""
    sub = np.where(comp, hu[box].astype(np.float32), np.float32(config.threshold_hu - 1))
    basins, markers, n = _basins(sub, comp, config.watershed_h_hu)
    bad = np.zeros(n + 1, bool)
    bad[1:] = ndimage.maximum(inside & (markers > 0), markers, index=np.arange(1, n + 1)) > 0
    return (bad[basins] & comp) | inside


def trace_aortic_root(hu: np.ndarray, spacing, bone: np.ndarray, region: np.ndarray,
                      config: AnatomyConfig) -> tuple[np.ndarray | None, str]:
    """Zone of the aortic root and valve, traced down the ascending aorta (rule 6 of the module doc).

    Returns ``(zone, text)``: a bool mask (None when no ascending aorta is found) and what was found.
    """
    smooth = ndimage.gaussian_filter(hu.astype(np.float32), [1.0 / s for s in spacing])
    soft = (smooth > config.soft_tissue_hu) & ~bone
    near_bone = (_edt(~bone, spacing) <= config.aorta_spine_gap_mm) if bone.any() else np.zeros(hu.shape, bool)
    levels = np.flatnonzero(region.any(axis=(0, 1)))
    if not len(levels):
        return None, "no ascending aorta traced"
    top = int(levels[-1])
    ring = _edt(soft[:, :, top], spacing[:2])
    size = max(3, int(round(config.aorta_min_radius_mm / spacing[0])))
    peaks = np.argwhere((ring == ndimage.maximum_filter(ring, size=size)) & (ring >= config.aorta_min_radius_mm)
                        & region[:, :, top] & ~near_bone[:, :, top])
    if not len(peaks):
        return None, "no ascending aorta traced (no round vessel of aortic size in the top slice)"
    # The ascending aorta lies to the patient's right of the pulmonary trunk (smaller i in LPS);
    # the descending aorta lies against the spine and was left out above.
    i, j = peaks[np.argmin(peaks[:, 0])]
    track = [(int(i), int(j), top, float(ring[i, j]))]
    w = int(np.ceil(config.aorta_step_window_mm / spacing[0]))
    for k in range(top - 1, -1, -1):
        ring = _edt(soft[:, :, k], spacing[:2])
        i0, j0 = track[-1][0], track[-1][1]
        lo_i, lo_j = max(i0 - w, 0), max(j0 - w, 0)
        sub = ring[lo_i:i0 + w + 1, lo_j:j0 + w + 1]
        a, b = np.unravel_index(int(np.argmax(sub)), sub.shape)
        radius, typical = float(sub[a, b]), float(np.median([t[3] for t in track]))
        if not 0.7 * typical <= radius <= 1.4 * typical:
            break  # the round aorta widens into the heart: the root starts here
        track.append((lo_i + a, lo_j + b, k, radius))
    ci, cj, ck, _ = track[-1]
    radius = float(np.median([t[3] for t in track]))
    ii = (np.arange(hu.shape[0]) - ci) * spacing[0]
    jj = (np.arange(hu.shape[1]) - cj) * spacing[1]
    zz = (np.arange(hu.shape[2]) - ck) * spacing[2]
    disk = ii[:, None] ** 2 + jj[None, :] ** 2 <= (radius + config.aortic_root_margin_mm) ** 2
    span = (zz >= -config.aortic_root_below_mm) & (zz <= config.aortic_root_above_mm)
    zone = disk[:, :, None] & span[None, None, :]
    return zone, (f"ascending aorta traced over {len(track)} slices (radius {radius:.0f} mm) to its root at slice "
                  f"{ck}")


def find_noncoronary(hu: np.ndarray, spacing, labels: np.ndarray | None = None,
                     config: AnatomyConfig = AnatomyConfig()) -> NonCoronary:
    """Reason code per voxel for every candidate >= ``config.threshold_hu``; see the module doc."""
    spacing = tuple(float(s) for s in spacing)
    voxel_mm3 = float(np.prod(spacing))
    cand = hu >= config.threshold_hu
    comps, n = cc3d.connected_components(cand, connectivity=26, return_N=True)
    reason = np.zeros(hu.shape, np.uint8)
    volume = np.bincount(comps.ravel(), minlength=n + 1) * voxel_mm3
    volume[0] = 0
    big = volume >= config.bone_min_volume_mm3
    bone = big[comps]
    if bone.any():  # in-plane margin: slices are thicker than the cortex blur
        r = [int(np.floor(config.bone_margin_mm / s)) for s in spacing[:2]]
        di, dj = np.mgrid[-r[0]:r[0] + 1, -r[1]:r[1] + 1]
        disk = ((di * spacing[0]) ** 2 + (dj * spacing[1]) ** 2 <= config.bone_margin_mm ** 2)[:, :, None]
        bone = ndimage.binary_dilation(bone, structure=disk)
    reason[cand & bone] = 1

    # The heart is outlined on a grid of about 1 mm pixels: its margins are many mm, and distance
    # transforms of a 512 x 512 series at 0.4 mm would take most of the time.
    step = max(1, int(round(config.region_pixel_mm / min(spacing[:2]))))
    coarse = (spacing[0] * step, spacing[1] * step, spacing[2])
    region, heart, found = heart_region(hu[::step, ::step], coarse, bone[::step, ::step], config)
    depth = _edt(heart, coarse)
    root, root_text = (trace_aortic_root(hu[::step, ::step], coarse, bone[::step, ::step], region, config) if found
                       else (None, "no ascending aorta traced (no heart found)"))
    if root is None:
        root = np.zeros(region.shape, bool)
    if step > 1:
        ii, jj = np.arange(hu.shape[0]) // step, np.arange(hu.shape[1]) // step
        region, heart, depth, root = (a[ii][:, jj] for a in (region, heart, depth, root))
    slices = ndimage.find_objects(comps)
    stents = 0
    for i, box in enumerate(slices, start=1):
        if box is None or big[i]:
            continue
        comp = comps[box] == i
        r = reason[box]
        if found and any(b.start == 0 or b.stop == size for b, size in zip(box[:2], hu.shape[:2])):
            r[comp & (r == 0)] = 1  # cut by the field's edge, in a field centred on the heart: bone
            continue
        if (region[box][comp]).mean() < 0.5:
            r[comp & (r == 0)] = 2
            continue
        stent = _stent_split(hu, comp, box, config, spacing)
        if stent is not None:
            r[stent & (r == 0)] = 3
            stents += 1
            comp = comp & ~stent
            if not comp.any():
                continue
        at_root = root[box] & comp
        if at_root.any():
            r[_labelled_split(hu, comp & (r == 0), at_root & (r == 0), box, config) & (r == 0)] = 6
            comp = comp & (r == 0)
            if not comp.any():
                continue
        if depth[box][comp].min() > config.intracardiac_depth_mm:
            r[comp & (r == 0)] = 4

    names: dict[int, str] = {}
    if labels is not None:
        ids = [STRUCTURES_BY_NAME[s].label_id for s in NON_CORONARY_STRUCTURES]
        inside = cand & np.isin(labels, ids) & (reason == 0)
        for i in np.unique(comps[inside]):
            box = slices[i - 1]
            comp = (comps[box] == i) & (reason[box] == 0)
            r = reason[box]
            r[_labelled_split(hu, comp, inside[box] & comp, box, config)] = 5
        for s in NON_CORONARY_STRUCTURES:
            names[STRUCTURES_BY_NAME[s].label_id] = STRUCTURES_BY_NAME[s].display

    method = (f"non-coronary calcium excluded from the image: bone = 3D regions >= {config.threshold_hu:g} HU of "
              f">= {config.bone_min_volume_mm3:g} mm^3 or (heart found) cut by the in-plane edge of the field "
              f"(+{config.bone_margin_mm:g} mm); heart region = the soft tissue (> {config.soft_tissue_hu:g} HU) "
              f"piece left by a {config.heart_erosion_mm:g} mm erosion (deepened up to "
              f"{config.heart_erosion_max_mm:g} mm while every piece reached the image edge), "
              f"opened, hole-filled and grown {config.heart_margin_mm:g} mm"
              f"{'' if found else ' (NOT FOUND: the whole image was searched)'}, lesions with less than half their "
              f"voxels inside excluded; stent = peak >= {config.metal_core_hu:g} HU over a core >= "
              f"{config.metal_core_extent_mm:g} mm, split from touching calcium by a watershed on HU "
              f"(h = {config.watershed_h_hu:g} HU; {stents} found); lesions deeper than "
              f"{config.intracardiac_depth_mm:g} mm inside the heart's soft tissue are valve/annulus calcium; "
              f"aortic root: {root_text}, calcium peaking within its radius + {config.aortic_root_margin_mm:g} mm from "
              f"{config.aortic_root_above_mm:g} mm above to {config.aortic_root_below_mm:g} mm below that level "
              "excluded (ostial left main or RCA calcium there is excluded too)"
              + ("; voxels in labelled aorta, aortic root, chambers, pulmonary artery and bone excluded"
                 if labels is not None else
                 "; no label map: the aortic root and mitral annulus are not outlined, so valve calcium less "
                 f"than {config.intracardiac_depth_mm:g} mm deep may be counted"))
    return NonCoronary(reason=reason, heart_region=region, heart_found=found, labelled_names=names, method=method)
