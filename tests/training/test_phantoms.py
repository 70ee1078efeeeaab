"""Synthetic CCTA phantoms: determinism, label-map consistency, measured stenosis, HU realism, CAC series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.nifti_io import read_nifti
from cardiovlm.training.phantoms import FindingRequest, PhantomError, PhantomFindingError, generate_case
from cardiovlm.training.phantoms.generate import build
from cardiovlm.training.phantoms.raster import Grid, rasterise

LAD_70 = FindingRequest("pLAD", "noncalcified_plaque", stenosis_percent=70, length_mm=14, position=0.5)
RCA_CA = FindingRequest("mRCA", "calcified_plaque", stenosis_percent=30, length_mm=8, calcium_peak_hu=900,
                        calcium_size_mm=4)


def _arrays(case: Path) -> dict[str, np.ndarray]:
    return {name: np.asarray(read_nifti(case / name, labels="labels" in name).hu)
            for name in (cf.CCTA_NIFTI, cf.LABELS_NIFTI, cf.CAC_NIFTI, cf.CAC_LABELS_NIFTI)}


@pytest.fixture(scope="module")
def case(phantom_case) -> Path:
    return phantom_case(seed=11, findings=[LAD_70, RCA_CA], dominance="right", with_dicom=False)


def test_same_seed_gives_identical_arrays_and_json(case, tmp_path):
    again = generate_case(tmp_path, seed=11, findings=[LAD_70, RCA_CA], dominance="right", with_dicom=False)
    a, b = _arrays(case), _arrays(again)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
    for name in (cf.FINDINGS_FILE, cf.CENTERLINES_FILE, cf.LANDMARKS_FILE, cf.MANIFEST_FILE):
        assert (case / name).read_bytes() == (again / name).read_bytes(), name
    other = generate_case(tmp_path, seed=12, findings=[LAD_70], dominance="right", with_dicom=False, with_cac=False)
    assert not np.array_equal(read_nifti(other / cf.CCTA_NIFTI).hu, a[cf.CCTA_NIFTI])


def test_case_folder_matches_the_case_format(case):
    loaded = cf.load_case(case)
    assert loaded.manifest.dominance == "right"
    assert loaded.findings.cad_rads.startswith("4A")  # the 70 % pLAD lesion
    assert {f.segment for f in loaded.findings.findings} == {"pLAD", "mRCA"}
    landmarks = loaded.landmarks()
    assert {"left_coronary_ostium", "right_coronary_ostium", "crux", "lv_apex", "f1_start", "f1_end"} <= set(landmarks)
    hu = read_nifti(case / cf.CCTA_NIFTI)
    assert hu.hu.dtype == np.int16 and tuple(loaded.manifest.ccta.shape) == hu.hu.shape


@pytest.mark.parametrize("seed", [1, 4])
def test_every_finding_segment_is_in_the_label_map(tmp_path, seed):
    root = generate_case(tmp_path, seed=seed, with_dicom=False, with_cac=False)
    labels = read_nifti(root / cf.LABELS_NIFTI, labels=True).hu
    present = set(np.unique(labels).tolist())
    gt = cf.load_case(root).findings
    for f in gt.findings:
        assert SEGMENTS_BY_CODE[f.segment].label_id in present, f.segment
    for s in gt.segments:
        assert (SEGMENTS_BY_CODE[s.segment].label_id in present) == s.present, s.segment


@pytest.mark.parametrize("dominance, has, lacks", [("right", {"R-PDA", "R-PLB"}, {"L-PDA", "L-PLB"}),
                                                   ("left", {"L-PDA", "L-PLB"}, {"R-PDA", "R-PLB"})])
def test_segments_follow_dominance(tmp_path, dominance, has, lacks):
    root = generate_case(tmp_path, seed=7, findings=[], dominance=dominance, with_dicom=False, with_cac=False)
    present = set(np.unique(read_nifti(root / cf.LABELS_NIFTI, labels=True).hu).tolist())
    assert all(SEGMENTS_BY_CODE[c].label_id in present for c in has)
    assert not any(SEGMENTS_BY_CODE[c].label_id in present for c in lacks)
    with pytest.raises(PhantomFindingError, match="does not exist"):
        generate_case(tmp_path, seed=7, findings=[FindingRequest(sorted(lacks)[0], "noncalcified_plaque",
                                                                 stenosis_percent=50)],
                      dominance=dominance, with_dicom=False)


def _measured_stenosis(request: FindingRequest, seed: int = 5, spacing: float = 0.2) -> float:
    """Diameter stenosis of the rasterised lumen: area profile along the centerline vs both references."""
    anat, lumens, calcs, extra, gt, _, _ = build(seed, findings=[request], dominance="right")
    f = gt[0]
    pts = anat.vessels[f.segment].points
    arc = np.arange(len(pts)) * 0.25
    keep = (arc >= f.start_mm - 4) & (arc <= f.end_mm + 4)
    lo, hi = pts[keep].min(0) - 4, pts[keep].max(0) + 4
    grid = Grid(tuple(int(n) for n in np.ceil((hi - lo) / spacing)), (spacing,) * 3, tuple(lo))
    lab, _ = rasterise(anat, lumens, calcs, grid)
    vox = np.argwhere(lab == SEGMENTS_BY_CODE[f.segment].label_id) * spacing + lo
    along = arc[cKDTree(pts).query(vox)[1]]
    bins = np.arange(f.start_mm - 3, f.end_mm + 3, 0.5)
    area = np.histogram(along, bins)[0] * spacing ** 3 / 0.5
    centre = bins[:-1] + 0.25
    ref = np.r_[area[centre < f.start_mm - 0.5], area[centre > f.end_mm + 0.5]].mean()
    core = (centre > f.start_mm + 0.3 * f.length_mm) & (centre < f.end_mm - 0.3 * f.length_mm)
    return 100 * (1 - np.sqrt(area[core].min() / ref))


@pytest.mark.parametrize("percent", [40, 70])
def test_rasterised_lumen_has_the_requested_stenosis(percent):
    measured = _measured_stenosis(FindingRequest("pLAD", "noncalcified_plaque", stenosis_percent=percent,
                                                 length_mm=12))
    assert abs(measured - percent) <= 10, measured


def test_occlusion_leaves_no_lumen():
    assert _measured_stenosis(FindingRequest("mLAD", "occlusion", length_mm=8)) > 95


def test_hu_statistics_match_the_literature(case):
    hu = read_nifti(case / cf.CCTA_NIFTI).hu.astype(np.float32)
    labels = read_nifti(case / cf.LABELS_NIFTI, labels=True).hu
    ranges = {"lv_blood": (250, 550), "lv_myocardium": (80, 140), "epicardial_fat": (-130, -60),
              "lung_left": (-920, -830), "aorta": (250, 550)}
    for name, (lo, hi) in ranges.items():
        core = ndimage.binary_erosion(labels == STRUCTURES_BY_NAME[name].label_id, iterations=2)
        assert core.sum() > 50, name
        assert lo <= hu[core].mean() <= hi, (name, hu[core].mean())
    blood = ndimage.binary_erosion(labels == STRUCTURES_BY_NAME["lv_blood"].label_id, iterations=3)
    assert 10 <= hu[blood].std() <= 40  # noise SD
    lumen = np.isin(labels, [SEGMENTS_BY_CODE[c].label_id for c in ("LM", "pRCA")])
    assert hu[lumen].mean() > 200  # opacified proximal coronaries


def test_acquisition_knobs_shift_noise_and_contrast_but_not_anatomy(case, tmp_path):
    """A shifted evaluation set changes the scan (noise, bolus timing), never the ground truth."""
    shifted = generate_case(tmp_path, seed=11, findings=[LAD_70, RCA_CA], dominance="right", with_dicom=False,
                            with_cac=False, noise_sd_hu=60.0, blood_hu=200.0)
    labels = read_nifti(case / cf.LABELS_NIFTI, labels=True).hu
    assert np.array_equal(read_nifti(shifted / cf.LABELS_NIFTI, labels=True).hu, labels)
    hu = read_nifti(shifted / cf.CCTA_NIFTI).hu.astype(np.float32)
    blood = ndimage.binary_erosion(labels == STRUCTURES_BY_NAME["lv_blood"].label_id, iterations=3)
    assert 180 <= hu[blood].mean() <= 220
    assert 45 <= hu[blood].std() <= 75
    manifest = cf.CaseManifest.model_validate_json((shifted / cf.MANIFEST_FILE).read_text())
    assert (manifest.contrast_blood_hu, manifest.noise_sd_hu) == (200.0, 60.0)
    with pytest.raises(PhantomError, match="noise_sd_hu"):
        generate_case(tmp_path, seed=11, noise_sd_hu=-5.0, with_dicom=False)


def test_cac_series_is_non_contrast_3mm_with_calcium(case):
    cac = read_nifti(case / cf.CAC_NIFTI)
    labels = read_nifti(case / cf.CAC_LABELS_NIFTI, labels=True).hu
    assert cac.spacing[2] == pytest.approx(3.0)
    calcium = labels == STRUCTURES_BY_NAME["calcified_plaque"].label_id
    assert calcium.any() and cac.hu[calcium].max() > 130
    blood = ndimage.binary_erosion(labels == STRUCTURES_BY_NAME["lv_blood"].label_id, iterations=2)
    assert abs(float(cac.hu[blood].mean()) - 40) < 20  # unenhanced blood


def test_stent_has_dense_struts(tmp_path):
    root = generate_case(tmp_path, seed=3, findings=[FindingRequest("pRCA", "stent", length_mm=15)],
                         with_dicom=False, with_cac=False)
    labels = read_nifti(root / cf.LABELS_NIFTI, labels=True).hu
    hu = read_nifti(root / cf.CCTA_NIFTI).hu
    struts = labels == STRUCTURES_BY_NAME["stent"].label_id
    assert struts.sum() > 20 and hu[struts].mean() > 600
    assert json.loads((root / cf.FINDINGS_FILE).read_text())["cad_rads"].endswith("S")


def test_bad_requests_are_refused_with_clear_messages(tmp_path, monkeypatch):
    with pytest.raises(PhantomFindingError, match="8-38 mm"):
        FindingRequest("pLAD", "stent", length_mm=50)
    with pytest.raises(PhantomFindingError, match="unknown coronary segment"):
        FindingRequest("LAD7", "occlusion")
    with pytest.raises(PhantomError, match="unknown phantom size"):
        generate_case(tmp_path, seed=1, size="huge")
    monkeypatch.setitem(sys.modules, "cardiovlm.tools.dicom.dicom_write", None)  # writer missing
    with pytest.raises(PhantomError, match="DICOM"):
        generate_case(tmp_path, seed=1, findings=[], with_cac=False)
