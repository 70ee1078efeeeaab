"""The coronary tree of a contrast CT, found from its intensities alone: lumen, centerlines and SCCT segments.

Nothing here reads a label map, centerlines or findings shipped with a study: a phantom's ground
truth only grades this module (``benchmarks/coronary_tree.py``). The method is classical image
analysis, stated in every result (:data:`METHOD`):

1. **Contrast levels** from the image: bone is its thin dense cortex and what the cortex encloses
   (a solid lake of dense contrast, as in the superior vena cava, is not bone); the cardiac blood
   pool is the largest bright structure that is not bone (an opening removes everything thinner
   than ``opening_radius_mm``); the lumen level is a
   high percentile of the brightest large structure of even attenuation (the left heart and aorta,
   whose blood fills the coronaries; not a larger, dimmer right heart, nor a right atrium where
   dense contrast mixes in) and the fat level the histogram peak between -200 and 0 HU.
2. **Bright tubes**: voxels above the half-maximum between fat and lumen (the usual CT lumen edge),
   minus the opened blood pool and bone, within ``heart_margin_mm`` of the blood pool. A watershed
   from the voxels above a stricter level splits tubes from the thin rims of chambers they touch
   through partial volume.
3. **Which tubes are coronaries**: long, thin pieces that touch the blood pool at most at one end
   (a chamber rim or trabeculation touches it along its length; a piece whose skeleton touches large
   bright structures along ``rim_contact_fraction`` of it and runs straight is a great vessel's
   partial-volume rim and is dropped; so is a piece with no fat beside most of its skeleton: coronaries
   run in the epicardial fat, a chamber's bright inner rim against myocardium; and one with lung beside
   most of it, a pulmonary vessel). The two longest
   touching pieces whose contact points lie mostly left-right of each other are the left and right trees
   (left by patient position); pieces cut off by a tight stenosis or an
   occlusion are joined to the nearest tree end within ``max_gap_mm`` when the CT along the gap stays
   above fat with fat beside it (plaque in the epicardial fat, not a way through the myocardium), and
   never through aortic blood from one vessel's entry into the root to another's.
   A system coming within ``attach_mm`` of the left ostium is a branch whose origin the left main's
   opening hid (and maybe a proximal lesion cut off): it joins the left tree along the CT's
   least-cost path (skimage ``MCP_Geometric``) when that path is no long detour.
4. **Centerlines** by TEASAR skeletonisation (kimimaro), rooted at the ostium.
5. **SCCT segments by anatomical rules**: the left main ends at the first major bifurcation; of its
   branches the most anterior is the LAD, the most posterior the circumflex, one between them the
   ramus; diagonals are the LAD's leftward side branches, obtuse marginals the circumflex's side
   branches; the RCA's acute margin is its rightmost point and its crux the last major bifurcation,
   whose branch ending nearer the apex (the LAD's end) is the PDA. Where a rule finds no branch, a
   stated fraction of the vessel's length is used instead and the segment's confidence says so.

Confidence per segment (0-1): 0.9 when its ends come from branch points, 0.6 when from a length
fraction, 0.4 for a piece joined across a gap; lowered when the tree is short.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from skimage.morphology import convex_hull_image

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.centerline import resample_polyline

METHOD = ("coronary tree from CT intensities: half-maximum lumen threshold, opened blood pool removed, "
          "watershed-split tubes in the epicardial fat touching the aortic root, TEASAR centerlines (kimimaro), "
          "SCCT segments by anatomical branching rules")
SOURCE = "image-derived coronary tree"
OSTIA_SPAN_MM = (8.0, 60.0)  # left and right coronary ostia on one aortic root (root diameter 25-40 mm)
# the right ostium faces the patient's right, the left one the left: most of the way between them is
# left-right (0.88-0.95 of it between the 16 phantom ostia measured); the proximal ends of the
# circumflex and of a LAD the opening cut off lie one above the other (0.45 on realistic phantom 9100,
# where that pair outweighed the true one)
OSTIA_LATERAL = 0.6
CENTERLINE_SOURCE = "image-derived centerline (TEASAR skeleton of the tubes found in the CT)"


class CoronaryTreeError(StudyError):
    """No coronary tree could be found in the image."""

    code = "tree.not_found"


@dataclass(frozen=True)
class TreeConfig:
    smoothing_mm: float = 0.5  # Gaussian sigma before thresholding: noise, not anatomy
    opening_radius_mm: float = 3.0  # the left main is <= 5 mm wide: a 6 mm ball never fits a coronary
    lumen_fraction: float = 0.5  # lumen edge at half-maximum between fat and lumen attenuation
    strict_fraction: float = 0.65  # watershed seeds: well inside the lumen, never across partial volume
    heart_margin_mm: float = 25.0  # coronaries lie on the epicardium, within this of the blood pool
    hessian_sigma_mm: float = 1.0  # scale of a coronary lumen
    tube_eigen_ratio: float = 0.4  # a voxel is line-like when its second eigenvalue is >= this x the first
    min_tube_fraction: float = 0.35  # share of line-like voxels for a piece to be a vessel (rims score < 0.25)
    teasar_scale: float = 1.5  # TEASAR invalidation ball: scale x the distance to the boundary + const
    teasar_const_mm: float = 3.0  # ... so a spur shorter than a vessel radius + this is no branch
    min_piece_mm: float = 8.0  # shortest piece worth keeping (bounding-box diagonal)
    rim_contact_fraction: float = 0.8  # a piece touching big structures along this share of its skeleton,
    rim_straight_mm: float = 0.5  # straight (RMS off its axis at most this: left-main stubs measured 0.6-1.1)
    rim_min_mm: float = 12.0  # and this long is the partial-volume rim of a great vessel, not a coronary
    rim_long_mm: float = 40.0  # so is one this long, curved or not (a great vessel's curved rim: phantom 9300)
    fat_reach_mm: float = 2.0  # a coronary runs in epicardial fat: fat lies this close to its centerline
    min_epicardial_fraction: float = 0.5  # share of a piece's skeleton with fat that close (chamber rims: < 0.3)
    lung_hu: float = -400.0  # aerated lung; fat and soft tissue stay above
    max_lung_fraction: float = 0.5  # share of a piece's skeleton with lung within fat_reach_mm (coronaries <= 0.03,
    # pulmonary vessels 0.75-1.0 on realistic phantoms)
    max_gap_mm: float = 20.0  # a piece this far ahead of a vessel end is the vessel beyond a stenosis
    touch_gap_mm: float = 3.0  # pieces this close are joined whatever the direction
    ostia_bridge_mm: float = OSTIA_SPAN_MM[0]  # no bridge this long between two ends touching big structures
    blood_fraction: float = 0.9  # ... through blood this bright (fat 0, lumen 1): across the aortic root
    # (0.91-0.96), never along a lesion, nor a left main the opening hid (bridges there measured <= 0.81)
    attach_mm: float = 40.0  # a vessel this close to the left ostium may be a branch the left main hid (LM 5-15 mm
    # + a proximal segment + a lesion)
    attach_contact_fraction: float = 0.5  # ... touching big structures along at most this share (hidden
    # branches measured 0-0.07, rims of the pulmonary trunk and the LV 0.78-1.0)
    recentre_mm: float = 2.5  # a centerline point moves at most this far onto its lumen's core (0: not moved)
    detour: float = 1.5  # a path back through the CT is at most this x the straight distance (+ 2 mm)
    max_bridge_angle_deg: float = 35.0  # a longer bridge must continue the vessel's direction
    checked_gap_mm: float = 6.0  # a bridge longer than this must have CT support along it
    bridge_fraction: float = 0.25  # along a longer bridge the CT stays above this (fat 0, lumen 1): plaque
    left_main_mm: float = 10.0  # left main length taken when its bifurcation is not seen (SCCT: 5-15 mm)
    major_branch_mm: float = 15.0  # a branch this long (to its farthest end) makes a bifurcation
    side_branch_mm: float = 10.0  # a side branch this long is a diagonal / marginal
    left_dominant_rca_ratio: float = 0.7  # an RCA shorter than this x the circumflex may be non-dominant
    min_blood_hu: float = 150.0  # below this the blood pool is not enhanced: no contrast
    dense_hu: float = 700.0  # bone cortex and undiluted contrast; opacified blood in a chamber stays below
    cortex_reach_mm: float = 2.0  # bone: this close to its cortex (partial volume and smoothing blur it)
    bone_min_mm3: float = 1000.0  # smallest bone cortex (a long stent ~200 mm3, a large calcium nodule ~500)
    bone_share: float = 0.2  # a bright region this much within 2 x cortex_reach_mm of a cortex is marrow
    system_contact_fraction: float = 0.6  # a vessel system >= rim_long_mm touching big structures along more
    # than this share is a chain of rims (coronary systems measured 0.05-0.54, an RCA along the right atrium
    # the highest; a 305 mm chain of right-heart rims 0.68 on realistic lad_stenosis, taken for the RCA)
    chamber_ml: float = 50.0  # an enhanced structure this large is a chamber or the aorta (a sternum
    # the bone test missed measured 34 mL)
    mixing_hu: float = 60.0  # 80th percentile minus median of a chamber's blood above this: contrast mixing


@dataclass
class CoronaryTree:
    """An image-derived coronary tree on the grid of its study.

    ``labels`` holds SCCT segment ids of ``cardiovlm.tools.core.anatomy`` (0 elsewhere); ``centerlines`` per segment,
    proximal to distal, in patient LPS mm, the type phantoms ship their ground truth in.
    """

    labels: np.ndarray
    centerlines: cf.Centerlines
    confidence: dict[str, float]
    ostia: dict[str, tuple[float, float, float]]
    dominance: str | None
    lumen_hu: float
    method: str = METHOD
    warnings: list[str] = field(default_factory=list)

    @property
    def segments(self) -> list[str]:
        return list(self.centerlines.segments)


def _ball(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(np.asarray(radius_vox, float), 0.5)
    n = np.ceil(r).astype(int)
    grid = np.mgrid[-n[0]:n[0] + 1, -n[1]:n[1] + 1, -n[2]:n[2] + 1].astype(float)
    return sum((g / rr) ** 2 for g, rr in zip(grid, r)) <= 1.0 + 1e-6


def _bone(smooth: np.ndarray, enhanced: np.ndarray, spacing: np.ndarray,
          config: TreeConfig) -> tuple[np.ndarray, np.ndarray]:
    """(bone, cortex): the thin dense cortex (> ``dense_hu``) and what it encloses in an axial slice.

    A solid lake of dense voxels at least ``2 x opening_radius_mm`` across is undiluted contrast (the
    superior vena cava at 700-2000 HU), never bone: a cortex is 1-3 mm thick. Judging whole connected
    bright regions instead fails once the sternum, ribs or spine touch an enhanced chamber or the
    dense SVC: aorta, atria and vena cava were then all called bone (realistic phantoms).
    """
    dense = smooth > config.dense_hu
    lake = ndimage.binary_opening(dense, structure=_ball(config.opening_radius_mm / spacing))
    cortex = dense & ~ndimage.binary_dilation(lake, structure=_ball(1.5 / spacing))
    # a stent or a calcified plaque is dense and thin too, but far smaller than a rib or a vertebra
    cortex = cc3d.dust(cortex, threshold=int(config.bone_min_mm3 / np.prod(spacing)), connectivity=26)
    shell = ndimage.binary_dilation(cortex, structure=_ball(config.cortex_reach_mm / spacing))
    inside = np.zeros_like(shell)
    for k in np.flatnonzero(shell.any(axis=(0, 1))):  # marrow lies inside the cortex ring of its axial slice
        ring = shell[:, :, k]
        inside[:, :, k] = ndimage.binary_fill_holes(ring)
        # a ring the field of view cuts open (the spine at the back of a cardiac field) is closed by its hull
        parts, n = ndimage.label(ring)
        m = 5  # voxels: the cortex of a cut bone fades out a few voxels before the image border
        edge = np.unique(np.r_[parts[:m].ravel(), parts[-m:].ravel(), parts[:, :m].ravel(), parts[:, -m:].ravel()])
        for part in edge[edge > 0]:
            inside[:, :, k] |= convex_hull_image(parts == part)
    return inside & enhanced, cortex


def _levels(smooth: np.ndarray, spacing: np.ndarray, config: TreeConfig):
    """(cardiac blood pool mask, bone mask, lumen HU, fat HU) from the image."""
    enhanced = smooth > config.min_blood_hu
    bone, cortex = _bone(smooth, enhanced, spacing, config)
    opened = ndimage.binary_opening(enhanced & ~bone, structure=_ball(config.opening_radius_mm / spacing))
    comps = cc3d.connected_components(opened, connectivity=6)
    sizes = np.bincount(comps.ravel())
    sizes[0] = 0
    near_cortex = ndimage.binary_dilation(cortex, structure=_ball(2 * config.cortex_reach_mm / spacing))
    # marrow the slice-wise filling missed (a ring open at the edge of the field) lies along its cortex
    boned = np.bincount(comps.ravel(), weights=near_cortex.ravel(), minlength=len(sizes))
    is_bone = boned > config.bone_share * np.maximum(sizes, 1)
    is_bone[0] = False
    bone = bone | is_bone[comps]
    blood = [label for label in np.argsort(sizes)[::-1] if sizes[label] and not is_bone[label]]
    if not blood or sizes[blood[0]] * np.prod(spacing) < 20_000:  # < 20 mL: no enhanced heart in view
        raise CoronaryTreeError("no contrast-enhanced cardiac blood pool was found: the coronary tree needs a "
                                "contrast CT angiography of the heart")
    # coronaries carry the left heart's blood: of the large enhanced structures with even attenuation
    # the brightest, not simply the largest: with a realistic thorax the right heart (230 HU) can be
    # larger than the left (365 HU), and a lumen level taken there put the lumen edge at 84 HU, inside
    # the myocardium (phantom 9107); a right atrium where dense contrast mixes in is uneven (80th
    # percentile 90-180 HU above its median, a chamber 20-35 HU) and never sets the level
    levels = {}
    for label in blood:
        if sizes[label] * np.prod(spacing) >= config.chamber_ml * 1000:
            p50, p80 = np.percentile(smooth[comps == label], [50, 80])
            if p80 - p50 <= config.mixing_hu:
                levels[label] = float(p80)
    left = max(levels, key=levels.__getitem__, default=blood[0])
    lumen = float(np.percentile(smooth[comps == left], 80))
    # every enhanced chamber and great vessel (>= 5 mL), not only the largest: the LAD runs over the RV
    pool = np.isin(comps, [label for label in blood if sizes[label] * np.prod(spacing) >= 5_000])
    fat_values = smooth[(smooth > -200) & (smooth < 0)]
    fat = float(np.bincount(np.clip(fat_values + 200, 0, 199).astype(int)).argmax() - 200) if fat_values.size else -90.0
    return pool, bone, lumen, fat


def _tube_pieces(study: Study, config: TreeConfig):
    """Watershed-labelled bright tubes near the heart, which of their voxels touch large bright
    structures, and the lumen level."""
    spacing = np.asarray(study.spacing, float)
    smooth = ndimage.gaussian_filter(study.hu.astype(np.float32), config.smoothing_mm / spacing)
    pool, bone, lumen, fat = _levels(smooth, spacing, config)
    lo = fat + config.lumen_fraction * (lumen - fat)
    hi = fat + config.strict_fraction * (lumen - fat)
    bright = smooth > lo
    big = ndimage.binary_opening(bright, structure=_ball(config.opening_radius_mm / spacing))
    near_heart = ndimage.distance_transform_edt(~pool, sampling=spacing) <= config.heart_margin_mm
    near_bone = ndimage.binary_dilation(bone, structure=_ball(3.0 / spacing))
    thin = bright & ~big & near_heart & ~near_bone
    from skimage.segmentation import watershed

    seeds = cc3d.connected_components(thin & (smooth > hi), connectivity=26)
    pieces = watershed(-smooth, seeds, mask=thin).astype(np.int32)
    touching = ndimage.binary_dilation(big & ~bone, structure=_ball(1.5 / spacing)) & thin
    gap_floor = fat + config.bridge_fraction * (lumen - fat)
    reach = 2 * np.round(config.fat_reach_mm / spacing).astype(int) + 1
    low = ndimage.minimum_filter(smooth, size=tuple(reach))
    fat_near, lung_near = low < gap_floor, low < config.lung_hu
    return (pieces, touching, lumen, _tube_fraction(smooth, pieces, spacing, config),
            (smooth, gap_floor, fat_near, lung_near, fat))


def _tube_fraction(smooth: np.ndarray, pieces: np.ndarray, spacing: np.ndarray, config: TreeConfig) -> np.ndarray:
    """Per piece, the share of voxels where the Hessian says "bright line" rather than "bright sheet".

    At a bright tube two eigenvalues are strongly negative; at the rim of a chamber only one is.
    """
    box = ndimage.find_objects((pieces > 0).astype(np.int8))[0]
    pad = tuple(slice(max(b.start - 4, 0), b.stop + 4) for b in box)
    crop, where = smooth[pad], pieces[pad]
    idx = np.nonzero(where)
    hessian = np.zeros((len(idx[0]), 3, 3), np.float32)
    for a in range(3):
        for b in range(a, 3):
            order = [0, 0, 0]
            order[a] += 1
            order[b] += 1
            d = ndimage.gaussian_filter(crop, config.hessian_sigma_mm / spacing, order=order)[idx]
            hessian[:, a, b] = hessian[:, b, a] = d
    ev = np.linalg.eigvalsh(hessian)  # ascending: ev[:, 0] is the most negative
    line = ev[:, 1] < config.tube_eigen_ratio * ev[:, 0]
    n = int(pieces.max()) + 1
    return np.bincount(where[idx], weights=line, minlength=n) / np.maximum(np.bincount(where[idx], minlength=n), 1)


@dataclass
class _Graph:
    """A skeleton as an undirected weighted graph in patient mm."""

    xyz: np.ndarray  # (V, 3)
    radius: np.ndarray  # (V,)
    edges: list[tuple[int, int]]
    piece: np.ndarray  # (V,) which tube piece each vertex belongs to

    def matrix(self):
        a, b = np.array(self.edges).T
        w = np.linalg.norm(self.xyz[a] - self.xyz[b], axis=1) + 1e-6
        n = len(self.xyz)
        return coo_matrix((np.r_[w, w], (np.r_[a, b], np.r_[b, a])), shape=(n, n)).tocsr()


def _skeleton_graph(pieces: np.ndarray, keep: list[int], study: Study, config: TreeConfig) -> _Graph:
    import kimimaro

    spacing = np.asarray(study.spacing, float)
    volume = np.where(np.isin(pieces, keep), pieces, 0)
    # kimimaro's default invalidation constant (300) is meant for nanometres: in mm it keeps only the
    # longest path of each piece, and a piece holding a bifurcation loses its other branch
    teasar = {"scale": config.teasar_scale, "const": config.teasar_const_mm}
    skels = kimimaro.skeletonize(volume, teasar_params=teasar, anisotropy=tuple(spacing), dust_threshold=0,
                                 progress=False, fix_branching=True, fix_borders=True, parallel=1)
    xyz, radius, piece = [], [], []
    edges: list[tuple[int, int]] = []
    offset = 0
    for label, skel in skels.items():
        if len(skel.vertices) < 2:
            continue
        ijk = skel.vertices / spacing
        xyz.append(study.index_to_mm(ijk))
        radius.append(np.asarray(skel.radius, float))
        edges.extend((int(a) + offset, int(b) + offset) for a, b in skel.edges)
        piece.append(np.full(len(skel.vertices), label))
        offset += len(skel.vertices)
    if not xyz:
        raise CoronaryTreeError("no coronary artery was found in the image")
    return _Graph(np.concatenate(xyz), np.concatenate(radius), edges, np.concatenate(piece))


class _Tree:
    """A rooted tree over graph vertices: parent links, arc length and the farthest reach below each vertex."""

    def __init__(self, graph: _Graph, vertices: np.ndarray, root: int):
        self.graph = graph
        matrix = graph.matrix()[vertices][:, vertices]
        local_root = int(np.flatnonzero(vertices == root)[0])
        dist, pred = dijkstra(matrix, indices=local_root, return_predecessors=True)
        ok = np.isfinite(dist)
        self.vertices = vertices[ok]
        remap = -np.ones(len(vertices), int)
        remap[np.flatnonzero(ok)] = np.arange(ok.sum())
        self.dist = dist[ok]
        self.parent = np.where(pred[ok] >= 0, remap[np.clip(pred[ok], 0, None)], -1)
        self.root = int(remap[local_root])
        self.children: list[list[int]] = [[] for _ in range(len(self.vertices))]
        for v, p in enumerate(self.parent):
            if p >= 0:
                self.children[p].append(v)
        self.reach = self.dist.copy()  # farthest arc length reachable below each vertex
        for v in np.argsort(self.dist)[::-1]:
            p = self.parent[v]
            if p >= 0:
                self.reach[p] = max(self.reach[p], self.reach[v])

    def xyz(self, v) -> np.ndarray:
        return self.graph.xyz[self.vertices[v]]

    def below(self, v: int) -> float:
        """Length of the longest path from ``v`` down its subtree."""
        return float(self.reach[v] - self.dist[v])

    def main_path(self, start: int) -> list[int]:
        """From ``start``, always into the child that reaches farthest."""
        path = [start]
        while self.children[path[-1]]:
            path.append(max(self.children[path[-1]], key=lambda c: self.reach[c]))
        return path

    def side_branches(self, path: list[int], min_mm: float) -> list[tuple[int, int]]:
        """(index on ``path``, first vertex of the branch) for branches leaving ``path`` reaching ``min_mm``."""
        on_path = set(path)
        out = []
        for i, v in enumerate(path):
            for c in self.children[v]:
                if c not in on_path and self.below(c) + (self.dist[c] - self.dist[v]) >= min_mm:
                    out.append((i, c))
        return out

    def direction(self, start: int, along_mm: float = 12.0) -> np.ndarray:
        """Unit vector from ``start`` to the point ``along_mm`` down its main path."""
        path = self.main_path(start)
        target = next((v for v in path if self.dist[v] - self.dist[start] >= along_mm), path[-1])
        d = self.xyz(target) - self.xyz(start)
        return d / (np.linalg.norm(d) + 1e-9)


@dataclass
class _Labelled:
    paths: dict[str, list[int]] = field(default_factory=dict)  # segment -> tree vertices, proximal first
    confidence: dict[str, float] = field(default_factory=dict)


def _cut(path: list[int], at: list[int]) -> list[list[int]]:
    """Consecutive pieces of ``path`` between the given indices (each piece starts where the last ended)."""
    bounds = [0, *sorted(at), len(path) - 1]
    return [path[a:b + 1] for a, b in zip(bounds[:-1], bounds[1:])]


def _fraction_index(tree: _Tree, path: list[int], fraction: float) -> int:
    arc = tree.dist[path] - tree.dist[path[0]]
    return int(np.searchsorted(arc, fraction * arc[-1]))


def _split_terminal(tree: _Tree, path: list[int], apex: np.ndarray | None, config: TreeConfig):
    """The last major bifurcation of ``path`` (the crux): (index, PDA start, PLB start) or None."""
    for i in range(len(path) - 2, 0, -1):
        v = path[i]
        major = [c for c in tree.children[v] if tree.below(c) >= config.major_branch_mm]
        if len(major) >= 2 and tree.dist[v] - tree.dist[path[0]] >= 30.0:
            a, b = sorted(major, key=lambda c: tree.reach[c], reverse=True)[:2]
            if apex is not None:
                ends = [tree.xyz(tree.main_path(c)[-1]) for c in (a, b)]
                if np.linalg.norm(ends[1] - apex) < np.linalg.norm(ends[0] - apex):
                    a, b = b, a
            return i, a, b
    return None


def _label_left(tree: _Tree, config: TreeConfig, out: _Labelled,
                attached: bool = False) -> tuple[list[int] | None, list[int] | None]:
    """LM, LAD (+ diagonals), circumflex (+ marginals), ramus; returns the LAD and LCx main paths.

    ``attached``: a branch was joined to the tree at its root (the left main hidden), so the left main
    bifurcation may be the root itself.
    """
    trunk = tree.main_path(tree.root)
    bif = None
    first = 0 if attached else 1
    for i, v in enumerate(trunk[first:], first):
        major = [c for c in tree.children[v] if tree.below(c) + (tree.dist[c] - tree.dist[v]) >= config.major_branch_mm]
        if len(major) >= 2:
            bif = i
            break
    if bif is None:
        # one branch only (the other hidden or cut off): a left main of the usual length, then the LAD
        # when the vessel heads anterior (LPS: smaller y), the circumflex otherwise
        end = int(np.searchsorted(tree.dist[trunk] - tree.dist[trunk[0]], config.left_main_mm))
        if end >= len(trunk) - 2:
            out.paths["LM"] = trunk
            out.confidence["LM"] = 0.3
            return None, None
        out.paths["LM"] = trunk[:end + 1]
        out.confidence["LM"] = 0.3
        rest = trunk[end:]
        if tree.direction(trunk[end], config.major_branch_mm)[1] < 0:
            lad, lcx = rest, None
        else:
            return None, rest
    else:
        out.paths["LM"] = trunk[:bif + 1]
        out.confidence["LM"] = 0.9
        v = trunk[bif]
        major = [c for c in tree.children[v]
                 if tree.below(c) + (tree.dist[c] - tree.dist[v]) >= config.major_branch_mm]
        # LPS: y grows posterior, so the LAD (anterior interventricular groove) heads to the smallest y
        major.sort(key=lambda c: tree.direction(c)[1])
        lad_start, lcx_start = major[0], major[-1]
        lad = [v, *tree.main_path(lad_start)]
        lcx = [v, *tree.main_path(lcx_start)]
        if len(major) >= 3:
            out.paths["RI"] = [v, *tree.main_path(major[1])]
            out.confidence["RI"] = 0.6

    # LAD: cut at the first two diagonals (leftward side branches: +x in LPS)
    diagonals = []
    for i, c in tree.side_branches(lad, config.side_branch_mm):
        if i == 0:  # the bifurcation itself: its other branches are the circumflex and the ramus
            continue
        tangent = tree.xyz(lad[min(i + 3, len(lad) - 1)]) - tree.xyz(lad[max(i - 3, 0)])
        tangent /= np.linalg.norm(tangent) + 1e-9
        d = tree.direction(c)
        if (d - (d @ tangent) * tangent)[0] > 0:
            diagonals.append((i, c))
    cuts = [i for i, _ in diagonals[:2]]
    conf = 0.9
    if len(cuts) < 2:  # fewer diagonals than SCCT's landmarks: fall back on length fractions
        cuts = sorted({*cuts, *[_fraction_index(tree, lad, f) for f in (0.25, 0.55)][len(cuts):]})
        conf = 0.6
    for code, part in zip(("pLAD", "mLAD", "dLAD"), _cut(lad, cuts[:2])):
        out.paths[code], out.confidence[code] = part, conf
    for code, (i, c) in zip(("D1", "D2"), diagonals):
        out.paths[code], out.confidence[code] = [lad[i], *tree.main_path(c)], 0.9
    return lad, lcx


def _label_circumflex(tree: _Tree, lcx: list[int], apex, left_dominant: bool, config: TreeConfig,
                      out: _Labelled) -> None:
    terminal = _split_terminal(tree, lcx, apex, config) if left_dominant else None
    trunk = lcx[:terminal[0] + 1] if terminal else lcx
    # index 0 is the left main bifurcation, whose other branches are the LAD and the ramus
    marginals = [(i, c) for i, c in tree.side_branches(trunk, config.side_branch_mm)
                 if i > 0 and not (terminal and i == terminal[0])]
    if marginals:
        out.paths["pCx"], out.paths["dLCx"] = _cut(trunk, [marginals[0][0]])
        out.confidence["pCx"] = out.confidence["dLCx"] = 0.9
    else:
        out.paths["pCx"], out.paths["dLCx"] = _cut(trunk, [_fraction_index(tree, trunk, 0.4)])
        out.confidence["pCx"] = out.confidence["dLCx"] = 0.6
    for code, (i, c) in zip(("OM1", "OM2"), marginals):
        out.paths[code], out.confidence[code] = [trunk[i], *tree.main_path(c)], 0.9
    if terminal:
        i, pda, plb = terminal
        out.paths["L-PDA"], out.paths["L-PLB"] = [trunk[-1], *tree.main_path(pda)], [trunk[-1], *tree.main_path(plb)]
        out.confidence["L-PDA"] = out.confidence["L-PLB"] = 0.9


def _label_right(tree: _Tree, apex, config: TreeConfig, out: _Labelled) -> tuple[bool, float]:
    """pRCA/mRCA/dRCA and, when the RCA reaches the crux, R-PDA and R-PLB.

    Returns whether it reaches the crux, and the trunk's length in mm.
    """
    rca = tree.main_path(tree.root)
    terminal = _split_terminal(tree, rca, apex, config)
    trunk = rca[:terminal[0] + 1] if terminal else rca
    # the acute margin is the right border of the heart: the trunk's rightmost point (smallest x in LPS)
    acute = int(np.argmin([tree.xyz(v)[0] for v in trunk]))
    conf = 0.9
    if not 4 <= acute <= len(trunk) - 4:
        acute, conf = _fraction_index(tree, trunk, 0.5), 0.6
    half = _fraction_index(tree, trunk[:acute + 1], 0.5)
    for code, part in zip(("pRCA", "mRCA", "dRCA"), _cut(trunk, [half, acute])):
        out.paths[code], out.confidence[code] = part, conf
    if terminal:
        i, pda, plb = terminal
        out.paths["R-PDA"], out.paths["R-PLB"] = [trunk[-1], *tree.main_path(pda)], [trunk[-1], *tree.main_path(plb)]
        out.confidence["R-PDA"] = out.confidence["R-PLB"] = 0.9
    return terminal is not None, float(tree.dist[trunk[-1]] - tree.dist[trunk[0]])


def _along(smooth: np.ndarray, study: Study, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smoothed CT at 10 points strictly between ``a`` and ``b``."""
    ijk = study.mm_to_index(a + np.linspace(0.0, 1.0, 12)[1:-1, None] * (b - a))
    return ndimage.map_coordinates(smooth, ijk.T, order=1, mode="nearest")


