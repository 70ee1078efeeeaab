"""Coronary labels for calcium: carried from the CCTA grid to the calcium series, and artery
territories for per-artery scores.

* :func:`labels_on_grid` maps a label map to another series of the same patient through the two
  affines (patient LPS millimetres; the calcium series has its own grid, origin and 3 mm slices).
  Nearest-neighbour sampling at the slice centre and at +-1/3 slice: a thin coronary label that
  the 3 mm slab contains anywhere is kept (coronary labels win over others in a slab).
* :func:`assign_territories`: each lesion goes to the coronary segment label nearest to any of its
  voxels (Euclidean, mm). Within ``max_distance_mm`` (3 mm) it is that segment's plaque; farther,
  up to ``territory_max_mm`` (15 mm), it is assigned to that segment's artery territory and says
  how far it was; beyond that it stays in the total as *unassigned*, with the distance. No lesion
  leaves the total because of the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core.anatomy import CORONARY_LABELS, SEGMENTS_BY_LABEL, Artery


def coronary_mask(labels: np.ndarray) -> np.ndarray:
    """(I, J, K) bool: voxels with a coronary segment lumen label (ids from ``cardiovlm.tools.core.anatomy``)."""
    lo, hi = min(CORONARY_LABELS), max(CORONARY_LABELS)
    if CORONARY_LABELS == tuple(range(lo, hi + 1)):  # a contiguous id range: two compares, not isin
        return (labels >= lo) & (labels <= hi)
    return np.isin(labels, CORONARY_LABELS)


def labels_on_grid(labels: np.ndarray, src_affine: np.ndarray, dst_shape, dst_affine: np.ndarray) -> np.ndarray:
    """``labels`` (on the grid of ``src_affine``) sampled on another grid of the same patient.

    Args:
        labels: (I, J, K) integer label map; src_affine: its (4, 4) voxel -> patient LPS mm.
        dst_shape, dst_affine: the target grid (e.g. the calcium-scoring series).

    Returns:
        (dst_shape) label map, 0 outside the source field of view.
    """
    src_affine, dst_affine = np.asarray(src_affine, float), np.asarray(dst_affine, float)
    if labels.shape == tuple(dst_shape) and np.allclose(src_affine, dst_affine, atol=1e-3):
        return labels
    to_src = np.linalg.inv(src_affine) @ dst_affine

    def sample(dz: float) -> np.ndarray:
        shift = np.eye(4)
        shift[2, 3] = dz
        m = to_src @ shift
        return ndimage.affine_transform(labels, m[:3, :3], offset=m[:3, 3], output_shape=tuple(dst_shape),
                                        order=0, mode="constant", cval=0)

    out = sample(0.0)  # slab centre first, then its upper and lower thirds
    for dz in (-1 / 3, 1 / 3):
        sampled = sample(dz)
        take = coronary_mask(sampled) & ~coronary_mask(out)
        out[take] = sampled[take]
    return out


@dataclass
class Territory:
    segment: str | None  # nearest SCCT segment code, None when no coronary label within reach
    artery: Artery | None  # its artery, None when unassigned
    distance_mm: float | None
    note: str  # how it was assigned, in words


def assign_territories(lesion_ids: np.ndarray, coords: np.ndarray, n: int, labels: np.ndarray, spacing,
                       max_distance_mm: float = 3.0, territory_max_mm: float = 15.0) -> dict[int, Territory]:
    """Territory of each lesion 1..n.

    Args:
        lesion_ids: (V,) lesion id of each voxel in ``coords`` ((V, 3) voxel indices on ``labels``' grid).
        labels: (I, J, K) label map on the scored grid with coronary segment labels.
    """
    coronary = coronary_mask(labels)
    out: dict[int, Territory] = {}
    if n == 0:
        return out
    if not coronary.any():
        for i in range(1, n + 1):
            out[i] = Territory(None, None, None, "unassigned: the label map has no coronary segment")
        return out
    dist, nearest = ndimage.distance_transform_edt(~coronary, sampling=spacing, return_indices=True)
    flat = tuple(coords.T)
    d = dist[flat]
    order = np.lexsort((d, lesion_ids))  # per lesion, its closest voxel first
    first = order[np.r_[True, lesion_ids[order][1:] != lesion_ids[order][:-1]]]
    for v in first:
        i = int(lesion_ids[v])
        at = tuple(int(a[coords[v][0], coords[v][1], coords[v][2]]) for a in nearest)
        seg = SEGMENTS_BY_LABEL[int(labels[at])]
        dm = float(d[v])
        if dm <= max_distance_mm:
            out[i] = Territory(seg.code, seg.artery, dm, f"on the {seg.code} ({dm:.1f} mm from its lumen label)")
        elif dm <= territory_max_mm:
            out[i] = Territory(seg.code, seg.artery, dm,
                               f"{dm:.1f} mm from the nearest coronary label ({seg.code}), beyond the "
                               f"{max_distance_mm:g} mm segment limit: assigned to the {seg.artery} territory")
        else:
            out[i] = Territory(seg.code, None, dm,
                               f"unassigned: {dm:.1f} mm from the nearest coronary label ({seg.code}), beyond the "
                               f"{territory_max_mm:g} mm territory limit; counted in the total only")
    return out
