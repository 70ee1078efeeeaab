"""Read a folder of DICOM files into one :class:`tools.study.Study`.

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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from tools.settings import Settings, get_settings
from tools.study import (
    CorruptDicomError,
    EmptyFolderError,
    GantryTiltError,
    InconsistentSeriesError,
    MissingPositionError,
    NoDicomImagesError,
    NonImageObjectsOnlyError,
    NotAVolumeError,
    Study,
    UndecodableCompressionError,
    UnevenSpacingError,
    hash_patient_id,
    reorient_to_lps,
)

# Slices whose normal is within ~25 degrees of the body axis count as axial (|n_z| >= cos 25 deg).
_AXIAL_MIN_COS = 0.9
# Positions that drift off the slice normal by more than this angle mean a tilted gantry.
_TILT_TOLERANCE_DEG = 0.5
_NON_IMAGE_NAMES = {"1.2.840.10008.5.1.4.1.1.66.4": "segmentation"}  # SEG; SR classes are found by name


@dataclass
class SeriesInfo:
    """Headers of the slices of one series found in a folder."""

    uid: str
    headers: list[pydicom.Dataset] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    @property
    def first(self) -> pydicom.Dataset:
        return self.headers[0]

    @property
    def modality(self) -> str:
        return str(self.first.get("Modality", "") or "unknown")

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", "") or "").strip()

    @property
    def number(self) -> str:
        return str(self.first.get("SeriesNumber", "") or "?")

    @property
    def is_localizer(self) -> bool:
        return "LOCALIZER" in [str(v).upper() for v in (self.first.get("ImageType") or [])]

    @property
    def is_axial(self) -> bool:
        iop = self.first.get("ImageOrientationPatient")
        if not iop or len(iop) != 6:
            return False
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return abs(normal[2]) >= _AXIAL_MIN_COS * np.linalg.norm(normal)

    def label(self) -> str:
        orientation = "axial" if self.is_axial else "localizer" if self.is_localizer else "non-axial"
        return (f"series {self.number} '{self.description}' ({self.modality}, {orientation}, "
                f"{len(self.headers)} slice{'s' if len(self.headers) != 1 else ''})")


@dataclass
class FolderScan:
    series: dict[str, SeriesInfo]
    n_files: int = 0
    non_dicom: int = 0
    unreadable: list[str] = field(default_factory=list)
    non_image: dict[str, int] = field(default_factory=dict)  # kind -> count (SR, SEG, ...)


def _classify(ds: pydicom.Dataset) -> str | None:
    """None for an image slice; "damaged" for a header cut short; else a short name of the object
    kind that carries no image slice (structured report, segmentation, DICOMDIR, ...)."""
    sop = str(ds.get("SOPClassUID", "") or "")
    if not sop:
        meta_sop = str(getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", "") or "")
        if meta_sop == "1.2.840.10008.1.3.10":
            return "DICOMDIR"
        return "damaged"  # a header truncated before the dataset proper: no SOP class at all
    name = getattr(pydicom.uid.UID(sop), "name", "") or ""
    if sop in _NON_IMAGE_NAMES:
        return _NON_IMAGE_NAMES[sop]
    if str(ds.get("Modality", "")) == "SR" or name.endswith("SR Storage"):
        return "structured report"
    if "Rows" not in ds or "Columns" not in ds:
        return "damaged" if "Image Storage" in name else (name or "non-image object")
    return None


def scan_folder(folder: Path) -> FolderScan:
    """Read the header of every file under ``folder`` (recursively) and group image slices by series.

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
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            scan.non_dicom += 1
            continue
        except Exception:  # truncated or malformed header: pydicom raises several types
            scan.unreadable.append(path.name)
            continue
        kind = _classify(ds)
        if kind == "damaged":
            scan.unreadable.append(path.name)
            continue
        if kind:
            scan.non_image[kind] = scan.non_image.get(kind, 0) + 1
            continue
        uid = str(ds.get("SeriesInstanceUID", "") or "unknown series")
        info = scan.series.setdefault(uid, SeriesInfo(uid))
        info.headers.append(ds)
        info.paths.append(path)
    return scan


