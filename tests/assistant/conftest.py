"""Small hand-made studies whose ground truth is known by construction.

``patient_context``: straight tubes on a 0.4 mm grid (no phantom generator needed)
- LM 0-6 mm -> pLAD 6-26 -> mLAD 26-46, radius 1.8 mm tapering, with a 75 % cosine narrowing of
  non-calcified plaque over s = 12-20 mm in the pLAD (an 8 mm lesion, CAD-RADS 4A);
- pCx 0-15 -> dLCx 15-40, healthy, with a patent stent around the dLCx at s = 22-30 mm;
- pRCA 0-16 -> mRCA 16-32 -> dRCA 32-46, healthy lumen, with a calcified plaque (500 HU on the
  non-contrast series) just outside the mRCA wall at s = 22-26 mm: calcium, no narrowing.
A non-contrast calcium-scoring series on the same grid and a clinical context come with it.
"""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.core.case_format import ClinicalContext
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.training.phantoms.tubes import TubeImage, ct_from_labels

VOXEL = 0.4
SHAPE = (60, 24, 130)
LESION = {"segment": "pLAD", "start": 12.0, "length": 8.0, "percent": 75.0}
CALCIUM_HU = 500


def _tube(labels, i, j, k, *, centre, segments, lesion=None, plaque_label=None):
    s, d = k - 2.4, np.hypot(i - centre[0], j - centre[1])
    r0 = 1.8 - 0.006 * s
    r = r0
    if lesion is not None:
        lo, hi = lesion["start"], lesion["start"] + lesion["length"]
        bump = np.where((s >= lo) & (s <= hi), (1 - np.cos(2 * np.pi * (s - lo) / lesion["length"])) / 2, 0)
        r = r0 * (1 - lesion["percent"] / 100 * bump)
        labels[(d >= r) & (d < r0 + 0.5) & (s >= lo) & (s <= hi)] = plaque_label
    for code, lo, hi in segments:
        labels[(s >= lo) & (s < hi) & (d < r)] = SEGMENTS_BY_CODE[code].label_id
    return s, d, r0


def make_patient_context(*, stent: bool = True, modality: str = "CT", clinical: bool = True,
                         in_stent_restenosis: float | None = None) -> StudyContext:
    """The study above; ``in_stent_restenosis`` (%) narrows the dLCx inside the stent at s = 23-29 mm."""
    i, j, k = np.meshgrid(*[np.arange(n) * VOXEL for n in SHAPE], indexing="ij")
    labels = np.zeros(SHAPE, np.uint8)
    lesion = {"start": LESION["start"] + 6.0 - 6.0, "length": LESION["length"], "percent": LESION["percent"]}
    _tube(labels, i, j, k, centre=(4.8, 4.8), segments=(("LM", 0, 6), ("pLAD", 6, 26), ("mLAD", 26, 46)),
          lesion=lesion, plaque_label=STRUCTURES_BY_NAME["noncalcified_plaque"].label_id)
    restenosis = (None if in_stent_restenosis is None else
                  {"start": 23.0, "length": 6.0, "percent": in_stent_restenosis})
    s, d, r0 = _tube(labels, i, j, k, centre=(12.8, 4.8), segments=(("pCx", 0, 15), ("dLCx", 15, 40)),
                     lesion=restenosis, plaque_label=STRUCTURES_BY_NAME["noncalcified_plaque"].label_id)
    if stent:
        labels[(d >= r0) & (d < r0 + 0.4) & (s >= 22) & (s <= 30)] = STRUCTURES_BY_NAME["stent"].label_id
    s, d, r0 = _tube(labels, i, j, k, centre=(20.0, 4.8),
                     segments=(("pRCA", 0, 16), ("mRCA", 16, 32), ("dRCA", 32, 46)))
    calcium = (d >= r0 + 0.1) & (d < r0 + 1.3) & (s >= 22) & (s <= 26) & (j > 4.8)
    labels[calcium] = STRUCTURES_BY_NAME["calcified_plaque"].label_id
    affine = np.diag([VOXEL] * 3 + [1.0])
    # The CCTA the stenosis is read from, painted from the label map (lumen 430 HU, plaque, metal, fat).
    hu = ct_from_labels(labels, VOXEL, calcium_hu=CALCIUM_HU, image=TubeImage(noise_sd=10.0))
    study = Study(hu=hu, spacing=(VOXEL,) * 3, affine=affine, modality=modality, hu_calibrated=modality == "CT",
                  patient_hash="patient-a", source="hand-made tube study")
    cac_hu = np.zeros(SHAPE, np.int16)
    cac_hu[calcium] = CALCIUM_HU
    cac = Study(hu=cac_hu, spacing=(VOXEL,) * 3, affine=affine, modality=modality, hu_calibrated=modality == "CT")
    context = ClinicalContext(age=62, sex="male", race="white", systolic_bp_mmhg=138, total_cholesterol_mg_dl=210,
                              hdl_cholesterol_mg_dl=45, smoker=True, diabetes=False, hypertension_treatment=True,
                              lipid_lowering=False, family_history_mi=False) if clinical else None
    return StudyContext(study=study, labels=labels, labels_source="hand-made ground truth", cac=cac,
                        cac_labels=labels, clinical=context)


@pytest.fixture(scope="module")
def patient_labels_context():
    """Built once per module; tests that add masks get their own copy through ``patient``."""
    return make_patient_context()


@pytest.fixture
def patient(patient_labels_context, tmp_path):
    ctx = patient_labels_context
    return StudyContext(study=ctx.study, labels=ctx.labels, labels_source=ctx.labels_source, cac=ctx.cac,
                        cac_labels=ctx.cac_labels, clinical=ctx.clinical, output_dir=tmp_path)
