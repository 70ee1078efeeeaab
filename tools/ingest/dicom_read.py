"""Read a folder of DICOM files into one :class:`cardiovlm.tools.ingest.study.Study`.

Three steps, each with its own function:

1. :func:`scan_folder` reads every file's header (pixels left on disk), skipping non-DICOM and
   unreadable files with a count, and groups image slices by SeriesInstanceUID.
2. :func:`choose_series` picks the axial CT series with the most slices and says why.
3. :func:`build_study` checks the geometry (positions present, rows/columns and orientation
   consistent, no gantry tilt, even spacing or resampled), stacks the rescaled slices and
   reorients them to LPS ``[i, j, k]``.

Only de-identified metadata leaves this module: patient name, ID and birth date are read for the
salted hash and dropped.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from cardiovlm.tools.core.settings import Settings, get_settings, install_salt
from cardiovlm.tools.ingest.study_errors import (
    CorruptDicomError,
    EmptyFolderError,
    GantryTiltError,
    ImageTooLargeError,
    ImplausibleValuesError,
    InconsistentSeriesError,
    InvalidOrientationError,
    InvalidPixelSpacingError,
    InvalidPositionError,
    InvalidRescaleError,
    MissingPositionError,
    MixedAcquisitionsError,
    NestedArchiveError,
    NoDicomImagesError,
    NonImageObjectsOnlyError,
    NotAVolumeError,
    SeriesNotFoundError,
    StudyError,
    UndecodableCompressionError,
    UnevenSpacingError,
    UnsupportedPixelFormatError,
)
from cardiovlm.tools.ingest.study_value import (
    LIMITS,
    IngestLimits,
    Study,
    check_hu_range,
    check_voxel_size,
    hash_patient_id,
    reorient_to_lps,
)

# Slices whose normal is within ~25 degrees of the body axis count as axial (|n_z| >= cos 25 deg).
_AXIAL_MIN_COS = 0.9
# Positions that drift off the slice normal by more than this angle mean a tilted gantry.
_TILT_TOLERANCE_DEG = 0.5
_NON_IMAGE_NAMES = {"1.2.840.10008.5.1.4.1.1.66.4": "segmentation"}  # SEG; SR classes are found by name


class _BadValue(Exception):
    """An attribute is present but its value cannot be read as what it should be."""


def _values(ds: pydicom.Dataset, keyword: str) -> list | None:
    """The value(s) of ``keyword`` as a list; None when absent or empty.

    Raises:
        _BadValue: the raw value does not convert (pydicom raises several types for malformed bytes).
    """
    try:
        value = ds.get(keyword)
    except Exception as err:  # malformed raw bytes surface only when the element is first converted
        raise _BadValue(f"{keyword} cannot be read") from err
    if value is None or (isinstance(value, (str, bytes)) and not value.strip()):
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return list(value)
    return [value]


def _numbers(ds: pydicom.Dataset, keyword: str) -> tuple[float, ...] | None:
    """The numeric value(s) of ``keyword``; None when absent. Raises _BadValue for text that is no number."""
    values = _values(ds, keyword)
    if values is None:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        shown = "\\".join(str(v) for v in values)[:40]
        raise _BadValue(f"{keyword} '{shown}' is not a number") from None


@overload
def _int(ds: pydicom.Dataset, keyword: str, default: int) -> int: ...
@overload
def _int(ds: pydicom.Dataset, keyword: str, default: None = None) -> int | None: ...
def _int(ds: pydicom.Dataset, keyword: str, default: int | None = None) -> int | None:
    """A single integer attribute, ``default`` when absent; raises _BadValue when malformed."""
    values = _numbers(ds, keyword)
    if values is None:
        return default
    if len(values) != 1 or not np.isfinite(values[0]) or values[0] != int(values[0]):
        raise _BadValue(f"{keyword} holds {len(values)} values or a fraction, not one whole number")
    return int(values[0])


def _text(ds: pydicom.Dataset, keyword: str) -> str:
    try:
        return str(ds.get(keyword, "") or "").strip()
    except Exception:  # a damaged text element reads as absent; it only labels the series  # noqa: BLE001
        return ""


def _shown(values) -> str:
    return "\\".join(f"{v:g}" for v in values)


@dataclass
class SeriesFiles:
    """Headers (and file paths) of the slices of one series found in a folder; pixels stay on disk."""

    uid: str
    headers: list[pydicom.Dataset] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    @property
    def first(self) -> pydicom.Dataset:
        return self.headers[0]

    @property
    def modality(self) -> str:
        # The value most slices give: one damaged slice must not turn a CT series into another modality.
        values = [_text(ds, "Modality") or "unknown" for ds in self.headers]
        return max(values, key=values.count) if values else "unknown"

    @property
    def description(self) -> str:
        return _text(self.first, "SeriesDescription")

    @property
    def number(self) -> str:
        return _text(self.first, "SeriesNumber") or "?"

    @property
    def is_localizer(self) -> bool:
        """Whether most slices say LOCALIZER in their ImageType."""

        def localizer(ds: pydicom.Dataset) -> bool:
            try:
                return "LOCALIZER" in [str(v).upper() for v in _values(ds, "ImageType") or []]
            except _BadValue:
                return False

        return sum(localizer(ds) for ds in self.headers) * 2 > len(self.headers)

    @property
    def frames(self) -> int:
        """NumberOfFrames most slices give (1 for ordinary single-frame slices)."""

        def frames(ds: pydicom.Dataset) -> int:
            try:
                return _int(ds, "NumberOfFrames", 1) or 1
            except _BadValue:
                return 1

        values = [frames(ds) for ds in self.headers]
        return max(values, key=values.count)

    @property
    def slice_normal(self) -> np.ndarray | None:
        """Unit normal of the slices from the first usable ImageOrientationPatient; None when none has one."""
        for ds in self.headers[:3]:  # the first slice may be the damaged one
            try:
                iop = _numbers(ds, "ImageOrientationPatient")
            except _BadValue:
                continue
            if not iop or len(iop) != 6 or not all(np.isfinite(iop)):
                continue
            normal = np.cross(np.asarray(iop[:3]), np.asarray(iop[3:]))
            norm = float(np.linalg.norm(normal))
            if norm > 0:
                return normal / norm
        return None

    @property
    def is_axial(self) -> bool:
        normal = self.slice_normal
        return normal is not None and abs(normal[2]) >= _AXIAL_MIN_COS

    def label(self) -> str:
        if self.is_axial:
            orientation = "axial"
        elif self.is_localizer:
            orientation = "localizer"
        elif self.slice_normal is None:
            # Without an orientation the series may well be axial; calling it "non-axial" would be a guess.
            orientation = "no usable ImageOrientationPatient"
        else:
            orientation = "non-axial"
        return (f"series {self.number} '{self.description}' ({self.modality}, {orientation}, "
                f"{len(self.headers)} slice{'s' if len(self.headers) != 1 else ''})")

    def number_of(self, keyword: str) -> float | None:
        """A single finite numeric attribute of the first readable slice (e.g. KVP, SliceThickness)."""
        for ds in self.headers[:3]:
            try:
                values = _numbers(ds, keyword)
            except _BadValue:
                continue
            if values and len(values) == 1 and np.isfinite(values[0]):
                return float(values[0])
        return None

    def text_of(self, keyword: str) -> str:
        """A text attribute of the first slice ('' when absent or damaged)."""
        return _text(self.first, keyword)

    @property
    def has_contrast_agent(self) -> bool:
        """Whether the headers name a contrast agent (ContrastBolusAgent): written for contrast scans."""
        return bool(_text(self.first, "ContrastBolusAgent"))

    @property
    def slice_spacing(self) -> float | None:
        """Median distance (mm) between sorted slice positions along the slice normal; None when unknown."""
        depths = []
        for ds in self.headers:
            try:
                iop, ipp = _numbers(ds, "ImageOrientationPatient"), _numbers(ds, "ImagePositionPatient")
            except _BadValue:
                continue
            if not iop or not ipp or len(iop) != 6 or len(ipp) != 3 or not all(np.isfinite([*iop, *ipp])):
                continue
            depths.append(float(np.cross(iop[:3], iop[3:]) @ np.asarray(ipp)))
        gaps = np.diff(np.unique(np.round(depths, 3)))
        return float(np.median(gaps)) if len(gaps) else None

    def subset(self, keep: list[int]) -> SeriesFiles:
        return SeriesFiles(self.uid, [self.headers[i] for i in keep], [self.paths[i] for i in keep])


@dataclass
class FolderScan:
    series: dict[str, SeriesFiles]
    n_files: int = 0
    non_dicom: int = 0
    unreadable: list[str] = field(default_factory=list)
    non_image: dict[str, int] = field(default_factory=dict)  # kind -> count (SR, SEG, ...)
    archives: list[str] = field(default_factory=list)  # zip files inside the folder (not opened)
    special: list[str] = field(default_factory=list)  # named pipes, sockets, devices (never opened)


def _classify(ds: pydicom.Dataset) -> str | None:
    """None for an image slice; "damaged" for a header cut short; else a short name of the object
    kind that carries no image slice (structured report, segmentation, DICOMDIR, ...)."""
    sop = _text(ds, "SOPClassUID")
    if not sop:
        meta_sop = _text(ds.get("file_meta", pydicom.Dataset()), "MediaStorageSOPClassUID")
        if meta_sop == "1.2.840.10008.1.3.10":
            return "DICOMDIR"
        return "damaged"  # a header truncated before the dataset proper: no SOP class at all
    name = getattr(pydicom.uid.UID(sop), "name", "") or ""
    if sop in _NON_IMAGE_NAMES:
        return _NON_IMAGE_NAMES[sop]
    if _text(ds, "Modality") == "SR" or name.endswith("SR Storage"):
        return "structured report"
    if "Rows" not in ds or "Columns" not in ds:
        return "damaged" if "Image Storage" in name else (name or "non-image object")
    return None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def scan_folder(folder: Path) -> FolderScan:
    """Read the header of every regular file under ``folder`` (recursively); group image slices by series.

    Named pipes, sockets and devices are listed in ``special`` and never opened: reading a pipe
    blocks until a writer appears, which would hang ingest. Zip files found inside are listed in
    ``archives`` and not opened (an archive within an archive is refused, not unpacked).

    Raises:
        EmptyFolderError: no files at all under ``folder``.
    """
    paths = sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names
                   if not name.startswith("."))
    if not paths:
        raise EmptyFolderError(f"{folder.name or folder}: the folder is empty, no DICOM files to load")
    scan = FolderScan(series={}, n_files=len(paths))
    for path in paths:
        try:
            regular = stat.S_ISREG(path.stat().st_mode)  # follows links: a link to a pipe is a pipe
        except OSError:  # a dangling link or a file removed meanwhile
            regular = False
        if not regular:
            scan.special.append(path.name)
            continue
        try:
            if _is_zip(path):
                scan.archives.append(path.name)
                continue
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            kind = _classify(ds)
            uid = _text(ds, "SeriesInstanceUID") or "unknown series"
        except InvalidDicomError:
            scan.non_dicom += 1
            continue
        except Exception:  # truncated or malformed header: pydicom raises several types  # noqa: BLE001
            scan.unreadable.append(path.name)
            continue
        if kind == "damaged":
            scan.unreadable.append(path.name)
            continue
        if kind:
            scan.non_image[kind] = scan.non_image.get(kind, 0) + 1
            continue
        info = scan.series.setdefault(uid, SeriesFiles(uid))
        info.headers.append(ds)
        info.paths.append(path)
    return scan


def choose_series(scan: FolderScan) -> tuple[SeriesFiles, str | None]:
    """The axial CT series with the most slices (else the largest image series), and why.

    Returns:
        ``(series, reason)``; ``reason`` is None when the folder held a single series.

    Raises:
        NonImageObjectsOnlyError, NestedArchiveError, NoDicomImagesError, NotAVolumeError: nothing
        loadable as a volume.
    """
    if not scan.series:
        if scan.non_image:
            kinds = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in scan.non_image.items())
            raise NonImageObjectsOnlyError(
                f"only DICOM objects without images were found ({kinds}); a CT image series is needed")
        if scan.unreadable:
            raise CorruptDicomError(
                f"all {len(scan.unreadable)} DICOM files are damaged or truncated; no image could be read")
        if scan.archives:
            raise NestedArchiveError(
                f"the upload holds another archive ({', '.join(scan.archives[:3])}) instead of DICOM images; "
                "archives inside an archive or folder are not opened: extract it and load the inner one")
        if scan.special and len(scan.special) == scan.n_files:
            raise NoDicomImagesError(
                f"the {scan.n_files} entries are named pipes, sockets or devices, not files; no DICOM image to load")
        raise NoDicomImagesError(f"none of the {scan.n_files} files is a DICOM image")
    volumes = [s for s in scan.series.values() if len(s.headers) >= 2 and not s.is_localizer and s.frames == 1]
    if not volumes:
        labels = "; ".join(s.label() for s in scan.series.values())
        raise NotAVolumeError(
            f"no 3D image series found, only single images or localizers ({labels}); multi-frame "
            "(enhanced) CT objects are not supported yet")
    rank = sorted(volumes, key=lambda s: (s.modality == "CT", s.is_axial, len(s.headers)), reverse=True)
    chosen, others = rank[0], [s for s in scan.series.values() if s is not rank[0]]
    if not others:
        return chosen, None
    why = ("the axial CT series with the most slices" if chosen.modality == "CT" and chosen.is_axial
           else "no axial CT series: the largest image series")
    reason = (f"{chosen.label()} chosen over {len(others)} other{'s' if len(others) > 1 else ''} as {why}: "
              + "; ".join(s.label() for s in others))
    return chosen, reason


@dataclass
class SliceGeometry:
    """What one slice header says about its pixels and place, read and checked."""

    rows: int
    columns: int
    orientation: np.ndarray  # (2, 3) unit row and column directions
    position: np.ndarray  # (3,) mm
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing) mm; None when absent
    slope: float
    intercept: float


def _pixel_format_problem(ds: pydicom.Dataset, limits: IngestLimits) -> StudyError | None:
    """Why the pixels of ``ds`` are no greyscale CT slice, or None."""
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    if not rows or not columns or rows < 0 or columns < 0:
        return CorruptDicomError(f"the header gives an image of {rows} x {columns} pixels: it is damaged")
    if rows > limits.max_in_plane or columns > limits.max_in_plane:
        return ImageTooLargeError(
            f"the header declares images of {rows} x {columns} pixels, beyond the {limits.max_in_plane} x "
            f"{limits.max_in_plane} a CT slice can have; the header is damaged or the file is no CT slice")
    samples = _int(ds, "SamplesPerPixel", 1)
    photometric = _text(ds, "PhotometricInterpretation").upper() or "MONOCHROME2"
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if samples not in (1, 3, 4):
            return CorruptDicomError(f"SamplesPerPixel {samples} is impossible for an image: the header is damaged")
        kind = ("colour (RGB) pictures" if samples > 1 or photometric.startswith(("RGB", "YBR"))
                else "palette-colour pictures" if photometric.startswith("PALETTE")
                else f"pictures of an unknown colour model ({photometric[:20]})")
        return UnsupportedPixelFormatError(
            f"the images are {kind}, such as screenshots or secondary captures, not greyscale CT slices "
            "in Hounsfield units")
    bits, stored = _int(ds, "BitsAllocated", 16), _int(ds, "BitsStored")
    if bits not in (8, 16, 32):
        return UnsupportedPixelFormatError(
            f"the pixels are {bits}-bit (BitsAllocated {bits}); greyscale CT pixels are 8, 16 or 32 bits")
    if stored is not None and not 1 <= stored <= bits:
        return CorruptDicomError(f"BitsStored {stored} does not fit BitsAllocated {bits}: the header is damaged")
    if _int(ds, "PixelRepresentation", 0) not in (0, 1):
        return CorruptDicomError("PixelRepresentation is neither 0 (unsigned) nor 1 (signed): the header is damaged")
    return None


def _orientation(ds: pydicom.Dataset) -> np.ndarray | StudyError:
    iop = _numbers(ds, "ImageOrientationPatient")
    if iop is None:
        return MissingPositionError("a slice has no ImageOrientationPatient, so it cannot be placed in space")
    if len(iop) != 6:
        return InvalidOrientationError(
            f"ImageOrientationPatient holds {len(iop)} value(s) ({_shown(iop)}); six are needed (the row and "
            "column directions), so the slices cannot be placed in space")
    if not all(np.isfinite(iop)):
        return InvalidOrientationError(
            f"ImageOrientationPatient ({_shown(iop)}) holds a value that is not a number; the slice "
            "orientation is unknown")
    rows = np.asarray(iop, float).reshape(2, 3)
    norms = np.linalg.norm(rows, axis=1)
    if not norms.all():
        which = "all zeros" if not norms.any() else "a zero direction"
        return InvalidOrientationError(
            f"ImageOrientationPatient ({_shown(iop)}) is {which}; the slice orientation is unknown")
    if np.abs(norms - 1).max() > 0.05:  # writers round the cosines, never by this much
        return InvalidOrientationError(
            f"ImageOrientationPatient ({_shown(iop)}) is not made of unit direction cosines; it is damaged")
    rows = rows / norms[:, None]
    if abs(rows[0] @ rows[1]) > 0.05:
        return InvalidOrientationError(
            f"ImageOrientationPatient ({_shown(iop)}) gives row and column directions that are not "
            "perpendicular; it is damaged")
    return rows


def _slice_geometry(ds: pydicom.Dataset, modality: str, limits: IngestLimits) -> SliceGeometry | StudyError:
    """Read and check one slice header; a typed error (returned, not raised) says what is wrong."""
    try:
        problem = _pixel_format_problem(ds, limits)
        if problem:
            return problem
        rows = _orientation(ds)
        if isinstance(rows, StudyError):
            return rows
        ipp = _numbers(ds, "ImagePositionPatient")
        if ipp is None:
            return MissingPositionError("a slice has no ImagePositionPatient, so it cannot be placed in space")
        if len(ipp) != 3 or not all(np.isfinite(ipp)) or max(abs(v) for v in ipp) > limits.max_position_mm:
            return InvalidPositionError(
                f"ImagePositionPatient ({_shown(ipp)}) is not three finite coordinates within "
                f"{limits.max_position_mm / 1000:g} m of the scanner origin; the slice cannot be placed")
        spacing = _numbers(ds, "PixelSpacing")
        if spacing is not None:
            if len(spacing) != 2:
                return InvalidPixelSpacingError(
                    f"PixelSpacing holds {len(spacing)} value(s) ({_shown(spacing)}); two are needed (row and "
                    "column spacing in mm), so distances cannot be measured")
            if not all(np.isfinite(spacing)) or min(spacing) <= 0:
                return InvalidPixelSpacingError(
                    f"PixelSpacing is {_shown(spacing)} mm; a pixel cannot measure zero, less or an infinite "
                    "size, so distances cannot be measured")
            if not all(limits.min_voxel_mm <= v <= limits.max_voxel_mm for v in spacing):
                return InvalidPixelSpacingError(
                    f"PixelSpacing is {_shown(spacing)} mm; CT pixels measure {limits.min_voxel_mm:g} to "
                    f"{limits.max_voxel_mm:g} mm, so this value is damaged")
        slope = _numbers(ds, "RescaleSlope") or (1.0,)
        intercept = _numbers(ds, "RescaleIntercept") or (0.0,)
        rescale = _rescale_problem(slope, intercept, modality, limits)
        if rescale:
            return rescale
        n_rows, n_columns = _int(ds, "Rows"), _int(ds, "Columns")
    except _BadValue as err:
        cls = InvalidRescaleError if str(err).startswith("Rescale") else CorruptDicomError
        return cls(f"{err}; the header is damaged")
    if n_rows is None or n_columns is None:  # _pixel_format_problem refuses these first; kept for the types
        return CorruptDicomError("the header gives no image size: it is damaged")
    return SliceGeometry(n_rows, n_columns, rows, np.asarray(ipp, float),
                         (spacing[0], spacing[1]) if spacing else None, slope[0], intercept[0])


def _rescale_problem(slope: tuple[float, ...], intercept: tuple[float, ...], modality: str,
                     limits: IngestLimits) -> StudyError | None:
    if len(slope) != 1 or len(intercept) != 1:
        return InvalidRescaleError(
            f"RescaleSlope/RescaleIntercept hold several values ({_shown(slope)} / {_shown(intercept)}); "
            "one each is needed to convert pixels to Hounsfield units")
    (s,), (b,) = slope, intercept
    if not (np.isfinite(s) and np.isfinite(b)) or s == 0:
        return InvalidRescaleError(
            f"RescaleSlope {s:g} / RescaleIntercept {b:g} cannot convert pixel values to Hounsfield units "
            "(a slope must be a finite number other than zero)")
    if modality == "CT" and not 0 < s <= limits.max_ct_slope:
        return InvalidRescaleError(
            f"RescaleSlope {s:g} is implausible for CT: scanners write 1 (occasionally 0.5 or 2); "
            + ("a negative slope would invert the densities (bone darker than air)" if s < 0 else
               f"above {limits.max_ct_slope:g} HU per stored step the values would exceed any density")
            + ", so the series is refused rather than measured wrongly")
    if abs(b) > max(abs(limits.min_hu), limits.max_hu):
        return InvalidRescaleError(
            f"RescaleIntercept {b:g} is implausible: it would shift every value beyond any density")
    return None


def _majority(keys: list, what: str, series: SeriesFiles) -> tuple[list[int], list[int]]:
    """Indices holding the most common key, and the rest; refuses when no key holds a majority."""
    counts: dict = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    best, n_best = max(counts.items(), key=lambda kv: kv[1])
    if len(counts) > 1 and n_best * 2 <= len(keys):
        shown = sorted(str(k) for k in counts)[:4]
        raise InconsistentSeriesError(
            f"{series.label()} mixes {what} ({', '.join(shown)}); no value is shared by most slices, so "
            "they cannot be stacked into one volume")
    keep = [i for i, k in enumerate(keys) if k == best]
    return keep, [i for i, k in enumerate(keys) if k != best]


def _most_common(errors: list[StudyError]) -> StudyError:
    """The first error of the most frequent kind (by code): the one to report for a series."""
    codes = [e.code for e in errors]
    top = max(codes, key=codes.count)
    return errors[codes.index(top)]


def _sound(n_good: int, n_total: int) -> bool:
    """Bad slices are left out only when the good ones are at least two and a clear majority."""
    return n_good >= 2 and n_good * 2 > n_total


def _left_out(series: SeriesFiles, bad: list[int], reason: str, kind: str = "slice(s)") -> str:
    names = ", ".join(series.paths[i].name for i in bad[:3]) + (", ..." if len(bad) > 3 else "")
    return f"{len(bad)} {kind} were left out ({names}): {reason}"


def check_slices(series: SeriesFiles, *, warnings: list[str], limits: IngestLimits = LIMITS
                 ) -> tuple[SeriesFiles, list[SliceGeometry]]:
    """Read each slice's geometry; drop the few slices that are damaged or disagree with the rest.

    A slice is left out (with a warning) when its header holds an impossible value, or its size,
    orientation or pixel spacing differs from the value most slices share, or its position lies off
    the line the other slices follow; as long as the remaining slices are a clear majority.

    Raises:
        One typed StudyError saying what is wrong when too few slices are sound.
    """
    modality = series.modality
    results = [_slice_geometry(ds, modality, limits) for ds in series.headers]
    bad = [i for i, r in enumerate(results) if isinstance(r, StudyError)]
    if bad:
        first = _most_common([r for r in results if isinstance(r, StudyError)])
        if not _sound(len(series.headers) - len(bad), len(series.headers)):
            raise type(first)(
                f"{series.label()}: {first} ({len(bad)} of {len(series.headers)} slices, e.g. "
                f"{series.paths[bad[0]].name})")
        warnings.append(_left_out(series, bad, str(first), "damaged slice(s)"))
    good = [i for i in range(len(results)) if i not in set(bad)]
    series, geoms = series.subset(good), [r for r in results if isinstance(r, SliceGeometry)]

    for what, key in (("image sizes", lambda g: (g.rows, g.columns)),
                      ("slice orientations", lambda g: tuple(np.round(g.orientation.ravel(), 3) + 0.0)),
                      ("pixel spacings", lambda g: tuple(round(v, 4) for v in g.pixel_spacing)
                       if g.pixel_spacing else None)):
        keep, odd = _majority([key(g) for g in geoms], what, series)
        if odd:
            if not _sound(len(keep), len(geoms)):
                raise InconsistentSeriesError(f"{series.label()} mixes {what}; it cannot be stacked")
            warnings.append(_left_out(series, odd, f"their {what[:-1]} differs from the other slices'"))
            series, geoms = series.subset(keep), [geoms[i] for i in keep]

    # In-plane offsets (position minus its component along the normal): the same for every slice
    # of an untilted stack. A few slices off that line were misplaced; many means a gantry tilt,
    # which build_study measures and refuses.
    normal = np.cross(geoms[0].orientation[0], geoms[0].orientation[1])
    positions = np.array([g.position for g in geoms])
    offsets = positions - np.outer(positions @ normal, normal)
    off_line = np.linalg.norm(offsets - np.median(offsets, axis=0), axis=1) > 0.1
    if off_line.any() and _sound(int((~off_line).sum()), len(geoms)) and off_line.sum() * 4 <= len(geoms):
        odd = [int(i) for i in np.flatnonzero(off_line)]
        keep = [int(i) for i in np.flatnonzero(~off_line)]
        warnings.append(_left_out(series, odd, "their position lies off the line of the other slices"))
        series, geoms = series.subset(keep), [geoms[i] for i in keep]
    return series, geoms


def _check_acquisitions(series: SeriesFiles, depth: np.ndarray) -> None:
    """Refuse one series that holds two acquisitions over the same positions (e.g. two cardiac phases).

    The sign is positions that hold two different images (not two copies of one instance), at more
    than a quarter of the positions: a single repeated slice is left to the duplicate rule of
    :func:`build_study`, and step-and-shoot acquisitions that merely adjoin or interleave pass.
    """
    positions = np.round(depth, 3)
    unique = np.unique(positions)
    if len(unique) < 2:
        return  # build_study says there are fewer than two distinct positions
    instances: dict[float, set] = {}
    for p, ds in zip(positions, series.headers):
        instances.setdefault(float(p), set()).add(_text(ds, "SOPInstanceUID") or id(ds))
    doubled = sum(len(v) > 1 for v in instances.values())  # a copied instance is one image, not two
    if doubled * 4 <= len(unique):
        return
    numbers: dict = {}
    for ds in series.headers:
        try:
            number = _int(ds, "AcquisitionNumber")
        except _BadValue:
            number = None
        numbers[number] = numbers.get(number, 0) + 1
    parts = ", ".join(f"acquisition {k if k is not None else '(unnumbered)'}: {n} slices"
                      for k, n in sorted(numbers.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)))
    raise MixedAcquisitionsError(
        f"{series.label()} holds more than one acquisition of the same positions ({parts}): {doubled} of "
        f"{len(unique)} positions hold two different images; they are not merged: export each acquisition "
        "(for example each cardiac phase) as its own series and load one")


def build_study(series: SeriesFiles, *, settings: Settings, warnings: list[str],
                limits: IngestLimits = LIMITS) -> Study:
    """Stack ``series`` into a rescaled LPS volume; appends what was fixed or skipped to ``warnings``."""
    series, geoms = check_slices(series, warnings=warnings, limits=limits)
    rows = geoms[0].orientation
    normal = np.cross(rows[0], rows[1])
    positions = np.array([g.position for g in geoms])
    depth = positions @ normal
    order = np.argsort(depth, kind="stable")
    _check_acquisitions(series, depth)
    positions, depth = positions[order], depth[order]
    pixel_spacing = geoms[0].pixel_spacing
    if pixel_spacing is None:
        pixel_spacing = (1.0, 1.0)
        warnings.append("the slices carry no PixelSpacing: 1 mm pixels were assumed, so distances are unreliable")

    # Duplicate positions (a repeated slice): keep the first slice at each position.
    keep = np.concatenate([[True], np.diff(depth) > 1e-3])
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} slice(s) at duplicate positions were ignored")
        order, positions, depth = order[keep], positions[keep], depth[keep]
    if len(order) < 2:
        raise NotAVolumeError(f"{series.label()} has fewer than two distinct slice positions")

    # A slice far beyond either end of the stack (a damaged position) is left out, not bridged.
    while len(order) > 2 and _sound(len(order) - 1, len(series.headers)):
        gaps = np.diff(depth)
        median_gap = float(np.median(gaps))
        limit = settings.max_slice_gap_ratio * median_gap + settings.uneven_spacing_tolerance_mm
        end = 0 if gaps[0] > limit and gaps[0] >= gaps[-1] else -1 if gaps[-1] > limit else None
        if end is None:
            break
        warnings.append(_left_out(series, [int(order[end])], f"it lies {gaps[end]:.1f} mm beyond the end of the "
                                  f"stack where slices are {median_gap:.2f} mm apart"))
        sel = np.ones(len(order), bool)
        sel[end] = False
        order, positions, depth = order[sel], positions[sel], depth[sel]

    # Gantry tilt: consecutive positions step off the slice normal.
    step = positions[-1] - positions[0]
    cos = abs(step @ normal) / np.linalg.norm(step)
    tilt_deg = float(np.degrees(np.arccos(min(1.0, cos))))
    # Judged from the geometry, not the GantryDetectorTilt tag: a scanner that already wrote the
    # tilt into ImageOrientationPatient gives an orthogonal (oblique) stack, which loads correctly.
    if tilt_deg > _TILT_TOLERANCE_DEG:
        raise GantryTiltError(
            f"{series.label()} was acquired with a gantry tilt of about {tilt_deg:.1f} degrees; tilted "
            "series are not corrected here: reconstruct it without tilt or supply an axial series")

    gaps = np.diff(depth)
    check_voxel_size([*pixel_spacing, float(np.median(gaps))], what=f"{series.label()}", limits=limits)
    n_voxels = len(order) * geoms[0].rows * geoms[0].columns
    if n_voxels > limits.max_voxels:
        raise ImageTooLargeError(
            f"{series.label()} would hold {n_voxels:,} voxels ({len(order)} slices of {geoms[0].rows} x "
            f"{geoms[0].columns}), more than the {limits.max_voxels:,} this installation loads")

    stack, skipped = _read_pixels(series, geoms, order, limits)
    if skipped:
        bad = set(skipped)
        good = np.array([int(i) not in bad for i in order])
        first = _most_common(list(skipped.values()))
        if not _sound(int(good.sum()), len(order)):
            error = first
            raise type(error)(f"{series.label()}: {error} ({len(skipped)} of {len(order)} slices, e.g. "
                              f"{series.paths[next(iter(skipped))].name}); the series cannot be built")
        warnings.append(_left_out(series, list(skipped), str(first), "damaged slice(s)"))
        stack, depth, positions = stack[:, :, good], depth[good], positions[good]

    gaps = np.diff(depth)
    median_gap = float(np.median(gaps))
    even = float(np.abs(gaps - median_gap).max()) <= settings.uneven_spacing_tolerance_mm
    if not even and gaps.max() > settings.max_slice_gap_ratio * median_gap + settings.uneven_spacing_tolerance_mm:
        cause = "damaged slices were left out" if skipped else "slices are missing"
        raise UnevenSpacingError(
            f"{series.label()} has a gap of {gaps.max():.2f} mm between slices where {median_gap:.2f} mm is "
            f"usual (more than {settings.max_slice_gap_ratio:g} times): {cause}, so the series is refused")

    if even:
        spacing_k = median_gap
    else:
        n_new = int(round((depth[-1] - depth[0]) / median_gap)) + 1
        spacing_k = float(depth[-1] - depth[0]) / (n_new - 1)
        stack = _resample_along_k(stack, depth - depth[0], spacing_k, n_new)
        warnings.append(
            f"slice spacing was uneven ({gaps.min():.2f}-{gaps.max():.2f} mm); resampled linearly to an even "
            f"{spacing_k:.3f} mm grid ({len(depth)} -> {n_new} slices)")

    # Native grid: axis 0 = column index (along the row direction), 1 = row index, 2 = sorted slices.
    affine = np.eye(4)
    affine[:3, 0] = rows[0] * pixel_spacing[1]
    affine[:3, 1] = rows[1] * pixel_spacing[0]
    affine[:3, 2] = normal * spacing_k
    affine[:3, 3] = positions[0]
    hu, affine = reorient_to_lps(stack, affine)
    di, dj, dk = (float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return Study(hu=hu, spacing=(di, dj, dk), affine=affine)


def _syntax(ds: pydicom.Dataset | None) -> tuple[pydicom.uid.UID | None, bool | None]:
    """The file's transfer syntax and whether it is compressed (None: not a transfer syntax at all)."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is None:
        return None, False
    if not isinstance(syntax, pydicom.uid.UID):  # a damaged header can make it several values
        return syntax, None
    try:
        return syntax, bool(syntax.is_compressed)
    except ValueError:  # pydicom: "UID is not a transfer syntax"
        return syntax, None


