"""Masks from a label map by anatomy name, and mask files a viewer can open.

One definition of "the mask of X" shared by the curriculum targets, the assistant's segmentation
tool and the UI overlays: a segment code, an artery (union of its segments), a structure, or a
finding label restricted to the neighbourhood of named segments (e.g. the calcium of the LAD).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    SEGMENTS_BY_CODE,
    STRUCTURES_BY_NAME,
    resolve_structure_or_segment,
    segments_of_artery,
)
from cardiovlm.tools.ingest.study_value import Study


def label_ids_for(name: str) -> list[int]:
    """Label ids that make up a named anatomy: a segment, an artery or a structure.

    Raises:
        ValueError: for a name the anatomy registry does not know.
    """
    kind, key = resolve_structure_or_segment(name)
    if kind == "segment":
        return [SEGMENTS_BY_CODE[key].label_id]
    if kind == "artery":
        return [s.label_id for s in segments_of_artery(key)]
    return [STRUCTURES_BY_NAME[key].label_id]


def mask_from_labels(labels: np.ndarray, label_ids: list[int], *, spacing: tuple[float, float, float],
                     near_segments: list[str] | None = None, near_mm: float = 2.5) -> np.ndarray:
    """Boolean mask of ``label_ids``, optionally only within ``near_mm`` of the named segments' lumen.

    Args:
        labels: (I, J, K) integer label map.
        label_ids: ids whose union is wanted.
        spacing: voxel size in mm along i, j, k (for the distance).
        near_segments: SCCT segment codes or artery names; restricts the mask to their neighbourhood,
            so "calcium of the LAD" is the calcium label near the LAD lumen only.
        near_mm: neighbourhood radius in mm.
    """
    mask = np.isin(labels, label_ids)
    if near_segments:
        lumen_ids: list[int] = []
        for name in near_segments:
            lumen_ids += label_ids_for(name) if name in ARTERIES or name in SEGMENTS_BY_CODE else []
        lumen = np.isin(labels, lumen_ids)
        if not lumen.any():
            return np.zeros_like(mask)
        distance = ndimage.distance_transform_edt(~lumen, sampling=spacing)
        mask &= distance <= near_mm
    return mask


def save_mask_nifti(mask: np.ndarray, study: Study, path: str | Path) -> Path:
    """Write a mask on the study grid as NIfTI (uint8, RAS affine per the NIfTI standard)."""
    from cardiovlm.tools.ingest.nifti_io import write_nifti

    if mask.shape != study.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the study shape {study.shape}")
    return write_nifti(mask.astype(np.uint8), study.affine, Path(path))
