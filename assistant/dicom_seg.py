"""Answer masks as DICOM Segmentation objects (highdicom) that reference the study's CT series.

A DICOM SEG must point at the CT images it was drawn on. A study loaded from a DICOM folder is
referenced as it is (its series is read back from ``study.source``). A study loaded from NIfTI or a
case folder has no DICOM series, so one is written first with :func:`tools.dicom_write.write_ct_series`
into the session's output folder (once per session) and the SEG references that series; the
returned note says so, because a PACS must receive that series together with the SEG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tools.anatomy import ARTERIES, SEGMENTS_BY_CODE
from tools.study import Study

REFERENCE_SERIES_DIR = "ct_series_for_seg"


def _codes(name: str):
    """(category, property type) SNOMED CT codes for a registry name (segment, artery, structure)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    base = name.split("_")[0]
    if name in SEGMENTS_BY_CODE:
        seg = SEGMENTS_BY_CODE[name]
        return codes.SCT.AnatomicalStructure, hd.sr.CodedConcept(seg.snomed, "SCT", seg.name)
    if base in ARTERIES or base in SEGMENTS_BY_CODE:
        return codes.SCT.AnatomicalStructure, codes.SCT.CoronaryArtery
    if name.startswith("stent"):
        return codes.SCT.PhysicalObject, codes.SCT.Stent
    if "plaque" in name:
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Plaque
    known = {"aorta": codes.SCT.Aorta, "aortic_root": codes.SCT.Aorta, "lv_blood": codes.SCT.LeftVentricle}
    return codes.SCT.AnatomicalStructure, known.get(name, codes.SCT.AnatomicalStructure)


def _series_datasets(folder: Path, series_uid: str | None) -> list:
    import pydicom

    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 (pydicom raises many kinds on non-DICOM files)
            continue
        if "ImagePositionPatient" in ds and (series_uid is None or str(ds.SeriesInstanceUID) == series_uid):
            out.append(ds)
    return out


def reference_series(study: Study, out_dir: Path) -> tuple[list, str]:
    """The CT images a SEG of ``study`` references, and a note on where they came from."""
    if study.metadata.get("format") == "DICOM" and study.source and Path(study.source).is_dir():
        datasets = _series_datasets(Path(study.source), study.metadata.get("series_uid"))
        if datasets:
            return datasets, f"references the loaded DICOM series {study.metadata.get('series_uid')}"
    folder = out_dir / REFERENCE_SERIES_DIR
    if not folder.is_dir() or not any(folder.iterdir()):
        from tools.dicom_write import write_ct_series

        # Fresh UIDs (no seed): this series is new to any PACS; it is written once per session folder.
        write_ct_series(np.asarray(study.hu), study.affine, folder, series_description="CardioVLM CT for SEG")
    return (_series_datasets(folder, None),
            f"the study was not loaded from DICOM, so its CT was written as a DICOM series to {folder} and the "
            "SEG references that series: send both to the PACS")


def _frames(mask: np.ndarray, study: Study, datasets: list) -> np.ndarray:
    """(frames, rows, cols) mask sampled on each referenced image's pixel grid (any orientation)."""
    frames = []
    for ds in datasets:
        rows, cols = int(ds.Rows), int(ds.Columns)
        row_dir, col_dir = np.asarray(ds.ImageOrientationPatient[:3], float), np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        xyz = (np.asarray(ds.ImagePositionPatient, float) + c[..., None] * dc * row_dir + r[..., None] * dr * col_dir)
        ijk = np.rint(study.mm_to_index(xyz.reshape(-1, 3))).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(mask.shape)), axis=1)
        frame = np.zeros(rows * cols, bool)
        frame[inside] = mask[tuple(ijk[inside].T)]
        frames.append(frame.reshape(rows, cols))
    return np.stack(frames)


def save_mask_dicom_seg(mask: np.ndarray, study: Study, path: str | Path, *, name: str,
                        out_dir: str | Path) -> tuple[Path, str]:
    """Write ``mask`` (on the study grid) as a binary DICOM SEG; returns the file and a provenance note.

    Args:
        mask: (I, J, K) boolean mask on the grid of ``study``.
        name: registry name of what the mask is ("pLAD", "LAD", "stent_RCA", "aorta").
        out_dir: the session output folder (where a reference CT series is written when needed).

    Raises:
        ValueError: the mask does not match the study grid or is empty.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    mask = np.asarray(mask, bool)
    if mask.shape != study.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the study shape {study.shape}")
    if not mask.any():
        raise ValueError(f"the {name} mask is empty: there is nothing to export")
    datasets, note = reference_series(study, Path(out_dir))
    category, kind = _codes(name)
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=name[:64], segmented_property_category=category,
        segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="CardioVLM assistant", version="1", family=codes.cid7162.ArtificialIntelligence))
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=_frames(mask, study, datasets),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="CardioVLM", manufacturer_model_name="CardioVLM assistant", software_versions="1",
        device_serial_number="none", series_description=f"CardioVLM mask: {name}"[:64], omit_empty_frames=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path, note
