"""The typed errors of ingest: each a :class:`StudyError` whose message a clinician understands.

Kept apart from the loaders so that the readers (DICOM, NIfTI, zip) and the ``cardiovlm.tools.ingest.study`` front door
share them without importing each other.
"""

from __future__ import annotations

from typing import ClassVar

from cardiovlm.tools.core.errors import CardioVLMError


class StudyError(CardioVLMError):
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
