"""Calcium scoring on analytic objects whose Agatston, volume and mass are computed by hand."""

import re

import numpy as np
import pytest

from cardiovlm.assistant.tools.calcium_score import calcium_score_tool
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.calcium import (
    CONTRAST_LABEL,
    NoCoronaryLabelsError,
    NotHounsfieldError,
    agatston_score,
    contrast_calcium_volume,
)
from cardiovlm.tools.quant.context import StudyContext

PLAD = SEGMENTS_BY_CODE["pLAD"].label_id
PRCA = SEGMENTS_BY_CODE["pRCA"].label_id
AORTIC_ROOT = STRUCTURES_BY_NAME["aortic_root"].label_id
PIXEL = 0.5  # mm in-plane


def grid(slice_mm=3.0, n_slices=6):
    """Soft tissue at 40 HU with a pLAD lumen (i 10-11, j 5-34) and a pRCA lumen (i 30-31, j 5-34)."""
    hu = np.full((48, 40, n_slices), 40, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:12, 5:35] = PLAD
    labels[30:32, 5:35] = PRCA
    return hu, labels, (PIXEL, PIXEL, slice_mm)


def test_block_gives_the_hand_computed_agatston_volume_and_mass():
    hu, labels, spacing = grid()
    hu[12:16, 15:19, 2:4] = 300  # 4 x 4 pixels next to the pLAD lumen, on slices 2 and 3
    hu[13, 16, 2] = 450  # peak of slice 2 -> weight 4; slice 3 peaks at 300 -> weight 3
    out = agatston_score(hu, spacing, labels, calibration=0.002)
    area = 16 * PIXEL * PIXEL  # 4 mm^2 per slice
    assert out.agatston == pytest.approx(area * 4 + area * 3)  # 28
    voxel = PIXEL * PIXEL * 3.0
    assert out.volume_mm3 == pytest.approx(32 * voxel)
    assert out.mass_mg == pytest.approx(0.002 * voxel * (31 * 300 + 450))
    assert out.per_artery["LAD"].agatston == pytest.approx(28) and out.per_artery["RCA"].agatston == 0
    assert out.cac_drs == "A1/N1" and out.plaque_burden == "P1"
    assert [l.segment for l in out.lesions] == ["pLAD"] and out.lesions[0].peak_hu == 450  # noqa: E741
    assert "3 mm slices" in out.method and "8-connectivity" in out.method


@pytest.mark.parametrize("value, weight", [(129, 0), (130, 1), (199, 1), (200, 2), (299, 2), (300, 3),
                                           (399, 3), (400, 4), (1200, 4)])
def test_weight_bands_at_their_edges(value, weight):
    hu, labels, spacing = grid()
    hu[12:16, 15:19, 2] = value  # 4 mm^2 on one slice
    assert agatston_score(hu, spacing, labels).agatston == pytest.approx(4.0 * weight)


@pytest.mark.parametrize("pixels, counted", [(3, False), (4, True)])
def test_minimum_area_of_one_square_millimetre(pixels, counted):
    hu, labels, spacing = grid()
    hu[12, 15:15 + pixels, 2] = 500  # 0.25 mm^2 per pixel: 3 -> 0.75 mm^2, 4 -> 1.0 mm^2
    out = agatston_score(hu, spacing, labels)
    assert out.agatston == pytest.approx(pixels * 0.25 * 4 if counted else 0.0)
    assert out.cac_drs == ("A1/N1" if counted else "A0")


def test_diagonal_pixels_join_one_in_slice_lesion_but_slices_never_join():
    hu, labels, spacing = grid()
    for d in range(4):  # a diagonal line of 4 pixels: one 1 mm^2 lesion only with 8-connectivity
        hu[12 + d, 15 + d, 2] = 250
    hu[12, 20, 1:4] = 250  # 1 pixel on 3 slices: 0.25 mm^2 in each slice, too small each time
    assert agatston_score(hu, spacing, labels).agatston == pytest.approx(1.0 * 2)


def test_thin_slices_are_scaled_to_the_3mm_definition():
    hu3, labels3, sp3 = grid(3.0, 6)
    hu3[12:16, 15:19, 2:4] = 350  # 6 mm tall
    hu15, labels15, sp15 = grid(1.5, 12)
    hu15[12:16, 15:19, 4:8] = 350  # the same 6 mm on 1.5 mm slices
    thick, thin = agatston_score(hu3, sp3, labels3), agatston_score(hu15, sp15, labels15)
    assert thick.agatston == pytest.approx(2 * 4 * 3) and thin.agatston == pytest.approx(thick.agatston)
    assert thin.volume_mm3 == pytest.approx(thick.volume_mm3)
    assert "1.5/3 mm" in thin.method and "factor" in thin.method


