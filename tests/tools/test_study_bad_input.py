"""Every kind of bad input gives its typed error (or a stated repair), never a crash."""

from __future__ import annotations

import os
import stat
import struct
import tempfile
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag

from cardiovlm.tools.core.settings import Settings
from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest import study_errors
from cardiovlm.tools.ingest.safe_zip import check_zip
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import (
    CorruptDicomError,
    EmptyFolderError,
    GantryTiltError,
    ImageTooLargeError,
    ImplausibleValuesError,
    InconsistentSeriesError,
    InvalidNiftiAffineError,
    InvalidNiftiError,
    InvalidOrientationError,
    InvalidPixelSpacingError,
    InvalidPositionError,
    InvalidRescaleError,
    MissingPositionError,
    MixedAcquisitionsError,
    NestedArchiveError,
    NoDicomImagesError,
    NonImageObjectsOnlyError,
    NotARegularFileError,
    StudyError,
    UndecodableCompressionError,
    UnevenSpacingError,
    UnsafeZipError,
    UnsupportedPixelFormatError,
    ZipTooLargeError,
)

SHAPE = (32, 24, 16)


def write(folder, shape=SHAPE, **kwargs) -> tuple[list, np.ndarray]:
    hu = np.random.default_rng(0).integers(-1000, 1000, shape).astype(np.int16)
    kwargs.setdefault("series_description", "CCTA")
    kwargs.setdefault("uid_seed", "bad")
    return write_ct_series(hu, np.diag([0.5, 0.5, 1.0, 1.0]), folder, **kwargs), hu


def edit(path, **changes):
    ds = pydicom.dcmread(path)
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)


def put_raw(path, keyword, text, vr="DS"):
    """Store ``text`` as the raw value of ``keyword``, as a damaged or hostile file would (pydicom
    refuses to write most of these values itself)."""
    ds = pydicom.dcmread(path)
    tag = Tag(keyword)
    value = text.encode() if isinstance(text, str) else text
    if len(value) % 2:
        value += b" "
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    ds.save_as(path)


def put_raw_all(paths, keyword, text, vr="DS"):
    for path in paths:
        put_raw(path, keyword, text, vr)


def test_all_errors_are_value_errors_for_the_cli():
    assert issubclass(StudyError, ValueError)


def test_every_error_has_its_own_stable_code():
    classes = [c for c in vars(study_errors).values() if isinstance(c, type) and issubclass(c, StudyError)]
    codes = [c.code for c in classes]
    assert len(classes) >= 25 and len(set(codes)) == len(codes)
    assert all(c.code != StudyError.code for c in classes if c is not StudyError)
    assert CorruptDicomError("x").code == "dicom.corrupt"


def test_empty_folder(tmp_path):
    with pytest.raises(EmptyFolderError, match="empty"):
        load_study(tmp_path)


def test_folder_without_dicom(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(NoDicomImagesError, match="none of the 1 files is a DICOM image"):
        load_study(tmp_path)


def test_non_dicom_files_are_skipped_and_counted(tmp_path):
    _, hu = write(tmp_path)
    (tmp_path / "notes.txt").write_text("export log")
    (tmp_path / "thumb.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu)
    assert any("2 non-DICOM file(s) were skipped" in w for w in study.warnings)


def test_truncated_last_slice_is_left_out_with_a_warning(tmp_path):
    paths, hu = write(tmp_path)
    os.truncate(paths[-1], os.path.getsize(paths[-1]) - 400)
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu[:, :, :-1])
    assert any("damaged slice" in w for w in study.warnings)


def test_truncated_header_is_counted_as_damaged(tmp_path):
    paths, hu = write(tmp_path)
    os.truncate(paths[0], 200)
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu[:, :, 1:])
    assert any("1 damaged DICOM file(s) were skipped" in w for w in study.warnings)


def test_series_that_cannot_be_built_from_damaged_files(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 3))
    for path in paths[1:]:
        os.truncate(path, os.path.getsize(path) - 400)
    with pytest.raises(CorruptDicomError, match="2 of 3 slices.*truncated|truncated.*2 of 3 slices"):
        load_study(tmp_path)


