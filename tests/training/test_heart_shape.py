"""Generator 2.0's ventricles as a radiologist looks at them: an RV crescent that wraps a septum as thick as
the LV wall, the LAD and PDA in the interventricular grooves, a rounded base with an AV groove, and every
coronary in epicardial fat. Controls: the same seeds drawn with the half-ellipsoid ventricles (the ring RV,
flat base) that generator 2.0 had before, through the same measurements."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy import ndimage
from scipy.ndimage import map_coordinates

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME
from cardiovlm.training.phantoms import generate
from cardiovlm.training.phantoms.geometry import RV_WALL_MM, sample_anatomy
from cardiovlm.training.phantoms.heart_measures import (
    RV_EDV_NORMAL_ML,
    SEPTUM_NORMAL_MM,
    rv_volume_ml,
    septum_thickness_mm,
)
from cardiovlm.training.phantoms.raster import Grid, _tissues

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}
BLOOD = [L[n] for n in ("lv_blood", "rv_blood", "la_blood", "ra_blood", "aorta", "aortic_root", "pulmonary_artery",
                        "superior_vena_cava", "pulmonary_veins", "pulmonary_arteries")]
VENTRICLE = [L[n] for n in ("lv_blood", "rv_blood", "lv_myocardium", "cardiac_wall")]
MUSCLE = [L["lv_myocardium"], L["cardiac_wall"]]


def _heart(seed: int, crescent: bool = True):
    """Anatomy and tissue labels (no coronaries painted) on a 1 mm grid round the heart."""
    if crescent:
        anat = generate.build(seed, findings=[], thorax=True)[0]
    else:
        mp = pytest.MonkeyPatch()
        mp.setattr(generate, "sample_anatomy", functools.partial(sample_anatomy, realistic=False))
        try:
            anat = generate.build(seed, findings=[], thorax=True)[0]
        finally:
            mp.undo()
    h = anat.heart
    grid = Grid.centred(np.round(h.base + 0.45 * h.length * h.u, 1), (150.0, 150.0, 150.0), (1.0, 1.0, 1.0))
    lab = _tissues(anat, grid)[0]
    return anat, grid, lab


@pytest.fixture(scope="module")
def left_dominant():
    return _heart(10)


@pytest.fixture(scope="module")
def right_dominant():
    return _heart(3)


@pytest.fixture(scope="module")
def ring():
    """Control: seed 10 with the half-ellipsoid ventricles."""
    return _heart(10, crescent=False)


def _sample(lab, grid, pts) -> np.ndarray:
    idx = ((pts - np.asarray(grid.origin)) / np.asarray(grid.spacing)).reshape(-1, 3).T
    return map_coordinates(lab, idx, order=0, cval=0).reshape(pts.shape[:-1])


def _lv_axis(anat, su: float) -> np.ndarray:
    h = anat.heart
    return h.base + anat.lv_shift * h.direction(anat.phi_lv) + su * h.u


def _rays(anat, grid, lab, t: float, angles, reach: float = 90.0, step: float = 0.25):
    """Labels along rays from the LV axis at fraction ``t`` of the LV's length, one row per angle."""
    h = anat.heart
    r = np.arange(0.0, reach, step)
    dirs = np.stack([h.direction(a) for a in angles])
    pts = _lv_axis(anat, t * anat.lv_outer[0])[None, None, :] + r[None, :, None] * dirs[:, None, :]
    return r, _sample(lab, grid, pts)


def _runs(labels: np.ndarray, label: int, step: float) -> np.ndarray:
    """Length (mm) of the first run of ``label`` along each ray (0 where none)."""
    out = np.zeros(len(labels))
    for n, row in enumerate(labels == label):
        hit = np.flatnonzero(row)
        if len(hit):
            gaps = np.flatnonzero(np.diff(hit) > 1)
            out[n] = ((hit[gaps[0]] if len(gaps) else hit[-1]) - hit[0] + 1) * step
    return out