def choose_series(scan: FolderScan) -> tuple[SeriesInfo, str | None]:
    """The axial CT series with the most slices (else the largest image series), and why.

    Returns:
        ``(series, reason)``; ``reason`` is None when the folder held a single series.

    Raises:
        NonImageObjectsOnlyError, NoDicomImagesError, NotAVolumeError: nothing loadable as a volume.
    """
    if not scan.series:
        if scan.non_image:
            kinds = ", ".join(f"{n} {k}{'s' if n > 1 else ''}" for k, n in scan.non_image.items())
            raise NonImageObjectsOnlyError(
                f"only DICOM objects without images were found ({kinds}); a CT image series is needed")
        if scan.unreadable:
            raise CorruptDicomError(
                f"all {len(scan.unreadable)} DICOM files are damaged or truncated; no image could be read")
        raise NoDicomImagesError(f"none of the {scan.n_files} files is a DICOM image")
    volumes = [s for s in scan.series.values()
               if len(s.headers) >= 2 and not s.is_localizer and int(s.first.get("NumberOfFrames", 1) or 1) == 1]
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


def _geometry(series: SeriesInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort the slices along their normal; return (order, positions (N,3), iop rows (2,3), pixel spacing)."""
    missing = [p.name for p, h in zip(series.paths, series.headers)
               if "ImagePositionPatient" not in h or "ImageOrientationPatient" not in h]
    if missing:
        raise MissingPositionError(
            f"{len(missing)} slice(s) of {series.label()} have no ImagePositionPatient/ImageOrientationPatient "
            f"(e.g. {missing[0]}), so the slices cannot be placed in space")
    sizes = {(int(h.Rows), int(h.Columns)) for h in series.headers}
    if len(sizes) > 1:
        raise InconsistentSeriesError(
            f"{series.label()} mixes image sizes {sorted(sizes)}; the slices cannot be stacked into one volume")
    iops = np.array([[float(v) for v in h.ImageOrientationPatient] for h in series.headers])
    if np.abs(iops - iops[0]).max() > 1e-3:
        raise InconsistentSeriesError(f"{series.label()} mixes slice orientations; it cannot be stacked")
    spacings = np.array([[float(v) for v in h.get("PixelSpacing", [1, 1])] for h in series.headers])
    if np.abs(spacings - spacings[0]).max() > 1e-4:
        raise InconsistentSeriesError(f"{series.label()} mixes pixel spacings; it cannot be stacked")
    rows = iops[0].reshape(2, 3)
    rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)  # some writers round the cosines
    normal = np.cross(rows[0], rows[1])
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in series.headers])
    order = np.argsort(positions @ normal, kind="stable")
    return order, positions[order], rows, spacings[0]


def build_study(series: SeriesInfo, *, settings: Settings, warnings: list[str]) -> Study:
    """Stack ``series`` into a rescaled LPS volume; appends what was fixed or skipped to ``warnings``."""
    order, positions, rows, pixel_spacing = _geometry(series)
    if "PixelSpacing" not in series.first:
        warnings.append("the slices carry no PixelSpacing: 1 mm pixels were assumed, so distances are unreliable")
    normal = np.cross(rows[0], rows[1])
    depth = positions @ normal

    # Duplicate positions (a repeated acquisition): keep the first slice at each position.
    keep = np.concatenate([[True], np.diff(depth) > 1e-3])
    if not keep.all():
        warnings.append(f"{int((~keep).sum())} slice(s) at duplicate positions were ignored")
        order, positions, depth = order[keep], positions[keep], depth[keep]
    if len(order) < 2:
        raise NotAVolumeError(f"{series.label()} has fewer than two distinct slice positions")

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

    stack, skipped = _read_pixels(series, order)
    if skipped:
        good = np.array([series.paths[i] not in skipped for i in order])
        if good.sum() < 2:
            raise CorruptDicomError(
                f"{len(skipped)} of {len(order)} slices of {series.label()} are damaged or truncated; "
                "the series cannot be built")
        warnings.append(f"{len(skipped)} damaged slice(s) were left out (e.g. {skipped[0].name})")
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
    return Study(hu=hu, spacing=tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0)), affine=affine)


def _read_pixels(series: SeriesInfo, order: np.ndarray) -> tuple[np.ndarray, list[Path]]:
    """(columns, rows, N) rescaled volume and the paths of unreadable slices (left as zeros).

    int16 when every slope/intercept is integral and the HU fit int16 (the usual CT case, written
    straight into the output so memory stays at one volume), else float32. Slices are filled as
    contiguous (N, rows, columns) planes and returned as the transposed view, which is
    Fortran-contiguous: no second copy of the volume is made.
    """
    first = series.headers[order[0]]
    planes = (len(order), int(first.Rows), int(first.Columns))
    slopes = [float(series.headers[i].get("RescaleSlope", 1) or 1) for i in order]
    intercepts = [float(series.headers[i].get("RescaleIntercept", 0) or 0) for i in order]
    integral = all(v == round(v) for v in slopes + intercepts)
    out = np.zeros(planes, np.int16 if integral else np.float32)
    skipped, undecodable = [], set()
    for n, i in enumerate(order):
        ds = None
        try:
            ds = pydicom.dcmread(series.paths[i])
            pixels = ds.pixel_array
            if pixels.shape != planes[1:]:
                raise ValueError(f"pixel data of shape {pixels.shape}")
        except Exception:  # truncated pixel data raises ValueError/OSError/EOFError depending on where
            skipped.append(series.paths[i])
            syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
            if syntax is not None and syntax.is_compressed:
                undecodable.add(f"{syntax.name} ({syntax})")
            continue
        slope, intercept = slopes[n], intercepts[n]
        if out.dtype != np.int16:
            out[n] = pixels * np.float32(slope) + np.float32(intercept)
        elif pixels.dtype == np.int16 and slope == 1 and intercept == 0:
            out[n] = pixels
        else:
            hu = pixels.astype(np.int32) * int(slope) + int(intercept)
            if hu.min() < -32768 or hu.max() > 32767:
                out = out.astype(np.float32)  # rare: values beyond int16, kept exact in float32
            out[n] = hu
    if undecodable and len(skipped) == len(order):
        raise UndecodableCompressionError(
            f"{series.label()} is stored compressed as {', '.join(sorted(undecodable))}, which this "
            "installation cannot decode; export the series uncompressed or install a decoder "
            "(pylibjpeg, gdcm)")
    return out.transpose(2, 1, 0), skipped


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
        value = ds.get(keyword)
        return str(value).strip() or None if value is not None else None

    def number(keyword: str) -> float | None:
        try:
            return float(ds.get(keyword)) if ds.get(keyword) not in (None, "") else None
        except (TypeError, ValueError):
            return None

    kernel = ds.get("ConvolutionKernel")
    if kernel is not None and not isinstance(kernel, str):
        kernel = "\\".join(str(k) for k in kernel)
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
        "convolution_kernel": str(kernel).strip() or None if kernel is not None else None,
        "contrast": bool(text("ContrastBolusAgent")),
    }
    return {k: v for k, v in meta.items() if v is not None}


def read_dicom_folder(folder: Path, *, settings: Settings | None = None) -> Study:
    """Load the best series under ``folder``; see :func:`tools.study.load_study` for the policy."""
    settings = settings or get_settings()
    scan = scan_folder(folder)
    series, reason = choose_series(scan)
    warnings = []
    if scan.non_dicom:
        warnings.append(f"{scan.non_dicom} non-DICOM file(s) were skipped")
    if scan.unreadable:
        warnings.append(f"{len(scan.unreadable)} damaged DICOM file(s) were skipped (e.g. {scan.unreadable[0]})")
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
    study.patient_hash = hash_patient_id(series.first.get("PatientID"), settings.patient_hash_salt)
    study.metadata = _metadata(series.first)
    study.source = str(folder)
    study.series_choice = reason
    study.warnings = warnings
    return study