def _non_image(path, sop_class, modality):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    if modality == "SEG":
        ds.Rows, ds.Columns = 32, 24
    ds.save_as(path, enforce_file_format=True)


def test_only_sr_and_seg_objects(tmp_path):
    _non_image(tmp_path / "report.dcm", "1.2.840.10008.5.1.4.1.1.88.11", "SR")
    _non_image(tmp_path / "seg.dcm", "1.2.840.10008.5.1.4.1.1.66.4", "SEG")
    with pytest.raises(NonImageObjectsOnlyError, match="structured report.*segmentation|segmentation.*structured"):
        load_study(tmp_path)


def test_non_ct_modality_is_loaded_but_flagged(tmp_path):
    _, hu = write(tmp_path, modality="MR")
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu)
    assert study.modality == "MR" and not study.hu_calibrated
    assert any("not Hounsfield units" in w for w in study.warnings)


def test_one_missing_slice_is_resampled_and_said(tmp_path):
    paths, hu = write(tmp_path)
    paths[7].unlink()  # a 2 mm gap in a 1 mm series
    study = load_study(tmp_path)
    assert study.shape == SHAPE and study.spacing[2] == pytest.approx(1.0)
    expected = np.rint((hu[:, :, 6].astype(float) + hu[:, :, 8]) / 2)
    np.testing.assert_array_equal(study.hu[:, :, 7], expected)
    np.testing.assert_array_equal(study.hu[:, :, 8], hu[:, :, 8])
    assert any("resampled linearly" in w for w in study.warnings)


def test_jittered_positions_are_resampled(tmp_path):
    paths, _ = write(tmp_path)
    edit(paths[5], ImagePositionPatient=[0, 0, 5.3])
    study = load_study(tmp_path)
    assert study.shape == SHAPE and any("uneven" in w for w in study.warnings)


def test_large_gap_is_refused(tmp_path):
    paths, _ = write(tmp_path)
    for path in paths[6:9]:
        path.unlink()  # a 4 mm gap in a 1 mm series
    with pytest.raises(UnevenSpacingError, match="slices are missing"):
        load_study(tmp_path)


def test_gantry_tilt_is_refused(tmp_path):
    paths, _ = write(tmp_path)
    for k, path in enumerate(paths):  # each slice shifted along y: a 17 degree tilt
        edit(path, ImagePositionPatient=[0, 0.3 * k, float(k)])
    with pytest.raises(GantryTiltError, match="gantry tilt of about 16.7 degrees"):
        load_study(tmp_path)


def test_one_slice_without_position_is_left_out(tmp_path):
    paths, hu = write(tmp_path)
    edit(paths[-1], ImagePositionPatient=None)
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu[:, :, :-1])
    assert any("slice_00016.dcm" in w and "no ImagePositionPatient" in w for w in study.warnings)


def test_series_without_positions(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    for path in paths:
        edit(path, ImagePositionPatient=None)
    with pytest.raises(MissingPositionError, match="no ImagePositionPatient.*4 of 4 slices"):
        load_study(tmp_path)


def test_inconsistent_rows_and_columns(tmp_path):
    write(tmp_path / "a", series_uid="1.2.3.4", shape=(32, 24, 4))
    write(tmp_path / "b", series_uid="1.2.3.4", shape=(30, 24, 4))
    with pytest.raises(InconsistentSeriesError, match="mixes image sizes"):
        load_study(tmp_path)


def _zip_with(tmp_path, name, info: zipfile.ZipInfo | None = None):
    archive = tmp_path / name
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/readme.txt", "fine")
        zf.writestr(info or name, b"payload")
    return archive


@pytest.mark.parametrize("entry", ["../escape.dcm", "/etc/escape.dcm", "a/../../escape.dcm", "C:/escape.dcm"])
def test_zip_path_traversal_is_refused_before_extracting(tmp_path, monkeypatch, entry):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/readme.txt", "fine")
        zf.writestr(entry, b"payload")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(UnsafeZipError, match="refused"):
        load_study(archive)
    assert not list(scratch.iterdir())  # nothing extracted, temporary folder removed
    assert not list(tmp_path.rglob("escape.dcm"))


def test_zip_symlink_is_refused(tmp_path):
    link = zipfile.ZipInfo("series/link.dcm")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = _zip_with(tmp_path, "link.zip", link)
    with pytest.raises(UnsafeZipError, match="symbolic link"):
        load_study(archive)


def test_zip_over_the_size_limit_is_refused_from_its_directory(tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(200_000))  # compresses to a few hundred bytes
    assert archive.stat().st_size < 2_000
    with pytest.raises(ZipTooLargeError, match="more than the limit"):
        load_study(archive, settings=Settings(max_zip_bytes=100_000))
    with pytest.raises(ZipTooLargeError, match="2 files, more than the limit of 1"):
        check_zip(_zip_with(tmp_path, "many.zip"), max_bytes=10**6, max_members=1)


def test_zip_with_lying_size_headers_is_stopped_while_extracting(tmp_path, monkeypatch):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(200_000))
    data = bytearray(archive.read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 22, 1_000)  # declare 1 kB uncompressed instead of 200 kB
    struct.pack_into("<I", data, central + 24, 1_000)
    archive.write_bytes(bytes(data))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(UnsafeZipError):
        load_study(archive, settings=Settings(max_zip_bytes=50_000))
    assert not list(scratch.iterdir())


