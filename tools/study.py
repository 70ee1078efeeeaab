"""The ``Study`` value: one CT (or other) volume in a documented orientation, de-identified.

Orientation convention (shared with ``tools.case_format``): ``hu`` is indexed ``[i, j, k]`` with i
towards the patient's Left, j towards Posterior and k towards Superior (DICOM LPS axes). ``affine``
maps a voxel index ``(i, j, k, 1)`` to patient LPS millimetres; for an axial, untilted series it is
diagonal in its 3x3 part with ``spacing`` on the diagonal. Loaders reorient every input to this
convention, so ``hu[:, :, k]`` is always an axial slice seen with the patient's left along i.
Memory order is not part of the convention: DICOM loads return a Fortran-ordered array (slices are
filled in place without a second copy); call ``np.ascontiguousarray`` where C order matters.
"""

from __future__ import annotations

import hashlib
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from tools.settings import Settings


class StudyError(ValueError):
    """Base class of every ingest error; ``str(err)`` is a message a clinician understands.

    ``code`` is stable across releases (callers route on it, never on the wording of the message).
    """

    code: ClassVar[str] = "study.error"


class StudyNotFoundError(StudyError):
    """The path does not exist."""

    code = "study.not_found"


class UnsupportedFormatError(StudyError):
    """The path is neither a DICOM folder, a zip of DICOM, a NIfTI file nor a case folder."""

    code = "study.unsupported_format"


class NotARegularFileError(UnsupportedFormatError):
    """The path is a named pipe, socket or device, not a file that can be read to its end."""

    code = "study.not_regular_file"


class EmptyFolderError(StudyError):
    """The folder (or zip) holds no files at all."""

    code = "study.empty"


class NoDicomImagesError(StudyError):
    """Files were found but none is a readable DICOM image."""

    code = "dicom.no_images"


class NonImageObjectsOnlyError(NoDicomImagesError):
    """Only DICOM objects without pixels (structured reports, segmentations, ...) were found."""

    code = "dicom.non_image_only"


class NestedArchiveError(NoDicomImagesError):
    """The only candidates for images are archives inside the folder or zip; they are not opened."""

    code = "zip.nested"


class CorruptDicomError(StudyError):
    """Too many files of the chosen series are truncated or unreadable to build a volume."""

    code = "dicom.corrupt"


class UndecodableCompressionError(StudyError):
    """Every slice uses a compressed transfer syntax that no installed decoder can read."""

    code = "dicom.undecodable_compression"


class UnsupportedPixelFormatError(StudyError):
    """The pixels are colour, or of a bit depth / layout that is not a greyscale CT slice."""

    code = "dicom.pixel_format_unsupported"


class MissingPositionError(StudyError):
    """Slices lack ImagePositionPatient / ImageOrientationPatient, so they cannot be stacked."""

    code = "dicom.position_missing"


class InvalidGeometryError(StudyError):
    """A geometry attribute (orientation, position, pixel spacing) holds an impossible value."""

    code = "dicom.geometry_invalid"


class InvalidOrientationError(InvalidGeometryError):
    """ImageOrientationPatient is not two perpendicular unit vectors (wrong count, zeros, NaN)."""

    code = "dicom.orientation_invalid"


class InvalidPositionError(InvalidGeometryError):
    """ImagePositionPatient is not three finite numbers."""

    code = "dicom.position_invalid"


class InvalidPixelSpacingError(InvalidGeometryError):
    """PixelSpacing is not two positive, plausible millimetre values."""

    code = "dicom.pixel_spacing_invalid"


class InvalidRescaleError(StudyError):
    """RescaleSlope / RescaleIntercept are not numbers, or would turn pixels into impossible values."""

    code = "dicom.rescale_invalid"


class ImplausibleValuesError(StudyError):
    """The rescaled image holds values no CT scanner produces (not Hounsfield units)."""

    code = "study.values_implausible"


class ImageTooLargeError(StudyError):
    """The declared image dimensions exceed what this installation loads (a damaged or hostile header)."""

    code = "study.too_large"


class InconsistentSeriesError(StudyError):
    """Slices of one series disagree on rows/columns, pixel spacing or orientation."""

    code = "dicom.series_inconsistent"


