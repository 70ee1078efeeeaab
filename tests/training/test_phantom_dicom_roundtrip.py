"""A phantom written as DICOM reads back through study ingest as the same HU volume and grid."""

import numpy as np

from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.ingest.study import load_nifti, load_study


def test_phantom_dicom_ingest_round_trip(phantom_case):
    case = phantom_case(seed=11, size="small", with_cac=True, with_dicom=True)
    from_dicom = load_study(case / cf.CCTA_DICOM_DIR)
    from_nifti = load_nifti(case / cf.CCTA_NIFTI)
    assert from_dicom.modality == "CT" and from_dicom.hu_calibrated
    assert from_dicom.shape == from_nifti.shape
    assert np.allclose(from_dicom.spacing, from_nifti.spacing, atol=1e-4)
    assert np.allclose(from_dicom.affine, from_nifti.affine, atol=1e-3)
    assert np.array_equal(np.asarray(from_dicom.hu), np.asarray(from_nifti.hu))
    # The case folder itself loads from its DICOM series, and the calcium-scoring series has 3 mm slices.
    assert "DICOM" in str(load_study(case).metadata.get("format", "DICOM")).upper()
    cac = load_study(case / cf.CAC_DICOM_DIR)
    assert abs(cac.spacing[2] - 3.0) < 1e-3 and cac.shape[:2] == from_dicom.shape[:2]
    # The phantom's patient identity is never kept: only its salted hash.
    assert case.name not in repr(from_dicom.metadata) and from_dicom.patient_hash
