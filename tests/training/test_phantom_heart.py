"""Generator 2.0's heart as a reader sees it: papillary muscles in the LV cavity, trabeculated endocardium,
contrast-filled atrial appendages and an RV outflow tract into the pulmonary trunk; the default phantoms
(trained checkpoint, demo cases) are unchanged, array for array."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.ndimage import map_coordinates

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.generate import SIZES, build, case_grid, generate_case
from cardiovlm.training.phantoms.heart_detail import _LVCavity
from cardiovlm.training.phantoms.raster import VALVE_GAP_MM, Contrast, form_image, rasterise

L = {n: s.label_id for n, s in STRUCTURES_BY_NAME.items()}
SEED = 10
BALL = np.ones((3, 3, 3), bool)
# sha256 of the default-mode (realistic=False) small phantom of seed 0, recorded before the heart detail
DEFAULT_SEED0 = {
    "ccta.nii.gz": "2782c3c040081f63612c9a7385999b72ed2f3e81486defbcbe7a8ce6b58f1035",
    "labels.nii.gz": "1414794be7c0d3f3b4be9eab25ad96bb50861d2327e3b1234a91c9a6436d224e",
    "cac.nii.gz": "7dafd3ec5f1cba787a2de47dc1e1a2f062ec8407696eca85370b33211bdc4131",
}


def _case(detail: bool):
    anat, lumens, calcs, extra, *_ = build(SEED, findings=[], thorax=True)
    if not detail:
        anat.thorax.heart_detail = None
    grid = case_grid(anat, SIZES["chest"])
    lab, parts = rasterise(anat, lumens, calcs, grid, extra)
    return anat, grid, lab, parts


@pytest.fixture(scope="module")
def realistic():
    return _case(True)


@pytest.fixture(scope="module")
def plain():
    """Control: the same realistic anatomy without the heart's detail."""
    return _case(False)


def _short_axis(anat, grid, lab, t: float):
    """The label map on the LV short-axis plane at fraction ``t`` of the cavity (0.5 mm pixels) and the
    cavity's core there (more than 3.5 mm inside the endocardium, clear of the trabeculae)."""
    h, lv = anat.heart, _LVCavity(anat)
    c = lv.centre + (4 + t * lv.a) * h.u
    s = np.arange(-50, 50, 0.5)
    pts = c + s[:, None, None] * h.e1 + s[None, :, None] * h.e2
    idx = ((pts - np.asarray(grid.origin)) / np.asarray(grid.spacing)).reshape(-1, 3).T
    plane = map_coordinates(lab, idx, order=0).reshape(len(s), len(s))
    core = s[:, None] ** 2 + s[None, :] ** 2 <= (lv.radius(t) - 3.5) ** 2
    return plane, core


def test_default_mode_phantom_is_unchanged(tmp_path):
    root = generate_case(tmp_path, seed=0, with_dicom=False)
    for name, digest in DEFAULT_SEED0.items():
        arr = np.asanyarray(nib.load(root / name).dataobj)  # as stored: labels uint8, images int16
        assert hashlib.sha256(arr.tobytes()).hexdigest() == digest, name


@pytest.mark.parametrize("t", [0.35, 0.4, 0.45])
def test_mid_ventricular_slice_holds_two_papillary_muscles_of_published_size(realistic, t):
    plane, core = _short_axis(*realistic[:3], t)
    myo = (plane == L["lv_myocardium"]) & core
    cc, n = ndimage.label(myo)
    areas = ndimage.sum(myo, cc, range(1, n + 1)) * 0.25  # mm2
    islands = areas[areas >= 12.0]
    assert len(islands) == 2, areas
    # drawn 12-15 mm at the base and 7-9 mm at the tip: a mid-ventricular cut is 7-14 mm across
    diam = 2 * np.sqrt(islands / np.pi)
    assert ((diam >= 7.0) & (diam <= 14.0)).all(), diam
    # the rest of the core is contrast-filled LV blood
    assert (plane[core & ~myo] == L["lv_blood"]).mean() > 0.97


def _myocardium_pieces(grid, lab) -> int:
    myo = lab == L["lv_myocardium"]
    cc, n = ndimage.label(myo, BALL)
    ml = ndimage.sum(myo, cc, range(1, n + 1)) * float(np.prod(grid.spacing)) / 1000
    return int((ml > 0.2).sum())


def test_papillary_muscles_hang_from_the_wall(realistic):
    anat, grid, lab, _ = realistic
    assert _myocardium_pieces(grid, lab) == 1  # the wall and both muscles are one piece of myocardium
    for name, segs in anat.thorax.heart_detail.papillary.items():
        base = np.round((segs.p0[0] - np.asarray(grid.origin)) / np.asarray(grid.spacing)).astype(int)
        assert lab[tuple(base)] == L["lv_myocardium"], name  # its base is in the myocardium
        length = float(np.linalg.norm(segs.p1[-1] - segs.p0[0]))
        assert 20.0 <= length <= 45.0, (name, length)  # autopsy range 16-45 mm


