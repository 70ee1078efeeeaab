"""Vessel centerlines: ordered, smoothed, evenly resampled paths through one or more SCCT segments.

A :class:`VesselPath` runs from proximal (ostium or parent vessel side) to distal in patient LPS
millimetres and knows which segment each of its points lies in. It is built either from a case's
ground-truth :class:`cardiovlm.tools.core.case_format.Centerlines` (the phantom's, exact) or from the lumen mask by
TEASAR skeletonisation (kimimaro); ``source`` says which, so every measurement can state it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENT_PARENT, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.core.errors import CardioVLMError

DEFAULT_STEP_MM = 0.5
PHANTOM_SOURCE = "phantom centerline"
SKELETON_SOURCE = "skeleton of the lumen mask (kimimaro TEASAR)"


class CenterlineError(CardioVLMError):
    """No centerline can be built for the requested vessel (absent from the masks, too short)."""

    code = "centerline.unavailable"


@dataclass(frozen=True)
class VesselPath:
    """A centerline from proximal to distal.

    Attributes:
        points_mm: (N, 3) patient LPS mm, about ``step_mm`` apart along the path.
        arc_mm: (N,) arc length from the first point, mm (0 at the proximal end).
        segments: (N,) SCCT segment code of each point.
        source: how the path was obtained (:data:`PHANTOM_SOURCE` or :data:`SKELETON_SOURCE`).
    """

    points_mm: np.ndarray
    arc_mm: np.ndarray
    segments: np.ndarray
    source: str

    @property
    def length_mm(self) -> float:
        return float(self.arc_mm[-1])

    def tangents(self) -> np.ndarray:
        """(N, 3) unit tangents pointing distally (central differences)."""
        t = np.gradient(self.points_mm, axis=0)
        return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)

    def segment_span(self, code: str) -> tuple[float, float] | None:
        """(start, end) arc length in mm of segment ``code`` on this path, or None when absent."""
        idx = np.flatnonzero(self.segments == code)
        return None if idx.size == 0 else (float(self.arc_mm[idx[0]]), float(self.arc_mm[idx[-1]]))


def resample_polyline(points: np.ndarray, step_mm: float = DEFAULT_STEP_MM) -> tuple[np.ndarray, np.ndarray]:
    """Resample an (N, 3) polyline at even arc-length steps; returns (points (M, 3), arc (M,))."""
    if step_mm <= 0:
        raise ValueError(f"step must be positive, got {step_mm} mm")
    seglen = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], seglen > 1e-9])  # duplicate points would break interpolation
    points = points[keep]
    arc = np.concatenate([[0.0], np.cumsum(seglen[seglen > 1e-9])])
    n = max(int(round(arc[-1] / step_mm)), 1)
    new_arc = np.linspace(0.0, arc[-1], n + 1)
    new = np.stack([np.interp(new_arc, arc, points[:, d]) for d in range(3)], axis=1)
    return new, new_arc


def smooth_polyline(points: np.ndarray, sigma_mm: float, spacing_mm: float) -> np.ndarray:
    """Gaussian smoothing (``sigma_mm``) along a polyline sampled every ``spacing_mm``."""
    if sigma_mm <= 0 or len(points) < 3:
        return points
    return ndimage.gaussian_filter1d(points, sigma=sigma_mm / spacing_mm, axis=0, mode="nearest")


def path_from_centerlines(centerlines: cf.Centerlines, segments: Sequence[str],
                          step_mm: float = DEFAULT_STEP_MM) -> VesselPath:
    """Concatenate ground-truth segment centerlines (given proximal to distal) into one path.

    Segments missing from ``centerlines`` are skipped (e.g. no L-PDA in a right-dominant heart).
    """
    pts, codes = [], []
    for code in segments:
        seg_pts = centerlines.segments.get(code)
        if not seg_pts:
            continue
        xyz = np.array([p.xyz for p in seg_pts], dtype=np.float64)
        pts.append(xyz)
        codes.append(np.full(len(xyz), code, dtype=object))
    if not pts:
        raise CenterlineError(f"the centerlines hold none of the segments {', '.join(segments)}")
    raw, raw_codes = np.concatenate(pts), np.concatenate(codes)
    raw_arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(raw, axis=0), axis=1))])
    points, arc = resample_polyline(raw, step_mm)
    # Each resampled point takes the segment of the nearest original point along the path.
    nearest = np.clip(np.searchsorted(raw_arc, arc), 0, len(raw) - 1)
    return VesselPath(points, arc, raw_codes[nearest].astype(str), centerlines.source)


def path_from_mask(labels: np.ndarray, affine: np.ndarray, segments: Sequence[str],
                   step_mm: float = DEFAULT_STEP_MM, smooth_mm: float = 1.0,
                   boxes: LabelBoxes | None = None) -> VesselPath:
    """Centerline of the lumen of ``segments`` (proximal to distal) by TEASAR skeletonisation.

    Args:
        labels: (I, J, K) label map with ids from ``cardiovlm.tools.core.anatomy``, LPS ``[i, j, k]`` convention.
        affine: (4, 4) voxel index -> LPS mm (axis-aligned grids; the 3x3 part's column norms are
            taken as the voxel spacing).
        segments: SCCT codes along the vessel, proximal first.
        boxes: :func:`label_boxes` of ``labels`` when already computed.

    The proximal end is the skeleton end nearest to the parent segment's lumen (or to the aortic
    root and aorta for an ostial segment such as LM or pRCA); the path follows the longest route
    from there. Pieces of lumen separated by an occlusion are chained distally by straight bridges
    (the bridge is where the lumen is absent, so the occlusion is measured as 0 area there).
    """
    import kimimaro

    ids = [SEGMENTS_BY_CODE[c].label_id for c in segments]
    boxes = label_boxes(labels) if boxes is None else boxes
    present = [i for i in ids if boxes.get(i) is not None]
    if not present:
        raise CenterlineError(f"the label map has no lumen for {', '.join(segments)}")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    lo = np.maximum(np.min([boxes[i][0] for i in present], axis=0) - 2, 0)
    hi = np.minimum(np.max([boxes[i][1] for i in present], axis=0) + 2, labels.shape)
    crop = np.isin(labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], present).astype(np.uint8)
    skels = kimimaro.skeletonize(crop, anisotropy=tuple(spacing), dust_threshold=0, progress=False,
                                 fix_branching=True, fix_borders=True, parallel=1)
    if 1 not in skels or len(skels[1].vertices) < 2:
        raise CenterlineError(f"the lumen of {', '.join(segments)} is too small to trace a centerline")
    skel = skels[1]
    verts_idx = skel.vertices / spacing + lo  # kimimaro vertices are in physical units of the crop
    verts_mm = verts_idx @ affine[:3, :3].T + affine[:3, 3]

    anchor = _proximal_anchor(labels, affine, segments[0], boxes)
    # Each piece loses its blunt ends, so that bridges across an occlusion run along the vessel axis.
    pieces = _chain_longest_paths(verts_mm, skel.edges, anchor)
    raw = np.concatenate([_trim_ends(verts_mm[p], skel.radius[p]) for p in pieces])
    points, arc = resample_polyline(raw, step_mm)
    points = smooth_polyline(points, smooth_mm, step_mm)
    points, arc = resample_polyline(points, step_mm)
    return VesselPath(points, arc, _segments_along(labels, affine, points, segments), SKELETON_SOURCE)


def vessel_path(labels: np.ndarray | None, affine: np.ndarray, segments: Sequence[str],
                centerlines: cf.Centerlines | None = None, step_mm: float = DEFAULT_STEP_MM,
                boxes: LabelBoxes | None = None) -> VesselPath:
    """The phantom centerline when ``centerlines`` covers the segments, else one traced from ``labels``."""
    if centerlines is not None and any(centerlines.segments.get(c) for c in segments):
        return path_from_centerlines(centerlines, segments, step_mm)
    if labels is None:
        raise CenterlineError("no label map and no centerlines: the vessel cannot be traced")
    return path_from_mask(labels, affine, segments, step_mm, boxes=boxes)


def _trim_ends(points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Drop the last lumen radius at each end: TEASAR ends run into the corner of a blunt mask end."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    if arc[-1] < 4 * max(radius.max(), 1e-3):
        return points
    r_start = radius[arc <= min(3.0, arc[-1] / 4)].max()
    r_end = radius[arc >= arc[-1] - min(3.0, arc[-1] / 4)].max()
    keep = (arc >= r_start) & (arc <= arc[-1] - r_end)
    return points[keep] if keep.sum() >= 2 else points


LabelBoxes = dict[int, tuple[np.ndarray, np.ndarray]]


def label_boxes(labels: np.ndarray) -> LabelBoxes:
    """Label id -> (lo, hi) voxel index bounds (hi exclusive) of every label present, in one pass.

    Computed once per label map and passed on, so that nothing scans a full-size study twice.
    """
    boxes = {}
    for n, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None:
            boxes[n] = (np.array([s.start for s in sl]), np.array([s.stop for s in sl]))
    return boxes


def _proximal_anchor(labels: np.ndarray, affine: np.ndarray, first: str, boxes: LabelBoxes) -> np.ndarray | None:
    """LPS mm centroid of where the vessel starts: its parent's lumen, else the aortic root/aorta."""
    parent = SEGMENT_PARENT.get(first)
    candidates = ([SEGMENTS_BY_CODE[parent].label_id] if parent else []) + [
        STRUCTURES_BY_NAME["aortic_root"].label_id, STRUCTURES_BY_NAME["aorta"].label_id]
    for lid in candidates:
        if lid in boxes:
            lo, hi = boxes[lid]
            idx = np.argwhere(labels[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == lid) + lo
            return idx.mean(0) @ affine[:3, :3].T + affine[:3, 3]
    return None


def _chain_longest_paths(verts: np.ndarray, edges: np.ndarray, anchor: np.ndarray | None) -> list[np.ndarray]:
    """Vertex indices of the longest route from the proximal end, one array per sizeable skeleton
    piece (pieces beyond an occlusion follow in distal order)."""
    n = len(verts)
    w = np.linalg.norm(verts[edges[:, 0]] - verts[edges[:, 1]], axis=1) + 1e-6
    graph = coo_matrix((np.r_[w, w], (np.r_[edges[:, 0], edges[:, 1]], np.r_[edges[:, 1], edges[:, 0]])),
                       shape=(n, n)).tocsr()
    degree = np.diff(graph.indptr)
    ends = np.flatnonzero(degree <= 1)
    if anchor is None:  # no parent and no aorta in the label map: start at the first skeleton end
        start = int(ends[0]) if len(ends) else 0
    else:
        start = int(ends[np.argmin(np.linalg.norm(verts[ends] - anchor, axis=1))]) if len(ends) else 0
    visited = np.zeros(n, bool)
    pieces: list[np.ndarray] = []
    while True:
        dist, pred = dijkstra(graph, indices=start, return_predecessors=True)
        reach = np.isfinite(dist)
        far = int(np.argmax(np.where(reach, dist, -1)))
        route = [far]
        while route[-1] != start:
            route.append(int(pred[route[-1]]))
        pieces.append(np.asarray(route[::-1]))
        visited |= reach
        # Next piece (beyond an occlusion): the nearest unvisited skeleton end, if the piece is sizeable.
        rest = np.flatnonzero(~visited & (degree <= 1))
        if not len(rest):
            break
        nxt = int(rest[np.argmin(np.linalg.norm(verts[rest] - verts[far], axis=1))])
        piece = np.isfinite(dijkstra(graph, indices=nxt))
        span = np.ptp(verts[piece], axis=0).max() if piece.sum() > 1 else 0.0
        visited |= piece
        if span >= 2.0:  # skip specks of lumen under 2 mm
            start = nxt
        elif not np.any(~visited & (degree <= 1)):
            break
    return pieces


def _segments_along(labels: np.ndarray, affine: np.ndarray, points: np.ndarray,
                    segments: Sequence[str]) -> np.ndarray:
    """Segment code per point: the nearest lumen voxel of one of ``segments`` (carried over gaps)."""
    ids = np.array([SEGMENTS_BY_CODE[c].label_id for c in segments])
    ijk = (points - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    # Index of the nearest lumen voxel, looked up in a crop around the path (memory stays small).
    lo = np.maximum(np.floor(ijk.min(0)).astype(int) - 4, 0)
    hi = np.minimum(np.ceil(ijk.max(0)).astype(int) + 5, labels.shape)
    sub = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
    _, nearest = ndimage.distance_transform_edt(~np.isin(labels[sub], ids), return_indices=True)
    v = np.clip(np.rint(ijk).astype(int) - lo, 0, np.array(hi) - lo - 1)
    near = nearest[:, v[:, 0], v[:, 1], v[:, 2]].T + lo
    found = labels[near[:, 0], near[:, 1], near[:, 2]]
    code_of = {SEGMENTS_BY_CODE[c].label_id: c for c in segments}
    return np.array([code_of.get(int(f), segments[0]) for f in found], dtype=str)