def test_corrupt_zip(tmp_path):
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(UnsafeZipError, match="not a readable zip"):
        load_study(tmp_path / "broken.zip")


def test_nifti_with_nans(tmp_path):
    data = np.zeros((8, 8, 4), np.float32)
    data[2, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidNiftiError, match="1 voxels are NaN"):
        load_study(tmp_path / "nan.nii.gz")


def test_truncated_nifti(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.int16), np.eye(4)), tmp_path / "x.nii")
    os.truncate(tmp_path / "x.nii", 400)
    with pytest.raises(InvalidNiftiError, match="not a readable NIfTI"):
        load_study(tmp_path / "x.nii")


def test_rle_compressed_series_loads(tmp_path):
    paths, hu = write(tmp_path, shape=(32, 24, 4))
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path)
    np.testing.assert_array_equal(load_study(tmp_path).hu, hu)


def _jpeg2000_garbage(paths):
    for path in paths:  # JPEG 2000 frames that hold no image
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f" + bytes(98)])
        ds.save_as(path)


def test_undecodable_compression_is_named(tmp_path, monkeypatch):
    import cardiovlm.tools.ingest.dicom_read

    paths, _ = write(tmp_path, shape=(32, 24, 4))
    _jpeg2000_garbage(paths)
    monkeypatch.setattr(cardiovlm.tools.ingest.dicom_read, "_decodable", lambda syntax: False)  # as with no J2K decoder
    with pytest.raises(UndecodableCompressionError, match="JPEG 2000.*cannot decode"):
        load_study(tmp_path)


def test_damaged_compressed_frames_are_not_blamed_on_the_decoder(tmp_path, monkeypatch):
    import cardiovlm.tools.ingest.dicom_read

    paths, _ = write(tmp_path, shape=(32, 24, 4))
    _jpeg2000_garbage(paths)
    monkeypatch.setattr(cardiovlm.tools.ingest.dicom_read, "_decodable", lambda syntax: True)
    with pytest.raises(CorruptDicomError, match="JPEG 2000 .*compressed pixel data is damaged"):
        load_study(tmp_path)


def test_oblique_orthogonal_stack_is_not_mistaken_for_tilt(tmp_path):
    """A scanner that wrote a 10 degree tilt into the orientation gives an orthogonal stack: loaded."""
    t = np.radians(10)
    affine = np.eye(4)
    affine[:3, :3] = np.column_stack([[0.5, 0, 0], [0, 0.5 * np.cos(t), -0.5 * np.sin(t)],
                                      [0, np.sin(t), np.cos(t)]])
    hu = np.random.default_rng(0).integers(-1000, 1000, SHAPE).astype(np.int16)
    paths = write_ct_series(hu, affine, tmp_path, series_description="tilt-corrected")
    for path in paths:
        edit(path, GantryDetectorTilt=10)
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu)
    np.testing.assert_allclose(study.affine, affine, atol=1e-6)