def _pixel_bytes_problem(ds: pydicom.Dataset, geom: SliceGeometry) -> StudyError | None:
    """For uncompressed slices: whether the pixel data holds as many bytes as the header declares."""
    if _syntax(ds)[1] is not False:
        return None
    bits = _int(ds, "BitsAllocated", 16)
    data = ds.get("PixelData")
    if data is None:
        return CorruptDicomError("a slice holds no pixel data")
    need = geom.rows * geom.columns * bits // 8
    if len(data) < need:
        return CorruptDicomError(
            f"the header declares {geom.rows} x {geom.columns} pixels of {bits} bits ({need:,} bytes) but the "
            f"slice holds {len(data):,} bytes of pixel data: the file is truncated or its header is wrong")
    return None


def _read_pixels(series: SeriesFiles, geoms: list[SliceGeometry], order: np.ndarray, limits: IngestLimits
                 ) -> tuple[np.ndarray, dict[int, StudyError]]:
    """(columns, rows, N) rescaled volume and, per unusable slice index, why (those planes left as zeros).

    int16 when every slope/intercept is integral and the HU fit int16 (the usual CT case, written
    straight into the output so memory stays at one volume), else float32. Slices are filled as
    contiguous (N, rows, columns) planes and returned as the transposed view, which is
    Fortran-contiguous: no second copy of the volume is made. For CT, a slice whose rescaled values
    leave the plausible Hounsfield range is unusable too.
    """
    first = geoms[order[0]]
    planes = (len(order), first.rows, first.columns)
    integral = all(g.slope == round(g.slope) and g.intercept == round(g.intercept) for g in geoms)
    out = np.zeros(planes, np.int16 if integral else np.float32)
    is_ct = series.modality == "CT"
    skipped: dict[int, StudyError] = {}
    for n, i in enumerate(order):
        ds = None
        try:
            ds = pydicom.dcmread(series.paths[i])
            problem = _pixel_bytes_problem(ds, geoms[i])
            if problem:
                skipped[int(i)] = problem
                continue
            pixels = ds.pixel_array
            if pixels.shape != planes[1:]:
                raise ValueError(f"pixel data of shape {pixels.shape}")
        except Exception:  # truncated pixel data raises ValueError/OSError/EOFError depending on where  # noqa: BLE001
            syntax, compressed = _syntax(ds)
            if syntax is not None and compressed is None:
                skipped[int(i)] = CorruptDicomError(
                    f"the file declares '{str(syntax)[:64]}' as its transfer syntax, which is none: it is damaged")
            elif syntax is not None and compressed and not _decodable(syntax):
                skipped[int(i)] = UndecodableCompressionError(
                    f"stored compressed as {syntax.name} ({syntax}), which this installation cannot decode; "
                    "export the series uncompressed or install a decoder (pylibjpeg, gdcm)")
            elif syntax is not None and compressed:
                skipped[int(i)] = CorruptDicomError(
                    f"the {syntax.name} compressed pixel data is damaged: the installed decoder cannot read it")
            else:
                skipped[int(i)] = CorruptDicomError("the pixel data is damaged or truncated")
            continue
        slope, intercept = geoms[i].slope, geoms[i].intercept
        # The rescale is monotonic: the stored extremes give the HU range without a float copy.
        stored = (float(pixels.min()), float(pixels.max())) if pixels.size else (0.0, 0.0)
        lo, hi = sorted(v * slope + intercept for v in stored)
        if is_ct:
            try:
                check_hu_range(lo, hi, what="a slice", limits=limits)
            except ImplausibleValuesError as err:
                skipped[int(i)] = err
                continue
        elif not (np.isfinite(lo) and np.isfinite(hi) and max(abs(lo), abs(hi)) < 3e38):
            skipped[int(i)] = InvalidRescaleError("the rescaled values overflow; RescaleSlope/Intercept are damaged")
            continue
        if out.dtype == np.int16 and (lo < -32768 or hi > 32767):
            out = out.astype(np.float32)  # rare: values beyond int16, kept exact in float32
        if out.dtype != np.int16:
            out[n] = pixels * np.float32(slope) + np.float32(intercept)
        elif slope == 1 and intercept == 0:
            out[n] = pixels  # the usual CT case: no arithmetic, no temporary
        else:
            out[n] = pixels.astype(np.int32) * int(slope) + int(intercept)
    return out.transpose(2, 1, 0), skipped


