"""Real studies for the curriculum: the manifest format, import into case folders, pseudo-labels.

Manifest format (the one definition): a JSONL file, one study per line::

    {"study_id": "site1_0001", "image": "ct/0001.nii.gz", "labels": "seg/0001.nii.gz",
     "report": "free text ...", "study_date": "2024-05-02"}
    {"study_id": "site1_0002", "image": "dicom/0002/", "report_path": "reports/0002.txt"}

``image`` is anything ``tools.study.load_study`` reads (DICOM folder or zip, NIfTI); ``labels`` an
optional label map with ``tools.anatomy`` ids on the same grid; the report is given inline
(``report``) or as a text file (``report_path``). Relative paths are relative to the manifest file.
:func:`import_manifest` turns each entry into a case folder (``tools.case_format`` layout, source
"real"), so the curriculum builder and the Dataset read real and phantom studies the same way.

Unlabelled studies can get stage-1/2 targets from TotalSegmentator (:func:`pseudo_label`), an
optional dependency: heart chambers, myocardium, aorta and pulmonary artery from its
``heartchambers_highres`` task, lungs, sternum, spine and liver from ``total``. Its
``coronary_arteries`` task gives all coronaries as one label, which has no SCCT segment, so it is
not mapped.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, model_validator

from tools.anatomy import STRUCTURES_BY_NAME, label_table
from tools.case_format import (
    CCTA_NIFTI,
    LABEL_TABLE_FILE,
    LABELS_NIFTI,
    MANIFEST_FILE,
    REPORT_FILE,
    CaseManifest,
    GridInfo,
    write_json,
)


class ManifestEntry(BaseModel):
    """One real study of a manifest."""

    study_id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="becomes the case folder name")
    image: Path = Field(description="DICOM folder or zip, or NIfTI, of the CCTA")
    labels: Path | None = Field(None, description="label map with tools.anatomy ids on the image grid")
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
        ValueError: an invalid line (with its number), a missing file or a repeated study id.
    """
    path = Path(path)
    entries: list[ManifestEntry] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = ManifestEntry(**json.loads(line))
        except ValueError as err:
            raise ValueError(f"{path}:{number}: invalid manifest entry: {err}") from err
        for name in ("image", "labels", "report_path"):
            value = getattr(entry, name)
            if value is not None:
                resolved = value if value.is_absolute() else path.parent / value
                if not resolved.exists():
                    raise ValueError(f"{path}:{number}: {name} {resolved} does not exist")
                setattr(entry, name, resolved)
        entries.append(entry)
    ids = [e.study_id for e in entries]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: repeated study ids {sorted({i for i in ids if ids.count(i) > 1})}")
    return entries


def import_manifest(manifest: str | Path, out_dir: str | Path, *, pseudo_labels: bool = False,
                    device: str = "cpu") -> list[Path]:
    """Write one case folder per manifest entry under ``out_dir``; returns the folders.

    Args:
        pseudo_labels: label unlabelled studies with TotalSegmentator (see :func:`pseudo_label`).
    """
    from tools.study import load_nifti, load_study, save_nifti

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


# TotalSegmentator class names -> tools.anatomy structure names.
TOTALSEG_TO_REGISTRY: dict[str, str] = {
    "heart_myocardium": "lv_myocardium", "heart_atrium_left": "la_blood", "heart_ventricle_left": "lv_blood",
    "heart_atrium_right": "ra_blood", "heart_ventricle_right": "rv_blood", "aorta": "aorta",
    "pulmonary_artery": "pulmonary_artery", "sternum": "sternum", "liver": "liver",
    "lung_upper_lobe_left": "lung_left", "lung_lower_lobe_left": "lung_left",
    "lung_upper_lobe_right": "lung_right", "lung_middle_lobe_right": "lung_right",
    "lung_lower_lobe_right": "lung_right",
    **{f"vertebrae_T{i}": "spine" for i in range(1, 13)},
}
# Later tasks overwrite earlier ones where they overlap: the chambers refine "total".
DEFAULT_TASKS = ("total", "heartchambers_highres")


class PseudoLabelError(ValueError):
    """TotalSegmentator is missing, or its weights are not installed."""


def totalseg_weights_dir() -> Path:
    """Where TotalSegmentator looks for weights (TOTALSEG_WEIGHTS_PATH, else TOTALSEG_HOME_DIR/nnunet/results)."""
    if os.environ.get("TOTALSEG_WEIGHTS_PATH"):
        return Path(os.environ["TOTALSEG_WEIGHTS_PATH"])
    home = Path(os.environ.get("TOTALSEG_HOME_DIR", Path.home() / ".totalsegmentator"))
    return home / "nnunet" / "results"


def check_totalsegmentator() -> None:
    """Raise :class:`PseudoLabelError` with what to do when TotalSegmentator cannot run offline."""
    try:
        import totalsegmentator.python_api  # noqa: F401
    except ImportError as err:
        raise PseudoLabelError(
            "pseudo-labelling needs TotalSegmentator, which is not installed: "
            "pip install 'cardiovlm[totalseg]' (or pip install totalsegmentator)") from err
    weights = totalseg_weights_dir()
    if not weights.is_dir() or not any(weights.iterdir()):
        raise PseudoLabelError(
            f"TotalSegmentator weights are not installed in {weights}: run `totalseg_download_weights -t total` "
            "(and `-t heartchambers_highres` with a licence) on a machine with internet, then copy the "
            "folder here or point TOTALSEG_HOME_DIR / TOTALSEG_WEIGHTS_PATH at it")


def pseudo_label(image: str | Path, out_path: str | Path, *, tasks: tuple[str, ...] = DEFAULT_TASKS,
                 device: str = "cpu") -> dict[str, int]:
    """Label a CT with TotalSegmentator, mapped to ``tools.anatomy`` ids; returns voxels per structure.

    Raises:
        PseudoLabelError: TotalSegmentator or its weights missing (message says how to install them).
    """
    os.environ.setdefault("TOTALSEG_DISABLE_USAGE_STATS", "1")  # no telemetry from hospital machines
    check_totalsegmentator()
    import nibabel as nib
    from totalsegmentator.map_to_binary import class_map
    from totalsegmentator.python_api import totalsegmentator

    reference = nib.load(str(image))
    labels = np.zeros(reference.shape, dtype=np.uint8)
    for task in tasks:
        result = totalsegmentator(str(image), None, ml=True, task=task, device=device, quiet=True)
        data = np.asarray(result.dataobj).astype(np.int32)
        if data.shape != labels.shape:
            raise PseudoLabelError(f"TotalSegmentator task {task} returned shape {data.shape}, "
                                   f"expected {labels.shape}")
        for ts_id, ts_name in class_map[task].items():
            if ts_name in TOTALSEG_TO_REGISTRY:
                labels[data == int(ts_id)] = STRUCTURES_BY_NAME[TOTALSEG_TO_REGISTRY[ts_name]].label_id
    # Same grid and affine as the image it was computed on (NIfTI RAS, as written by save_nifti).
    out = nib.Nifti1Image(labels, reference.affine)
    out.set_sform(reference.affine, code=1)
    out.set_qform(reference.affine, code=1)
    nib.save(out, str(out_path))
    names = {STRUCTURES_BY_NAME[n].label_id: n for n in set(TOTALSEG_TO_REGISTRY.values())}
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    return {names[int(i)]: int(c) for i, c in zip(ids, counts)}
