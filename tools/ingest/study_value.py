"""The ``Study`` value, the limits a loadable CT respects, and the reorientation every loader applies.

Orientation convention (shared with ``cardiovlm.tools.core.case_format``): ``hu`` is indexed ``[i, j, k]`` with i
towards the patient's Left, j towards Posterior and k towards Superior (DICOM LPS axes). ``affine``
maps a voxel index ``(i, j, k, 1)`` to patient LPS millimetres; for an axial, untilted series it is
diagonal in its 3x3 part with ``spacing`` on the diagonal. Loaders reorient every input to this
convention, so ``hu[:, :, k]`` is always an axial slice seen with the patient's left along i.
Memory order is not part of the convention: DICOM loads return a Fortran-ordered array (slices are
filled in place without a second copy); call ``np.ascontiguousarray`` where C order matters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from cardiovlm.tools.ingest.study_errors import ImplausibleValuesError, InvalidGeometryError


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
    """One de-identified volume in the LPS ``[i, j, k]`` convention above; see
    :func:`cardiovlm.tools.ingest.study.load_study`."""

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
