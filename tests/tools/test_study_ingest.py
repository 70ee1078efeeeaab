"""load_study: DICOM folder / zip / NIfTI round trips, series choice, de-identification, CLI."""

from __future__ import annotations

import hashlib
import json
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest

from cardiovlm.tools.core.settings import Settings
from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.study import load_nifti, load_study, save_nifti
from cardiovlm.tools.ingest.study_errors import NotAVolumeError, StudyNotFoundError, UnsupportedFormatError
from cardiovlm.ui.cli import main

SHAPE = (32, 24, 16)


def volume(shape=SHAPE, seed=0) -> np.ndarray:
    """A volume where every voxel differs, so any flip or shift shows."""
    rng = np.random.default_rng(seed)
    return rng.integers(-1024, 1500, shape).astype(np.int16)


def lps_affine(spacing=(0.5, 0.6, 1.25), origin=(-10.0, 20.0, 30.0)) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


@pytest.fixture
def series_dir(tmp_path):
    hu = volume()
    write_ct_series(hu, lps_affine(), tmp_path / "dicom", series_description="CCTA 0.6 mm", uid_seed="s",
                    contrast=True, patient_id="PID-98765", patient_name="Doe^Jane")
    return tmp_path / "dicom", hu


def test_dicom_folder_round_trip(series_dir):
    folder, hu = series_dir
    study = load_study(folder)
    assert study.hu.dtype == np.int16
    np.testing.assert_array_equal(study.hu, hu)
    np.testing.assert_allclose(study.spacing, (0.5, 0.6, 1.25))
    np.testing.assert_allclose(study.affine, lps_affine())
    assert study.modality == "CT" and study.hu_calibrated and not study.warnings
    assert study.metadata["contrast"] is True and study.metadata["kvp"] == 120


def test_nested_folders_are_searched(series_dir, tmp_path):
    folder, hu = series_dir
    nested = tmp_path / "export" / "PATIENT" / "STUDY"
    nested.parent.mkdir(parents=True)
    folder.rename(nested)
    np.testing.assert_array_equal(load_study(tmp_path / "export").hu, hu)


def test_zip_round_trip(series_dir, tmp_path):
    folder, hu = series_dir
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"DICOM/{path.name}")
    study = load_study(archive)
    np.testing.assert_array_equal(study.hu, hu)
    np.testing.assert_allclose(study.affine, lps_affine())
    assert study.source == str(archive)


def test_nifti_round_trip(series_dir, tmp_path):
    study = load_study(series_dir[0])
    path = save_nifti(study, tmp_path / "ccta.nii.gz")
    assert np.allclose(nib.load(path).affine, np.diag([-1, -1, 1, 1]) @ study.affine)  # RAS on disk
    back = load_study(path)
    np.testing.assert_array_equal(back.hu, study.hu)
    np.testing.assert_allclose(back.affine, study.affine)
    assert back.spacing == pytest.approx(study.spacing)


def test_flipped_dicom_is_reoriented_to_lps(tmp_path):
    """Columns running towards the patient's right and slices written head to foot."""
    hu = volume()
    affine = lps_affine()
    affine[:3, :3] = np.diag([-0.5, 0.6, -1.25])
    write_ct_series(hu, affine, tmp_path, series_description="flipped")
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu[::-1, :, ::-1])
    assert np.allclose(np.diag(study.affine)[:3], (0.5, 0.6, 1.25))
    # the same anatomical point has the same value before and after
    point = affine[:3, :3] @ [3, 4, 5] + affine[:3, 3]
    i, j, k = np.rint(study.mm_to_index(point)[0]).astype(int)
    assert study.hu[i, j, k] == hu[3, 4, 5]


def test_ras_ordered_nifti_is_reoriented_to_lps(tmp_path):
    data = volume()
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.6, 1.25, 1.0])), tmp_path / "ras.nii.gz")  # i -> Right
    study = load_nifti(tmp_path / "ras.nii.gz")
    np.testing.assert_array_equal(study.hu, data[::-1, ::-1, :])
    assert np.allclose(np.diag(study.affine)[:3], (0.5, 0.6, 1.25))


