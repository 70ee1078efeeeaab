"""Write a volume as a DICOM CT Image Storage series (one file per slice).

The volume follows the ``cardiovlm.tools.ingest.study`` convention: ``hu[i, j, k]`` with an ``affine`` mapping voxel
indices to patient LPS millimetres. Slice ``k`` becomes one file whose pixel rows run along j and
columns along i (DICOM stores ``pixel_array[row, column]``, so the slice is ``hu[:, :, k].T``).

Every type 1 and type 2 attribute of the CT Image IOD's mandatory modules is written (Patient,
General Study, General Series, Frame of Reference, General Equipment, General Image, Image Plane,
Image Pixel, CT Image, SOP Common; Contrast/Bolus when contrast was given), with explicit VR little
endian and a file meta header, so pydicom, dciodvfy and ordinary viewers accept the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

from cardiovlm.tools.core.errors import CardioVLMError


class DicomWriteError(CardioVLMError):
    """The volume or its geometry cannot be written as an axial CT series."""

    code = "dicom_write.invalid"


def _uid(seed: str | None, *parts: str) -> str:
    """A UID derived from ``seed`` and ``parts`` (deterministic), or a random one when seed is None."""
    return generate_uid(entropy_srcs=[seed, *parts]) if seed is not None else generate_uid()


def _ds(value: float) -> str:
    """A DICOM DS string (at most 16 characters) for ``value``."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6g}"


def _stored_encoding(hu: np.ndarray) -> tuple[np.dtype, float, float]:
    """Pick the stored pixel type and rescale (slope, intercept) for ``hu``.

    Integral volumes that fit int16 are stored as-is (slope 1, intercept 0); wider integral ranges
    use uint16 with the minimum as intercept; non-integral volumes are quantised to uint16 over
    their range (error at most half a slope).
    """
    lo, hi = float(hu.min()), float(hu.max())
    integral = np.issubdtype(hu.dtype, np.integer) or bool(np.all(np.mod(hu, 1) == 0))
    if integral and lo >= -32768 and hi <= 32767:
        return np.dtype(np.int16), 1.0, 0.0
    if integral and hi - lo <= 65535:
        return np.dtype(np.uint16), 1.0, lo
    slope = float(_ds((hi - lo) / 65535 * (1 + 1e-6))) or 1.0
    intercept = float(_ds(lo))
    return np.dtype(np.uint16), slope, intercept


