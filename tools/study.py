"""The ``Study`` value: one CT (or other) volume in a documented orientation, de-identified.

Orientation convention (shared with ``tools.case_format``): ``hu`` is indexed ``[i, j, k]`` with i
towards the patient's Left, j towards Posterior and k towards Superior (DICOM LPS axes). ``affine``
maps a voxel index ``(i, j, k, 1)`` to patient LPS millimetres; for an axial, untilted series it is
diagonal in its 3x3 part with ``spacing`` on the diagonal. Loaders reorient every input to this
convention, so ``hu[:, :, k]`` is always an axial slice seen with the patient's left along i.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class StudyError(ValueError):
    """Base class of every ingest error; ``str(err)`` is a message a clinician understands."""


@dataclass
class Study:
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