def _endocardial_relief(anat, grid, lab):
    """Wall voxels inside the drawn cavities: LV myocardium in the apical fifth of the LV cavity, RV wall
    inside the RV cavity's free-wall part (mL)."""
    h, lv = anat.heart, _LVCavity(anat)
    x, y, z = grid.axes()
    vml = float(np.prod(grid.spacing)) / 1000
    d = [x - float(lv.centre[0]), y - float(lv.centre[1]), z - float(lv.centre[2])]
    su = sum(d[a] * float(h.u[a]) for a in range(3))
    rr = sum(d[a] ** 2 for a in range(3)) - su ** 2
    t = (su - 4) / lv.a
    apical = (t > 0.8) & (t ** 2 + rr / lv.b ** 2 <= 1)
    lv_relief = float((apical & (lab == L["lv_myocardium"])).sum() * vml)
    # the RV cavity as the crescent RV draws it (geometry.VentricleShape), 2 mm clear of the septum
    b = [x - float(h.base[0]), y - float(h.base[1]), z - float(h.base[2])]
    su0 = sum(b[a] * float(h.u[a]) for a in range(3))
    rho, psi = h.shape.polar(sum(b[a] * float(h.e1[a]) for a in range(3)), sum(b[a] * float(h.e2[a]) for a in range(3)))
    septum = h.shape.lv_radius(su0)
    rv_cav = ((su0 > 3) & (rho <= septum + h.shape.rv_reach(su0, psi) - h.shape.rv_wall(psi, anat.rv_wall_mm))
              & (rho > septum + 2.0))
    rv_relief = float((rv_cav & (lab == L["cardiac_wall"])).sum() * vml)
    return lv_relief, rv_relief


def test_apical_lv_and_rv_free_wall_are_trabeculated(realistic, plain):
    lv_relief, rv_relief = _endocardial_relief(*realistic[:3])
    lv0, rv0 = _endocardial_relief(*plain[:3])
    assert rv0 == 0.0  # control: without the detail the RV cavity is smooth
    assert lv_relief > lv0 + 0.3 and rv_relief > 0.5, (lv_relief, lv0, rv_relief)
    # ...but a thin layer, as in a normal (compacted) heart: a few mL against a cavity of 100+ mL
    anat, grid, lab, _ = realistic
    vml = float(np.prod(grid.spacing)) / 1000
    assert lv_relief < 0.05 * (lab == L["lv_blood"]).sum() * vml
    assert rv_relief < 0.1 * (lab == L["rv_blood"]).sum() * vml


@pytest.mark.parametrize("chamber,blood,low,high", [("la", "la_blood", 0.8, 19.0), ("ra", "ra_blood", 2.0, 23.0)])
def test_atrial_appendage_is_a_contrast_filled_pouch_off_its_atrium(realistic, plain, chamber, blood, low, high):
    anat, grid, lab, parts = realistic
    centre, radius = getattr(anat, chamber)
    x, y, z = grid.axes()
    dist = np.sqrt(sum((ax - float(c)) ** 2 for ax, c in zip((x, y, z), centre)))
    # control: a bare sphere, but for the open AV valve under it (within VALVE_GAP_MM above the base plane)
    h = anat.heart
    su = sum((ax - float(b)) * float(u) for ax, b, u in zip((x, y, z), h.base, h.u))
    beyond = (plain[2] == L[blood]) & (dist > radius + 1.0)
    assert (su[beyond] > -VALVE_GAP_MM - 0.5).all()
    pool = lab == L[blood]
    pouch = pool & (dist > radius + 1.0) & ~beyond
    volume = float(pouch.sum() * np.prod(grid.spacing) / 1000)
    # LAA 0.8-19 mL (casts of 220 hearts, Ernst 1995); RAA 11.7-13.3 +/- 4 mL (CT, Li 2017), mean +/- 2.5 SD
    assert low <= volume <= high, volume
    assert float(dist[pool].max()) - radius > 15.0  # it reaches well out of the atrium's body
    assert ndimage.label(pool, BALL)[1] == 1  # one lumen with its atrium: connected, not a separate blob
    hu = form_image(lab, parts, grid, Contrast(blood_left=450.0, blood_right=380.0), 0.0, np.random.default_rng(0))
    inner = ndimage.binary_erosion(pouch, BALL)
    expected = 450.0 if chamber == "la" else 380.0
    assert abs(float(np.median(hu[inner])) - expected) < 20.0


