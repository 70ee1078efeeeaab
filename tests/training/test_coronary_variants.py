"""Coronary side branches and variants of the realistic phantom; the default phantom stays byte-identical."""

from __future__ import annotations

import copy
import hashlib
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.training.phantoms.coronary_variants import (
    P_BRIDGE,
    P_HIGH_TAKEOFF,
    paint_coronary_detail,
    sample_coronary_detail,
)
from cardiovlm.training.phantoms.generate import SIZES, build, case_grid, generate_case
from cardiovlm.training.phantoms.geometry import sample_anatomy
from cardiovlm.training.phantoms.lesions import apply_findings
from cardiovlm.training.phantoms.raster import Contrast, form_image, rasterise

# sha256 of the small default phantom of seed 5 (CT then label voxels), recorded before side branches existed
DEFAULT_SEED5_SHA256 = "4a23c3884dc28d28734c444385223b1ffd6241f0e5a9f3fb9a6f4224622c59c1"
LABEL = {name: s.label_id for name, s in STRUCTURES_BY_NAME.items()}
CONTRAST = Contrast(blood_left=420.0, blood_right=330.0)
SEED = 8


def test_default_phantom_is_byte_identical(tmp_path):
    root = generate_case(tmp_path, seed=5, size="small", with_dicom=False, with_cac=False)
    h = hashlib.sha256()
    for name in ("ccta.nii.gz", "labels.nii.gz"):
        h.update(np.asarray(nib.load(root / name).dataobj).tobytes())
    assert h.hexdigest() == DEFAULT_SEED5_SHA256


def _case(bridge: bool, high_takeoff: bool):
    anat, *_ = build(SEED, findings=[], thorax=True)
    detail = sample_coronary_detail(anat, np.random.default_rng([SEED, 5]), bridge=bridge, high_takeoff=high_takeoff)
    lumens, calcs, _ = apply_findings(anat, [])
    grid = case_grid(anat, SIZES["small"])
    lab, parts = rasterise(anat, lumens, calcs, grid, [])
    before = lab.copy(), {k: v.copy() for k, v in parts.items()}
    paint_coronary_detail(lab, parts, grid, anat, detail)
    hu = form_image(lab, parts, grid, CONTRAST, 0.0, np.random.default_rng(0))
    hu0 = form_image(before[0], before[1], grid, CONTRAST, 0.0, np.random.default_rng(0))
    return anat, detail, grid, lab, before[0], hu.astype(float), hu0.astype(float)


@pytest.fixture(scope="module")
def variant_case():
    return _case(bridge=True, high_takeoff=True)


def _voxels(points, grid):
    ijk = np.round((points - np.asarray(grid.origin)) / np.asarray(grid.spacing)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < grid.shape), axis=1)
    return np.unique(ijk[ok], axis=0)


def test_septal_perforators_run_inside_the_septum(variant_case):
    _, detail, grid, lab, lab0, hu, hu0 = variant_case
    septals = [b for b in detail.branches if b.name.startswith("septal_")]
    assert 2 <= len(septals) <= 4
    d_lv = ndimage.distance_transform_edt(lab0 != LABEL["lv_blood"], sampling=grid.spacing)
    d_rv = ndimage.distance_transform_edt(lab0 != LABEL["rv_blood"], sampling=grid.spacing)
    for b in septals:
        v = _voxels(b.points, grid)
        myo = v[lab[tuple(v.T)] == LABEL["lv_myocardium"]]
        assert len(myo) >= 10, b.name  # a centimetre or more of its course lies in the muscle
        idx = tuple(myo.T)
        # the septum: muscle with the LV cavity on one side and the RV cavity on the other
        assert np.median(d_lv[idx]) < 15 and np.median(d_rv[idx]) < 15, b.name
        # the lumen shows in the muscle; without the branch the same voxels are plain myocardium
        # a sub-millimetre lumen, blurred: well above plain muscle's ceiling below (the third perforator of the
        # crescent-RV heart reads +55 HU)
        assert hu[idx].mean() > CONTRAST.myocardium + 45, b.name
        assert hu0[idx].mean() < CONTRAST.myocardium + 25, b.name