def _decodable(syntax: pydicom.uid.UID) -> bool:
    """Whether an installed pixel decoder handles ``syntax`` (pydicom's own registry)."""
    try:
        from pydicom.pixels.decoders.base import get_decoder

        return get_decoder(syntax).is_available
    except Exception:  # an unknown syntax has no decoder entry  # noqa: BLE001
        return False


def _resample_along_k(stack: np.ndarray, depth: np.ndarray, spacing: float, n: int) -> np.ndarray:
    """Linear interpolation of (I, J, N) slices at positions ``depth`` (mm) onto ``n`` even slices."""
    from scipy.interpolate import make_interp_spline

    target = np.arange(n) * spacing
    target[-1] = depth[-1]  # avoid a rounding step outside the data
    resampled = make_interp_spline(depth, stack.astype(np.float32), k=1, axis=2)(target)
    if np.issubdtype(stack.dtype, np.integer):
        return np.rint(resampled).astype(stack.dtype)
    return resampled.astype(np.float32)


def _metadata(ds: pydicom.Dataset) -> dict:
    """De-identified descriptive metadata of the chosen series (no names, IDs or birth dates)."""

    def text(keyword: str) -> str | None:
        return _text(ds, keyword) or None

    def number(keyword: str) -> float | None:
        try:
            values = _numbers(ds, keyword)
        except _BadValue:
            return None
        return values[0] if values and len(values) == 1 and np.isfinite(values[0]) else None

    try:
        kernel_values = _values(ds, "ConvolutionKernel")
    except _BadValue:
        kernel_values = None
    kernel = "\\".join(str(k) for k in kernel_values) if kernel_values else None
    meta = {
        "format": "DICOM",
        "study_date": text("StudyDate"),
        "study_uid": text("StudyInstanceUID"),
        "series_uid": text("SeriesInstanceUID"),
        "study_description": text("StudyDescription"),
        "series_description": text("SeriesDescription"),
        "series_number": text("SeriesNumber"),
        "kvp": number("KVP"),
        "slice_thickness_mm": number("SliceThickness"),
        "manufacturer": text("Manufacturer"),
        "convolution_kernel": kernel.strip() or None if kernel else None,
        "contrast": bool(text("ContrastBolusAgent")),
        "frame_of_reference_uid": text("FrameOfReferenceUID"),
        # Age and sex only (the clinical context uses them); the birth date itself is never kept.
        "patient_age_years": _patient_age(ds),
        "patient_sex": {"M": "male", "F": "female"}.get(_text(ds, "PatientSex").upper()),
    }
    return {k: v for k, v in meta.items() if v is not None}


