"""The lungs' inside: lobes cut by the fissures, and the bronchovascular trees that fill each lobe.

Geometry only, in patient LPS millimetres (x to the patient's left, y posterior, z superior);
:mod:`cardiovlm.training.phantoms.thorax_raster` paints it.

* Fissures: each lung's major (oblique) fissure runs from high behind the hilum down and forwards to the
  front of the diaphragm (about 45-60 degrees to the axial plane on a sagittal view); the right lung's minor
  (horizontal) fissure runs forwards from the hilum at about its level, over the middle lobe. Each is a
  gently curved surface ``f(p) = 0`` (see :class:`Fissure`); the sign of ``f`` says on which side a point lies.
* Trees: a volume-filling branching algorithm (Tawhai, Pullan and Hunter, Ann Biomed Eng 2000;28:793):
  a branch owns a cloud of points spread through its territory; it heads for their centroid and stops 40 %
  of the way there, the cloud is split in two by a plane through the centroid along the branch, and each
  half grows a child. A branch owning one point runs to it, so the tree reaches the whole lobe, out to the
  pleura. Flow goes with the number of points a branch supplies, so its radius follows Murray's law
  (r ~ flow^(1/3)): the calibre shrinks each generation, faster on the small side of an unequal split.
* The pulmonary arteries run beside the bronchi (one tree, the artery offset to one side of its airway);
  the veins grow their own trees from a second, independent cloud of points, so they course between the
  bronchovascular bundles, as the veins do in the interlobular septa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cardiovlm.training.phantoms.segments import Segments

SPLIT_FRACTION = 0.4  # a branch runs this share of the way to its cloud's centroid (Tawhai 2000)
MAX_BRANCH_ANGLE_DEG = 60.0  # a child turns at most this far from its parent (Tawhai 2000)
TERMINALS_PER_ML = 0.5  # end points per mL of lobe: ~12 mm apart, so the trees end within ~8 mm of any lung point
MIN_BRANCH_MM = 1.5  # a branch shorter than this ends the tree (about a voxel at the chest size)


@dataclass
class Fissure:
    """A fissure as the surface ``n . (p - point) + k |p - point|_t^2 = 0`` (``|.|_t``: distance along the
    surface's tangent plane): a plane through ``point`` with normal ``n``, bowed by curvature ``k`` (1/mm)."""

    point: np.ndarray
    normal: np.ndarray
    curvature: float

    def value(self, p: np.ndarray) -> np.ndarray:
        """Signed value of the surface equation at points ``p`` (n, 3); about the distance in mm near it.
        Computed in ``p``'s precision (float32 points keep a whole-lung evaluation cheap)."""
        d = p - self.point.astype(p.dtype)
        along = d @ self.normal.astype(p.dtype)
        return along + p.dtype.type(self.curvature) * (np.square(d).sum(axis=1) - along ** 2)

    def sheet(self, p: np.ndarray, spacing: np.ndarray) -> np.ndarray:
        """Which voxel centres ``p`` (n, 3) make the surface one voxel thick with no gap: half a voxel either
        side along the surface's local gradient's largest component (a naive digital plane, bent), so no two
        face-neighbouring voxels on either side of it touch."""
        d = p - self.point.astype(p.dtype)
        n = self.normal.astype(p.dtype)
        along = d @ n
        k = p.dtype.type(self.curvature)
        value = along + k * (np.square(d).sum(axis=1) - along ** 2)
        grad = n + 2 * k * (d - along[:, None] * n)
        half = 0.5 * np.max(np.abs(grad) * np.asarray(spacing, p.dtype), axis=1)
        return np.abs(value) <= half


@dataclass
class Fissures:
    """The right and left major (oblique) fissures and the right minor (horizontal) fissure."""

    right_oblique: Fissure
    left_oblique: Fissure
    right_horizontal: Fissure

    def lobe(self, p: np.ndarray, side: float) -> np.ndarray:
        """Lobe index of points ``p`` (n, 3) in the right (``side`` -1) or left (+1) lung:
        0 upper, 1 middle (right only), 2 lower."""
        if side > 0:
            return np.where(self.left_oblique.value(p) > 0, 2, 0)
        lower = self.right_oblique.value(p) > 0
        upper = self.right_horizontal.value(p) > 0
        return np.where(lower, 2, np.where(upper, 0, 1))


def sample_fissures(rng: np.random.Generator, hilum_right: np.ndarray, hilum_left: np.ndarray) -> Fissures:
    """Fissures through each hilum: the oblique ones sloping 45-60 degrees down and forwards, the horizontal
    one level with the right hilum (a few degrees of tilt, drawn per patient)."""

    def oblique(hilum, side):
        a = np.deg2rad(rng.uniform(45, 60))  # slope on a sagittal view
        # the normal points backwards and down (the lower lobe is on its positive side) and outwards: on an
        # axial slice the fissure runs from behind the hilum forwards to the lateral chest wall
        n = np.array([side * rng.uniform(0.3, 0.55) * np.sin(a), np.sin(a), -np.cos(a)])
        return Fissure(np.asarray(hilum, float) + np.array([0.0, rng.uniform(0, 8), 0.0]), n / np.linalg.norm(n),
                       float(rng.uniform(-1, 1) / 1500.0))

    tilt = np.deg2rad(rng.uniform(-8, 8))
    n = np.array([0.0, np.sin(tilt), np.cos(tilt)])  # upward: the upper lobe is on its positive side
    horizontal = Fissure(np.asarray(hilum_right, float) + np.array([0.0, 0.0, rng.uniform(0, 12)]), n,
                         float(rng.uniform(-1, 1) / 1500.0))
    return Fissures(oblique(hilum_right, -1.0), oblique(hilum_left, 1.0), horizontal)


@dataclass
class Tree:
    """A branching tree as nodes and branches: branch ``i`` runs from node ``parent[i]`` (-1: the root point)
    to node ``i``, with radius ``radius[i]`` and generation ``generation[i]`` (1 for a root branch)."""

    root: np.ndarray
    nodes: np.ndarray  # (n, 3) end of each branch
    parent: np.ndarray  # (n,) index of the parent branch, -1 for a root branch
    radius: np.ndarray
    generation: np.ndarray

    def starts(self) -> np.ndarray:
        return np.where(self.parent[:, None] >= 0, self.nodes[np.maximum(self.parent, 0)], self.root)

    def segments(self, root_branches: bool = True, taper: float = 0.92) -> Segments:
        """The tree as tapered capsules (each branch narrows a little towards its end): its root branches
        (generation 1, from the hilum into the lobe), or, with ``root_branches`` False, all the others."""
        sel = (self.generation == 1) == root_branches
        if not sel.any():
            return Segments.empty()
        return Segments(self.starts()[sel], self.nodes[sel], self.radius[sel], taper * self.radius[sel])


def grow_tree(root: np.ndarray, direction: np.ndarray, cloud: np.ndarray, root_radius: float,
              min_radius: float) -> Tree:
    """Volume-filling tree from ``root`` (heading ``direction``) supplying the points of ``cloud``.

    A branch supplying ``m`` of the cloud's ``M`` points has radius ``root_radius * (m / M) ** (1/3)``
    (Murray's law with flow proportional to the territory); no branch is drawn thinner than ``min_radius``.
    All branches of a generation grow at once (the points carry their branch's index), so a tree of
    thousands of branches takes a few dozen array passes."""
    total = len(cloud)
    cos_max = float(np.cos(np.deg2rad(MAX_BRANCH_ANGLE_DEG)))
    sin_max = float(np.sin(np.deg2rad(MAX_BRANCH_ANGLE_DEG)))
    pts = np.asarray(cloud, float)
    gid = np.zeros(total, int)  # each point's growing branch
    starts = np.asarray(root, float)[None]
    d_parent = np.asarray(direction, float)[None]
    parent = np.array([-1])
    gen = np.array([1])
    nodes, parents, radii, gens = [], [], [], []
    n_done = 0
    while len(pts):
        g = len(starts)
        count = np.bincount(gid, minlength=g).astype(float)
        centre = np.stack([np.bincount(gid, pts[:, k], minlength=g) for k in range(3)], axis=1) / count[:, None]
        to_c = centre - starts
        dist = np.linalg.norm(to_c, axis=1)
        d = np.where(dist[:, None] > 1e-9, to_c / np.maximum(dist, 1e-9)[:, None], d_parent)
        # turn no more than the largest branching angle: rotate towards the parent's direction
        cos = np.einsum("ij,ij->i", d, d_parent)
        sharp = (parent >= 0) & (cos < cos_max)
        if sharp.any():
            perp = d[sharp] - cos[sharp, None] * d_parent[sharp]
            perp /= np.maximum(np.linalg.norm(perp, axis=1, keepdims=True), 1e-9)
            d[sharp] = cos_max * d_parent[sharp] + sin_max * perp
        terminal = (count == 1) | (dist * SPLIT_FRACTION < MIN_BRANCH_MM)
        end = starts + np.where(terminal, dist, SPLIT_FRACTION * dist)[:, None] * d
        ids = n_done + np.arange(g)
        n_done += g
        nodes.append(end)
        parents.append(parent)
        radii.append(np.maximum(root_radius * (count / total) ** (1.0 / 3.0), min_radius))
        gens.append(gen)
        # split each growing cloud by the plane through its centroid that contains its branch, across the
        # cloud's widest spread (the principal axis of the points seen along the branch)
        alive = ~terminal[gid]
        pts, gid = pts[alive], gid[alive]
        if not len(pts):
            break
        rel = pts - centre[gid]
        flat = rel - np.einsum("ij,ij->i", rel, d[gid])[:, None] * d[gid]
        cov = np.zeros((g, 3, 3))
        for a in range(3):
            for b in range(a, 3):
                cov[:, a, b] = cov[:, b, a] = np.bincount(gid, flat[:, a] * flat[:, b], minlength=g)
        axis = np.linalg.eigh(cov)[1][:, :, 2]
        side = np.einsum("ij,ij->i", flat, axis[gid]) > 0
        keys, gid = np.unique(2 * gid + side, return_inverse=True)
        gid = gid.reshape(-1)
        mother = keys // 2
        starts, d_parent, parent, gen = end[mother], d[mother], ids[mother], gen[mother] + 1
    if not nodes:
        return Tree(np.asarray(root, float), np.zeros((0, 3)), np.zeros(0, int), np.zeros(0), np.zeros(0, int))
    return Tree(np.asarray(root, float), np.concatenate(nodes), np.concatenate(parents), np.concatenate(radii),
                np.concatenate(gens))


def beside(rng: np.random.Generator, airway: Tree, root: np.ndarray, root_radius: float,
           min_radius: float, gap_mm: float = 0.5) -> Tree:
    """An artery that runs beside each branch of ``airway``: every node is moved sideways by the airway's
    and the artery's radii (and ``gap_mm``), always to the same side of the bundle (the side vector is carried
    down the tree, kept perpendicular to each branch), with its own Murray calibre; it starts at ``root``."""
    n = len(airway.nodes)
    if n == 0:
        return airway
    starts = airway.starts()
    dirs = airway.nodes - starts
    dirs /= np.maximum(np.linalg.norm(dirs, axis=1, keepdims=True), 1e-9)
    scale = root_radius / max(float(airway.radius.max()), 1e-9)
    radius = np.maximum(airway.radius * scale, min_radius)
    side = np.zeros((n, 3))
    seed = rng.normal(size=3)
    for gen in range(1, int(airway.generation.max()) + 1):  # a generation's parents are all set before it
        i = np.nonzero(airway.generation == gen)[0]
        s = np.where(airway.parent[i, None] >= 0, side[np.maximum(airway.parent[i], 0)], seed)
        s = s - np.einsum("ij,ij->i", s, dirs[i])[:, None] * dirs[i]
        side[i] = s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-9)
    offset = side * (airway.radius + radius + gap_mm)[:, None]
    return Tree(np.asarray(root, float), airway.nodes + offset, airway.parent.copy(), radius, airway.generation.copy())


def lobe_clouds(rng: np.random.Generator, cells: np.ndarray, cell_mm: float, lobes: np.ndarray, n_lobes: int,
                per_ml: float = TERMINALS_PER_ML) -> list[np.ndarray]:
    """Random points spread through each lobe: ``cells`` are the centres of the lung's lookup cells (edge
    ``cell_mm``), ``lobes`` their lobe index; ``per_ml`` points per mL, jittered inside their cells."""
    out = []
    for k in range(n_lobes):
        c = cells[lobes == k]
        n = int(round(len(c) * cell_mm ** 3 / 1000.0 * per_ml))
        if n == 0:
            out.append(np.zeros((0, 3)))
            continue
        pick = rng.choice(len(c), size=min(n, len(c)), replace=False)
        out.append(c[pick] + rng.uniform(-0.5, 0.5, (len(pick), 3)) * cell_mm)
    return out