def test_per_artery_assignment_and_listed_exclusions():
    hu, labels, spacing = grid()
    labels[20:26, 20:26, :] = AORTIC_ROOT
    hu[12:16, 15:19, 2] = 420  # LAD: 4 mm^2 x 4
    hu[32:36, 10:14, 3] = 250  # RCA: 4 mm^2 x 2
    hu[21:25, 21:25, 2] = 600  # inside the aortic root (valve calcification)
    hu[44:48, 36:40, 2] = 600  # 6.5 mm from the pRCA lumen: beyond the segment limit, RCA territory
    hu[39:42, 20:24, 4] = 600  # 4 mm from the pRCA lumen: RCA territory, distance reported
    out = agatston_score(hu, spacing, labels, max_distance_mm=3.0)
    # Calcium farther than 3 mm from a lumen label still counts (it used to vanish).
    assert out.agatston == pytest.approx(16 + 8 + 16 + 12)
    assert {a: v.agatston for a, v in out.per_artery.items()} == {"LM": 0, "LAD": 16, "LCx": 0, "RCA": 36}
    assert out.cac_drs == "A1/N2" and out.unassigned_agatston == 0
    far = sorted(l.distance_to_coronary_mm for l in out.lesions if l.distance_to_coronary_mm > 3)  # noqa: E741
    assert far == pytest.approx([4.0, 6.5], abs=0.3)
    assert all("RCA territory" in l.assignment for l in out.lesions if l.distance_to_coronary_mm > 3)  # noqa: E741
    assert [(l.location, l.excluded_reason) for l in out.excluded] == [  # noqa: E741
        ("aortic root", "lies in the aortic root, not in a coronary artery")]


def test_calcium_beyond_the_territory_limit_is_unassigned_but_counted():
    hu, labels, spacing = grid()
    hu[44:48, 36:40, 2] = 600  # 6.5 mm from the pRCA lumen
    out = agatston_score(hu, spacing, labels, territory_max_mm=5.0)
    assert out.agatston == pytest.approx(16) and out.unassigned_agatston == pytest.approx(16)
    assert out.per_artery["RCA"].agatston == 0 and out.lesions[0].artery is None
    assert re.match(r"unassigned: 6\.\d mm from the nearest coronary label \(pRCA\)", out.lesions[0].assignment)


def test_contrast_ccta_reports_volume_only_above_the_local_lumen():
    rng = np.random.default_rng(0)
    hu = np.full((48, 40, 40), 40.0)
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:14, 5:35, 5:35] = PLAD
    hu[labels == PLAD] = rng.normal(350, 15, int((labels == PLAD).sum()))  # opacified lumen
    hu[14:18, 15:19, 10:14] = 800  # 64 voxels of calcium against the lumen wall
    out = contrast_calcium_volume(hu, (PIXEL, PIXEL, PIXEL), labels)
    assert out.kind == "contrast_volume" and out.label == CONTRAST_LABEL and out.agatston is None
    assert out.volume_mm3 == pytest.approx(64 * PIXEL**3)
    assert out.per_artery["LAD"].volume_mm3 == pytest.approx(64 * PIXEL**3) and out.cac_drs is None
    assert "local lumen attenuation" in out.method


def test_mr_and_missing_labels_give_clear_messages():
    hu, labels, spacing = grid()
    with pytest.raises(NotHounsfieldError, match="needs a CT in Hounsfield units; this study is MR"):
        agatston_score(hu, spacing, labels, modality="MR", hu_calibrated=False)
    with pytest.raises(NoCoronaryLabelsError, match="no coronary tree"):
        contrast_calcium_volume(hu, spacing, None)
    with pytest.raises(NoCoronaryLabelsError):
        contrast_calcium_volume(hu, spacing, np.zeros_like(labels))