def _patient_age(ds: pydicom.Dataset) -> int | None:
    """Age in whole years from PatientAge ("067Y"), else from the birth and study dates; None if unknown."""
    age = _text(ds, "PatientAge").upper()
    if len(age) == 4 and age[:3].isdigit() and age[3] in "YMWD":
        return int(age[:3]) if age[3] == "Y" else 0
    born, seen = _text(ds, "PatientBirthDate"), _text(ds, "StudyDate")
    if len(born) == 8 == len(seen) and born.isdigit() and seen.isdigit():
        years = int(seen[:4]) - int(born[:4]) - (seen[4:] < born[4:])
        return years if 0 <= years <= 130 else None
    return None


def read_dicom_folder(folder: Path, *, settings: Settings | None = None, series_uid: str | None = None,
                      scan: FolderScan | None = None) -> Study:
    """Load the best series under ``folder``, or the series ``series_uid``; see
    :func:`cardiovlm.tools.ingest.study.load_study`.

    Args:
        scan: the folder's :func:`scan_folder` result when already read (several series of one folder
            are loaded with one scan).

    Raises:
        SeriesNotFoundError: ``series_uid`` is not a series of the folder.
        StudyError: the series (or the folder) cannot be loaded; see :func:`cardiovlm.tools.ingest.study.load_study`.
    """
    settings = settings or get_settings()
    scan = scan or scan_folder(folder)
    if series_uid is None:
        series, reason = choose_series(scan)
    elif series_uid in scan.series:
        series, reason = scan.series[series_uid], None
    else:
        raise SeriesNotFoundError(
            f"no series with the UID {series_uid} in this study; its series are: "
            + ("; ".join(s.label() for s in scan.series.values()) or "none"))
    warnings = []
    if scan.non_dicom:
        warnings.append(f"{scan.non_dicom} non-DICOM file(s) were skipped")
    if scan.unreadable:
        warnings.append(f"{len(scan.unreadable)} damaged DICOM file(s) were skipped (e.g. {scan.unreadable[0]})")
    if scan.special:
        warnings.append(f"{len(scan.special)} named pipe(s), socket(s) or device(s) were skipped unopened "
                        f"(e.g. {scan.special[0]})")
    if scan.archives:
        warnings.append(f"{len(scan.archives)} archive(s) inside the upload were not opened "
                        f"(e.g. {scan.archives[0]}); only the DICOM files beside them were loaded")
    if scan.non_image:
        warnings.append("ignored DICOM objects without images: "
                        + ", ".join(f"{n} {k}" for k, n in scan.non_image.items()))
    study = build_study(series, settings=settings, warnings=warnings)
    hu_calibrated = series.modality == "CT"
    if not hu_calibrated:
        warnings.append(f"modality is {series.modality}, not CT: intensities are not Hounsfield units and "
                        "HU-based measurements (calcium, plaque) do not apply")
    study.modality = series.modality
    study.hu_calibrated = hu_calibrated
    # Settings fills the salt when it is built; one cleared afterwards falls back to the install's salt as well.
    salt = settings.patient_hash_salt or install_salt(settings.data_dir)
    study.patient_hash = hash_patient_id(_text(series.first, "PatientID"), salt)
    study.metadata = _metadata(series.first)
    study.source = str(folder)
    study.series_choice = reason
    study.warnings = warnings
    return study
