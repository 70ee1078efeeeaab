"""Case folders (cardiovlm.tools.core.case_format) load through load_study and
cardiovlm.tools.quant.context.load_context."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME, label_table
from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.nifti_io import write_nifti
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import UnsupportedFormatError
from cardiovlm.tools.quant.context import load_context

SHAPE = (32, 24, 16)
SPACING = (0.5, 0.5, 1.0)
ORIGIN = (-8.0, -6.0, 100.0)


def _affine() -> np.ndarray:
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = ORIGIN
    return affine


def _hand_made_case(root, *, dicom: bool = True, nifti: bool = True):
    """The smallest case folder a phantom would write: image, labels, label table, JSON ground truth."""
    case = root / "case_0001"
    case.mkdir(parents=True)
    hu = np.full(SHAPE, -100, np.int16)
    labels = np.zeros(SHAPE, np.uint8)
    labels[8:20, 6:18, 2:14] = STRUCTURES_BY_NAME["lv_blood"].label_id
    labels[4:6, 4:6, 4:12] = SEGMENTS_BY_CODE["pLAD"].label_id
    hu[labels > 0] = 400
    grid = cf.GridInfo(shape=SHAPE, spacing_mm=SPACING, origin_mm=ORIGIN)
    files = [cf.LABELS_NIFTI, cf.LABEL_TABLE_FILE, cf.CLINICAL_FILE]
    if dicom:
        write_ct_series(hu, _affine(), case / cf.CCTA_DICOM_DIR, series_description="CCTA phantom",
                        uid_seed="case_0001", contrast=True)
        files.append(cf.CCTA_DICOM_DIR)
    if nifti:
        write_nifti(hu + 1 if dicom else hu, _affine(), case / cf.CCTA_NIFTI)  # +1 tells the two apart
        files.append(cf.CCTA_NIFTI)
    write_nifti(labels, _affine(), case / cf.LABELS_NIFTI)
    cf.write_json(case / cf.LABEL_TABLE_FILE, {str(k): v for k, v in label_table().items()})
    cf.write_json(case / cf.CLINICAL_FILE, cf.ClinicalContext(
        age=61, sex="female", race="white", systolic_bp_mmhg=134, total_cholesterol_mg_dl=210,
        hdl_cholesterol_mg_dl=48, smoker=False, diabetes=True, hypertension_treatment=True,
        lipid_lowering=False, family_history_mi=False))
    cf.write_json(case / cf.MANIFEST_FILE, cf.CaseManifest(case_id="case_0001", seed=0, ccta=grid, files=files))
    return case, hu, labels


def test_case_folder_prefers_the_dicom_series(tmp_path):
    case, hu, _ = _hand_made_case(tmp_path)
    study = load_study(case)
    np.testing.assert_array_equal(study.hu, hu)  # not the NIfTI copy, which is hu + 1
    assert study.metadata["format"] == "DICOM" and study.source == str(case)


def test_case_folder_falls_back_to_nifti(tmp_path):
    case, hu, _ = _hand_made_case(tmp_path, dicom=False)
    study = load_study(case)
    np.testing.assert_array_equal(study.hu, hu)
    np.testing.assert_allclose(study.affine, _affine())


def test_case_folder_without_image(tmp_path):
    case, _, _ = _hand_made_case(tmp_path, dicom=False, nifti=False)
    with pytest.raises(UnsupportedFormatError, match="no image to load"):
        load_study(case)


def test_a_case_folders_ground_truth_is_kept_aside_by_default(tmp_path):
    case, hu, labels = _hand_made_case(tmp_path)
    ctx = load_context(case)
    # answers take anatomy from the image: the truth is only a reference for an explicit comparison
    assert ctx.labels is None or not np.array_equal(ctx.labels, labels)
    assert ctx.labels is not None or "no coronary tree" in ctx.anatomy_note
    np.testing.assert_array_equal(ctx.reference.labels, labels)
    assert ctx.reference.source == "phantom ground truth"


def test_load_context_brings_the_case_labels_when_asked_by_name(tmp_path):
    case, hu, labels = _hand_made_case(tmp_path)
    ctx = load_context(case, anatomy="case_labels")
    assert ctx.study.shape == SHAPE and ctx.labels.shape == ctx.study.shape
    assert ctx.labels.dtype == np.uint8
    np.testing.assert_array_equal(ctx.labels, labels)
    assert ctx.labels_source.startswith("phantom ground truth")
    assert ctx.clinical.age == 61 and ctx.case.manifest.case_id == "case_0001"
    # label and image agree voxel for voxel: the pLAD lumen is bright in the loaded CT
    assert np.all(ctx.study.hu[ctx.labels == SEGMENTS_BY_CODE["pLAD"].label_id] == 400)


def test_load_context_of_a_plain_dicom_folder_has_no_labels(tmp_path):
    case, hu, _ = _hand_made_case(tmp_path)
    ctx = load_context(case / cf.CCTA_DICOM_DIR)
    assert ctx.labels is None and ctx.case is None
    np.testing.assert_array_equal(ctx.study.hu, hu)
