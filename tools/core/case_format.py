"""The on-disk layout of a CardioVLM case, in one place.

A *case* is one study with its ground truth: what the synthetic phantom generator writes, what a
real-data manifest points to, and what the tools, the curriculum builder, the VLM trainer and the
tests read. Every file name and JSON schema of a case is defined here and nowhere else.

Layout of a case folder (``<root>/<case_id>/``)::

    case.json            CaseManifest: id, generator version and seed, grids, dominance, files present
    ccta.nii.gz          contrast CCTA, HU as int16, NIfTI (RAS affine, as NIfTI requires)
    ccta_dicom/          the same CCTA as a DICOM CT series (one file per slice, CT Image Storage)
    labels.nii.gz        uint8 label map on the CCTA grid; ids from ``cardiovlm.tools.core.anatomy``
    label_table.json     {label id: registry key}, background included
    cac.nii.gz           optional paired non-contrast calcium-scoring series (3 mm slices)
    cac_labels.nii.gz    label map on the calcium-scoring grid
    cac_dicom/           the calcium-scoring series as DICOM
    centerlines.json     Centerlines: per SCCT segment, points (LPS mm) with lumen radius (mm)
    landmarks.json       {landmark name: [x, y, z] in LPS mm}; names from ``cardiovlm.tools.core.anatomy.LANDMARKS``
                         plus ``<finding id>_start`` / ``<finding id>_end`` per finding
    findings.json        Findings: per finding and per segment ground truth
    clinical.json        ClinicalContext: risk factors, labs
    report.txt           free-text CCTA report written from the findings
    preview/             PNG views (axial, coronal, MIP), when asked for

Orientation convention (shared with ``cardiovlm.tools.ingest.study_value.Study``): arrays are indexed ``[i, j, k]`` with
i towards the patient's Left, j towards Posterior, k towards Superior (DICOM LPS axes); the affine
maps a voxel index to patient LPS millimetres. NIfTI files store the same data with the RAS affine
``diag(-1, -1, 1, 1) @ affine_lps`` as the NIfTI standard requires.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from cardiovlm.tools.core.anatomy import FINDING_KINDS, SEGMENTS_BY_CODE
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.ingest.nifti_io import read_nifti

CASE_FORMAT_VERSION = "1.0"

MANIFEST_FILE = "case.json"
CCTA_NIFTI = "ccta.nii.gz"
CCTA_DICOM_DIR = "ccta_dicom"
LABELS_NIFTI = "labels.nii.gz"
LABEL_TABLE_FILE = "label_table.json"
CAC_NIFTI = "cac.nii.gz"
CAC_LABELS_NIFTI = "cac_labels.nii.gz"
CAC_DICOM_DIR = "cac_dicom"
CENTERLINES_FILE = "centerlines.json"
LANDMARKS_FILE = "landmarks.json"
FINDINGS_FILE = "findings.json"
CLINICAL_FILE = "clinical.json"
REPORT_FILE = "report.txt"
PREVIEW_DIR = "preview"

FindingKind = Literal["calcified_plaque", "noncalcified_plaque", "mixed_plaque", "occlusion", "stent"]
assert set(FindingKind.__args__) == set(FINDING_KINDS)  # type: ignore[attr-defined]


class GridInfo(BaseModel):
    """One image grid of the case."""

    shape: tuple[int, int, int] = Field(description="voxels along i (left), j (posterior), k (superior)")
    spacing_mm: tuple[float, float, float] = Field(description="voxel size along i, j, k in mm")
    origin_mm: tuple[float, float, float] = Field(description="centre of voxel (0,0,0) in patient LPS mm")


class CaseManifest(BaseModel):
    case_id: str
    format_version: str = CASE_FORMAT_VERSION
    source: Literal["phantom", "real"] = "phantom"
    generator_version: str | None = None
    seed: int | None = None
    size: str | None = Field(None, description="phantom size preset, e.g. 'small' or 'demo'")
    dominance: Literal["right", "left", "codominant"] | None = None
    ccta: GridInfo
    cac: GridInfo | None = None
    contrast_blood_hu: float | None = Field(None, description="nominal left-heart blood pool HU")
    noise_sd_hu: float | None = None
    files: list[str] = Field(default_factory=list, description="files and folders present, relative")


class Finding(BaseModel):
    """One ground-truth finding on one coronary segment."""

    id: str = Field(description="unique within the case, e.g. 'f1'; lesion landmarks use it")
    segment: str = Field(description="SCCT segment code from cardiovlm.tools.core.anatomy, e.g. 'pLAD'")
    kind: FindingKind
    stenosis_percent: float = Field(
        ge=0, le=100, description="lumen diameter stenosis vs the healthy reference; 100 = occlusion; "
        "for a stent, the in-stent restenosis (0 = patent)")
    length_mm: float = Field(ge=0, description="lesion (or stent) length along the centerline")
    start_mm: float = Field(ge=0, description="arc length from the segment's proximal end to the lesion start")
    calcium_peak_hu: float | None = Field(None, description="peak HU of the calcified component, if any")
    calcium_diameter_mm: float | None = Field(None, description="size of the calcified component, if any")
    stent_diameter_mm: float | None = None
    in_stent_restenosis: bool = False

    def model_post_init(self, __context) -> None:
        if self.segment not in SEGMENTS_BY_CODE:
            raise ValueError(f"finding {self.id}: unknown segment {self.segment!r}")

    @property
    def end_mm(self) -> float:
        return self.start_mm + self.length_mm

    @property
    def has_calcium(self) -> bool:
        return self.calcium_peak_hu is not None


class SegmentSummary(BaseModel):
    """Per-segment ground truth, what a structured report would tabulate."""

    segment: str
    present: bool = Field(description="segment exists in this anatomy (e.g. no L-PDA in right dominance)")
    max_stenosis_percent: float = 0.0
    lesion_length_mm: float = 0.0
    plaque_type: Literal["none", "calcified", "noncalcified", "mixed"] = "none"
    calcium: bool = False
    stent: bool = False
    occluded: bool = False


class Findings(BaseModel):
    findings: list[Finding] = Field(default_factory=list)
    segments: list[SegmentSummary] = Field(default_factory=list)
    cad_rads: str = Field(description="CAD-RADS 2.0 stenosis category with modifiers, e.g. '4A/S'")
    extracoronary_calcium: list[str] = Field(
        default_factory=list, description="calcifications placed outside the coronaries, e.g. 'aortic valve'")


class CenterlinePoint(BaseModel):
    xyz: tuple[float, float, float] = Field(description="patient LPS mm")
    radius_mm: float = Field(description="healthy lumen radius at this point (before any lesion)")


class Centerlines(BaseModel):
    """Per segment, points from proximal to distal; spacing along the path is at most 0.5 mm."""

    segments: dict[str, list[CenterlinePoint]]
    source: str = Field("phantom centerline", description="how the centerlines were obtained")


class ClinicalContext(BaseModel):
    age: int = Field(ge=18, le=100)
    sex: Literal["male", "female"]
    race: Literal["white", "chinese", "african_american", "hispanic"] = Field(
        description="the four MESA groups")
    systolic_bp_mmhg: float
    total_cholesterol_mg_dl: float
    hdl_cholesterol_mg_dl: float
    smoker: bool
    diabetes: bool
    hypertension_treatment: bool
    lipid_lowering: bool
    family_history_mi: bool
    troponin_value: float | None = None
    troponin_unit: Literal["pg/mL", "ng/L", "ng/mL"] | None = None
    troponin_assay: str | None = Field(None, description="hs-cTnI assay name; its URLs decide 'elevated'")


class Case(BaseModel):
    """Paths and parsed JSON of a case folder (images are loaded on demand by ``cardiovlm.tools.ingest.study``)."""

    root: Path
    manifest: CaseManifest
    findings: Findings | None = None
    clinical: ClinicalContext | None = None
    report: str | None = None

    def path(self, name: str) -> Path:
        return self.root / name

    def has(self, name: str) -> bool:
        return (self.root / name).exists()

    def centerlines(self) -> Centerlines:
        return Centerlines.model_validate_json(self.path(CENTERLINES_FILE).read_text())

    def landmarks(self) -> dict[str, tuple[float, float, float]]:
        return {k: tuple(v) for k, v in json.loads(self.path(LANDMARKS_FILE).read_text()).items()}

    def label_table(self) -> dict[int, str]:
        return {int(k): v for k, v in json.loads(self.path(LABEL_TABLE_FILE).read_text()).items()}


class CaseFormatError(CardioVLMError):
    """A case folder is missing a required file or holds invalid JSON."""

    code = "case.invalid"


def is_case_dir(path: str | Path) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def load_case(path: str | Path) -> Case:
    """Read a case folder's manifest and JSON ground truth.

    Raises:
        CaseFormatError: the folder has no ``case.json`` or a JSON file does not match its schema.
    """
    root = Path(path)
    if not is_case_dir(root):
        raise CaseFormatError(f"{root} is not a CardioVLM case folder (no {MANIFEST_FILE})")
    try:
        manifest = CaseManifest.model_validate_json((root / MANIFEST_FILE).read_text())
        findings = (Findings.model_validate_json((root / FINDINGS_FILE).read_text())
                    if (root / FINDINGS_FILE).exists() else None)
        clinical = (ClinicalContext.model_validate_json((root / CLINICAL_FILE).read_text())
                    if (root / CLINICAL_FILE).exists() else None)
    except ValueError as err:
        raise CaseFormatError(f"case {root.name}: invalid ground-truth JSON: {err}") from err
    report = (root / REPORT_FILE).read_text() if (root / REPORT_FILE).exists() else None
    return Case(root=root, manifest=manifest, findings=findings, clinical=clinical, report=report)


def read_labels(root: str | Path, name: str = LABELS_NIFTI) -> np.ndarray:
    """A case's label map (``labels.nii.gz``, or ``cac_labels.nii.gz`` by ``name``) in the LPS ``[i, j, k]``
    voxel order its image is read in, whatever order the file stores: a label map read without this
    reorientation lies mirrored over a reoriented image.

    Raises:
        CaseFormatError: the case has no such label map.
        cardiovlm.tools.ingest.study_errors.StudyError: the file is not a readable label map.
    """
    path = Path(root) / name
    if not path.is_file():
        raise CaseFormatError(f"case {Path(root).name} has no {name}")
    return read_nifti(path, labels=True).hu


def iter_cases(root: str | Path) -> list[Case]:
    """All case folders directly under ``root``, sorted by id."""
    return [load_case(p) for p in sorted(Path(root).iterdir()) if is_case_dir(p)]


def write_json(path: Path, model: BaseModel | dict) -> None:
    text = model.model_dump_json(indent=1) if isinstance(model, BaseModel) else json.dumps(model, indent=1)
    path.write_text(text + "\n")