def _bridge_supported(smooth: np.ndarray, study: Study, a: np.ndarray, b: np.ndarray, floor: float,
                      fat_near: np.ndarray) -> bool:
    """True when the CT between two points never drops to fat, with fat beside it all along: a
    narrowed lumen or plaque in the epicardial fat, not a gap between two unrelated vessels nor a way
    through the myocardium (as dim as plaque, but with no fat beside it)."""
    pts = a + np.linspace(0.0, 1.0, 12)[1:-1, None] * (b - a)
    ijk = study.mm_to_index(pts)
    values = ndimage.map_coordinates(smooth, ijk.T, order=1, mode="nearest")
    beside = fat_near[tuple(np.clip(np.round(ijk).astype(int), 0, np.array(fat_near.shape) - 1).T)]
    return bool(values.min() >= floor and beside.all())


def _join_gaps(graph: _Graph, contact: np.ndarray, config: TreeConfig, supported, crosses_blood) -> set[int]:
    """Bridge gaps from a piece's free end to another piece ahead of it, up to ``max_gap_mm``.

    A tight stenosis or an occlusion, and the watershed itself, cut one vessel into pieces; a free
    end (a skeleton vertex with one neighbour) facing another piece is the same vessel going on.
    Beyond ``touch_gap_mm`` the other piece must lie ahead, within ``max_bridge_angle_deg`` of the
    end's direction. A bridge of ``ostia_bridge_mm`` or more between two points that both touch a
    large bright structure (``contact``), through blood as bright as the aorta's (``crosses_blood``),
    runs from one vessel's entry into the aortic root to another's, never along a lesion: allowed, the
    right ostium was joined across the aortic root to the left one, 15-20 mm away, into one system
    (realistic phantoms 9100, 9107).
    Returns the pieces reached through such a bridge.
    """
    edges = np.array(graph.edges)
    degree = np.bincount(edges.ravel(), minlength=len(graph.xyz))
    neighbours: list[list[int]] = [[] for _ in range(len(graph.xyz))]
    for u, v in edges:
        neighbours[u].append(int(v))
        neighbours[v].append(int(u))
    kd = cKDTree(graph.xyz)
    cos_max = np.cos(np.deg2rad(config.max_bridge_angle_deg))
    bridged: set[int] = set()
    for v in np.flatnonzero(degree == 1):
        back, prev = int(v), -1
        for _ in range(6):  # a few vertices back along the piece give the end's direction
            nxt = [u for u in neighbours[back] if u != prev]
            if not nxt:
                break
            prev, back = back, nxt[0]
        heading = graph.xyz[v] - graph.xyz[back]
        heading /= np.linalg.norm(heading) + 1e-9
        best = None
        for u in kd.query_ball_point(graph.xyz[v], config.max_gap_mm):
            if graph.piece[u] == graph.piece[v]:
                continue
            step = graph.xyz[u] - graph.xyz[v]
            dist = float(np.linalg.norm(step))
            if dist > config.touch_gap_mm and step @ heading < cos_max * dist:
                continue
            if (dist >= config.ostia_bridge_mm and contact[v] and contact[u]
                    and crosses_blood(graph.xyz[v], graph.xyz[u])):
                continue
            if dist > config.checked_gap_mm and not supported(graph.xyz[v], graph.xyz[u]):
                continue
            if best is None or dist < best[0]:
                best = (dist, int(u))
        if best is not None:
            graph.edges.append((int(v), best[1]))
            bridged.update({int(graph.piece[best[1]]), int(graph.piece[v])})
    return bridged


