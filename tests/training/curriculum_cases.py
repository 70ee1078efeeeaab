"""Small case folders written with cardiovlm.tools.core.case_format, for the curriculum tests (no images needed)."""

from pathlib import Path

from cardiovlm.tools.core.anatomy import CORONARY_SEGMENTS, label_table
from cardiovlm.tools.core.case_format import (
    FINDINGS_FILE,
    LABEL_TABLE_FILE,
    LANDMARKS_FILE,
    MANIFEST_FILE,
    REPORT_FILE,
    CaseManifest,
    Finding,
    Findings,
    GridInfo,
    SegmentSummary,
    write_json,
)

REPORT = """Right dominant coronary system. Agatston score 310.
Left main: normal.
LAD: Partially calcified plaque in the proximal LAD over 14 mm with moderate (50-69%) stenosis.
Circumflex: No plaque. RCA: Patent 3.0 x 18 mm stent in the mid RCA without in-stent restenosis.
IMPRESSION: CAD-RADS 3/P3/S."""

FINDINGS = [
    Finding(id="f1", segment="pLAD", kind="mixed_plaque", stenosis_percent=60, length_mm=14, start_mm=3,
            calcium_peak_hu=650, calcium_diameter_mm=2.0),
    Finding(id="f2", segment="mRCA", kind="stent", stenosis_percent=0, length_mm=18, start_mm=5,
            stent_diameter_mm=3.0),
]


def write_case(root: Path, case_id: str = "case_0001", *, findings: bool = True) -> Path:
    folder = root / case_id
    folder.mkdir(parents=True)
    grid = GridInfo(shape=(32, 32, 24), spacing_mm=(1.0, 1.0, 1.0), origin_mm=(0.0, 0.0, 0.0))
    write_json(folder / MANIFEST_FILE, CaseManifest(case_id=case_id, seed=1, dominance="right" if findings else None,
                                                    source="phantom" if findings else "real", ccta=grid))
    write_json(folder / LABEL_TABLE_FILE, {str(k): v for k, v in label_table().items()})
    write_json(folder / LANDMARKS_FILE, {"left_coronary_ostium": [1.0, 2.0, 3.0], "crux": [4.0, 5.0, 6.0]})
    (folder / REPORT_FILE).write_text(REPORT)
    if findings:
        absent = {"L-PDA", "L-PLB"}
        segments = [SegmentSummary(segment=s.code, present=s.code not in absent) for s in CORONARY_SEGMENTS]
        write_json(folder / FINDINGS_FILE, Findings(findings=FINDINGS, segments=segments, cad_rads="3/P3/S"))
    return folder


def write_images(folder: Path) -> None:
    """A 32x32x24 CCTA and label map: a left ventricle, a pLAD with a calcification, an mRCA with a stent."""
    import numpy as np

    from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
    from cardiovlm.tools.core.case_format import CCTA_NIFTI, LABELS_NIFTI
    from cardiovlm.tools.ingest.nifti_io import write_nifti

    labels = np.zeros((32, 32, 24), dtype=np.uint8)
    labels[8:20, 8:20, 6:18] = STRUCTURES_BY_NAME["lv_blood"].label_id
    labels[22:24, 4:28, 12] = SEGMENTS_BY_CODE["pLAD"].label_id
    labels[24, 10:13, 12] = STRUCTURES_BY_NAME["calcified_plaque"].label_id
    labels[4:6, 4:28, 4] = SEGMENTS_BY_CODE["mRCA"].label_id
    labels[6, 8:14, 4] = STRUCTURES_BY_NAME["stent"].label_id
    labels[30, 30, 22] = STRUCTURES_BY_NAME["calcified_plaque"].label_id  # far from the pLAD: excluded
    hu = np.full(labels.shape, -90, dtype=np.int16)
    hu[labels > 0] = 300
    hu[labels == STRUCTURES_BY_NAME["calcified_plaque"].label_id] = 800
    affine = np.diag([0.8, 0.8, 1.0, 1.0])
    write_nifti(hu, affine, folder / CCTA_NIFTI)
    write_nifti(labels, affine, folder / LABELS_NIFTI)


def write_tube_labels(folder: Path) -> None:
    """A straight pLAD lumen (radius 1.6 mm) narrowed to half its diameter over 8 mm by calcified plaque."""
    import numpy as np

    from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
    from cardiovlm.tools.core.case_format import CCTA_NIFTI, LABELS_NIFTI
    from cardiovlm.tools.ingest.nifti_io import write_nifti

    shape = (40, 40, 80)
    i, j, k = np.indices(shape)
    radius = np.hypot(i - 20, j - 20) * 0.5
    labels = np.zeros(shape, dtype=np.uint8)
    labels[radius <= 1.6] = SEGMENTS_BY_CODE["pLAD"].label_id
    labels[(k >= 30) & (k < 46) & (radius > 0.8) & (radius <= 1.6)] = STRUCTURES_BY_NAME["calcified_plaque"].label_id
    write_nifti(labels, np.diag([0.5, 0.5, 0.5, 1.0]), folder / LABELS_NIFTI)
    hu = np.where(labels == SEGMENTS_BY_CODE["pLAD"].label_id, 350, -80).astype(np.int16)
    hu[labels == STRUCTURES_BY_NAME["calcified_plaque"].label_id] = 900
    write_nifti(hu, np.diag([0.5, 0.5, 0.5, 1.0]), folder / CCTA_NIFTI)