def test_float_rescale_gives_float32_hu(tmp_path):
    hu = volume().astype(np.float32) + 0.25
    write_ct_series(hu, lps_affine(), tmp_path, series_description="float")
    study = load_study(tmp_path)
    assert study.hu.dtype == np.float32
    slope = float(pydicom.dcmread(next(tmp_path.iterdir())).RescaleSlope)
    assert np.abs(study.hu - hu).max() <= slope / 2 + 1e-3


def test_nifti_labels_keep_integer_ids(tmp_path):
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:8, 5:9, 2:6] = 17
    nib.save(nib.Nifti1Image(labels, np.diag([-0.5, -0.6, 1.25, 1.0])), tmp_path / "labels.nii.gz")
    study = load_nifti(tmp_path / "labels.nii.gz", labels=True)
    assert study.hu.dtype == np.uint8 and not study.hu_calibrated
    np.testing.assert_array_equal(study.hu, labels)


def test_patient_identity_never_kept(series_dir):
    folder, _ = series_dir
    for path in folder.iterdir():  # add more identifying data than the writer does
        ds = pydicom.dcmread(path)
        ds.PatientBirthDate = "19471103"
        ds.OtherPatientIDs = "OTHER-555"
        ds.PatientAddress = "12 Harley Street"
        ds.save_as(path)
    study = load_study(folder)
    text = repr(study) + json.dumps(study.summary()) + json.dumps(study.metadata) + str(study.warnings)
    for secret in ("Doe", "Jane", "PID-98765", "19471103", "OTHER-555", "Harley"):
        assert secret not in text
    salt = Settings().patient_hash_salt
    assert study.patient_hash == hashlib.sha256(f"{salt}:PID-98765".encode()).hexdigest()
    other_site = load_study(folder, settings=Settings(patient_hash_salt="another-site"))
    assert other_site.patient_hash not in (None, study.patient_hash)


def test_thin_axial_ct_series_is_chosen(tmp_path):
    """A localizer, a 3 mm calcium series, a sagittal reformat with more images and the thin CCTA."""
    localizer = write_ct_series(volume((32, 24, 1)), lps_affine(), tmp_path / "1", series_number=1,
                                series_description="Topogram", uid_seed="loc")
    ds = pydicom.dcmread(localizer[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(localizer[0])
    write_ct_series(volume((32, 24, 5)), lps_affine(spacing=(0.5, 0.6, 3.0)), tmp_path / "2", series_number=2,
                    series_description="CaScore 3 mm", uid_seed="cac")
    thin = volume((32, 24, 20), seed=3)
    write_ct_series(thin, lps_affine(spacing=(0.5, 0.6, 0.6)), tmp_path / "3", series_number=3,
                    series_description="CCTA 0.6 mm", uid_seed="ccta")
    sagittal = np.eye(4)
    sagittal[:3, :3] = [[0, 0, 1.0], [0.6, 0, 0], [0, -0.6, 0]]  # rows along P, columns down S
    write_ct_series(volume((24, 24, 40)), sagittal, tmp_path / "4", series_number=4,
                    series_description="Sag MPR", uid_seed="sag")
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, thin)
    assert study.series_choice.startswith("series 3 'CCTA 0.6 mm' (CT, axial, 20 slices) chosen over 3 others")
    for other in ("Topogram", "CaScore 3 mm", "Sag MPR"):
        assert other in study.series_choice
    assert study.metadata["series_description"] == "CCTA 0.6 mm"


def test_only_a_localizer_is_not_a_volume(tmp_path):
    write_ct_series(volume((32, 24, 1)), lps_affine(), tmp_path, series_description="Topogram")
    with pytest.raises(NotAVolumeError, match="no 3D image series"):
        load_study(tmp_path)


def test_cli_prints_summary_as_json(series_dir, capsys):
    assert main(["ingest", str(series_dir[0]), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == list(SHAPE) and summary["spacing_mm"] == [0.5, 0.6, 1.25]
    assert summary["modality"] == "CT" and summary["warnings"] == []


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["ingest", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty" in err and "Traceback" not in err


def test_missing_path_and_unsupported_file(tmp_path):
    with pytest.raises(StudyNotFoundError, match="no such file"):
        load_study(tmp_path / "nope")
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(UnsupportedFormatError, match="DICOM folder"):
        load_study(tmp_path / "report.pdf")
