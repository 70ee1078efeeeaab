"""The image-derived coronary tree: found from intensities, graded (only here) against the phantom's truth."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, segments_of_artery
from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.ingest.study import load_nifti, load_study
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.coronary_tree import CoronaryTreeError, extract_coronary_tree

DEMO = get_settings().demo_cases_dir  # CARDIOVLM_DEMO_CASES_DIR: the same tests on rebuilt demo cases


@pytest.fixture(scope="module")
def lad_stenosis():
    case = cf.load_case(DEMO / "lad_stenosis")
    study = load_study(case.path(cf.CCTA_NIFTI))
    truth = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu
    return study, truth, extract_coronary_tree(study)


def _artery_ids(artery: str) -> list[int]:
    return [SEGMENTS_BY_CODE[s.code].label_id for s in segments_of_artery(artery)]


def test_the_right_coronary_artery_is_found_from_the_image_alone(lad_stenosis):
    study, truth, tree = lad_stenosis
    found, true = np.isin(tree.labels, _artery_ids("RCA")), np.isin(truth, _artery_ids("RCA"))
    dice = 2 * (found & true).sum() / (found.sum() + true.sum())
    assert dice > 0.5
    # a right-dominant heart is never called left-dominant (unknown is allowed when the crux is not seen)
    assert tree.dominance in ("right", None) and "L-PDA" not in tree.centerlines.segments
    assert "pRCA" in tree.centerlines.segments and tree.confidence["pRCA"] > 0


def test_the_left_main_bifurcation_gives_the_lad_and_the_circumflex():
    # measured on healthy: Dice LAD 0.70, LCx 0.72 (0.51 and 0.23 while the bifurcation's other branch was
    # also taken as the LAD's first diagonal and the circumflex's first marginal)
    case = cf.load_case(DEMO / "healthy")
    truth = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu
    tree = extract_coronary_tree(load_study(case.path(cf.CCTA_NIFTI)))
    for artery in ("LAD", "LCx"):
        found, true = np.isin(tree.labels, _artery_ids(artery)), np.isin(truth, _artery_ids(artery))
        assert 2 * (found & true).sum() / (found.sum() + true.sum()) > 0.6, artery
    assert {"pLAD", "pCx"} <= set(tree.centerlines.segments)


def test_a_lad_cut_off_by_its_proximal_lesion_is_joined_back_to_the_left_main(lad_stenosis):
    # the left main and the first 11 mm of the LAD lie inside the opened blood pool, and the 14 mm 70 % pLAD
    # lesion cuts the rest off: measured Dice LAD 0.70, LCx 0.64 (0.00 and 0.00 while the LAD stayed apart
    # and the circumflex was taken for it), and the image-only pLAD reading 78 % over 7 mm (99 % before)
    study, truth, tree = lad_stenosis
    for artery in ("LAD", "LCx"):
        found, true = np.isin(tree.labels, _artery_ids(artery)), np.isin(truth, _artery_ids(artery))
        assert 2 * (found & true).sum() / (found.sum() + true.sum()) > 0.5, artery
    landmarks = cf.load_case(DEMO / "lad_stenosis").landmarks()
    start, end = np.asarray(landmarks["f1_start"]), np.asarray(landmarks["f1_end"])
    plad = np.array([p.xyz for p in tree.centerlines.segments["pLAD"]])
    # the pLAD runs through the lesion's narrowest half (measured 2.4 mm from its middle, 0.2 mm from its end;
    # its first millimetres come from the left main's side, up to 4.8 mm off the phantom's own path)
    for point in ((start + end) / 2, end):
        assert np.linalg.norm(plad - point, axis=1).min() < 3.0


def test_a_chamber_rim_in_the_myocardium_is_not_taken_for_a_coronary():
    # measured on rca_stent: Dice LM 0.62, LAD 0.65, LCx 0.44 (0.00, 0.16, 0.23 while bright rims inside the
    # left ventricle, with no epicardial fat beside them, were bridged into the left system through the myocardium)
    case = cf.load_case(DEMO / "rca_stent")
    truth = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu
    tree = extract_coronary_tree(load_study(case.path(cf.CCTA_NIFTI)))
    for artery in ("LM", "LAD", "LCx"):
        found, true = np.isin(tree.labels, _artery_ids(artery)), np.isin(truth, _artery_ids(artery))
        assert 2 * (found & true).sum() / (found.sum() + true.sum()) > 0.4, artery


def test_a_long_curved_great_vessel_rim_is_not_taken_for_a_coronary_system(tmp_path):
    # phantom seed 9300: a 40+ mm curved rim touching the great vessels along its length was taken for a
    # coronary system and the left tree was lost; measured on this generation: LAD Dice 0.00 -> 0.53,
    # RCA 0.63 -> 0.69
    from cardiovlm.training.phantoms.generate import generate_case

    case = cf.load_case(generate_case(tmp_path, seed=9300, size="small", with_cac=False, with_dicom=False))
    truth = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu
    tree = extract_coronary_tree(load_study(case.path(cf.CCTA_NIFTI)))
    for artery in ("LAD", "RCA"):
        found, true = np.isin(tree.labels, _artery_ids(artery)), np.isin(truth, _artery_ids(artery))
        assert 2 * (found & true).sum() / (found.sum() + true.sum()) > 0.4, artery


def test_ostia_are_found_where_the_phantoms_put_them():
    # measured on the four demo cases: 6 of 8 ostia within 6 mm (4 before great-vessel rims were dropped;
    # the left ostium is still the weak part where the opening hides the left main)
    near = 0
    for name in ("healthy", "lad_calcified", "lad_stenosis", "rca_stent"):
        case = cf.load_case(DEMO / name)
        tree = extract_coronary_tree(load_study(case.path(cf.CCTA_NIFTI)))
        landmarks = case.landmarks()
        for side, landmark in (("right", "right_coronary_ostium"), ("left", "left_coronary_ostium")):
            if side in tree.ostia:
                near += np.linalg.norm(np.subtract(tree.ostia[side], landmarks[landmark])) < 6.0
    assert near >= 6


def test_a_great_vessel_rim_is_not_taken_for_the_left_coronary(lad_stenosis):
    # the straight partial-volume rim of the descending aorta touches bright structures along its whole
    # length; taken for a vessel it became the "left system" and put both ostia 40+ mm off
    study, _, tree = lad_stenosis
    landmarks = cf.load_case(DEMO / "lad_stenosis").landmarks()
    for side in ("left", "right"):
        assert np.linalg.norm(np.subtract(tree.ostia[side], landmarks[f"{side}_coronary_ostium"])) < 6.0


def test_the_tree_depends_on_the_image(lad_stenosis):
    study, _, _ = lad_stenosis
    uniform = Study(hu=np.full(study.shape, 40, np.int16), spacing=study.spacing, affine=study.affine)
    with pytest.raises(CoronaryTreeError, match="contrast"):
        extract_coronary_tree(uniform)
    no_contrast = Study(hu=np.where(study.hu > 150, 40, study.hu).astype(np.int16), spacing=study.spacing,
                        affine=study.affine)
    with pytest.raises(CoronaryTreeError):
        extract_coronary_tree(no_contrast)


def test_another_modality_is_refused(lad_stenosis):
    study, _, _ = lad_stenosis
    mr = Study(hu=study.hu, spacing=study.spacing, affine=study.affine, modality="MR", hu_calibrated=False)
    with pytest.raises(CoronaryTreeError, match="MR"):
        extract_coronary_tree(mr)


@pytest.mark.xfail(strict=True, reason="known gap: on this session's generator 2.0 (crescent RV, coronaries in the "
                   "grooves, lung trees to the periphery) the image-derived tree of seed 9803 loses its left main and "
                   "LAD (Dice LM 0.00, LAD 0.00, LCx 0.46, RCA 0.77); it fails once they are found: drop the mark")
def test_the_tree_is_found_on_a_realistic_thorax(tmp_path):
    # generator 2.0's thorax (seed 9803): the dense SVC made aorta, atria and vena cava "bone", pulmonary
    # veins passed for coronaries, and the skeleton kept one path per piece (kimimaro's nanometre default),
    # losing the left main; measured Dice LM 0.00 -> 0.71, LAD 0.29 -> 0.43, LCx 0.00 -> 0.61, RCA 0.72 -> 0.69
    from cardiovlm.training.phantoms.generate import generate_case

    case = cf.load_case(generate_case(tmp_path, seed=9803, size="small", with_cac=False, with_dicom=False,
                                      realistic=True))
    truth = load_nifti(case.path(cf.LABELS_NIFTI), labels=True).hu
    tree = extract_coronary_tree(load_study(case.path(cf.CCTA_NIFTI)))
    for artery in ("LM", "LAD", "LCx", "RCA"):
        found, true = np.isin(tree.labels, _artery_ids(artery)), np.isin(truth, _artery_ids(artery))
        assert 2 * (found & true).sum() / (found.sum() + true.sum()) > 0.35, artery


def test_centerlines_run_on_the_lumen_core_not_the_edge_of_the_tube_piece(lad_stenosis):
    # the skeleton of a tube piece the opening cut at the aortic root ran 1.5-2.5 mm off the left main's
    # axis, at its edge, where a cross-section read the healthy left main as a 55-56 % narrowing (healthy
    # and lad_stenosis); moved onto the lumen core it lies within 1.1 mm (healthy) and reads no LM lesion
    from cardiovlm.tools.quant.stenosis import measure_vessel

    study, truth, tree = lad_stenosis
    lm = measure_vessel(study.hu, study.affine, ("LM",), labels=tree.labels, vessel="LM",
                        centerlines=tree.centerlines)
    assert all(les.stenosis_percent < 50 for les in lm.lesions), [les.stenosis_percent for les in lm.lesions]
    case = cf.load_case(DEMO / "healthy")
    found = extract_coronary_tree(load_study(case.path(cf.CCTA_NIFTI))).centerlines.segments["LM"]
    true = np.array([p.xyz for pts in case.centerlines().segments.values() for p in pts])
    off = np.linalg.norm(np.array([p.xyz for p in found])[:, None] - true[None], axis=2).min(axis=1)
    assert off.max() < 1.5, off.max()



def test_the_lumen_level_comes_from_the_bright_left_heart_not_the_largest_or_a_mixing_chamber():
    # realistic phantom 9107 (generator of 3 Dec, 09:05): the right heart (230 HU, 161 mL) was the largest
    # enhanced structure; its level put the lumen edge at 84 HU, inside the myocardium, and the tree was
    # lost (Dice LM 0.70, RCA 0.73 once the left heart set the level). Here: fat, a large dim "right heart",
    # a smaller bright "left heart" and a "right atrium" where dense contrast mixes in (brightest 80th
    # percentile, uneven).
    from cardiovlm.tools.quant.coronary_tree import TreeConfig, _levels

    rng = np.random.default_rng(0)
    grid = np.mgrid[:110, :110, :110].astype(np.float32)
    hu = np.full(grid.shape[1:], -90.0, np.float32)

    def ball(centre, radius):
        return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2

    hu[ball((35, 35, 55), 33)] = 230.0  # 150 mL
    hu[ball((80, 80, 40), 25)] = 365.0  # 65 mL
    atrium = ball((82, 30, 80), 24)
    hu[atrium] = np.where(rng.random(atrium.sum()) < 0.3, 800.0, 260.0)
    hu += rng.normal(0, 20, hu.shape).astype(np.float32)
    _, _, lumen, fat = _levels(hu, np.ones(3), TreeConfig())
    assert 365 <= lumen <= 400, lumen
    assert -100 <= fat <= -80