@pytest.mark.parametrize("t", [0.3, 0.5])
def test_rv_cavity_is_a_crescent_on_the_septal_side_not_a_ring(left_dominant, ring, t):
    angles = np.arange(0.0, 360.0, 2.0)
    cover = {}
    for name, (anat, grid, lab) in (("crescent", left_dominant), ("ring", ring)):
        _, rows = _rays(anat, grid, lab, t, anat.phi_lv + angles)
        cover[name] = (rows == L["rv_blood"]).any(axis=1)
    # the ring wraps most of the LV; the crescent covers the septal third to half of it
    assert cover["ring"].mean() > 0.55, cover["ring"].mean()
    assert 0.3 <= cover["crescent"].mean() <= 0.5, cover["crescent"].mean()
    # ... and none of the LV's free wall from the anterior round to the inferior wall (phi_lv +/- 100 degrees)
    lateral = (angles <= 100) | (angles >= 260)
    assert cover["ring"][lateral].any() and not cover["crescent"][lateral].any()
    # thickest opposite the septum's middle, thinning towards the two grooves
    anat, grid, lab = left_dominant
    r, rows = _rays(anat, grid, lab, t, anat.phi_lv + 180 + np.array([-60.0, 0.0, 60.0]))
    depth = _runs(rows, L["rv_blood"], 0.25)
    assert depth[1] >= 15.0 and depth[1] > depth[0] + 5 and depth[1] > depth[2] + 5, depth


def test_rv_lies_anterior_and_right_of_the_lv_in_an_axial_slice(left_dominant, right_dominant):
    for anat, grid, lab in (left_dominant, right_dominant):
        x, y, z = (np.asarray(a).ravel() for a in grid.axes())
        k = int(round((_lv_axis(anat, 0.35 * anat.lv_outer[0])[2] - grid.origin[2]) / grid.spacing[2]))
        sl = lab[:, :, k]
        rv, lv = np.argwhere(sl == L["rv_blood"]), np.argwhere(sl == L["lv_blood"])
        assert len(rv) > 300 and len(lv) > 300
        rv_x, rv_y, lv_x, lv_y = x[rv[:, 0]], y[rv[:, 1]], x[lv[:, 0]], y[lv[:, 1]]
        # LPS: right is smaller x, anterior smaller y
        assert rv_x.mean() < lv_x.mean() - 10 and rv_y.mean() < lv_y.mean() - 10
        # none of the RV cavity lies behind the LV cavity
        assert (rv_y > lv_y.max()).mean() < 0.01


def test_rv_free_wall_is_3_to_5_mm(left_dominant, right_dominant):
    for anat, grid, lab in (left_dominant, right_dominant):
        thick = []
        for t in (0.3, 0.45):
            r, rows = _rays(anat, grid, lab, t, anat.phi_lv + 180 + np.arange(-30.0, 31.0, 5.0))
            for row in rows:
                blood = np.flatnonzero(row == L["rv_blood"])
                out = blood[-1] + 1  # first sample past the RV cavity, towards the epicardium
                wall = np.flatnonzero(row[out:] != L["cardiac_wall"])
                thick.append(wall[0] * 0.25)
        assert 3.0 <= float(np.median(thick)) <= 5.0 and min(thick) >= 2.0, thick
    assert 3.0 <= RV_WALL_MM <= 5.0


@pytest.mark.parametrize("seed", [0, 3, 10])
def test_rv_end_diastolic_volume_is_normal_and_a_little_larger_than_the_lv(seed, left_dominant, right_dominant):
    anat, grid, lab = {10: left_dominant, 3: right_dominant}.get(seed) or _heart(seed)
    ml = float(np.prod(grid.spacing)) / 1000
    rv, lv = rv_volume_ml(lab, grid.spacing), (lab == L["lv_blood"]).sum() * ml
    # normal adults: RVEDV about 100-230 mL (smaller women down to ~85), 1.0-1.3 times the LV's
    assert RV_EDV_NORMAL_ML[0] <= rv <= RV_EDV_NORMAL_ML[1] and 1.0 <= rv / lv <= 1.3, (rv, lv)


def test_septum_measured_on_the_label_map_is_the_drawn_lv_wall(left_dominant, right_dominant):
    for anat, grid, lab in (left_dominant, right_dominant):
        mm = septum_thickness_mm(lab, grid.spacing)
        # the median over base to apex: the apical septum is thinner than the drawn base/mid wall
        assert anat.lv_wall_mm - 2.5 <= mm <= anat.lv_wall_mm + 0.5, (mm, anat.lv_wall_mm)
        assert SEPTUM_NORMAL_MM[0] <= mm <= SEPTUM_NORMAL_MM[1]
    with pytest.raises(ValueError, match="no RV cavity"):
        septum_thickness_mm(np.where(lab == L["rv_blood"], 0, lab), grid.spacing)