def test_tool_uses_the_calcium_scoring_series_of_the_session():
    hu, labels, spacing = grid()
    hu[12:16, 15:19, 2] = 420
    hu[32:36, 10:14, 3] = 250
    cac = Study(hu=hu, spacing=spacing, affine=np.diag([*spacing, 1.0]))
    ccta = Study(hu=np.zeros((8, 8, 8), np.int16), spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    ctx = StudyContext(study=ccta, cac=cac, cac_labels=labels, labels_source="supplied")
    out = calcium_score_tool.invoke({"artery": "right coronary"}, config=ctx.as_config())
    assert out["kind"] == "agatston" and out["agatston"] == pytest.approx(24)
    assert [l["artery"] for l in out["lesions"]] == ["RCA"]  # noqa: E741
    assert out["lesions"][0]["centroid_mm"] == pytest.approx((33.5 * PIXEL, 11.5 * PIXEL, 9.0))


def _case_with_calcium_series(root, *, with_labels=True):
    """A case folder with a contrast CCTA, a 3 mm calcium-scoring series and their label maps."""
    from cardiovlm.tools.core import case_format as cf
    from cardiovlm.tools.ingest.nifti_io import write_nifti

    hu, labels, spacing = grid()
    hu[12:16, 15:19, 2] = 420  # LAD, 4 mm^2 x 4
    affine = np.diag([*spacing, 1.0])
    case = root / "case_cac"
    case.mkdir()
    files = [cf.CCTA_NIFTI, cf.CAC_NIFTI]
    write_nifti(hu, affine, case / cf.CCTA_NIFTI)
    write_nifti(hu, affine, case / cf.CAC_NIFTI)
    if with_labels:
        write_nifti(labels, affine, case / cf.LABELS_NIFTI)
        write_nifti(labels, affine, case / cf.CAC_LABELS_NIFTI)
        files += [cf.LABELS_NIFTI, cf.CAC_LABELS_NIFTI]
    info = cf.GridInfo(shape=hu.shape, spacing_mm=spacing, origin_mm=(0.0, 0.0, 0.0))
    cf.write_json(case / cf.MANIFEST_FILE, cf.CaseManifest(case_id="case_cac", ccta=info, cac=info, files=files))
    return case


def test_cli_scores_a_case_folder_from_the_image(tmp_path, capsys):
    import json

    from cardiovlm.ui.cli import main

    assert main(["calcium", str(_case_with_calcium_series(tmp_path)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kind"] == "agatston" and out["agatston"] == pytest.approx(16) and out["cac_drs"].startswith("A1")


def test_cli_without_labels_gives_the_total_and_says_why_no_split(tmp_path, capsys):
    import json

    from cardiovlm.ui.cli import main

    assert main(["calcium", str(_case_with_calcium_series(tmp_path, with_labels=False)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["agatston"] == pytest.approx(16) and out["cac_drs"] == "A1" and out["per_artery"] == {}
    assert "coronary tree" in out["per_artery_note"]


@pytest.fixture(scope="module")
def phantom_cases(phantom_case):
    """Two small phantoms: calcified pLAD + mixed mRCA plaque, and a non-calcified mLAD plaque."""
    from cardiovlm.training.phantoms import FindingRequest

    requests = {3: [FindingRequest("pLAD", "calcified_plaque", stenosis_percent=40)],
                7: [FindingRequest("mLAD", "noncalcified_plaque", stenosis_percent=50)]}
    return [phantom_case(seed=seed, size="small", findings=f, with_dicom=False) for seed, f in requests.items()]


def test_phantom_calcium_image_only_and_per_artery_with_the_case_labels(phantom_cases):
    from cardiovlm.tools.quant.calcium import score_context
    from cardiovlm.tools.quant.calcium_reference import reference_agatston
    from cardiovlm.tools.quant.context import load_context

    for case, calcified in zip(phantom_cases, ({"LAD"}, set())):
        labelled = load_context(case, anatomy="case_labels")
        truth = reference_agatston(labelled.cac.hu, labelled.cac.spacing, labelled.cac_labels)
        by_labels = score_context(labelled)
        assert by_labels.kind == "agatston"
        assert {a for a, v in by_labels.per_artery.items() if v.agatston > 0} == calcified
        image_only = score_context(StudyContext(study=labelled.study, cac=labelled.cac))
        assert image_only.per_artery == {} and "coronary tree" in image_only.per_artery_note
        if not labelled.reference.findings.extracoronary_calcium:  # valve calcium: a stated image-only limit
            assert image_only.cac_drs == truth.cac_drs.split("/")[0]
            assert image_only.agatston == pytest.approx(truth.agatston, rel=0.05, abs=0.5)