class _Router:
    """Least-cost paths through the CT (skimage ``MCP_Geometric``), never through fat nor through the
    inside of a chamber.

    The cost of a voxel is 1 / level^2 (fat 0, lumen 1), so a path keeps to the lumen and crosses a
    narrowed stretch only where it must; voxels below ``bridge_fraction`` and voxels deeper than
    ``opening_radius_mm`` inside a bright structure (a chamber's or the aorta's inside) are impassable.
    """

    def __init__(self, smooth: np.ndarray, study: Study, fat: float, lumen: float, config: TreeConfig):
        self.level = (smooth - fat) / max(lumen - fat, 1.0)
        self.study, self.config = study, config
        self.spacing = np.asarray(study.spacing, float)

    def _cost(self, box: tuple[slice, ...]) -> np.ndarray:
        config = self.config  # the depth is measured in a padded box, so a border is no false edge
        pad = tuple(slice(max(b.start - 8, 0), b.stop + 8) for b in box)
        inner = tuple(slice(b.start - p.start, b.start - p.start + (b.stop - b.start)) for b, p in zip(box, pad))
        depth = ndimage.distance_transform_edt(self.level[pad] >= config.lumen_fraction, sampling=self.spacing)[inner]
        level = self.level[box]
        open_ = (level >= config.bridge_fraction) & (depth <= config.opening_radius_mm)
        return np.where(open_, 1.0 / np.clip(level, config.bridge_fraction, 1.0) ** 2, np.inf)

    def route(self, a: np.ndarray, targets: np.ndarray, margin_mm: float = 4.0):
        """(index into ``targets``, path in mm from ``a``) of the cheapest target reachable, or None."""
        from skimage.graph import MCP_Geometric

        ends = np.round(self.study.mm_to_index(np.vstack([a, targets]))).astype(int)
        pad = np.ceil(margin_mm / self.spacing).astype(int)
        lo = np.maximum(ends.min(axis=0) - pad, 0)
        hi = np.minimum(ends.max(axis=0) + pad + 1, self.level.shape)
        ends = np.clip(ends, lo, hi - 1) - lo
        crop = self._cost(tuple(slice(a_, b_) for a_, b_ in zip(lo, hi)))
        crop[tuple(ends.T)] = 1.0  # skeleton vertices lie in their pieces, whatever the voxel's value
        mcp = MCP_Geometric(crop, sampling=tuple(self.spacing))
        cumulative, _ = mcp.find_costs([tuple(ends[0])], ends=[tuple(e) for e in ends[1:]])
        reached = cumulative[tuple(ends[1:].T)]
        if not np.isfinite(reached).any():
            return None
        k = int(np.argmin(reached))
        path = np.asarray(mcp.traceback(tuple(ends[1 + k])), float) + lo
        if len(path) > 4:  # voxel steps zigzag: a short running mean gives a path a tangent can follow
            path[1:-1] = ndimage.uniform_filter1d(path, 3, axis=0, mode="nearest")[1:-1]
        return k, self.study.index_to_mm(path)