def test_rv_outflow_tract_leads_into_the_pulmonary_trunk(realistic, plain):
    def touching(lab):
        return int((ndimage.binary_dilation(lab == L["rv_blood"], BALL) & (lab == L["pulmonary_artery"])).sum())
    assert touching(plain[2]) == 0  # control: without the outflow tract the trunk floats above the RV
    assert touching(realistic[2]) > 100
    anat, grid, lab, _ = realistic
    rvot = anat.thorax.heart_detail.rvot
    mid = rvot.p1[len(rvot) // 2]
    idx = tuple(np.round((mid - np.asarray(grid.origin)) / np.asarray(grid.spacing)).astype(int))
    assert lab[idx] == L["rv_blood"]
    # ASE: 21-35 mm proximal, 17-27 mm at the valve
    assert 21.0 <= 2 * rvot.r0[0] <= 35.0 and 17.0 <= 2 * rvot.r1[-1] <= 27.0


@pytest.fixture(scope="module")
def seed1():
    anat, lumens, calcs, extra, *_ = build(1, findings=[], thorax=True)
    grid = case_grid(anat, SIZES["chest"])
    lab, _ = rasterise(anat, lumens, calcs, grid, extra)
    return anat, grid, lab


def test_left_atrial_appendage_keeps_a_wall_from_the_pulmonary_trunk(seed1):
    # seed 1's appendage runs against the trunk: without the wall the lumens touched over 156 voxels
    anat, grid, lab = seed1
    (centre, radius), (x, y, z) = anat.la, grid.axes()
    outside = np.sqrt(sum((ax - float(c)) ** 2 for ax, c in zip((x, y, z), centre))) > radius + 1.0
    laa = ndimage.binary_dilation((lab == L["la_blood"]) & outside, BALL)
    assert laa.sum() > 500
    assert not (laa & np.isin(lab, [L["pulmonary_artery"], L["aorta"], L["aortic_root"]])).any()


SIX = ndimage.generate_binary_structure(3, 1)
WALLED = [("ra_blood", "aortic_root"), ("ra_blood", "la_blood"), ("la_blood", "aortic_root")]
CORONARY = sorted({s.label_id for s in SEGMENTS_BY_CODE.values()})


def _touching(lab, a: str, b: str, structure) -> int:
    """Voxels of ``a``'s blood with a neighbour (6- or 26-connected) in ``b``'s blood."""
    return int(((lab == L[a]) & ndimage.binary_dilation(lab == L[b], structure)).sum())


@pytest.mark.parametrize("a,b", WALLED)
def test_atria_keep_a_wall_from_the_aortic_root_and_from_each_other(realistic, plain, seed1, a, b):
    # control: the bare spheres and the root cut into each other (seed 10: the RA touched the root over 96
    # voxels face to face, the LA corner to corner over 88)
    assert _touching(plain[2], a, b, BALL) > 20
    for lab in (realistic[2], seed1[2]):
        assert _touching(lab, a, b, SIX) == 0
        assert _touching(lab, a, b, BALL) == 0  # not even corner to corner


@pytest.mark.parametrize("a,b", WALLED)
def test_wall_between_two_blood_pools_is_as_thick_as_a_real_one(realistic, plain, a, b):
    """Where the pools touched, the wall now between them: atrial wall and interatrial septum 2-5 mm (the
    septum ~1-2 mm at the fossa ovalis, 3-5 mm at its limbus), at 1.5 mm voxels."""
    anat, grid, lab, _ = realistic
    sp = np.asarray(grid.spacing)
    touched = (plain[2] == L[b]) & ndimage.binary_dilation(plain[2] == L[a], BALL) & (lab == L[b])
    assert touched.sum() > 20
    # centre to centre minus one voxel: the wall crossed on the straight line to the nearest blood of ``a``
    wall = ndimage.distance_transform_edt(lab != L[a], sampling=sp)[touched] - float(sp[0])
    assert wall.min() >= 1.0 and wall.max() <= 5.0, (wall.min(), wall.max())
    assert 1.5 <= float(np.median(wall)) <= 3.5, float(np.median(wall))
    # the wall is atrial wall (myocardial HU), not fat or a new label
    between = ndimage.binary_dilation(touched, BALL) & ~np.isin(lab, [L[a], L[b]])
    assert (lab[between] == L["cardiac_wall"]).mean() > 0.9


def test_heart_detail_leaves_the_coronary_lumens_alone(realistic, plain):
    real, ctrl = realistic[2], plain[2]
    for label in CORONARY:
        assert np.array_equal(real == label, ctrl == label), label
    assert np.isin(real, CORONARY).sum() > 500  # control: the coronaries are there to be compared
