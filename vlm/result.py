"""What ``CardioVLM.run`` returns, and the study fingerprint its embedding cache is keyed by."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass
class VLMResult:
    """One instruction's answer on one study. Every field is filled; which ones matter depends on
    the instruction (a mask for "segment ...", a landmark for "locate ...", an answer for questions)."""

    instruction: str
    mask: np.ndarray  # (I, J, K) bool on the STUDY grid
    mask_confidence: float  # mean probability inside the mask (1 - max probability when empty)
    landmark_mm: tuple[float, float, float]  # patient LPS mm
    landmark_confidence: float  # 1 for a sharp heatmap, 0 for a uniform one
    answer: str  # "yes", "no", "not present", or the chosen option text
    answer_confidence: float  # probability of that answer
    answer_probabilities: dict[str, float]  # yes / no / not present
    choice_probabilities: dict[str, float] | None  # per option when choices were given
    value: float  # predicted quantity for "measure" instructions (unit of the training targets)

    def summary(self) -> dict:
        """JSON-ready view without the voxel mask."""
        return {
            "instruction": self.instruction,
            "mask_voxels": int(self.mask.sum()),
            "mask_confidence": round(self.mask_confidence, 4),
            "landmark_mm": [round(v, 2) for v in self.landmark_mm],
            "landmark_confidence": round(self.landmark_confidence, 4),
            "answer": self.answer,
            "answer_confidence": round(self.answer_confidence, 4),
            "choice_probabilities": self.choice_probabilities,
            "value": self.value,
        }


def study_fingerprint(study) -> str:
    """Content hash of a study's voxels and geometry (BLAKE2b): equal studies share a cache entry,
    an edited study never reuses a stale embedding."""
    digest = hashlib.blake2b(digest_size=16)
    hu = np.ascontiguousarray(study.hu)
    digest.update(str((hu.shape, hu.dtype.str)).encode())
    digest.update(np.asarray(study.affine, dtype=np.float64).tobytes())
    digest.update(hu.data.cast("B"))
    return digest.hexdigest()
