"""Multi-series CT examinations written as DICOM, as a scanner exports them: a localizer, a
non-contrast calcium-scoring series and a contrast CCTA in one study (one folder or one zip)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pydicom

from cardiovlm.tools.dicom.dicom_write import write_ct_series
from cardiovlm.tools.ingest.study import load_study

STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
FRAME_UID = "1.2.826.0.1.3680043.8.498.2"  # one table position: the series share patient coordinates


def _patch(paths: list[Path], **values) -> None:
    for path in paths:
        ds = pydicom.dcmread(path)
        for key, value in values.items():
            setattr(ds, key, value)
        ds.save_as(path)


def write_exam(folder: Path, ccta_hu: np.ndarray, ccta_affine: np.ndarray, cac_hu: np.ndarray | None,
               cac_affine: np.ndarray | None, *, calcium_description: str = "Calcium Score 3.0 mm",
               ccta_description: str = "CCTA 0.75 mm Bv40", localizer: bool = True,
               patient: dict | None = None, shared_frame: bool = True) -> dict[str, str]:
    """Write the examination into ``folder`` (one subfolder per series); returns kind -> SeriesInstanceUID.

    ``patient``: extra header values written into every slice (e.g. PatientAge, PatientSex);
    ``shared_frame``: the series share one FrameOfReferenceUID, as series of one table position do.
    """
    uids = {}
    patient = {**(patient or {}), **({"FrameOfReferenceUID": FRAME_UID} if shared_frame else {})}
    if localizer:
        scout = np.full((ccta_hu.shape[0], 64, 1), -800, np.int16)  # one coronal image
        paths = write_ct_series(scout, np.eye(4), folder / "1", series_description="Topogram 0.6 T20f",
                                study_uid=STUDY_UID, series_number=1, uid_seed="scout", contrast=False)
        _patch(paths, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
               ImageOrientationPatient=["1", "0", "0", "0", "0", "-1"], **patient)
        uids["localizer"] = pydicom.dcmread(paths[0]).SeriesInstanceUID
    if cac_hu is not None:
        paths = write_ct_series(cac_hu, cac_affine, folder / "2", series_description=calcium_description,
                                study_uid=STUDY_UID, series_number=2, uid_seed="cac", kvp=120.0, contrast=False,
                                slice_thickness=3.0)
        if patient:
            _patch(paths, **patient)
        uids["calcium_scoring"] = pydicom.dcmread(paths[0]).SeriesInstanceUID
    paths = write_ct_series(ccta_hu, ccta_affine, folder / "3", series_description=ccta_description,
                            study_uid=STUDY_UID, series_number=3, uid_seed="ccta", kvp=100.0, contrast="Iohexol")
    if patient:
        _patch(paths, **patient)
    uids["ccta"] = pydicom.dcmread(paths[0]).SeriesInstanceUID
    return uids


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as z:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(folder))
    return target


def demo_exam(folder: Path, case: str = "lad_calcified", **kw) -> dict[str, str]:
    """A demo phantom's CCTA and its non-contrast calcium-scoring rendering as one DICOM examination."""
    from cardiovlm.tools.core.settings import get_settings

    root = get_settings().demo_cases_dir / case
    ccta, cac = load_study(root / "ccta.nii.gz"), load_study(root / "cac.nii.gz")
    return write_exam(folder, ccta.hu, ccta.affine, cac.hu, cac.affine, **kw)