def test_empty_zip(tmp_path):
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as zf:
        zf.mkdir("DICOM")
    with pytest.raises(EmptyFolderError, match="empty.zip: the zip holds no files"):
        load_study(tmp_path / "empty.zip")


def test_duplicate_slices_are_ignored_with_a_warning(tmp_path):
    paths, hu = write(tmp_path)
    ds = pydicom.dcmread(paths[4])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "zz_repeat.dcm")
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu)
    assert any("1 slice(s) at duplicate positions were ignored" in w for w in study.warnings)


# --- impossible values: refused (or the slice left out) with a specific, true message -------------

@pytest.mark.parametrize("slope, words", [
    ("1e30", "RescaleSlope 1e\\+30 is implausible for CT"),
    ("1000", "RescaleSlope 1000 is implausible for CT.*exceed any density"),
    ("-1", "RescaleSlope -1 is implausible for CT.*invert the densities"),
    ("abc", "RescaleSlope 'abc' is not a number"),
    ("0", "RescaleSlope 0 .*cannot convert pixel values"),
])
def test_implausible_rescale_slope_is_refused(tmp_path, slope, words):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    put_raw_all(paths, "RescaleSlope", slope)
    with pytest.raises(InvalidRescaleError, match=words) as err:
        load_study(tmp_path)
    assert err.value.code == "dicom.rescale_invalid" and "4 of 4 slices" in str(err.value)


def test_one_slice_with_an_implausible_slope_is_left_out(tmp_path):
    paths, hu = write(tmp_path)
    put_raw(paths[0], "RescaleSlope", "1000")
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu[:, :, 1:])
    assert any("1 damaged slice(s) were left out (slice_00001.dcm): RescaleSlope 1000 is implausible" in w
               for w in study.warnings)
    assert study.summary()["warnings"] == study.warnings  # what the app shows beside the image