def _attach_left_branches(graph: _Graph, sides: dict[str, int], contact: np.ndarray, config: TreeConfig,
                          router: _Router) -> tuple[_Graph, set[int], set[int]]:
    """Join to the left tree each other vessel system that comes within ``attach_mm`` of the left ostium.

    The left main and the first millimetres of its branches run against the aortic root and the
    pulmonary trunk, and the opening that removes those takes them along; a stenosis just beyond
    (the proximal LAD's usual lesion) cuts the branch off further. The branch then starts as a
    separate system near the left ostium. It is joined from its point nearest the ostium along the
    CT's least-cost path to the left tree (:class:`_Router`), when that path is at most ``detour``
    times the straight distance (+ 2 mm). A system touching large bright structures along more than
    ``attach_contact_fraction`` of it is a rim, never joined.

    Returns the graph, the pieces joined and the tree vertices where they join.
    """
    components = _components(graph)
    left = sides["left"]
    trees = {components[v] for v in sides.values()}
    a, b = np.array(graph.edges).T
    seg_len = np.linalg.norm(graph.xyz[a] - graph.xyz[b], axis=1)
    length = np.bincount(components[a], weights=seg_len, minlength=components.max() + 1)
    to_root = np.linalg.norm(graph.xyz - graph.xyz[left], axis=1)
    own = np.flatnonzero((components == components[left]) & (to_root <= config.attach_mm))
    paths, joined = [], set()
    for c in np.unique(components):
        members = np.flatnonzero(components == c)
        # touching a great vessel or a chamber along most of its length: a rim, not a hidden branch
        if c in trees or length[c] < config.major_branch_mm or contact[members].mean() > config.attach_contact_fraction:
            continue
        v = int(members[np.argmin(to_root[members])])
        if to_root[v] > config.attach_mm:
            continue
        found = router.route(graph.xyz[v], graph.xyz[own])
        if found is None:
            continue
        k, route = found
        if _length(route) <= config.detour * float(np.linalg.norm(graph.xyz[own[k]] - graph.xyz[v])) + 2.0:
            paths.append((v, int(own[k]), route[1:-1]))
            joined.add(int(graph.piece[v]))
    return _with_paths(graph, paths), joined, {b for _, b, _ in paths}


