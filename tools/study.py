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
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tools.settings import Settings


class StudyError(ValueError):
    """Base class of every ingest error; ``str(err)`` is a message a clinician understands."""


class StudyNotFoundError(StudyError):
    """The path does not exist."""


class UnsupportedFormatError(StudyError):
    """The path is neither a DICOM folder, a zip of DICOM, a NIfTI file nor a case folder."""


class EmptyFolderError(StudyError):
    """The folder (or zip) holds no files at all."""


class NoDicomImagesError(StudyError):
    """Files were found but none is a readable DICOM image."""


class NonImageObjectsOnlyError(NoDicomImagesError):
    """Only DICOM objects without pixels (structured reports, segmentations, ...) were found."""


class CorruptDicomError(StudyError):
    """Too many files of the chosen series are truncated or unreadable to build a volume."""


class UndecodableCompressionError(StudyError):
    """Every slice uses a compressed transfer syntax that no installed decoder can read."""


class MissingPositionError(StudyError):
    """Slices lack ImagePositionPatient / ImageOrientationPatient, so they cannot be stacked."""


class InconsistentSeriesError(StudyError):
    """Slices of one series disagree on rows/columns, pixel spacing or orientation."""


class GantryTiltError(StudyError):
    """The slices were acquired with a tilted gantry; such series are refused, not corrected."""


class UnevenSpacingError(StudyError):
    """Slice gaps vary beyond what resampling may bridge (slices are missing)."""


class NotAVolumeError(StudyError):
    """Only single images (localizers, screenshots, multi-frame objects) were found, not a 3D series."""


class UnsafeZipError(StudyError):
    """A zip is unreadable, encrypted, or holds entries that would escape the extraction folder."""


class ZipTooLargeError(UnsafeZipError):
    """A zip expands beyond ``settings.max_zip_bytes`` or holds too many files."""


class InvalidNiftiError(StudyError):
    """A NIfTI file is unreadable, not 3D, or contains NaN / infinite values."""


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
    the most slices is chosen and ``Study.series_choice`` says which and why. Pixels are rescaled
    (RescaleSlope/Intercept) to Hounsfield units and reoriented to LPS ``[i, j, k]``. A case folder
    loads ``ccta_dicom/`` when present, else ``ccta.nii.gz``. Patient name, ID and birth date are
    never kept; ``patient_hash`` is a salted SHA-256 of the ID (salt from ``settings``).

    Unevenly spaced slices are resampled (linearly, along k) to an even grid when the largest gap is
    at most ``settings.max_slice_gap_ratio`` times the median gap, and refused beyond it. Gantry-tilted
    series are refused. Zips are checked (paths, symlinks, total size) before anything is extracted,
    into a temporary folder that is always removed.

    Raises:
        StudyError: one of its subclasses above, with a message a clinician understands.

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
