"""Loading a study: the one front door from a path (DICOM folder, zip, NIfTI, case folder) to a ``Study``.

The value itself, its LPS ``[i, j, k]`` convention and the ingest limits are in ``cardiovlm.tools.ingest.study_value``;
the typed errors in ``cardiovlm.tools.ingest.study_errors``: import them from there, their one home.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from cardiovlm.tools.ingest.dicom_read import read_dicom_folder
from cardiovlm.tools.ingest.nifti_io import read_nifti, write_nifti
from cardiovlm.tools.ingest.safe_zip import extract_zip
from cardiovlm.tools.ingest.study_errors import (
    EmptyFolderError,
    NotARegularFileError,
    StudyNotFoundError,
    UnsupportedFormatError,
)
from cardiovlm.tools.ingest.study_value import Study

if TYPE_CHECKING:
    from cardiovlm.tools.core.settings import Settings


def load_nifti(path: str | Path, *, labels: bool = False, settings: Settings | None = None) -> Study:
    """Load a NIfTI file (``.nii`` / ``.nii.gz``) into a :class:`Study` in LPS orientation.

    Args:
        path: the NIfTI file.
        labels: True for a label map: integer values kept (uint8, or int16 when above 255),
            ``hu_calibrated`` False. False for an image: int16 when every value is integral, else float32.

    Raises:
        StudyNotFoundError, InvalidNiftiError (unreadable, not 3D, NaNs, non-integer labels).
    """
    return read_nifti(Path(path), labels=labels)


def save_nifti(study: Study, path: str | Path) -> Path:
    """Write ``study.hu`` as NIfTI with the RAS affine ``diag(-1, -1, 1, 1) @ study.affine``."""
    return write_nifti(study.hu, study.affine, Path(path))


def load_study(path: str | Path, *, settings: Settings | None = None) -> Study:
    """Load a CT study from a DICOM folder, a zip of DICOM, a NIfTI file or a CardioVLM case folder.

    A DICOM folder is searched recursively; when it holds several series the axial CT series with
    the most slices is chosen and ``Study.series_choice`` says which and why (``cardiovlm.tools.ingest.series`` lists
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
    from cardiovlm.tools.core import case_format as cf
    from cardiovlm.tools.core.settings import get_settings

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
    from cardiovlm.tools.core import case_format as cf

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
    with tempfile.TemporaryDirectory(prefix="cardiovlm-zip-") as tmp:
        extract_zip(path, Path(tmp), max_bytes=settings.max_zip_bytes, max_members=settings.max_zip_members)
        try:
            study = read_dicom_folder(Path(tmp), settings=settings)
        except EmptyFolderError:
            raise EmptyFolderError(f"{path.name}: the zip holds no files, no DICOM series to load") from None
    study.source = str(path)
    return study
