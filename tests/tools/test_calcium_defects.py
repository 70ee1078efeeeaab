"""Calcium defects found by review, each on an analytic volume whose right answer is computed by hand."""

import numpy as np
import pytest

from cardiovlm.assistant.tools.calcium_score import calcium_score_tool
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.calcium import agatston_score, contrast_calcium_volume, score_context
from cardiovlm.tools.quant.calcium_labels import labels_on_grid
from cardiovlm.tools.quant.context import StudyContext

PLAD = SEGMENTS_BY_CODE["pLAD"].label_id
AORTIC_ROOT = STRUCTURES_BY_NAME["aortic_root"].label_id
AORTA = STRUCTURES_BY_NAME["aorta"].label_id
PIXEL = 0.5


def grid(n_slices=6):
    hu = np.full((48, 40, n_slices), 40, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:12, 5:35] = PLAD
    return hu, labels, (PIXEL, PIXEL, 3.0)


def chest(blood_hu=40, n_slices=30, aorta=False):
    """Air, a fat-filled body, a spine of bone and a 40 HU heart ellipsoid (blood_hu in its cavity)
    on 1 x 1 x 3 mm voxels; a 4 x 4 px, 300 HU calcification on the heart's surface, slices 14-15;
    with ``aorta``, an ascending aorta (radius 12 mm) rising from the heart's base to the top slice."""
    i, j, k = np.meshgrid(np.arange(140), np.arange(140), np.arange(n_slices) * 3.0, indexing="ij")
    hu = np.full(i.shape, -1000, np.int16)
    hu[((i - 70) / 66) ** 2 + ((j - 70) / 60) ** 2 <= 1] = -100
    heart = ((i - 70) / 35) ** 2 + ((j - 60) / 30) ** 2 + ((k - 45) / 40) ** 2 <= 1
    hu[heart] = 40
    hu[((i - 70) / 28) ** 2 + ((j - 60) / 23) ** 2 + ((k - 45) / 33) ** 2 <= 1] = blood_hu
    hu[(i - 70) ** 2 + (j - 118) ** 2 <= 12 ** 2] = 250  # vertebral body
    hu[(i - 70) ** 2 + (j - 118) ** 2 <= 12 ** 2] = np.where(
        (i - 70) ** 2 + (j - 118) ** 2 >= 10 ** 2, 900, 250)[(i - 70) ** 2 + (j - 118) ** 2 <= 12 ** 2]
    if aorta:
        hu[((i - 60) ** 2 + (j - 55) ** 2 <= 12 ** 2) & (k >= 60)] = blood_hu
    hu[104:108, 58:62, 14:16] = 300  # just outside the heart's lateral wall (i = 105)
    return hu, (1.0, 1.0, 3.0)


def test_stent_bloom_with_few_strut_labels_is_not_calcium():
    hu, labels, spacing = grid()
    for i, value in ((8, 400), (9, 1500), (12, 1500), (13, 400)):  # two strut walls along the pLAD, with bloom
        hu[i, 8:32, 2:4] = value
    labels[9, 8:10, 2] = STRUCTURES_BY_NAME["stent"].label_id  # 2 of 192 voxels labelled as strut
    out = agatston_score(hu, spacing, labels)
    assert out.agatston == 0 and out.cac_drs == "A0"
    assert {l.location for l in out.excluded} == {"stent"}  # noqa: E741


def test_calcium_touching_stent_struts_is_kept():
    hu, labels, spacing = grid()
    for i, value in ((8, 400), (9, 1500), (12, 1500), (13, 400), (14, 180)):
        hu[i, 8:32, 2] = value
    labels[9, 8:32, 2] = labels[12, 8:32, 2] = STRUCTURES_BY_NAME["stent"].label_id
    hu[15:19, 18:22, 2] = 450  # calcium touching the bloom: 4 mm^2, weight 4
    out = agatston_score(hu, spacing, labels)
    # 16 AU of calcium, plus at most the 180 HU row it shares with the bloom (4 px x 0.25 mm^2 x 4)
    assert 16 <= out.agatston <= 20 and out.per_artery["LAD"].agatston == out.agatston


