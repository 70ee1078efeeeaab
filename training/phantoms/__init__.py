"""Synthetic coronary CT angiography phantoms with exact ground truth (see ``generate``)."""

from cardiovlm.training.phantoms.generate import SIZES, PhantomError, generate_case, generate_dataset
from cardiovlm.training.phantoms.lesions import FindingRequest, PhantomFindingError

__all__ = ["FindingRequest", "PhantomError", "PhantomFindingError", "SIZES", "generate_case", "generate_dataset"]