def test_septum_is_as_thick_as_the_lv_wall_and_bulges_into_the_rv(left_dominant, right_dominant, ring):
    for anat, grid, lab in (left_dominant, right_dominant):
        for t in (0.3, 0.45):
            angles = anat.phi_lv + 180 + np.arange(-20.0, 21.0, 5.0)
            r, rows = _rays(anat, grid, lab, t, angles)
            septum = []
            for row in rows:
                blood = np.flatnonzero(row == L["lv_blood"])
                rv = np.flatnonzero(row == L["rv_blood"])
                assert len(rv), t  # the septum has the RV cavity on its other side
                septum.append((rv[0] - blood[blood < rv[0]][-1] - 1) * 0.25)
            # the LV's drawn wall (6.5-14 mm over the population; 9-12 typical), at 1 mm voxels
            assert abs(float(np.median(septum)) - anat.lv_wall_mm) <= 1.5, (t, septum, anat.lv_wall_mm)
        # convex towards the RV: its RV face is an arc round the LV axis, the middle standing off the chord
        t = 0.4
        angles = anat.phi_lv + 180 + np.array([-50.0, 0.0, 50.0])
        r, rows = _rays(anat, grid, lab, t, angles)
        face = [r[np.flatnonzero(row == L["rv_blood"])[0]] for row in rows]
        h = anat.heart
        pts = [f * h.direction(a) for f, a in zip(face, angles)]
        chord_mid = 0.5 * (pts[0] + pts[2])
        towards_rv = h.direction(anat.phi_lv + 180)
        assert float((pts[1] - chord_mid) @ towards_rv) > 5.0
    # control: the ring's RV reaches round behind the LV, so a ray through its inferolateral wall finds RV too
    anat, grid, lab = ring
    assert (_rays(anat, grid, lab, 0.45, [anat.phi_lv + 80])[1] == L["rv_blood"]).any()
    anat, grid, lab = left_dominant
    assert not (_rays(anat, grid, lab, 0.45, [anat.phi_lv + 80])[1] == L["rv_blood"]).any()


def _crosses_rv(anat, grid, lab, pts) -> np.ndarray:
    """For each point: does the straight line from it to the LV axis cross the RV cavity?"""
    h = anat.heart
    f = np.linspace(0.0, 1.0, 120)
    su = (pts - h.base) @ h.u
    axis = h.base + anat.lv_shift * h.direction(anat.phi_lv) + su[:, None] * h.u
    line = pts[:, None, :] + f[None, :, None] * (axis - pts)[:, None, :]
    return (_sample(lab, grid, line) == L["rv_blood"]).any(axis=1)