class MixedAcquisitionsError(InconsistentSeriesError):
    """One SeriesInstanceUID holds two acquisitions covering the same positions; they are not merged."""

    code = "dicom.mixed_acquisitions"


class GantryTiltError(StudyError):
    """The slices were acquired with a tilted gantry; such series are refused, not corrected."""

    code = "dicom.gantry_tilt"


class UnevenSpacingError(StudyError):
    """Slice gaps vary beyond what resampling may bridge (slices are missing)."""

    code = "dicom.uneven_spacing"


class NotAVolumeError(StudyError):
    """Only single images (localizers, screenshots, multi-frame objects) were found, not a 3D series."""

    code = "study.not_a_volume"


class SeriesNotFoundError(StudyError):
    """A series was asked for by a UID the study does not hold."""

    code = "series.not_found"


class SeriesPickError(StudyError):
    """The series asked for cannot play the part it was picked for (a localizer as the CCTA, ...)."""

    code = "series.pick_invalid"


class SeriesSourceGoneError(StudyError):
    """Another series pick needs the study's files, which are no longer on the server."""

    code = "series.source_gone"


class UnsafeZipError(StudyError):
    """A zip is unreadable, encrypted, or holds entries that would escape the extraction folder."""

    code = "zip.unsafe"


class DamagedZipError(UnsafeZipError):
    """A zip's directory or one of its entries is truncated, damaged or compressed in an unknown way."""

    code = "zip.damaged"


class ZipTooLargeError(UnsafeZipError):
    """A zip expands beyond ``settings.max_zip_bytes`` or holds too many files."""

    code = "zip.too_large"


class InvalidNiftiError(StudyError):
    """A NIfTI file is unreadable, not 3D, or contains NaN / infinite values."""

    code = "nifti.invalid"


class InvalidNiftiAffineError(InvalidNiftiError):
    """The NIfTI affine is singular (a zero axis) or gives implausible voxel sizes."""

    code = "nifti.affine_invalid"


@dataclass(frozen=True)
class IngestLimits:
    """What a loadable CT study may look like; beyond these a header is damaged or hostile."""

    # 2**30 voxels: 2 GiB as int16, 4 GiB as float32; a 512 x 512 x 2000 CCTA is a quarter of it.
    max_voxels: int = 2**30
    # Rows / Columns; CT reconstructs 512 (up to 2048 on ultra-high-resolution scanners).
    max_in_plane: int = 4096
    # Voxel edges in mm: below 10 um or above 50 mm no CT reconstruction exists.
    min_voxel_mm: float = 0.01
    max_voxel_mm: float = 50.0
    # Hounsfield units: 16-bit stored values with the intercepts in use (-1024, -8192, ...) stay
    # inside; anything beyond is not a density (e.g. a slope of 1000 or a 64-bit integer image).
    min_hu: float = -40_000.0
    max_hu: float = 70_000.0
    # CT RescaleSlope: scanners write 1 (occasionally 0.5 or 2); above 10 HU per stored step the
    # 16-bit range would exceed any density, and a slope <= 0 would invert or erase the image.
    max_ct_slope: float = 10.0
    # ImagePositionPatient: a patient lies within a metre of the scanner origin; 100 m is damage.
    max_position_mm: float = 100_000.0


LIMITS = IngestLimits()


