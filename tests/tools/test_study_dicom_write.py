"""write_ct_series writes a CT series that pydicom reads back voxel for voxel, in the right place."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from cardiovlm.tools.dicom.dicom_write import DicomWriteError, write_ct_series


def _volume(dtype=np.int16, shape=(32, 24, 6)):
    rng = np.random.default_rng(0)
    return rng.normal(40, 300, shape).clip(-1024, 3000).astype(dtype)


def _affine():
    affine = np.diag([0.5, 0.6, 1.25, 1.0])
    affine[:3, 3] = [-10.0, 20.0, 30.0]
    return affine


def test_pixels_positions_and_tags_read_back(tmp_path):
    hu = _volume()
    paths = write_ct_series(hu, _affine(), tmp_path, series_description="CCTA 0.6 mm", uid_seed="case-1",
                            contrast=True, kvp=100)
    assert len(paths) == hu.shape[2]
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == pydicom.uid.CTImageStorage
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        hu_back = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(hu_back, hu[:, :, k])
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], [-10.0, 20.0, 30.0 + 1.25 * k])
    assert [float(v) for v in ds.PixelSpacing] == [0.6, 0.5]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(ds.SpacingBetweenSlices) == 1.25 and float(ds.KVP) == 100
    assert ds.ContrastBolusAgent


def test_float_volume_is_quantised_within_half_a_slope(tmp_path):
    hu = _volume(np.float32) + 0.3
    paths = write_ct_series(hu, _affine(), tmp_path, series_description="float")
    ds = pydicom.dcmread(paths[2])
    back = ds.pixel_array.T * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.abs(back - hu[:, :, 2]).max() <= float(ds.RescaleSlope) / 2 + 1e-3


def test_uids_are_reproducible_from_the_seed(tmp_path):
    a = write_ct_series(_volume(), _affine(), tmp_path / "a", series_description="s", uid_seed=7)
    b = write_ct_series(_volume(), _affine(), tmp_path / "b", series_description="s", uid_seed=7)
    c = write_ct_series(_volume(), _affine(), tmp_path / "c", series_description="s", uid_seed=8)
    uids = [pydicom.dcmread(p[0]).SOPInstanceUID for p in (a, b, c)]
    assert uids[0] == uids[1] != uids[2]
    assert len({pydicom.dcmread(p).SOPInstanceUID for p in a}) == len(a)


def test_tilted_affine_is_refused(tmp_path):
    affine = _affine()
    affine[1, 2] = 0.3  # slices shifted along y: a gantry tilt
    with pytest.raises(DicomWriteError, match="tilted"):
        write_ct_series(_volume(), affine, tmp_path, series_description="tilt")


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dicom3tools (dciodvfy) not installed: run `bash scripts/install_test_services.sh`")
def test_dciodvfy_reports_no_errors(tmp_path):
    paths = write_ct_series(_volume(), _affine(), tmp_path, series_description="CCTA", uid_seed=1, contrast=True)
    out = subprocess.run(["dciodvfy", str(paths[0])], capture_output=True, text=True)
    assert "Error" not in out.stdout + out.stderr, out.stdout + out.stderr