def test_bridged_lad_stretch_is_surrounded_by_myocardium(variant_case):
    anat, detail, grid, lab, lab0, hu, hu0 = variant_case
    br = detail.bridge
    assert br is not None and br.segment == "mLAD" and 10 <= br.length_mm <= 25
    v = anat.vessels["mLAD"]
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(v.points, axis=0), axis=1))]
    mid = (arc > br.start_mm + 2) & (arc < br.end_mm - 2)
    org, sp = np.asarray(grid.origin), np.asarray(grid.spacing)
    # a shell 1.5-2.5 mm outside the lumen wall around the middle of the stretch
    rng = np.random.default_rng(0)
    shell = []
    for p, r in zip(v.points[mid][::4], v.radius[mid][::4]):
        d = rng.normal(size=(40, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        shell.append(p + (r + 2.0) * d)
    ijk = np.round((np.vstack(shell) - org) / sp).astype(int)
    idx = tuple(ijk.T)
    seg_labels = [s.label_id for s in SEGMENTS_BY_CODE.values()]
    around = ~np.isin(lab[idx], seg_labels)
    muscle = [LABEL["lv_myocardium"], LABEL["cardiac_wall"]]  # both are myocardium HU
    assert np.mean(np.isin(lab[idx][around], muscle)) > 0.8
    assert np.mean(np.isin(lab0[idx][around], muscle)) < 0.6  # control: fat round the LAD before
    assert hu[idx][around].mean() > 40 > hu0[idx][around].mean()
    # the LAD lumen itself is untouched
    keep = np.isin(lab0, seg_labels)
    assert np.array_equal(lab[keep], lab0[keep])


def test_conus_branch_runs_over_the_rv_outflow_tract(variant_case):
    anat, detail, grid, lab, lab0, hu, hu0 = variant_case
    conus = next(b for b in detail.branches if b.name == "conus")
    assert conus.parent == "pRCA"
    assert 0.3 <= conus.radius[0] <= 0.9
    d_rv = ndimage.distance_transform_edt(~np.isin(lab0, [LABEL["rv_blood"], LABEL["pulmonary_artery"]]),
                                          sampling=grid.spacing)
    distal = _voxels(conus.points[len(conus.points) // 2:], grid)
    assert np.median(d_rv[tuple(distal.T)]) < 10  # its distal half lies on the outflow tract
    assert np.linalg.norm(conus.points[-1] - anat.pulmonary.start) < 35
    painted = distal[np.isin(lab[tuple(distal.T)], [LABEL["epicardial_fat"], LABEL["cardiac_wall"]])]
    assert hu[tuple(painted.T)].mean() > hu0[tuple(painted.T)].mean() + 100


def test_acute_marginals_leave_the_mid_rca(variant_case):
    anat, detail, *_ = variant_case
    am = [b for b in detail.branches if b.name.startswith("acute_marginal_")]
    assert 1 <= len(am) <= 3
    for b in am:
        assert b.parent == "mRCA"
        assert np.min(np.linalg.norm(anat.vessels["mRCA"].points - b.points[0], axis=1)) < 0.01
        assert b.radius[-1] < b.radius[0]  # tapers


def test_high_takeoff_puts_the_rca_ostium_above_the_sinotubular_junction(variant_case):
    anat, detail, *_ = variant_case
    root_c, axis, root_r = anat.aortic_root
    ost = anat.landmarks["right_coronary_ostium"]
    stj = 0.62 * root_r  # top of the sinuses along the root axis
    assert (ost - root_c) @ axis > stj + 4.9
    assert np.allclose(anat.vessels["pRCA"].points[0], ost)
    steps = np.linalg.norm(np.diff(anat.vessels["pRCA"].points, axis=0), axis=1)
    assert steps.max() < 0.3  # one continuous centerline
    # control: without the variant the ostium sits in the right sinus, below the junction
    plain, *_ = build(SEED, findings=[], thorax=True)
    sample_coronary_detail(plain, np.random.default_rng([SEED, 5]), bridge=False, high_takeoff=False)
    assert (plain.landmarks["right_coronary_ostium"] - root_c) @ axis < stj


def test_variants_are_recorded_and_forcing_one_changes_nothing_else(variant_case):
    _, detail, *_ = variant_case
    record = json.loads(json.dumps(detail.variants()))
    assert record["myocardial_bridge"]["segment"] == "mLAD"
    assert record["rca_high_takeoff"]["rise_mm"] >= 5
    anat, *_ = build(SEED, findings=[], thorax=True)
    plain = sample_coronary_detail(copy.deepcopy(anat), np.random.default_rng([SEED, 5]), bridge=False,
                                   high_takeoff=False)
    bridged = sample_coronary_detail(copy.deepcopy(anat), np.random.default_rng([SEED, 5]), bridge=True,
                                     high_takeoff=False)
    assert plain.variants() == {"myocardial_bridge": None, "rca_high_takeoff": None}
    assert [b.name for b in plain.branches] == [b.name for b in bridged.branches]
    assert all(np.array_equal(a.points, b.points) for a, b in zip(plain.branches, bridged.branches))


def test_variant_share_is_small():
    anat = sample_anatomy(np.random.default_rng(0))
    n, bridges, takeoffs = 400, 0, 0
    for i in range(n):
        d = sample_coronary_detail(copy.deepcopy(anat), np.random.default_rng([i, 5]))
        bridges += d.bridge is not None
        takeoffs += d.high_takeoff is not None
    share = (bridges + takeoffs) / n
    assert 0.03 < share < 0.15, share
    assert bridges > takeoffs  # bridging is the commoner variant
    assert abs(bridges / n - P_BRIDGE) < 0.04 and abs(takeoffs / n - P_HIGH_TAKEOFF) < 0.03


def test_tree_without_its_segments_is_refused():
    anat = sample_anatomy(np.random.default_rng(0))
    del anat.vessels["mLAD"]
    with pytest.raises(ValueError, match="mLAD"):
        sample_coronary_detail(anat, np.random.default_rng(0))


def test_variant_landmarks_name_the_bridge_ends_and_the_ostium(variant_case):
    anat, detail, *_ = variant_case
    marks = detail.variant_landmarks(anat)
    assert set(marks) == {"myocardial_bridge_start", "myocardial_bridge_end", "rca_high_takeoff_ostium"}
    gap = np.linalg.norm(np.subtract(marks["myocardial_bridge_end"], marks["myocardial_bridge_start"]))
    assert 0.7 * detail.bridge.length_mm <= gap <= detail.bridge.length_mm + 0.5  # a chord of the stretch
    assert np.allclose(marks["rca_high_takeoff_ostium"], anat.landmarks["right_coronary_ostium"], atol=0.01)
    assert sample_coronary_detail(copy.deepcopy(anat), np.random.default_rng([SEED, 5]), bridge=False,
                                  high_takeoff=False).variant_landmarks(anat) == {}