def check_hu_range(lo: float, hi: float, *, what: str, limits: IngestLimits = LIMITS) -> None:
    """Raise :class:`ImplausibleValuesError` when ``[lo, hi]`` leaves the plausible Hounsfield range."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImplausibleValuesError(f"{what} holds infinite values; it is not a CT image in Hounsfield units")
    if lo < limits.min_hu or hi > limits.max_hu:
        raise ImplausibleValuesError(
            f"{what} holds values from {lo:,.0f} to {hi:,.0f}, outside anything a CT scanner produces "
            f"({limits.min_hu:,.0f} to {limits.max_hu:,.0f} HU); these are not Hounsfield units, so the "
            "image is refused rather than measured")


def check_voxel_size(spacing, *, what: str, limits: IngestLimits = LIMITS) -> None:
    """Raise :class:`InvalidGeometryError` unless every voxel edge is a plausible CT size in mm."""
    values = [float(s) for s in spacing]
    if not all(np.isfinite(v) and limits.min_voxel_mm <= v <= limits.max_voxel_mm for v in values):
        shown = " x ".join(f"{v:.4g}" for v in values)
        raise InvalidGeometryError(
            f"{what} gives voxels of {shown} mm; a CT voxel measures {limits.min_voxel_mm:g} to "
            f"{limits.max_voxel_mm:g} mm, so distances and volumes would be meaningless")


@dataclass
class Study:
    """One de-identified volume in the LPS ``[i, j, k]`` convention above; see :func:`load_study`."""

    hu: np.ndarray  # (I, J, K) int16 or float32; Hounsfield units when ``hu_calibrated``
    spacing: tuple[float, float, float]  # mm along i, j, k
    affine: np.ndarray  # (4, 4) float64, voxel index -> patient LPS mm
    modality: str = "CT"  # DICOM Modality, e.g. "CT", "MR"
    hu_calibrated: bool = True  # False for non-CT modalities: intensities are not Hounsfield units
    patient_hash: str | None = None  # salted hash of the patient ID; the ID itself is never kept
    metadata: dict = field(default_factory=dict)  # de-identified: no name, ID or birth date
    source: str = ""  # where it was loaded from, for messages
    series_choice: str | None = None  # which series was chosen among several, and why
    warnings: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.hu.shape)  # type: ignore[return-value]

    def index_to_mm(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) voxel indices -> (N, 3) patient LPS mm."""
        ijk = np.asarray(ijk, dtype=np.float64).reshape(-1, 3)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def mm_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """(N, 3) patient LPS mm -> (N, 3) fractional voxel indices."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        return (xyz - self.affine[:3, 3]) @ np.linalg.inv(self.affine[:3, :3]).T

    def summary(self) -> dict:
        """What the CLI and the UI show: modality, shape, spacing, series chosen, warnings."""
        return {
            "modality": self.modality,
            "hu_calibrated": self.hu_calibrated,
            "shape": list(self.shape),
            "spacing_mm": [round(float(s), 4) for s in self.spacing],
            "series_choice": self.series_choice,
            "warnings": list(self.warnings),
            "source": self.source,
            **{k: v for k, v in self.metadata.items() if isinstance(v, (str, int, float, bool))},
        }


def reorient_to_lps(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip ``data``'s first three axes so that i->L, j->P, k->S.

    Args:
        data: (A, B, C[, ...]) array on the grid of ``affine``.
        affine: (4, 4) voxel index -> patient LPS mm (any axis order and signs).

    Returns:
        ``(data, affine)`` on the same voxels, reindexed; the affine's 3x3 part becomes as close to
        diagonal-positive as the acquisition allows (exactly diagonal for an axial series).
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    # io_orientation only reads axis directions: labels do not matter, so it works in LPS space too.
    transform = io_orientation(affine)  # for each data axis: (target LPS axis, sign)
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return data, affine
    new_affine = affine @ inv_ornt_aff(transform, data.shape[:3])
    return np.ascontiguousarray(apply_orientation(data, transform)), new_affine


def hash_patient_id(patient_id: str | None, salt: str) -> str | None:
    """Salted SHA-256 of a patient ID (hex), for linking reports without keeping the ID."""
    if not patient_id or not str(patient_id).strip():
        return None
    return hashlib.sha256(f"{salt}:{str(patient_id).strip()}".encode()).hexdigest()


def load_nifti(path: str | Path, *, labels: bool = False, settings: Settings | None = None) -> Study:
    """Load a NIfTI file (``.nii`` / ``.nii.gz``) into a :class:`Study` in LPS orientation.

    Args:
        path: the NIfTI file.
        labels: True for a label map: integer values kept (uint8, or int16 when above 255),
            ``hu_calibrated`` False. False for an image: int16 when every value is integral, else float32.

    Raises:
        StudyNotFoundError, InvalidNiftiError (unreadable, not 3D, NaNs, non-integer labels).
    """
    from tools.nifti_io import read_nifti

    return read_nifti(Path(path), labels=labels)


def save_nifti(study: Study, path: str | Path) -> Path:
    """Write ``study.hu`` as NIfTI with the RAS affine ``diag(-1, -1, 1, 1) @ study.affine``."""
    from tools.nifti_io import write_nifti

    return write_nifti(study.hu, study.affine, Path(path))


def load_study(path: str | Path, *, settings: Settings | None = None) -> Study:
    """Load a CT study from a DICOM folder, a zip of DICOM, a NIfTI file or a CardioVLM case folder.

    A DICOM folder is searched recursively; when it holds several series the axial CT series with
    the most slices is chosen and ``Study.series_choice`` says which and why (``tools.series`` lists
    the series by kind and loads the CCTA together with the calcium-scoring series). Pixels are rescaled
    (RescaleSlope/Intercept) to Hounsfield units and reoriented to LPS ``[i, j, k]``. A case folder
    loads ``ccta_dicom/`` when present, else ``ccta.nii.gz``. Patient name, ID and birth date are
    never kept; ``patient_hash`` is a salted SHA-256 of the ID (salt from ``settings``).

    Unevenly spaced slices are resampled (linearly, along k) to an even grid when the largest gap is
    at most ``settings.max_slice_gap_ratio`` times the median gap, and refused beyond it. Gantry-tilted
    series are refused. Zips are checked (paths, symlinks, total size) before anything is extracted,
    into a temporary folder that is always removed; archives inside it are not opened.

    A slice that is damaged (unreadable pixels, an impossible header value) or disagrees with the
    rest of its series (size, orientation, pixel spacing, position off the stack) is left out when
    the remaining slices are a clear majority, and ``Study.warnings`` says which and why. Values no
    CT holds (beyond ``IngestLimits``: rescale slopes, Hounsfield range, voxel sizes, dimensions) are
    refused, never loaded silently. Named pipes, sockets and devices are never opened.

    Raises:
        StudyError: one of its subclasses above, with a message a clinician understands and a
        stable ``code`` to route on.

    Example::

        study = load_study("patient_ccta.zip")
        print(study.summary())
    """
    from tools import case_format as cf
    from tools.settings import get_settings

    settings = settings or get_settings()
    path = Path(path)
    if not path.exists():
        raise StudyNotFoundError(f"{path}: no such file or folder")
    if not path.is_dir() and not path.is_file():
        # A named pipe or device would block (or never end) when read; it is no study.
        raise NotARegularFileError(
            f"{path.name}: not a regular file (a named pipe, socket or device); give a DICOM folder, a .zip "
            "of DICOM files or a NIfTI file")
    if path.is_dir():
        if cf.is_case_dir(path):
            return _load_case_image(path, settings)
        from tools.dicom_read import read_dicom_folder

        return read_dicom_folder(path, settings=settings)
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return load_nifti(path)
    if name.endswith(".zip") or zipfile.is_zipfile(path):
        return _load_zip(path, settings)
    raise UnsupportedFormatError(
        f"{path.name}: not a supported study; give a DICOM folder, a .zip of DICOM files or a NIfTI "
        "file (.nii / .nii.gz)")


def _load_case_image(path: Path, settings: Settings) -> Study:
    from tools import case_format as cf
    from tools.dicom_read import read_dicom_folder

    dicom_dir = path / cf.CCTA_DICOM_DIR
    if dicom_dir.is_dir() and any(dicom_dir.iterdir()):
        study = read_dicom_folder(dicom_dir, settings=settings)
    elif (path / cf.CCTA_NIFTI).is_file():
        study = load_nifti(path / cf.CCTA_NIFTI)
    else:
        raise UnsupportedFormatError(
            f"case {path.name} has neither {cf.CCTA_DICOM_DIR}/ nor {cf.CCTA_NIFTI}: no image to load")
    study.source = str(path)
    return study


def _load_zip(path: Path, settings: Settings) -> Study:
    from tools.dicom_read import read_dicom_folder
    from tools.safe_zip import extract_zip

    with tempfile.TemporaryDirectory(prefix="cardiovlm-zip-") as tmp:
        extract_zip(path, Path(tmp), max_bytes=settings.max_zip_bytes, max_members=settings.max_zip_members)
        try:
            study = read_dicom_folder(Path(tmp), settings=settings)
        except EmptyFolderError:
            raise EmptyFolderError(f"{path.name}: the zip holds no files, no DICOM series to load") from None
    study.source = str(path)
    return study