def write_ct_series(
    hu: np.ndarray,
    affine: np.ndarray,
    out_dir: str | Path,
    *,
    series_description: str,
    modality: str = "CT",
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "ANONYMOUS",
    patient_name: str = "Anonymous^Phantom",
    study_date: str = "20240101",
    kvp: float | None = 120.0,
    contrast: bool | str = False,
    uid_seed: str | int | None = None,
    slice_thickness: float | None = None,
    series_number: int = 1,
    study_description: str = "CT coronary angiography",
    manufacturer: str = "CardioVLM",
    convolution_kernel: str | None = None,
) -> list[Path]:
    """Write ``hu`` as one DICOM file per axial slice and return the paths, in slice order.

    Args:
        hu: (I, J, K) volume in Hounsfield units (any int or float dtype), i->L, j->P, k->S.
        affine: (4, 4) voxel index -> patient LPS mm. Its first two columns give the in-plane
            directions and pixel spacing; the third must be perpendicular to them (no gantry tilt).
        out_dir: folder to write into (created); files are named ``slice_00001.dcm`` ...
        series_description: SeriesDescription, e.g. "CCTA 0.6 mm".
        modality: DICOM Modality; files are CT Image Storage whatever it is (tests use "MR").
        study_uid, series_uid: UIDs to use; derived from ``uid_seed`` when not given.
        patient_id, patient_name, study_date: Patient/Study attributes (study_date as YYYYMMDD).
        kvp: tube voltage in kV (KVP), or None to leave it empty.
        contrast: False for a non-contrast series; True or an agent name ("Iohexol") writes the
            Contrast/Bolus module.
        uid_seed: makes every UID (study, series, frame of reference, instances) reproducible.
        slice_thickness: nominal reconstructed thickness in mm; defaults to the slice spacing.
        series_number, study_description, manufacturer, convolution_kernel: descriptive attributes.

    Raises:
        DicomWriteError: not a 3D volume, empty, NaNs, or the affine is singular or tilted.

    Example::

        paths = write_ct_series(hu, np.diag([0.5, 0.5, 1.0, 1.0]), "out/ccta_dicom",
                                series_description="CCTA", uid_seed="case-0001")
    """
    hu = np.asarray(hu)
    affine = np.asarray(affine, dtype=np.float64)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise DicomWriteError(f"expected a non-empty 3D volume (I, J, K), got shape {hu.shape}")
    if affine.shape != (4, 4):
        raise DicomWriteError(f"expected a (4, 4) affine, got shape {affine.shape}")
    if not np.issubdtype(hu.dtype, np.integer) and not np.all(np.isfinite(hu)):
        raise DicomWriteError("the volume contains NaN or infinite values")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(spacing < 1e-6):
        raise DicomWriteError(f"the affine has a zero-length axis (spacing {spacing.tolist()} mm)")
    axes = affine[:3, :3] / spacing
    row_dir, col_dir, slice_dir = axes[:, 0], axes[:, 1], axes[:, 2]
    normal = np.cross(row_dir, col_dir)
    if abs(np.dot(row_dir, col_dir)) > 1e-4 or abs(abs(np.dot(normal, slice_dir)) - 1) > 1e-4:
        raise DicomWriteError("the affine is sheared or tilted: only orthogonal slice stacks can be written")

    seed = None if uid_seed is None else str(uid_seed)
    study_uid = study_uid or _uid(seed, "study")
    series_uid = series_uid or _uid(seed, "series", str(series_number), series_description)
    frame_uid = _uid(seed, "frame", study_uid)
    dtype, slope, intercept = _stored_encoding(hu)
    thickness = float(slice_thickness) if slice_thickness is not None else float(spacing[2])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CARDIOVLM"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    # Patient
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.StudyDescription = study_description
    # General Series
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDate = study_date
    ds.SeriesTime = "120000"
    ds.SeriesDescription = series_description
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = "HEART"
    # Frame of Reference
    ds.FrameOfReferenceUID = frame_uid
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = manufacturer
    # General Image / acquisition
    ds.AcquisitionNumber = 1
    ds.ContentDate = study_date
    ds.ContentTime = "120000"
    # Contrast/Bolus (conditional: only when contrast was given)
    if contrast:
        ds.ContrastBolusAgent = contrast if isinstance(contrast, str) else "Iodinated contrast"
    # Image Plane
    ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[0])]  # row spacing (along j), column spacing (along i)
    ds.ImageOrientationPatient = [_ds(v) for v in (*row_dir, *col_dir)]
    ds.SliceThickness = _ds(thickness)
    ds.SpacingBetweenSlices = _ds(spacing[2])
    # Image Pixel / CT Image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[0])
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if dtype == np.int16 else 0
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    ds.RescaleType = "HU" if modality == "CT" else "US"
    ds.KVP = _ds(kvp) if kvp is not None else ""
    if convolution_kernel:
        ds.ConvolutionKernel = convolution_kernel
    ds.WindowCenter, ds.WindowWidth = "300", "800"  # a CCTA-friendly default display window

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = np.iinfo(dtype)
    paths = []
    for k in range(hu.shape[2]):
        position = affine[:3, :3] @ np.array([0.0, 0.0, k]) + affine[:3, 3]
        stored = np.rint((hu[:, :, k].T.astype(np.float64) - intercept) / slope)
        sop_uid = _uid(seed, "instance", series_uid, str(k))
        ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
        ds.SOPInstanceUID = sop_uid
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.SliceLocation = _ds(float(np.dot(position, normal)))
        ds.PixelData = np.ascontiguousarray(np.clip(stored, info.min, info.max).astype(dtype)).tobytes()
        path = out / f"slice_{k + 1:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


__all__ = ["DicomWriteError", "write_ct_series"]
