"""Real studies for the curriculum: the manifest format, import into case folders, pseudo-labels.

Manifest format (the one definition): a JSONL file, one study per line::

    {"study_id": "site1_0001", "image": "ct/0001.nii.gz", "labels": "seg/0001.nii.gz",
     "report": "free text ...", "study_date": "2024-05-02"}
    {"study_id": "site1_0002", "image": "dicom/0002/", "report_path": "reports/0002.txt"}

``image`` is anything ``cardiovlm.tools.ingest.study.load_study`` reads (DICOM folder or zip, NIfTI); ``labels`` an
optional label map with ``cardiovlm.tools.core.anatomy`` ids on the same grid; the report is given inline
(``report``) or as a text file (``report_path``). Relative paths are relative to the manifest file.
:func:`import_manifest` turns each entry into a case folder (``cardiovlm.tools.core.case_format`` layout, source
"real"), so the curriculum builder and the Dataset read real and phantom studies the same way.

Unlabelled studies can get stage-1/2 targets from TotalSegmentator (:func:`pseudo_label`), an
optional dependency: heart chambers, myocardium, aorta and pulmonary artery from its
``heartchambers_highres`` task, lungs, sternum, spine and liver from ``total``. Its
``coronary_arteries`` task gives all coronaries as one label, which has no SCCT segment, so it is
not mapped.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from cardiovlm.tools.core.anatomy import label_table
from cardiovlm.tools.core.case_format import (
    CCTA_NIFTI,
    LABEL_TABLE_FILE,
    LABELS_NIFTI,
    MANIFEST_FILE,
    REPORT_FILE,
    CaseManifest,
    GridInfo,
    write_json,
)
from cardiovlm.tools.core.errors import CardioVLMError

# TotalSegmentator is run, and its weights looked for, by cardiovlm.tools.segmentation.totalseg alone.
from cardiovlm.tools.segmentation.totalseg import label_with_totalsegmentator
from cardiovlm.training.curriculum.jsonl import json_lines


class ManifestError(CardioVLMError):
    """A manifest that cannot be read; the message names the file (and line) and what is wrong."""

    code = "curriculum.manifest_invalid"


class ManifestEntry(BaseModel):
    """One real study of a manifest."""

    study_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="becomes the case folder name")
    image: Path = Field(description="DICOM folder or zip, or NIfTI, of the CCTA")
    labels: Path | None = Field(None, description="label map with cardiovlm.tools.core.anatomy ids on the image grid")
    report: str | None = Field(None, description="report text")
    report_path: Path | None = Field(None, description="or a text file holding it")
    study_date: date | None = None

    @model_validator(mode="after")
    def _one_report(self) -> ManifestEntry:
        if self.report is not None and self.report_path is not None:
            raise ValueError(f"study {self.study_id}: give 'report' or 'report_path', not both")
        return self

    def report_text(self) -> str | None:
        return self.report_path.read_text() if self.report_path else self.report


def load_manifest(path: str | Path) -> list[ManifestEntry]:
    """Entries of a manifest with paths resolved against its folder.

    Raises:
        ManifestError: no such manifest, an invalid line (with its number), a missing file or a
            repeated study id.
    """
    path = Path(path)
    entries: list[ManifestEntry] = []
    for number, data in json_lines(path, what="manifest", error=ManifestError):
        try:
            entry = ManifestEntry(**data)
        except ValueError as err:
            raise ManifestError(f"{path} line {number}: invalid manifest entry: {err}") from err
        for name in ("image", "labels", "report_path"):
            value = getattr(entry, name)
            if value is not None:
                resolved = value if value.is_absolute() else path.parent / value
                if not resolved.exists():
                    raise ManifestError(f"{path} line {number}: {name} {resolved} does not exist")
                setattr(entry, name, resolved)
        entries.append(entry)
    ids = [e.study_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ManifestError(f"{path}: repeated study ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return entries


def import_manifest(manifest: str | Path, out_dir: str | Path, *, pseudo_labels: bool = False,
                    device: str = "cpu") -> list[Path]:
    """Write one case folder per manifest entry under ``out_dir``; returns the folders.

    Args:
        pseudo_labels: label unlabelled studies with TotalSegmentator (see :func:`pseudo_label`).
    """
    from cardiovlm.tools.ingest.study import load_nifti, load_study, save_nifti

    out = []
    for entry in load_manifest(manifest):
        folder = Path(out_dir) / entry.study_id
        folder.mkdir(parents=True, exist_ok=True)
        study = load_study(entry.image)
        save_nifti(study, folder / CCTA_NIFTI)
        files = [CCTA_NIFTI]
        if entry.labels is not None:
            labels = load_nifti(entry.labels, labels=True)
            if labels.shape != study.shape:
                raise ValueError(f"study {entry.study_id}: label map shape {labels.shape} differs from "
                                 f"the image {study.shape}")
            save_nifti(labels, folder / LABELS_NIFTI)
        elif pseudo_labels:
            pseudo_label(folder / CCTA_NIFTI, folder / LABELS_NIFTI, device=device)
        if (folder / LABELS_NIFTI).exists():
            write_json(folder / LABEL_TABLE_FILE, {str(k): v for k, v in label_table().items()})
            files += [LABELS_NIFTI, LABEL_TABLE_FILE]
        if (report := entry.report_text()) is not None:
            (folder / REPORT_FILE).write_text(report)
            files.append(REPORT_FILE)
        grid = GridInfo(shape=study.shape, spacing_mm=study.spacing, origin_mm=tuple(study.affine[:3, 3]))
        write_json(folder / MANIFEST_FILE, CaseManifest(case_id=entry.study_id, source="real", ccta=grid,
                                                        files=files))
        out.append(folder)
    return out


# Later tasks overwrite earlier ones where they overlap: the chambers refine "total".
DEFAULT_TASKS = ("total", "heartchambers_highres")


def pseudo_label(image: str | Path, out_path: str | Path, *, tasks: tuple[str, ...] = DEFAULT_TASKS,
                 device: str = "cpu") -> dict[str, int]:
    """Label a CT with TotalSegmentator (:func:`cardiovlm.tools.segmentation.totalseg.label_with_totalsegmentator`),
    mapped to ``cardiovlm.tools.core.anatomy`` ids; returns voxels per structure.

    Raises:
        TotalSegmentatorUnavailable: TotalSegmentator or its weights missing (message says how to install them).
    """
    return label_with_totalsegmentator(image, out_path, tasks=tasks, device=device)
