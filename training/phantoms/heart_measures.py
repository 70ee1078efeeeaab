"""Right-ventricular volume and septal thickness measured on a label map, for realism reports against published norms.

Both read labels only (no phantom geometry), so they measure any case folder's ``labels.nii.gz`` the same way.

Normal adult ranges these are compared with:

* RV end-diastolic volume: about 100-230 mL by CT and CMR, the RV a little larger than the LV (64-MDCT norms,
  Lin et al., JACC Cardiovasc Imaging 2008;1:782; CMR, Maceira et al., JCMR 2006;8:417; both as recalled here,
  to be checked against the papers); smaller women reach down to about 85 mL.
* Interventricular septum at end-diastole: 10.8 +/- 1.8 mm in men, 9.0 +/- 1.7 mm in women by CT (Kang et al.
  2017, tabulated in Cardiovasc Diagn Ther 2020;10:1918, table 3), i.e. about 6-14 mm over mean +/- 2 SD.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME

_LV_BLOOD = STRUCTURES_BY_NAME["lv_blood"].label_id
_RV_BLOOD = STRUCTURES_BY_NAME["rv_blood"].label_id
_LV_MYO = STRUCTURES_BY_NAME["lv_myocardium"].label_id
RV_EDV_NORMAL_ML = (85.0, 230.0)
SEPTUM_NORMAL_MM = (6.0, 14.0)
SEPTUM_REACH_MM = 20.0  # LV endocardium this close to the RV cavity faces the septum


def rv_volume_ml(labels: np.ndarray, spacing) -> float:
    """RV blood pool volume (mL): the RV cavity with its outflow tract, as the label map holds it."""
    return float((labels == _RV_BLOOD).sum() * float(np.prod(spacing)) / 1000.0)


def septum_thickness_mm(labels: np.ndarray, spacing) -> float:
    """Median thickness (mm) of the interventricular septum: from each LV endocardial voxel (LV myocardium touching
    LV blood) within ``SEPTUM_REACH_MM`` of the RV cavity, the distance to the nearest RV blood voxel, less half a
    voxel (the endocardial voxel's centre lies on average half a voxel inside the wall).

    Raises:
        ValueError: the label map has no LV endocardium within reach of an RV cavity.
    """
    sp = np.asarray(spacing, dtype=float)
    rv = labels == _RV_BLOOD
    if not rv.any():
        raise ValueError("no RV cavity in the label map: septal thickness needs LV and RV blood")
    endo = (labels == _LV_MYO) & ndimage.binary_dilation(labels == _LV_BLOOD)
    dist = ndimage.distance_transform_edt(~rv, sampling=sp)[endo]
    dist = dist[dist <= SEPTUM_REACH_MM]
    if len(dist) == 0:
        raise ValueError("no LV endocardium faces the RV cavity: septal thickness cannot be measured")
    return float(np.median(dist) - 0.5 * float(sp.mean()))