def test_calcium_touching_aortic_root_calcium_is_kept():
    hu, labels, spacing = grid()
    labels[20:30, 20:30, :] = AORTIC_ROOT
    hu[24:30, 22:26, 2] = 700  # valve calcium inside the root...
    hu[30:34, 22:26, 2] = 320  # ...touching coronary calcium just outside it
    hu[30, 22:26, 2] = 180  # the saddle between the two
    out = agatston_score(hu, spacing, labels)
    assert out.agatston == pytest.approx(3 * 4 * 0.25 * 3)  # the 3 x 4 px at 320 HU, weight 3
    assert [l.location for l in out.excluded] == ["aortic root"]  # noqa: E741


def test_contrast_path_without_any_candidate_answers_zero():
    hu, labels, spacing = grid(12)  # uniform 40 HU: no voxel above the lumen
    out = contrast_calcium_volume(hu, (PIXEL, PIXEL, PIXEL), labels)
    assert out.volume_mm3 == 0 and out.lesions == [] and "no voxel near the lumen" in out.method


def test_contrast_next_to_the_lumen_brighter_than_it_but_not_than_the_blood_pool_is_not_calcium():
    hu = np.full((48, 40, 40), 40, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[10:12, 5:35, 5:35] = PLAD
    hu[10:12, 5:35, 5:35] = 350  # lumen, noiseless
    labels[30:46, 5:35, 5:35] = AORTA
    hu[30:46, 5:35, 5:35] = 420  # labelled blood pool
    hu[12:14, 15:25, 10:20] = 420  # unlabelled contrast (an appendage the tree does not outline) on the lumen
    out = contrast_calcium_volume(hu, (PIXEL, PIXEL, PIXEL), labels)
    assert out.volume_mm3 == 0
    hu[14:16, 15:19, 10:14] = 900  # real calcium still found
    assert contrast_calcium_volume(hu, (PIXEL, PIXEL, PIXEL), labels).volume_mm3 == pytest.approx(32 * PIXEL ** 3)


def test_mass_says_when_it_is_uncalibrated():
    hu, labels, spacing = grid()
    hu[12:16, 15:19, 2] = 300
    plain = agatston_score(hu, spacing, labels)
    assert plain.mass_calibrated is False and any("uncalibrated" in w for w in plain.warnings)
    assert "UNCALIBRATED" in plain.method
    calibrated = agatston_score(hu, spacing, labels, calibration=0.0008)
    assert calibrated.mass_calibrated is True and not any("uncalibrated" in w for w in calibrated.warnings)


def test_image_only_total_excludes_bone_and_needs_no_labels():
    hu, spacing = chest()
    out = agatston_score(hu, spacing, None)
    assert out.agatston == pytest.approx(2 * 16 * 3)  # two slices of 16 mm^2 at weight 3; the spine is excluded
    assert out.per_artery == {} and out.cac_drs == "A1" and "coronary tree" in out.per_artery_note


def test_non_contrast_series_loaded_alone_is_scored_as_calcium_scoring():
    hu, spacing = chest()
    ctx = StudyContext(study=Study(hu=hu, spacing=spacing, affine=np.diag([*spacing, 1.0])))
    out = calcium_score_tool.invoke({}, config=ctx.as_config())
    assert out["kind"] == "agatston" and out["series_kind"] == "non_contrast" and out["agatston"] == pytest.approx(96)
    assert out["per_artery"] == {} and "coronary tree" in out["per_artery_note"]
    enhanced, _ = chest(blood_hu=400)
    ctx = StudyContext(study=Study(hu=enhanced, spacing=spacing, affine=np.diag([*spacing, 1.0])))
    with pytest.raises(Exception, match="contrast CCTA"):
        score_context(ctx)


def test_acquisition_warnings():
    hu, labels, _ = grid()
    hu[12:16, 15:19, 2] = 300
    out = agatston_score(hu, (PIXEL, PIXEL, 1.5), labels, metadata={"kvp": 100.0, "slice_thickness_mm": 3.0})
    text = " ".join(out.warnings)
    assert "1.5 mm apart" in text and "overlapping" in text and "100 kVp" in text and "only 6 slices" in text


def test_labels_are_carried_to_the_calcium_grid_in_patient_coordinates():
    ccta = np.zeros((40, 40, 30), np.uint8)
    ccta[10:12, 5:35, 12:15] = PLAD  # 1 mm grid, z 12-14 mm from its origin
    ccta_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    cac_affine = np.diag([1.0, 1.0, 3.0, 1.0])
    cac_affine[2, 3] = 1.0  # the calcium series starts 1 mm higher
    carried = labels_on_grid(ccta, ccta_affine, (40, 40, 10), cac_affine)
    assert np.flatnonzero((carried == PLAD).any(axis=(0, 1))).tolist() == [4]  # z = 13 mm


def test_uniform_ct_has_no_calcium():
    hu, spacing = chest()
    hu[hu == 300] = 40  # the calcification removed: heart, fat, air and bone only
    out = agatston_score(hu, spacing, None)
    assert out.agatston == 0 and out.cac_drs == "A0" and out.lesions == []


def test_a_lone_noise_voxel_is_not_a_lesion_but_a_bright_one_is():
    hu, spacing = chest()
    rng = np.random.default_rng(0)
    hu = (hu + rng.normal(0, 20, hu.shape)).astype(np.int16)
    hu[70, 40, 10], hu[70, 80, 20] = 150, 500  # lone voxels on the heart, 1 mm^2 each
    hu[104:108, 58:62, 14:16] = 300
    out = agatston_score(hu, spacing, None)
    peaks = sorted(round(l.peak_hu) for l in out.lesions)  # noqa: E741
    assert 500 in peaks and 150 not in peaks and "taken as noise" in out.method


def test_aortic_valve_calcium_at_the_root_traced_in_the_image_is_excluded():
    hu, spacing = chest(aorta=True)
    hu[58:62, 40:44, 24] = 600  # at the aortic root, where the ascending aorta meets the heart, near the surface
    out = agatston_score(hu, spacing, None)
    assert out.agatston == pytest.approx(96)  # the coronary calcification only
    assert [l.location for l in out.excluded] == ["aortic root"] and "ascending aorta traced" in out.method  # noqa: E741


def test_heart_pressed_against_a_chest_wall_that_leaves_the_field_is_still_found():
    hu, spacing = chest()
    hu[:, 10:33] = 40  # a 23 mm chest wall leaving the field at both sides, the heart's front pressed into it
    hu[20:24, 14:18, 14:16] = 300  # a calcified costal cartilage in the chest wall, far from the heart
    out = agatston_score(hu, spacing, None)
    assert not any("not found" in w for w in out.warnings)
    assert out.agatston == pytest.approx(96)  # the coronary calcification only, not the cartilage


@pytest.mark.slow
def test_realistic_phantom_image_only_score_matches_its_reference(tmp_path):
    """On a generator-2.0 phantom the field cuts the spine to the front of each vertebral body
    (small pieces >= 130 HU at the image edge, next to the heart): they are bone, not coronary."""
    from cardiovlm.tools.ingest.study import load_nifti
    from cardiovlm.tools.quant.calcium_reference import reference_agatston
    from cardiovlm.training.phantoms.generate import generate_case
    from cardiovlm.training.phantoms.lesions import FindingRequest

    case = generate_case(tmp_path, seed=851908846, size="small", realistic=True, with_dicom=False,
                         findings=[FindingRequest("mLAD", "calcified_plaque", stenosis_percent=30, length_mm=8,
                                                  calcium_peak_hu=900, calcium_size_mm=3.0)])
    cac = load_nifti(case / "cac.nii.gz")
    truth = reference_agatston(cac.hu, cac.spacing, load_nifti(case / "cac_labels.nii.gz", labels=True).hu)
    out = agatston_score(cac.hu, cac.spacing, None, affine=cac.affine)
    assert truth.agatston > 0 and out.agatston == pytest.approx(truth.agatston)
    assert not any("not found" in w for w in out.warnings)