def _point(xyz: np.ndarray) -> tuple[float, float, float]:
    """A (3,) position in mm as plain floats, for the result models."""
    x, y, z = (float(v) for v in xyz)
    return x, y, z


def _length(points: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def _with_paths(graph: _Graph, paths: list[tuple[int, int, np.ndarray]]) -> _Graph:
    """``graph`` with each path's inner points added as vertices between its two ends."""
    xyz, radius, piece, edges = [graph.xyz], [graph.radius], [graph.piece], list(graph.edges)
    n = len(graph.xyz)
    for a, b, inner in paths:
        chain = [a, *range(n, n + len(inner)), b]
        edges.extend(zip(chain[:-1], chain[1:]))
        xyz.append(inner)
        radius.append(np.linspace(graph.radius[a], graph.radius[b], len(inner) + 2)[1:-1])
        piece.append(np.full(len(inner), graph.piece[a]))
        n += len(inner)
    return _Graph(np.concatenate(xyz), np.concatenate(radius), edges, np.concatenate(piece))


def _drop_rims(graph: _Graph, contact: np.ndarray, config: TreeConfig) -> tuple[_Graph, np.ndarray]:
    """Remove pieces that touch large bright structures along most of their length.

    A coronary touches the aortic root at its ostium and a chamber here and there; the partial-volume
    rim of a great vessel against lung or fat runs along it, straight, as long as the vessel is.
    """
    drop = set()
    for p in np.unique(graph.piece):
        m = graph.piece == p
        if m.sum() < 3 or contact[m].mean() < config.rim_contact_fraction:
            continue
        xyz = graph.xyz[m] - graph.xyz[m].mean(axis=0)
        sv = np.linalg.svd(xyz, compute_uv=False)
        off_axis = float(np.sqrt((sv[1:] ** 2).sum() / m.sum()))  # RMS distance from the best line
        extent = np.linalg.norm(np.ptp(xyz, axis=0))
        if extent >= config.rim_long_mm or (off_axis <= config.rim_straight_mm and extent >= config.rim_min_mm):
            drop.add(int(p))
    if not drop:
        return graph, contact
    keep = ~np.isin(graph.piece, list(drop))
    if not keep.any():
        raise CoronaryTreeError("no coronary artery was found in the image (only rims of large vessels)")
    return _kept(graph, contact, keep)


def _kept(graph: _Graph, contact: np.ndarray, keep: np.ndarray) -> tuple[_Graph, np.ndarray]:
    """The graph and its contact flags on the nodes ``keep`` marks, edges renumbered."""
    new = -np.ones(len(keep), int)
    new[keep] = np.arange(keep.sum())
    edges = [(int(new[a]), int(new[b])) for a, b in graph.edges if keep[a] and keep[b]]
    return _Graph(graph.xyz[keep], graph.radius[keep], edges, graph.piece[keep]), contact[keep]


def _drop_buried(graph: _Graph, contact: np.ndarray, fat_near: np.ndarray, lung_near: np.ndarray, study: Study,
                 config: TreeConfig) -> tuple[_Graph, np.ndarray]:
    """Remove pieces with no epicardial fat beside most of their skeleton, and pieces in the lung.

    A coronary runs in the epicardial fat (measured: 99-100 % of coronary skeleton points have fat
    within 2 mm); the bright rim of a chamber's inside or its trabeculae lie against myocardium and
    blood (14-27 % of theirs). The pericardium and its fat keep air away from a coronary (0-3 % of
    coronary skeleton points have lung within 2 mm); a pulmonary vein or artery branch runs in the
    lung (75-100 %), as bright and as thin as a coronary.
    """
    ijk = np.clip(np.round(study.mm_to_index(graph.xyz)).astype(int), 0, np.array(fat_near.shape) - 1)
    count = np.maximum(np.bincount(graph.piece), 1)
    share = np.bincount(graph.piece, weights=fat_near[tuple(ijk.T)]) / count
    in_lung = np.bincount(graph.piece, weights=lung_near[tuple(ijk.T)], minlength=len(count)) / count
    keep = (share[graph.piece] >= config.min_epicardial_fraction) & (in_lung[graph.piece] <= config.max_lung_fraction)
    if keep.all():
        return graph, contact
    if not keep.any():
        raise CoronaryTreeError("no coronary artery was found in the image (no thin vessel in the epicardial fat)")
    return _kept(graph, contact, keep)


def _find_ostia(graph: _Graph, contact: np.ndarray, config: TreeConfig) -> tuple[dict[str, int], list[str]]:
    """The left and right coronary roots: where the two longest vessel systems touch the aortic root.

    A system touches large bright structures at its ostium (and, through partial volume, maybe
    elsewhere); of all contact points of the two longest systems, the pair closest to each other
    are the two ostia on the aortic root.
    """
    components = _components(graph)
    a, b = np.array(graph.edges).T
    seg_len = np.linalg.norm(graph.xyz[a] - graph.xyz[b], axis=1)
    length = np.bincount(components[a], weights=seg_len, minlength=components.max() + 1)
    share = np.bincount(components, weights=contact, minlength=len(length)) / np.maximum(
        np.bincount(components, minlength=len(length)), 1)
    # a long system touching big structures along most of it is a chain of rims, not a coronary
    systems = [c for c in np.argsort(length)[::-1] if contact[components == c].any()
               and not (share[c] > config.system_contact_fraction and length[c] >= config.rim_long_mm)][:6]
    if not systems:
        raise CoronaryTreeError("no coronary artery leaving the aortic root was found in the image")
    # both ostia sit on the one aortic root: of the longest systems, the pair whose contact points
    # lie OSTIA_SPAN_MM apart, mostly left-right, with the most vessel between them

    best = None
    for i, first_system in enumerate(systems):
        for second_system in systems[i + 1:]:
            first = np.flatnonzero((components == first_system) & contact)
            second = np.flatnonzero((components == second_system) & contact)
            dist, j = cKDTree(graph.xyz[second]).query(graph.xyz[first])
            k = int(np.argmin(dist))
            across = abs(graph.xyz[first[k]][0] - graph.xyz[second[j[k]]][0])
            if OSTIA_SPAN_MM[0] <= dist[k] <= OSTIA_SPAN_MM[1] and across >= OSTIA_LATERAL * dist[k]:
                total = length[first_system] + length[second_system]
                if best is None or total > best[0]:
                    best = (total, int(first[k]), int(second[j[k]]))
    if best is None:
        verts = np.flatnonzero((components == systems[0]) & contact)
        return {"single": int(verts[0])}, ["only one coronary artery leaving the aorta was found"]
    roots = sorted(best[1:], key=lambda v: graph.xyz[v][0])
    # the left coronary ostium lies to the patient's left of the right one (larger x in LPS)
    return {"right": roots[0], "left": roots[1]}, []


def extract_coronary_tree(study: Study, config: TreeConfig | None = None) -> CoronaryTree:
    """The labelled coronary tree of a contrast CT angiography, from its intensities alone.

    Args:
        study: a contrast-enhanced CT in the LPS ``[i, j, k]`` convention of :mod:`cardiovlm.tools.ingest.study`.
        config: thresholds and lengths (:class:`TreeConfig`).

    Returns:
        A :class:`CoronaryTree` on the study grid.

    Raises:
        CoronaryTreeError: not a CT, no enhanced blood pool, or no coronary artery found.
    """
    config = config or TreeConfig()
    if not study.hu_calibrated or study.modality.upper() != "CT":
        raise CoronaryTreeError(f"the coronary tree is found on a CT angiography; this series is {study.modality}")
    if min(study.shape) < 8:
        raise CoronaryTreeError(f"the series has only {min(study.shape)} slices in one direction: too few to "
                                "trace coronary arteries")
    pieces, touching, lumen, tube_fraction, (smooth, gap_floor, fat_near, lung_near, fat) = _tube_pieces(study, config)
    spacing = np.asarray(study.spacing, float)
    boxes = cc3d.statistics(pieces)["bounding_boxes"]
    keep = []
    for label in range(1, int(pieces.max()) + 1):
        box = boxes[label] if label < len(boxes) else None
        if box is None or tube_fraction[label] < config.min_tube_fraction:
            continue
        extent = np.array([s.stop - s.start for s in box]) * spacing
        if np.linalg.norm(extent) >= config.min_piece_mm:
            keep.append(label)
    if not keep:
        raise CoronaryTreeError("no coronary artery was found in the image (no thin contrast-filled vessel "
                                "near the heart)")
    graph = _skeleton_graph(pieces, keep, study, config)
    contact = cKDTree(study.index_to_mm(np.argwhere(touching))).query(graph.xyz)[0] <= 1.5
    graph, contact = _drop_rims(graph, contact, config)
    graph, contact = _drop_buried(graph, contact, fat_near, lung_near, study, config)
    blood = fat + config.blood_fraction * (lumen - fat)
    joined = _join_gaps(graph, contact, config,
                        lambda a, b: _bridge_supported(smooth, study, a, b, gap_floor, fat_near),
                        lambda a, b: _along(smooth, study, a, b).max() >= blood)
    sides, warnings = _find_ostia(graph, contact, config)
    landed: set[int] = set()
    if "left" in sides and "right" in sides:
        router = _Router(smooth, study, fat, lumen, config)
        graph, attached, landed = _attach_left_branches(graph, sides, contact, config, router)
        joined |= attached

    trees: dict[str, _Tree] = {}
    components = _components(graph)
    for side, root in sides.items():
        trees[side] = _Tree(graph, np.flatnonzero(components == components[root]), root)
    if "single" in trees:
        single = trees.pop("single")
        trunk = single.main_path(single.root)
        branches = single.side_branches(trunk, config.major_branch_mm)
        trees["left" if branches and branches[0][0] < len(trunk) // 4 else "right"] = single

    labelled = {side: _Labelled() for side in trees}
    lad = lcx = apex = None
    if "left" in trees:
        lad, lcx = _label_left(trees["left"], config, labelled["left"], sides["left"] in landed)
        apex = trees["left"].xyz(lad[-1]) if lad else None
    right_dominant, rca_mm = (_label_right(trees["right"], apex, config, labelled["right"]) if "right" in trees
                              else (False, 0.0))
    if lcx is not None:
        # left dominance only when a short RCA was found: a long RCA without a visible crux is more
        # likely a missed split than a circumflex that gives the PDA
        lcx_mm = float(trees["left"].dist[lcx[-1]] - trees["left"].dist[lcx[0]])
        left_dominant = not right_dominant and "right" in trees and rca_mm < config.left_dominant_rca_ratio * lcx_mm
        _label_circumflex(trees["left"], lcx, apex, left_dominant, config, labelled["left"])
    dominance = "right" if right_dominant else (
        "left" if "left" in labelled and "L-PDA" in labelled["left"].paths else None)

    return _assemble(study, pieces, graph, trees, labelled, joined, lumen, dominance, warnings,
                     lambda pts: _recentre(pts, smooth, study, config, lumen))



def _components(graph: _Graph) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components

    return connected_components(graph.matrix(), directed=False)[1]


def _recentre(points: np.ndarray, smooth: np.ndarray, study: Study, config: TreeConfig, lumen: float) -> np.ndarray:
    """Each centerline point moved, in its cross-section plane, step by step onto the core of its lumen.

    The skeleton runs through the middle of the *tube piece*, and where the opening gave part of a
    lumen to the aortic root or a bifurcation the piece is the lumen's edge: measured 1.5-2.5 mm off
    the phantom's left main, where a cross-section read a healthy lumen as a 55 % narrowing. Each
    step goes to the neighbour closest to the lumen level ``lumen`` (stent struts and calcium are
    brighter than lumen and do not attract the path); small steps, never a jump, keep a point on its
    own lumen rather than on a neighbour across a darker gap. The total shift is at most
    ``recentre_mm`` and is smoothed along the path.
    """
    if len(points) < 3:
        return points
    tangent = np.gradient(points, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    helper = np.where(np.abs(tangent[:, [0]]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    u = np.cross(tangent, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(tangent, u)
    g = np.arange(-0.5, 0.5 + 1e-9, 0.25)
    gu, gv = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    offsets = gu[None, :, None] * u[:, None, :] + gv[None, :, None] * v[:, None, :]  # (N, G, 3): one step
    shift = np.zeros_like(points)
    for _ in range(int(np.ceil(config.recentre_mm / 0.5))):
        ijk = study.mm_to_index((points[:, None, :] + shift[:, None, :] + offsets).reshape(-1, 3))
        values = ndimage.map_coordinates(smooth, ijk.T, order=1, mode="nearest").reshape(len(points), -1)
        # 1 HU per mm of step: where the lumen is flat the point stays where it is
        score = -np.abs(values - lumen) - np.hypot(gu, gv)[None, :]
        step = shift + offsets[np.arange(len(points)), score.argmax(1)]
        length = np.linalg.norm(step, axis=1, keepdims=True)
        shift = np.where(length <= config.recentre_mm, step, shift)
    shift = ndimage.gaussian_filter1d(shift, 2.0, axis=0, mode="nearest")  # 2 points = 1 mm along the path
    return points + shift


def _assemble(study, pieces, graph, trees, labelled, joined, lumen, dominance, warnings, recentre) -> CoronaryTree:
    owner: dict[int, str] = {}  # graph vertex -> segment code
    centerlines: dict[str, list[cf.CenterlinePoint]] = {}
    confidence: dict[str, float] = {}
    for side, tree in trees.items():
        for code, path in labelled[side].paths.items():
            if len(path) < 2:
                continue
            verts = tree.vertices[path]
            for v in verts[1:]:
                owner.setdefault(int(v), code)
            pts, _ = resample_polyline(graph.xyz[verts], 0.5)
            pts = recentre(pts)
            rad = np.interp(np.linspace(0, 1, len(pts)), np.linspace(0, 1, len(verts)), graph.radius[verts])
            centerlines[code] = [cf.CenterlinePoint(xyz=tuple(map(float, p)), radius_mm=float(r))
                                 for p, r in zip(pts, rad)]
            conf = labelled[side].confidence.get(code, 0.5)
            if any(graph.piece[v] in joined for v in verts):
                conf = min(conf, 0.4)
            confidence[code] = round(conf, 2)
    for side, tree in trees.items():  # each root vertex belongs to its ostial segment, when it was traced
        root_code = "LM" if side == "left" else "pRCA"
        if root_code in centerlines:  # a label with no centerline is a segment no tool can follow
            owner.setdefault(int(tree.vertices[tree.root]), root_code)

    labels = np.zeros(study.shape, np.int16)
    if owner:
        owned = np.array(sorted(owner))
        kd = cKDTree(graph.xyz[owned])
        tree_pieces = np.unique(graph.piece[owned])
        vox = np.argwhere(np.isin(pieces, tree_pieces))
        _, j = kd.query(study.index_to_mm(vox))
        ids = np.array([SEGMENTS_BY_CODE[owner[int(v)]].label_id for v in owned], np.int16)
        labels[tuple(vox.T)] = ids[j]
    ostia = {side: _point(tree.xyz(tree.root)) for side, tree in trees.items()}
    if not centerlines:
        raise CoronaryTreeError("coronary vessels were found but could not be organised into a tree from the "
                                "aortic root")
    lines = cf.Centerlines(segments=centerlines, source=CENTERLINE_SOURCE)
    return CoronaryTree(labels=labels, centerlines=lines, confidence=confidence,
                        ostia=ostia, dominance=dominance, lumen_hu=round(lumen, 1), warnings=warnings)
