"""The upper abdomen as a reader sees it: the liver's dome under the right hemidiaphragm with its left lobe
across the midline, and the stomach's fundus under the left dome with gas in front of a flat fluid level
(the patient is supine) and rugal folds standing into the gas; a stomach drawn without folds is the
control the fold measure fails."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from skimage.morphology import convex_hull_image

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.abdomen import DIAPHRAGM_MM, domes, paint_abdomen, sample_abdomen
from cardiovlm.training.phantoms.body import paint_body_wall
from cardiovlm.training.phantoms.generate import build
from cardiovlm.training.phantoms.raster import Grid

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}
SP = 1.5


@pytest.fixture(scope="module")
def upper_abdomen():
    anat, *_ = build(10, findings=[], thorax=True)
    t = anat.thorax
    cx, cy = t.body.outline.centre
    top = float(max(t.diaphragm[0][2], t.diaphragm[1][2]))
    grid = Grid((int(400 / SP), int(330 / SP), int(150 / SP)), (SP, SP, SP), (cx - 200.0, cy - 165.0, top - 130.0))
    shape = sample_abdomen(np.random.default_rng(3))

    def paint(shape):
        lab = np.zeros(grid.shape, np.uint8)
        cavity, _, _ = paint_body_wall(lab, grid, anat, t.body, t.wall, t.ribs, t.spine.canal_centre)
        gas = paint_abdomen(lab, grid, anat, t, shape, cavity, np.zeros(grid.shape, bool))
        return lab, gas

    return anat, grid, shape, paint


def _coords(grid: Grid):
    return [grid.origin[a] + grid.spacing[a] * np.arange(grid.shape[a]) for a in range(3)]


def test_liver_dome_lies_under_the_right_hemidiaphragm_and_its_left_lobe_crosses_the_midline(upper_abdomen):
    anat, grid, shape, paint = upper_abdomen
    lab, _ = paint(shape)
    xs, ys, zs = _coords(grid)
    bx = float(anat.body_centre[0])
    dome = domes(xs[:, None], ys[None, :], anat.thorax)
    liver = lab == L["liver"]
    hits, near = 0, 0
    for i in np.nonzero(xs < bx - 30)[0]:
        for j in range(0, grid.shape[1], 4):
            col = liver[i, j]
            if not col.any() or not (lab[i, j] == L["lung_right"]).any():
                continue
            top = zs[np.nonzero(col)[0].max()]
            hits += 1
            near += abs(dome[i, j] - DIAPHRAGM_MM - top) <= 2 * SP
    assert hits > 50 and near / hits > 0.9, (hits, near)
    # the left lobe: liver left of the midline just under the dome, in front of the stomach
    k = int(np.argmin(np.abs(zs - (float(anat.thorax.diaphragm[1][2]) - 20))))
    ii, jj = np.nonzero(liver[:, :, k])
    left = xs[ii] > bx + 15
    assert left.sum() * SP * SP > 100
    st_i, st_j = np.nonzero(lab[:, :, k] == L["stomach"])
    if len(st_j):
        assert ys[jj[left]].mean() < ys[st_j].mean()


def test_stomach_fundus_fills_the_left_dome_with_gas_in_front_of_a_flat_fluid_level(upper_abdomen):
    anat, grid, shape, paint = upper_abdomen
    lab, gas = paint(shape)
    xs, ys, zs = _coords(grid)
    sc = anat.thorax.stomach[0]
    i = int(np.argmin(np.abs(xs - sc[0])))
    j = int(np.argmin(np.abs(ys - sc[1])))
    top = zs[np.nonzero(lab[i, j] == L["stomach"])[0].max()]
    dome = float(domes(np.array(xs[i]), np.array(ys[j]), anat.thorax))
    assert abs(dome - DIAPHRAGM_MM - top) <= 2 * SP  # the fundus reaches up under the diaphragm
    k = int(np.argmin(np.abs(zs - sc[2])))
    fluid = (lab[:, :, k] == L["stomach"]) & ~gas[:, :, k]
    g = gas[:, :, k]
    assert g.sum() > 50 and fluid.sum() > 50
    cols = [c for c in range(grid.shape[0]) if g[c].any() and fluid[c].any()]
    deepest_gas = np.array([ys[np.nonzero(g[c])[0].max()] for c in cols])
    assert np.ptp(deepest_gas) <= SP + 1e-6  # a flat level
    assert ys[np.nonzero(g)[1]].mean() < ys[np.nonzero(fluid)[1]].mean()  # gas in front (supine)


def _gas_concavity(gas2d: np.ndarray) -> float:
    """Share of the gas's convex hull that is not gas: the bays between folds."""
    hull = convex_hull_image(gas2d)
    return float((hull & ~gas2d).sum() / hull.sum())


def test_rugal_folds_stand_into_the_gas(upper_abdomen):
    anat, grid, shape, paint = upper_abdomen
    zs = _coords(grid)[2]
    k = int(np.argmin(np.abs(zs - anat.thorax.stomach[0][2])))
    folded = _gas_concavity(paint(shape)[1][:, :, k])
    smooth = _gas_concavity(paint(replace(shape, rugae=(shape.rugae[0], 0.0, shape.rugae[2])))[1][:, :, k])
    assert smooth < 0.03 and folded > smooth + 0.03, (folded, smooth)