def test_huge_dimensions_are_refused_before_allocating(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    for path in paths:
        edit(path, Rows=65535, Columns=65535)
    with pytest.raises(ImageTooLargeError, match="images of 65535 x 65535 pixels") as err:
        load_study(tmp_path)
    assert err.value.code == "study.too_large"


@pytest.mark.parametrize("value, cls, words", [
    ("0\\0", InvalidPixelSpacingError, r"PixelSpacing is 0\\0 mm; a pixel cannot measure zero"),
    ("0.5", InvalidPixelSpacingError, r"PixelSpacing holds 1 value\(s\) \(0.5\); two are needed"),
    ("1e30\\1e30", InvalidPixelSpacingError, "PixelSpacing is 1e\\+30.*CT pixels measure 0.01 to 50 mm"),
])
def test_impossible_pixel_spacing(tmp_path, value, cls, words):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    put_raw_all(paths, "PixelSpacing", value)
    with pytest.raises(cls, match=words) as err:
        load_study(tmp_path)
    assert err.value.code == "dicom.pixel_spacing_invalid"


@pytest.mark.parametrize("value, words", [
    ("1\\0\\0\\0\\1", r"ImageOrientationPatient holds 5 value\(s\) .*; six are needed"),
    ("0\\0\\0\\0\\0\\0", "ImageOrientationPatient .* is all zeros; the slice orientation is unknown"),
    ("1\\0\\0\\1\\0\\0", "not perpendicular"),
    ("nan\\0\\0\\0\\1\\0", "holds a value that is not a number"),
])
def test_impossible_orientation(tmp_path, value, words):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    put_raw_all(paths, "ImageOrientationPatient", value)
    with pytest.raises(InvalidOrientationError, match=words) as err:
        load_study(tmp_path)
    assert err.value.code == "dicom.orientation_invalid"
    assert "fewer than two distinct" not in str(err.value)


def test_nan_positions(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    put_raw_all(paths, "ImagePositionPatient", "nan\\nan\\nan")
    with pytest.raises(InvalidPositionError, match=r"ImagePositionPatient \(nan.nan.nan\) is not three finite"):
        load_study(tmp_path)


def test_rgb_images_are_named_as_colour_pictures(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = bytes(32 * 24 * 3)
        ds.save_as(path)
    with pytest.raises(UnsupportedPixelFormatError, match="colour \\(RGB\\) pictures.*not greyscale CT") as err:
        load_study(tmp_path)
    assert "damaged" not in str(err.value) and err.value.code == "dicom.pixel_format_unsupported"


def test_32_bit_pixels_load(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    hu = np.random.default_rng(1).integers(-1000, 3000, (32, 24, 4)).astype(np.int32)
    for k, path in enumerate(paths):
        ds = pydicom.dcmread(path)
        ds.BitsAllocated = ds.BitsStored = 32
        ds.HighBit = 31
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T).tobytes()
        ds.save_as(path)
    np.testing.assert_array_equal(load_study(tmp_path).hu, hu)


def test_32_bit_header_over_16_bit_data_is_named(tmp_path):
    paths, _ = write(tmp_path, shape=(32, 24, 4))
    for path in paths:
        edit(path, BitsAllocated=32, BitsStored=32, HighBit=31)
    with pytest.raises(CorruptDicomError, match="declares 24 x 32 pixels of 32 bits .* holds 1,536 bytes"):
        load_study(tmp_path)


def test_nested_zip_is_named_as_a_nested_archive(tmp_path):
    paths, _ = write(tmp_path / "series", shape=(32, 24, 4))
    with zipfile.ZipFile(tmp_path / "inner.zip", "w") as zf:
        for path in paths:
            zf.write(path, path.name)
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as zf:
        zf.write(tmp_path / "inner.zip", "inner.zip")
    with pytest.raises(NestedArchiveError, match="holds another archive \\(inner.zip\\).*extract it") as err:
        load_study(tmp_path / "outer.zip")
    assert err.value.code == "zip.nested"


def test_zip_beside_a_series_is_not_opened_and_said(tmp_path):
    _, hu = write(tmp_path)
    with zipfile.ZipFile(tmp_path / "old.zip", "w") as zf:
        zf.writestr("x.dcm", b"whatever")
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu)
    assert any("1 archive(s) inside the upload were not opened (e.g. old.zip)" in w for w in study.warnings)


def test_two_acquisitions_under_one_series_uid_are_not_merged(tmp_path):
    write(tmp_path / "a", series_uid="1.2.3.4", shape=(32, 24, 6))
    paths, _ = write(tmp_path / "b", series_uid="1.2.3.4", shape=(32, 24, 6), uid_seed="second")
    for path in paths:
        edit(path, AcquisitionNumber=2)
    with pytest.raises(MixedAcquisitionsError, match="more than one acquisition.*acquisition 1: 6 slices, "
                       "acquisition 2: 6 slices.*not merged") as err:
        load_study(tmp_path)
    assert err.value.code == "dicom.mixed_acquisitions"


def test_two_unnumbered_acquisitions_at_the_same_positions_are_not_merged(tmp_path):
    write(tmp_path / "a", series_uid="1.2.3.4", shape=(32, 24, 6))
    write(tmp_path / "b", series_uid="1.2.3.4", shape=(32, 24, 6), uid_seed="second")
    with pytest.raises(MixedAcquisitionsError, match="6 of 6 positions hold two different images"):
        load_study(tmp_path)


def test_step_and_shoot_acquisitions_that_touch_are_one_stack(tmp_path):
    paths, hu = write(tmp_path)
    for path in paths[8:]:
        edit(path, AcquisitionNumber=2)
    np.testing.assert_array_equal(load_study(tmp_path).hu, hu)


def test_damaged_acquisition_numbers_of_a_few_slices_do_not_split_the_series(tmp_path):
    paths, hu = write(tmp_path, shape=(32, 24, 6))
    put_raw(paths[2], "AcquisitionNumber", "+-1", vr="IS")  # unreadable
    edit(paths[4], AcquisitionNumber=None)
    np.testing.assert_array_equal(load_study(tmp_path).hu, hu)


def test_transfer_syntax_damaged_into_two_values_leaves_that_slice_out(tmp_path):
    paths, hu = write(tmp_path)
    data = paths[-1].read_bytes()
    syntax = b"1.2.840.10008.1.2.1\x00"  # explicit VR little endian, in the file meta header
    assert data.count(syntax) == 1
    paths[-1].write_bytes(data.replace(syntax, b"1.2.840.10008.1\\1.2\x00"))  # same length, two values
    study = load_study(tmp_path)
    np.testing.assert_array_equal(study.hu, hu[:, :, :-1])


def _nifti(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine, dtype=data.dtype), path)
    return path


def _nifti_raw_affine(path, affine):
    """A NIfTI whose sform is written as given (nibabel refuses to build such images itself)."""
    img = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), None)
    img.header["srow_x"], img.header["srow_y"], img.header["srow_z"] = affine[0], affine[1], affine[2]
    img.header["sform_code"] = 1
    nib.save(img, path)
    return path


