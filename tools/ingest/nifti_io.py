"""NIfTI reading and writing in the ``cardiovlm.tools.ingest.study`` LPS convention.

NIfTI stores a RAS affine (+x towards the patient's Right, +y Anterior); the LPS affine of
``cardiovlm.tools.ingest.study`` differs from it by ``diag(-1, -1, 1, 1)``. Reading reorients any voxel order to LPS
``[i, j, k]`` with ``nibabel.orientations``; writing stores the LPS-ordered array with the RAS affine
``diag(-1, -1, 1, 1) @ affine_lps`` as ``cardiovlm.tools.core.case_format`` documents.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener

from cardiovlm.tools.ingest.study_errors import (
    ImageTooLargeError,
    InvalidGeometryError,
    InvalidNiftiAffineError,
    InvalidNiftiError,
    NotAVolumeError,
    StudyNotFoundError,
)
from cardiovlm.tools.ingest.study_value import (
    LIMITS,
    IngestLimits,
    Study,
    check_hu_range,
    check_voxel_size,
    reorient_to_lps,
)

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_compact(data: np.ndarray, *, labels: bool, name: str, limits: IngestLimits) -> np.ndarray:
    """int16 (uint8 for small label maps) when every value is integral, else float32 (images only)."""
    integral = np.issubdtype(data.dtype, np.integer) or bool(np.all(np.mod(data, 1) == 0))
    lo, hi = float(data.min()), float(data.max())
    if labels:
        if not integral or lo < 0 or hi > 32767:
            raise InvalidNiftiError(
                f"{name}: a label map must hold whole numbers from 0 to 32767; this one holds {lo:g} to {hi:g}")
        return data.astype(np.uint8 if hi <= 255 else np.int16)
    check_hu_range(lo, hi, what=f"{name}", limits=limits)
    if integral and lo >= -32768 and hi <= 32767:
        return data.astype(np.int16, copy=False)
    return data.astype(np.float32, copy=False)


def _raw_header(img, path: Path):
    """The header as stored (nibabel's loaded header has its fields already 'fixed'); None if not NIfTI."""
    if "sform_code" not in img.header:
        return None
    try:
        with ImageOpener(path) as f:
            return type(img.header).from_fileobj(f, check=False)
    except Exception:  # it was just read once; a second failure leaves the loaded header in charge  # noqa: BLE001
        return None


def _check_header(img, path: Path, name: str, limits: IngestLimits) -> None:
    """Refuse, from the header alone, shapes too large to hold and affines that place no voxel."""
    shape = tuple(int(n) for n in img.header.get_data_shape())
    if any(n < 1 for n in shape):
        raise InvalidNiftiError(f"{name}: the header gives a volume of shape {shape}, which holds no voxels")
    if int(np.prod(shape, dtype=np.float64)) > limits.max_voxels:
        raise ImageTooLargeError(
            f"{name}: the header declares {' x '.join(map(str, shape))} voxels, more than the "
            f"{limits.max_voxels:,} this installation loads; the header is damaged or the image is not one CT")
    header = _raw_header(img, path)
    if header is not None and int(header["sform_code"]) == 0:
        # The affine then comes from qform/pixdim, and nibabel quietly turns a zero pixdim into 1 mm.
        pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
        if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
            raise InvalidNiftiAffineError(
                f"{name}: the header gives voxel sizes of {' x '.join(f'{v:g}' for v in pixdim)} mm; a voxel "
                "without a finite size cannot be measured")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise InvalidNiftiAffineError(
            f"{name}: the voxel-to-patient affine holds values that are not numbers; the image cannot be placed")
    sizes = np.linalg.norm(affine[:3, :3], axis=0)
    if np.any(sizes == 0) or abs(np.linalg.det(affine[:3, :3])) < 1e-12 * max(float(np.prod(sizes)), 1e-300):
        zero = [axis for axis, s in zip("ijk", sizes) if s == 0]
        what = (f"gives the {', '.join(zero)} axis zero length" if zero
                else "is singular (two axes point the same way)")
        raise InvalidNiftiAffineError(
            f"{name}: the voxel-to-patient affine {what}; voxels without a size cannot be measured")
    try:
        check_voxel_size(sizes, what=f"{name}: the affine", limits=limits)
    except InvalidGeometryError as err:
        raise InvalidNiftiAffineError(str(err)) from None


def read_nifti(path: Path, *, labels: bool = False, limits: IngestLimits = LIMITS) -> Study:
    """Read a 3D NIfTI image or label map; see :func:`cardiovlm.tools.ingest.study.load_nifti`."""
    if not path.is_file():
        raise StudyNotFoundError(f"{path}: no such file")
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many types for truncated or foreign files
        raise InvalidNiftiError(f"{path.name}: not a readable NIfTI file (the header is damaged or it is "
                                "another kind of file)") from err
    _check_header(img, path, path.name, limits)
    try:
        data = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter when the header sets them
    except Exception as err:  # truncated data, bad offsets or data types: several types again
        raise InvalidNiftiError(f"{path.name}: not a readable NIfTI file (the image data is truncated or "
                                "does not match its header)") from err
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidNiftiError(f"{path.name}: expected a 3D volume, found {data.ndim}D of shape {data.shape}")
    if min(data.shape) < 2:
        raise NotAVolumeError(
            f"{path.name}: a single image ({' x '.join(map(str, data.shape))} voxels), not a 3D volume")
    if data.dtype.kind not in "biuf":
        raise InvalidNiftiError(
            f"{path.name}: the voxels are {data.dtype} (colour or complex values), not a greyscale image")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InvalidNiftiError(f"{path.name}: {bad} voxels are NaN or infinite; the image cannot be measured")
    data = _as_compact(data, labels=labels, name=path.name, limits=limits)
    data, affine = reorient_to_lps(data, LPS_FROM_RAS @ img.affine)
    di, dj, dk = (float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return Study(hu=data, spacing=(di, dj, dk), affine=affine, modality="CT", hu_calibrated=not labels,
                 metadata={"format": "NIfTI"}, source=str(path))


def write_nifti(array: np.ndarray, affine_lps: np.ndarray, path: Path) -> Path:
    """Write an LPS ``[i, j, k]`` array as NIfTI (RAS affine, sform and qform set, code 'scanner')."""
    img = nib.Nifti1Image(np.asarray(array), LPS_FROM_RAS @ np.asarray(affine_lps, dtype=np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path
