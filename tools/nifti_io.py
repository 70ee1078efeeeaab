"""NIfTI reading and writing in the ``tools.study`` LPS convention.

NIfTI stores a RAS affine (+x towards the patient's Right, +y Anterior); the LPS affine of
``tools.study`` differs from it by ``diag(-1, -1, 1, 1)``. Reading reorients any voxel order to LPS
``[i, j, k]`` with ``nibabel.orientations``; writing stores the LPS-ordered array with the RAS affine
``diag(-1, -1, 1, 1) @ affine_lps`` as ``tools.case_format`` documents.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from tools.study import InvalidNiftiError, Study, StudyNotFoundError, reorient_to_lps

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _as_compact(data: np.ndarray, *, labels: bool, name: str) -> np.ndarray:
    """int16 (uint8 for small label maps) when every value is integral, else float32 (images only)."""
    integral = np.issubdtype(data.dtype, np.integer) or bool(np.all(np.mod(data, 1) == 0))
    if labels:
        if not integral or data.min() < 0:
            raise InvalidNiftiError(f"{name}: a label map must hold non-negative whole numbers")
        return data.astype(np.uint8 if data.max() <= 255 else np.int16)
    if integral and data.min() >= -32768 and data.max() <= 32767:
        return data.astype(np.int16, copy=False)
    return data.astype(np.float32, copy=False)


def read_nifti(path: Path, *, labels: bool = False) -> Study:
    """Read a 3D NIfTI image or label map; see :func:`tools.study.load_nifti`."""
    if not path.is_file():
        raise StudyNotFoundError(f"{path}: no such file")
    try:
        img = nib.load(path)
        data = np.asanyarray(img.dataobj)  # applies scl_slope/scl_inter when the header sets them
    except Exception as err:  # nibabel raises many types for truncated or foreign files
        raise InvalidNiftiError(f"{path.name}: not a readable NIfTI file ({err})") from err
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InvalidNiftiError(f"{path.name}: expected a 3D volume, found {data.ndim}D of shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating) and not np.all(np.isfinite(data)):
        bad = int(np.count_nonzero(~np.isfinite(data)))
        raise InvalidNiftiError(f"{path.name}: {bad} voxels are NaN or infinite; the image cannot be measured")
    data = _as_compact(data, labels=labels, name=path.name)
    data, affine = reorient_to_lps(data, LPS_FROM_RAS @ img.affine)
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return Study(hu=data, spacing=spacing, affine=affine, modality="CT", hu_calibrated=not labels,
                 metadata={"format": "NIfTI"}, source=str(path))


def write_nifti(array: np.ndarray, affine_lps: np.ndarray, path: Path) -> Path:
    """Write an LPS ``[i, j, k]`` array as NIfTI (RAS affine, sform and qform set, code 'scanner')."""
    img = nib.Nifti1Image(np.asarray(array), LPS_FROM_RAS @ np.asarray(affine_lps, dtype=np.float64))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path
