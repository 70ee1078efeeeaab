"""A series is described by the orientation its headers give: axial, non-axial, or none given."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import MissingPositionError

AXIAL = np.diag([0.5, 0.5, 1.0, 1.0])


def _series(folder, slices: int, description: str, seed: str):
    hu = np.zeros((32, 24, slices), np.int16)
    return write_ct_series(hu, AXIAL, folder, series_description=description, uid_seed=seed)


def _drop_orientation(paths) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        del ds.ImageOrientationPatient
        ds.save_as(path)


def test_a_series_without_orientation_is_not_called_non_axial(tmp_path):
    _drop_orientation(_series(tmp_path, 4, "CCTA", "no-iop"))
    with pytest.raises(MissingPositionError) as err:
        load_study(tmp_path)
    message = str(err.value)
    assert "no usable ImageOrientationPatient" in message
    assert "non-axial" not in message


def test_the_series_choice_names_a_missing_orientation_and_a_real_reformat_apart(tmp_path):
    _series(tmp_path / "ccta", 4, "CCTA", "axial")
    _drop_orientation(_series(tmp_path / "bare", 6, "BARE", "bare"))
    sagittal = np.array([[0, 0, 1.0, 0], [0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 1]])  # slices stacked along L
    write_ct_series(np.zeros((32, 24, 5), np.int16), sagittal, tmp_path / "sag", series_description="SAG",
                    uid_seed="sag")
    choice = load_study(tmp_path).series_choice
    assert "'CCTA' (CT, axial, 4 slices) chosen" in choice
    assert "'BARE' (CT, no usable ImageOrientationPatient, 6 slices)" in choice
    assert "'SAG' (CT, non-axial, 5 slices)" in choice
