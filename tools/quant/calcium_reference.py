"""The Agatston definition computed with a reference label map (a phantom's ground truth): the
yardstick the image-only score is graded against. Never used to answer.

A voxel >= 130 HU is coronary calcium when a labelled calcified plaque lies within ``bloom_mm``
(3 mm) of it and no other calcified or metal object (stent, extracoronary calcification, spine,
sternum) lies nearer: the blur of the scanner spreads each object's attenuation over its
neighbours, so a bright voxel belongs to the object that made it. Those voxels are then scored
exactly as :func:`cardiovlm.tools.quant.calcium.agatston_score` scores (in-slice 8-connected lesions, >= 1 mm^2,
peak-HU weights, thickness/3 factor), and each lesion goes to the artery of the nearest coronary
segment label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core.anatomy import ARTERIES, STRUCTURES_BY_NAME
from cardiovlm.tools.quant.cadrads import cac_drs
from cardiovlm.tools.quant.calcium import AGATSTON_THRESHOLD_HU, score_mask
from cardiovlm.tools.quant.calcium_labels import assign_territories, coronary_mask

OTHER_SOURCES = ("stent", "extracoronary_calcification", "spine", "sternum")


@dataclass
class ReferenceScore:
    agatston: float
    per_artery: dict[str, float]
    cac_drs: str
    method: str


def reference_agatston(hu: np.ndarray, spacing, labels: np.ndarray, *, bloom_mm: float = 3.0,
                       min_area_mm2: float = 1.0) -> ReferenceScore:
    """Agatston of the labelled coronary calcium of ``hu`` (labels on the same grid); see the module doc."""
    spacing = tuple(float(s) for s in spacing)
    plaque = labels == STRUCTURES_BY_NAME["calcified_plaque"].label_id
    other = np.isin(labels, [STRUCTURES_BY_NAME[n].label_id for n in OTHER_SOURCES])
    to_plaque = ndimage.distance_transform_edt(~plaque, sampling=spacing) if plaque.any() else np.full(hu.shape, np.inf)
    to_other = ndimage.distance_transform_edt(~other, sampling=spacing) if other.any() else np.full(hu.shape, np.inf)
    mask = (hu >= AGATSTON_THRESHOLD_HU) & (to_plaque <= bloom_mm) & (to_plaque <= to_other)
    s = score_mask(hu, mask, spacing, min_area_mm2)
    total = round(float(s.agatston[1:].sum()), 3)
    per_artery: dict[str, float] = dict.fromkeys(ARTERIES, 0.0)
    if s.n and coronary_mask(labels).any():
        coords = np.stack(np.unravel_index(s.vox, hu.shape), axis=1)
        # Unlimited reach: every lesion gets the artery of its nearest coronary label.
        for i, t in assign_territories(s.lab, coords, s.n, labels, spacing, 1e9, 1e9).items():
            if t.artery is not None:
                per_artery[t.artery] += float(s.agatston[i])
    method = (f"reference: voxels >= 130 HU within {bloom_mm:g} mm of a labelled calcified plaque and nearer to it "
              "than to any labelled stent, extracoronary calcification or bone; scored as the Agatston definition")
    return ReferenceScore(agatston=total, per_artery=per_artery, cac_drs=cac_drs(total, per_artery).text, method=method)