def _near(lab, grid, pts, labels, mm: float) -> np.ndarray:
    """For each point: is one of ``labels`` within ``mm``?"""
    off = np.stack(np.meshgrid(*[np.arange(-mm, mm + 0.1, 1.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    off = off[np.linalg.norm(off, axis=1) <= mm]
    return np.isin(_sample(lab, grid, pts[:, None, :] + off[None]), labels).any(axis=1)


@pytest.mark.parametrize("code", ["mLAD", "PDA"])
def test_lad_and_pda_run_in_the_interventricular_grooves_over_the_septum(left_dominant, right_dominant, ring, code):
    for anat, grid, lab in (left_dominant, right_dominant):
        seg = code if code in anat.vessels else ("R-PDA" if "R-PDA" in anat.vessels else "L-PDA")
        pts = anat.vessels[seg].points
        pts = pts[: int(0.7 * len(pts))]  # down to the apical third, where the RV ends
        # a perforator from here into the septum does not cross the RV cavity ...
        assert _crosses_rv(anat, grid, lab, pts).mean() < 0.05
        # ... and the groove has the RV free wall on one side and the LV on the other
        assert _near(lab, grid, pts, [L["cardiac_wall"]], 6.0).mean() > 0.9
        assert _near(lab, grid, pts, [L["lv_myocardium"]], 6.0).mean() > 0.9
    # control: on the ring the LAD runs over the RV free wall, with the RV cavity between it and the septum
    anat, grid, lab = ring
    seg = code if code in anat.vessels else "L-PDA"
    pts = anat.vessels[seg].points[: int(0.7 * len(anat.vessels[seg].points))]
    assert _crosses_rv(anat, grid, lab, pts).mean() > 0.5


def test_septal_perforators_dive_into_the_septum(left_dominant, right_dominant):
    for anat, grid, lab in (left_dominant, right_dominant):
        for branch in anat.coronary_detail.branches:
            if branch.name.startswith("septal"):
                labels = _sample(lab, grid, branch.points)
                # at most a graze of the crescent's tip where it leaves the LAD in the groove (1.5 mm)
                assert (labels == L["rv_blood"]).sum() * 0.25 <= 1.5, branch.name
                assert (labels[len(labels) // 2:] == L["lv_myocardium"]).mean() > 0.8, branch.name


def _outer_radius(anat, grid, lab, su: float, angles) -> np.ndarray:
    """Distance from the LV axis at depth ``su`` to where the ventricles end, per angle."""
    h = anat.heart
    r = np.arange(0.0, 90.0, 0.25)
    pts = _lv_axis(anat, su)[None, None, :] + r[None, :, None] * np.stack([h.direction(a) for a in angles])[:, None]
    inside = np.isin(_sample(lab, grid, pts), VENTRICLE)
    return np.array([r[np.argmin(row)] for row in inside])


def test_ventricular_base_is_rounded_into_the_av_groove_not_cut_flat(left_dominant, right_dominant, ring):
    for anat, grid, lab in (left_dominant, right_dominant):
        angles = anat.phi_lv + np.array([-30.0, 0.0, 30.0])
        rim, below = _outer_radius(anat, grid, lab, 1.0, angles), _outer_radius(anat, grid, lab, 10.0, angles)
        assert (below - rim >= 4.0).all(), (rim, below)
    anat, grid, lab = ring  # control: the half-ellipsoid ends on the base plane at its full radius
    angles = anat.phi_lv + np.array([-30.0, 0.0, 30.0])
    rim, below = _outer_radius(anat, grid, lab, 1.0, angles), _outer_radius(anat, grid, lab, 10.0, angles)
    assert (np.abs(below - rim) <= 2.0).all(), (rim, below)


def _misplaced(anat, grid, lab) -> dict[str, tuple[float, float]]:
    """Per segment: share of centerline points in a blood pool and in muscle (ostia's first 3 mm excepted)."""
    out = {}
    for code, v in anat.vessels.items():
        pts = v.points[12:] if code in ("LM", "pRCA") else v.points
        labels = _sample(lab, grid, pts)
        out[code] = (float(np.isin(labels, BLOOD).mean()), float(np.isin(labels, MUSCLE).mean()))
    return out


def test_every_coronary_runs_in_fat_not_through_a_chamber_or_the_myocardium(left_dominant, right_dominant, ring):
    for anat, grid, lab in (left_dominant, right_dominant):
        for code, (blood, muscle) in _misplaced(anat, grid, lab).items():
            assert blood == 0.0 and muscle <= 0.01, (code, blood, muscle)
    # control: the half-ellipsoid heart had the OMs in the LV wall and the distal RCA/LCx in an atrium
    bad = {c: bm for c, bm in _misplaced(*ring).items() if bm[0] > 0.05 or bm[1] > 0.05}
    assert len(bad) >= 2, bad


def _contact_mm2(grid, lab, a: str, b: str) -> float:
    """Area (mm2, voxel faces) where ``a``'s blood borders ``b``'s face to face."""
    six = ndimage.generate_binary_structure(3, 1)
    faces = (lab == L[a]) & ndimage.binary_dilation(lab == L[b], six)
    return float(faces.sum() * grid.spacing[0] * grid.spacing[1])


def test_atria_open_into_their_ventricles_through_the_av_valves(left_dominant, right_dominant, ring):
    for _, grid, lab in (left_dominant, right_dominant):
        # diastole: open mitral and tricuspid orifices, not a plate of muscle under the atria
        assert _contact_mm2(grid, lab, "la_blood", "lv_blood") >= 150.0
        assert _contact_mm2(grid, lab, "ra_blood", "rv_blood") >= 150.0
        # ... each atrium into its own ventricle only
        assert _contact_mm2(grid, lab, "la_blood", "rv_blood") == 0.0
        assert _contact_mm2(grid, lab, "ra_blood", "lv_blood") == 0.0
    # control: the half-ellipsoid's atria sit on a shelf of muscle
    _, grid, lab = ring
    assert _contact_mm2(grid, lab, "la_blood", "lv_blood") == 0.0 == _contact_mm2(grid, lab, "ra_blood", "rv_blood")