def test_nifti_with_a_zero_z_axis(tmp_path):
    path = _nifti_raw_affine(tmp_path / "flat.nii.gz", np.diag([0.5, 0.5, 0.0, 1.0]))
    with pytest.raises(InvalidNiftiAffineError, match="gives the k axis zero length") as err:
        load_study(path)
    assert err.value.code == "nifti.affine_invalid"


def test_nifti_with_a_singular_affine(tmp_path):
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    affine[:3, 1] = affine[:3, 0]  # i and j point the same way
    with pytest.raises(InvalidNiftiAffineError, match="singular"):
        load_study(_nifti_raw_affine(tmp_path / "singular.nii", affine))


def test_nifti_with_a_zero_pixdim_is_not_read_as_1_mm(tmp_path):
    img = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), None)
    img.header["pixdim"][3] = 0.0  # no sform/qform: the affine comes from pixdim
    nib.save(img, tmp_path / "flat.nii")
    with pytest.raises(InvalidNiftiAffineError, match="voxel sizes of 1 x 1 x 0 mm"):
        load_study(tmp_path / "flat.nii")


def test_nifti_with_1e30_mm_voxels(tmp_path):
    path = _nifti(tmp_path / "huge.nii.gz", np.zeros((8, 8, 4), np.int16), np.diag([1e30, 1e30, 1e30, 1.0]))
    with pytest.raises(InvalidNiftiAffineError, match="voxels of 1e\\+30 x 1e\\+30 x 1e\\+30 mm"):
        load_study(path)


def test_int64_nifti_beyond_hounsfield_units(tmp_path):
    data = np.zeros((8, 8, 4), np.int64)
    data[1, 2, 3] = 10**12
    path = _nifti(tmp_path / "big.nii.gz", data, np.eye(4))
    expected = "values from 0 to 1,000,000,000,000, outside anything a CT"
    with pytest.raises(ImplausibleValuesError, match=expected) as err:
        load_study(path)
    assert err.value.code == "study.values_implausible"


def test_nifti_with_huge_declared_dimensions(tmp_path):
    path = _nifti(tmp_path / "x.nii", np.zeros((8, 8, 4), np.int16), np.eye(4))
    img = nib.load(path)
    header = img.header.copy()
    header["dim"][1:4] = 30000
    path.write_bytes(header.binaryblock + path.read_bytes()[348:])
    with pytest.raises(ImageTooLargeError, match="declares 30000 x 30000 x 30000 voxels"):
        load_study(path)


def test_named_pipe_in_a_folder_is_skipped_without_hanging(tmp_path):
    _, hu = write(tmp_path)
    os.mkfifo(tmp_path / "pipe.dcm")  # opening it would block until a writer appears
    study = _within(20, load_study, tmp_path)
    np.testing.assert_array_equal(study.hu, hu)
    assert any("1 named pipe(s), socket(s) or device(s) were skipped unopened (e.g. pipe.dcm)" in w
               for w in study.warnings)


def test_named_pipe_given_as_the_study_is_refused(tmp_path):
    os.mkfifo(tmp_path / "upload.zip")
    with pytest.raises(NotARegularFileError, match="not a regular file \\(a named pipe"):
        _within(20, load_study, tmp_path / "upload.zip")


def _within(seconds, fn, *args):
    """Call ``fn``; fail instead of hanging when it blocks (on a pipe) for ``seconds``."""
    import signal

    def on_alarm(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        return fn(*args)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
