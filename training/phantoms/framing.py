"""Where a realistic (generator 2.0) phantom's cardiac reconstruction is centred.

A cardiac CT is reconstructed on a field of view planned round the heart, so every coronary artery is
in it. Generator 1.0 centres a fixed point of its heart; the larger 2.0 hearts, drawn over the
population's spread of size and orientation, then put a coronary artery outside the small field in
some cases (the ground truth grades a vessel the image does not show). So the heart-centred field is
moved the least that brings the whole drawn tree inside, with a margin, and made longer where the
tree is longer than the field.

In plane it is first slid, where the tree leaves room, so the superior vena cava stays inside: it runs
into the right atrium, and a field edge cutting it joins the heart's soft tissue to the edge of the
image, where a heart-outlining step (calcium scoring's heart region) no longer finds the heart.
"""

from __future__ import annotations

import numpy as np

from cardiovlm.training.phantoms.geometry import Anatomy

TREE_MARGIN_MM = 6.0  # coronary centreline to field edge: a vessel's radius plus its surrounding fat
SVC_MARGIN_MM = 4.0  # vena cava wall to field edge


def _tree_points(anat: Anatomy) -> np.ndarray:
    return np.concatenate([v.points for v in anat.vessels.values()])


def _interval(lo: np.ndarray, hi: np.ndarray, fov: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres that keep ``lo``..``hi`` ``margin`` inside a field of size ``fov`` (empty where low > high)."""
    return hi + margin - 0.5 * fov, lo - margin + 0.5 * fov


def _clip(centre: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """``centre`` moved the least distance into [low, high], per axis; left alone where that is empty."""
    return np.where(low <= high, np.clip(centre, low, np.maximum(low, high)), centre)


def cardiac_field(anat: Anatomy, heart_centre: np.ndarray, fov_mm: tuple[float, float, float]
                  ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Field-of-view centre (LPS mm) and size (mm) of a cardiac reconstruction of ``anat``.

    The field keeps the preset's size unless the coronary tree with its margins is longer (a scan is
    planned per patient from below the carina to below the apex: 12-16 cm, longer in a large heart);
    its centre is ``heart_centre`` moved the least that brings the whole tree inside, then, where the
    tree leaves room, the SVC in plane.
    """
    pts = _tree_points(anat)
    fov = np.maximum(np.asarray(fov_mm, float), np.ceil(np.ptp(pts, axis=0) + 2 * TREE_MARGIN_MM))
    tree_low, tree_high = _interval(pts.min(0), pts.max(0), fov, TREE_MARGIN_MM)
    centre = np.clip(np.array(heart_centre, float), tree_low, tree_high)
    size = (float(fov[0]), float(fov[1]), float(fov[2]))
    svc = getattr(anat.thorax, "svc", None)
    if svc is None or not len(svc.p0):
        return centre, size
    # the vena cava's wall over the field's slices, from its segments' ends and radii
    ends, radii = np.vstack([svc.p0, svc.p1]), np.r_[svc.r0, svc.r1]
    inside = np.abs(ends[:, 2] - centre[2]) <= 0.5 * fov[2]
    if inside.any():
        low, high = _interval((ends[inside, :2] - radii[inside, None]).min(0),
                              (ends[inside, :2] + radii[inside, None]).max(0), fov[:2], SVC_MARGIN_MM)
        centre[:2] = np.clip(_clip(centre[:2], low, high), tree_low[:2], tree_high[:2])
    return centre, size
