"""The input check: the VLM refuses what it was not trained for, with a typed error, and accepts the demo CCTAs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cardiovlm.tools.core.settings import PACKAGE_ROOT
from cardiovlm.tools.ingest.study import load_nifti, load_study
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.vlm.input_check import (
    BlankVolumeError,
    FieldOfViewError,
    LocalizerError,
    NoContrastError,
    NoiseVolumeError,
    NotCTError,
    ThickSlicesError,
    UnsupportedInputError,
    check_input,
)

DEMO = PACKAGE_ROOT / "tools" / "demo_cases"
DEMO_CASES = sorted(p.name for p in DEMO.iterdir() if (p / "ccta.nii.gz").is_file())


@pytest.fixture(scope="module")
def demo():
    return load_study(DEMO / "lad_stenosis")


@pytest.mark.parametrize("case", DEMO_CASES)
def test_the_demo_ccta_cases_are_accepted_with_their_blood_pool_measured(case):
    report = check_input(load_study(DEMO / case))
    assert 250 <= report.blood_pool_hu <= 600  # the phantoms' contrast timing range, found from the image
    assert report.blood_pool_ml > 100 and report.neighbour_correlation > 0.9
    assert report.extent_mm == (170.0, 170.0, 120.0)


def _refused(study, error: type[UnsupportedInputError]) -> str:
    with pytest.raises(error) as caught:
        check_input(study)
    message = str(caught.value)
    assert isinstance(caught.value, StudyError)  # shown to the user as a message, never a traceback
    assert "no mask or answer" in message
    return message


def test_a_blank_volume_is_refused(demo):
    for value in (-1000, 0):  # all air, all water
        message = _refused(dataclasses.replace(demo, hu=np.full(demo.shape, value, np.int16)), BlankVolumeError)
        assert "blank" in message and f"{value} HU" in message
    assert BlankVolumeError.code == "blank_volume"


def test_a_two_slice_series_is_refused(demo):
    message = _refused(dataclasses.replace(demo, hu=np.ascontiguousarray(demo.hu[:, :, 60:62])), LocalizerError)
    assert "only 2 slice(s)" in message and "localizer" in message
    described = dataclasses.replace(demo, metadata={"series_description": "Topogram 0.6 T20s"})
    assert "localizer" in _refused(described, LocalizerError)


def test_an_mr_series_is_refused(demo):
    mr = dataclasses.replace(demo, modality="MR", hu_calibrated=False)
    assert "MR, not CT" in _refused(mr, NotCTError)
    assert NotCTError.code == "not_ct"


def test_a_noise_volume_is_refused(demo):
    noise = np.random.default_rng(0).normal(0, 300, demo.shape).astype(np.float32)
    assert "noise" in _refused(dataclasses.replace(demo, hu=noise), NoiseVolumeError)


def test_thick_slices_are_refused_the_calcium_scoring_series_among_them(demo):
    cac = load_nifti(DEMO / "lad_stenosis" / "cac.nii.gz")  # the non-contrast 3 mm series shipped beside the CCTA
    assert "3.0 mm thick" in _refused(cac, ThickSlicesError)
    tagged = dataclasses.replace(demo, metadata={"slice_thickness_mm": 5.0})  # thickness from the DICOM header
    assert "5.0 mm thick" in _refused(tagged, ThickSlicesError)


def test_a_field_of_view_that_is_not_cardiac_is_refused(demo):
    crop = dataclasses.replace(demo, hu=np.ascontiguousarray(demo.hu[40:120, 40:120]))  # 80 mm: cuts the heart
    assert "80 x 80 x 120 mm" in _refused(crop, FieldOfViewError)
    soft = np.where(demo.hu < -500, 40, demo.hu).astype(np.int16)  # no lung: not the chest
    assert "no lung" in _refused(dataclasses.replace(demo, hu=soft), FieldOfViewError)


def test_a_non_contrast_scan_is_refused(tmp_path):
    from cardiovlm.training.phantoms.generate import generate_case

    # The same phantom anatomy with unenhanced blood (50 HU): only bone is bright.
    case = generate_case(tmp_path, seed=5, size="small", with_cac=False, with_dicom=False, blood_hu=50)
    message = _refused(load_study(case), NoContrastError)
    assert "no contrast-enhanced blood pool" in message
    enhanced = generate_case(tmp_path, seed=5, size="small", with_cac=False, with_dicom=False, blood_hu=300,
                             case_id="enhanced")
    assert check_input(load_study(enhanced)).blood_pool_ml > 100  # the control: same anatomy, enhanced, passes
