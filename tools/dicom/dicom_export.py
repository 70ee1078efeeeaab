"""Results as DICOM a PACS stores next to the images: masks as a Segmentation, findings as an SR.

**Segmentation.** A DICOM SEG must point at the CT images it was drawn on. A study loaded from
DICOM (a folder, a zip, or retrieved from the PACS) is referenced as it is: its series' headers are
read with :func:`capture_reference` when the study is loaded (the app deletes the uploaded files
right after), so the SEG and SR keep the study's patient and study identifiers and UIDs. A study
loaded from NIfTI or a case folder has no DICOM series, so one is written first with
:func:`cardiovlm.tools.dicom.dicom_write.write_ct_series` into the study load's output folder (once per folder)
and the SEG references that series; the note says so, because a PACS must receive that
series together with the SEG. One segment per structure, coded with SNOMED CT: coronary segments
with their CID 3014 codes from the anatomy registry, whole arteries, aorta, left ventricle, stents
and plaque with pydicom's ``codes.SCT`` concepts.

**Structured report: a DICOM SR, not an Encapsulated PDF.** Every finding of a
:class:`~cardiovlm.tools.core.answer.GroundedAnswer` is a name, a value, a unit and the tool that measured it:
exactly what TID 1500 (Measurement Report) holds, as numeric measurements with UCUM units and
coded qualitative evaluations, so a PACS, a viewer or a registry can read the numbers back without
parsing text. A PDF would only be pictures of those numbers. The free-text answer is not part of
TID 1500 (it has no text item), so it stays in the answer's HTML/JSON downloads; the SR carries
the findings. Comprehensive 3D SR is used (the IOD highdicom builds TID 1500 in). Names without a
standard code (e.g. "MESA 10-year hard CHD risk") use the private scheme ``99CVLM``, as DICOM
allows for local concepts; stenosis, lengths, diameters, volumes, mass and the calcium score use
SNOMED CT. Findings that name a coronary segment or artery carry it as their finding site.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cardiovlm.tools.core.anatomy import ARTERIES, SEGMENTS_BY_CODE, find_anatomy
from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.tools.ingest.study_value import Study

if TYPE_CHECKING:
    from cardiovlm.tools.core.answer import GroundedAnswer

REFERENCE_SERIES_DIR = "ct_series_for_seg"
PRIVATE_SCHEME = "99CVLM"  # DICOM private coding scheme designators start with "99"
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 900, 901
VLM_MASK_PREFIX = "vlm_"  # cardiovlm.assistant.tools.vlm keeps VLM masks apart from label-map masks of the same name
# Findings' units (cardiovlm.assistant.findings) as UCUM; anything else becomes a UCUM annotation "{unit}". Powers
# are written with a caret as the findings write them ("mm^2", "mm^3"), never "mm2".
UCUM = {"mm": ("mm", "millimeter"), "mm^2": ("mm2", "square millimeter"), "mm^3": ("mm3", "cubic millimeter"),
        "%": ("%", "percent"), "mg": ("mg", "milligram"), "ng/L": ("ng/L", "nanogram per liter"),
        "HU": ("[hnsf'U]", "Hounsfield unit"), "AU": ("1", "no units"), "": ("1", "no units"),
        "ratio": ("{ratio}", "ratio"), "years": ("a", "year"), "mmHg": ("mm[Hg]", "millimeter of mercury")}


class DicomExportError(CardioVLMError):
    """Masks or findings cannot be written as DICOM (empty, wrong grid, nothing to export)."""

    code = "dicom_export.invalid"


# --- anatomy codes ---
def anatomy_codes(name: str):
    """(segmented property category, type) SNOMED CT codes for a registry name (segment, artery, structure)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    name = name.removeprefix(VLM_MASK_PREFIX)  # a VLM mask is coded as the structure it shows
    base = name.split("_")[0]
    if name.startswith("stent"):
        return codes.SCT.PhysicalObject, codes.SCT.Stent
    if "plaque" in name:
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Plaque
    if name in SEGMENTS_BY_CODE:
        seg = SEGMENTS_BY_CODE[name]
        return codes.SCT.AnatomicalStructure, hd.sr.CodedConcept(seg.snomed, "SCT", seg.name)
    if base in ARTERIES:
        return codes.SCT.AnatomicalStructure, _artery_code(base)
    if base in SEGMENTS_BY_CODE:
        seg = SEGMENTS_BY_CODE[base]
        return codes.SCT.AnatomicalStructure, hd.sr.CodedConcept(seg.snomed, "SCT", seg.name)
    known = {"aorta": codes.SCT.Aorta, "aortic_root": codes.SCT.Aorta, "lv_blood": codes.SCT.LeftVentricle}
    return codes.SCT.AnatomicalStructure, known.get(name, codes.SCT.AnatomicalStructure)


def _artery_code(artery: str):
    from pydicom.sr.codedict import codes

    return {"LM": codes.SCT.LeftMainCoronaryArtery, "LAD": codes.SCT.AnteriorDescendingBranchOfLeftCoronaryArtery,
            "LCx": codes.SCT.CircumflexCoronaryArtery, "RCA": codes.SCT.RightCoronaryArtery}[artery]


# --- the CT series a SEG or SR references ---
@dataclass
class ReferenceSeries:
    datasets: list  # pydicom headers (no pixels) of the referenced CT images, in slice order
    written: list[Path] = field(default_factory=list)  # files written here: the PACS needs them too
    note: str = ""


def _series_datasets(folder: Path, series_uid: str | None) -> tuple[list, list[Path]]:
    import pydicom

    datasets, paths = [], []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 (pydicom raises many kinds on non-DICOM files)
            continue
        if "ImagePositionPatient" in ds and (series_uid is None or str(ds.SeriesInstanceUID) == series_uid):
            datasets.append(ds)
            paths.append(path)
    return datasets, paths


def _zip_series_datasets(path: Path, series_uid: str | None) -> list:
    """Headers of the series' images inside a zip, read from the archive without extracting it."""
    import zipfile

    import pydicom

    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.tools.ingest.safe_zip import check_zip

    settings = get_settings()
    datasets = []
    with zipfile.ZipFile(path) as zf:
        for info in check_zip(path, max_bytes=settings.max_zip_bytes, max_members=settings.max_zip_members):
            try:
                with zf.open(info) as member:
                    ds = pydicom.dcmread(member, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 (pydicom raises many kinds on non-DICOM members)
                continue
            if "ImagePositionPatient" in ds and (series_uid is None or str(ds.SeriesInstanceUID) == series_uid):
                datasets.append(ds)
    return datasets


def capture_reference(study: Study) -> ReferenceSeries | None:
    """The headers (no pixels) of the DICOM series ``study`` was loaded from, read from ``study.source``.

    Called when a study is loaded, so an export still references the original series (its UIDs,
    patient and study identifiers) after the uploaded files are deleted. The headers hold the
    patient's details: keep them in memory for the session only. None for a study not loaded from
    DICOM, or when the source can no longer be read.
    """
    if study.metadata.get("format") != "DICOM" or not study.source:
        return None
    source, series_uid = Path(study.source), study.metadata.get("series_uid")
    try:
        if source.is_dir():
            datasets, _ = _series_datasets(source, series_uid)
        elif source.is_file():
            datasets = _zip_series_datasets(source, series_uid)
        else:
            return None
    except (OSError, ValueError):  # the zip was read once already; a later failure only loses the reference
        return None
    if not datasets:
        return None
    return ReferenceSeries(datasets, [], f"references the loaded DICOM series {series_uid}")


def reference_series(study: Study, out_dir: Path, captured: ReferenceSeries | None = None) -> ReferenceSeries:
    """The CT images a SEG or SR of ``study`` references: ``captured`` (see :func:`capture_reference`),
    else the DICOM series it was loaded from, else a series written once into ``out_dir``."""
    if captured is not None and captured.datasets:
        return captured
    found = capture_reference(study)
    if found is not None:
        return found
    folder = out_dir / REFERENCE_SERIES_DIR
    if not folder.is_dir() or not any(folder.iterdir()):
        from cardiovlm.tools.dicom.dicom_write import write_ct_series

        # Fresh series UIDs (no seed): this series is new to any PACS; it is written once per output
        # folder. A study that came from DICOM keeps its StudyInstanceUID, so it stays one study there.
        write_ct_series(np.asarray(study.hu), study.affine, folder, series_description="CardioVLM CT for SEG",
                        study_uid=study.metadata.get("study_uid"))
    datasets, paths = _series_datasets(folder, None)
    return ReferenceSeries(datasets, paths,
                           f"the study was not loaded from DICOM, so its CT was written as a DICOM series to {folder} "
                           "and the SEG references that series: send both to the PACS")


# --- Segmentation ---
def _frames(mask: np.ndarray, study: Study, datasets: list) -> np.ndarray:
    """(frames, rows, cols) mask sampled on each referenced image's pixel grid (any orientation)."""
    frames = []
    for ds in datasets:
        rows, cols = int(ds.Rows), int(ds.Columns)
        row_dir = np.asarray(ds.ImageOrientationPatient[:3], float)
        col_dir = np.asarray(ds.ImageOrientationPatient[3:], float)
        dr, dc = (float(v) for v in ds.PixelSpacing)
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        xyz = (np.asarray(ds.ImagePositionPatient, float) + c[..., None] * dc * row_dir + r[..., None] * dr * col_dir)
        ijk = np.rint(study.mm_to_index(xyz.reshape(-1, 3))).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(mask.shape)), axis=1)
        frame = np.zeros(rows * cols, bool)
        frame[inside] = mask[tuple(ijk[inside].T)]
        frames.append(frame.reshape(rows, cols))
    return np.stack(frames)


def _algorithm():
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.AlgorithmIdentificationSequence(name="CardioVLM assistant", version="1",
                                              family=codes.cid7162.ArtificialIntelligence)


def segmentation(masks: Mapping[str, np.ndarray], study: Study, reference: ReferenceSeries):
    """A binary highdicom Segmentation with one segment per mask, in the order given.

    Args:
        masks: registry name ("pLAD", "LAD", "stent_RCA", "aorta") -> (I, J, K) mask on the study grid.
        reference: from :func:`reference_series`.

    Raises:
        DicomExportError: no masks, a mask off the study grid, or an empty mask.
    """
    import highdicom as hd

    if not masks:
        raise DicomExportError("there are no masks to export")
    descriptions, stacks = [], []
    for number, (name, mask) in enumerate(masks.items(), start=1):
        mask = np.asarray(mask, bool)
        if mask.shape != study.shape:
            raise DicomExportError(f"the {name} mask has shape {mask.shape}, not the study shape {study.shape}")
        if not mask.any():
            raise DicomExportError(f"the {name} mask is empty: there is nothing to export")
        category, kind = anatomy_codes(name)
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name[:64], segmented_property_category=category,
            segmented_property_type=kind, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm()))
        stacks.append(_frames(mask, study, reference.datasets))
    label = ", ".join(masks)
    return hd.seg.Segmentation(
        source_images=reference.datasets, pixel_array=np.stack(stacks, axis=-1),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=SEG_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="CardioVLM", manufacturer_model_name="CardioVLM assistant", software_versions="1",
        device_serial_number="none", series_description=f"CardioVLM masks: {label}"[:64], omit_empty_frames=True)


def save_mask_dicom_seg(mask: np.ndarray, study: Study, path: str | Path, *, name: str,
                        out_dir: str | Path) -> tuple[Path, str]:
    """Write one mask as a binary DICOM SEG; returns the file and a provenance note.

    Args:
        mask: (I, J, K) boolean mask on the grid of ``study``.
        name: registry name of what the mask is ("pLAD", "LAD", "stent_RCA", "aorta").
        out_dir: the session output folder (where a reference CT series is written when needed).

    Raises:
        DicomExportError: the mask does not match the study grid or is empty.
    """
    mask = np.asarray(mask, bool)
    if mask.shape == study.shape and not mask.any():  # say so before a reference series is written
        raise DicomExportError(f"the {name} mask is empty: there is nothing to export")
    reference = reference_series(study, Path(out_dir))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    segmentation({name: mask}, study, reference).save_as(path)
    return path, reference.note


# --- Structured report ---
def _code(text: str, kind: str = "name"):
    """A concept of the private scheme for ``text`` (code value: stable hash, at most 16 characters)."""
    import highdicom as hd

    digest = hashlib.sha1(f"{kind}:{text}".encode()).hexdigest()[:10].upper()
    return hd.sr.CodedConcept(f"CVLM{digest}", PRIVATE_SCHEME, text[:64])


def finding_name_code(name: str):
    """A standard SNOMED CT concept for the finding name where one fits, else a private one."""
    from pydicom.sr.codedict import codes

    lowered = name.lower()
    for words, code in (("agatston", codes.SCT.CoronaryArteryCalciumScore),
                        ("diameter stenosis", codes.SCT.LumenDiameterStenosis),
                        ("area stenosis", codes.SCT.LumenAreaStenosis), ("length", codes.SCT.Length),
                        ("diameter", codes.SCT.Diameter), ("volume", codes.SCT.Volume), ("mass", codes.SCT.Mass)):
        if words in lowered:
            return code
    return _code(name)


def _unit(unit: str):
    import highdicom as hd

    value, meaning = UCUM.get(unit, ("{" + unit.replace("{", "").replace("}", "") + "}", unit))
    return hd.sr.CodedConcept(value, "UCUM", meaning)


def _finding_sites(name: str) -> list:
    import highdicom as hd

    sites = []
    for kind, key, _ in find_anatomy(name):
        if kind in ("segment", "artery"):
            _, code = anatomy_codes(key)
            sites.append(hd.sr.FindingSite(anatomic_location=code))
    return sites[:1]


def structured_report(answer: GroundedAnswer, reference: ReferenceSeries):
    """A Comprehensive 3D SR (TID 1500) holding the answer's findings, one measurement group per tool.

    Numeric findings are measurements with UCUM units; text findings (CAD-RADS, coverage status)
    are qualitative evaluations whose coded value names the text. See the module docstring.

    Raises:
        DicomExportError: the answer has no findings.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if not answer.findings:
        raise DicomExportError("the answer has no findings to report")
    by_tool: dict[str, list] = {}
    for finding in answer.findings:
        by_tool.setdefault(finding.tool, []).append(finding)
    groups = []
    for tool, findings in by_tool.items():
        measurements, evaluations = [], []
        for f in findings:
            name = finding_name_code(f.name)
            if isinstance(f.value, (int, float)) and not isinstance(f.value, bool):
                measurements.append(hd.sr.Measurement(
                    name=name, value=float(f.value), unit=_unit(f.unit), finding_sites=_finding_sites(f.name)))
            else:
                text = f"{f.value} {f.unit}".strip()
                evaluations.append(hd.sr.QualitativeEvaluation(name=name, value=_code(text, "value")))
        groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"CardioVLM {tool}"[:64]),
            algorithm_id=hd.sr.AlgorithmIdentification(name="CardioVLM assistant", version="1"),
            measurements=measurements or None, qualitative_evaluations=evaluations or None))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="CardioVLM assistant", manufacturer_name="CardioVLM"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.CTAngiographyOfCoronaryArteries, imaging_measurements=groups,
        referenced_images=reference.datasets[:1])
    sr = hd.sr.Comprehensive3DSR(
        evidence=reference.datasets, content=report[0], series_instance_uid=hd.UID(),
        series_number=SR_SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1, manufacturer="CardioVLM",
        is_complete=True, is_final=False, is_verified=False, series_description="CardioVLM findings (not verified)")
    sr.CodingSchemeIdentificationSequence = [_private_scheme()]  # declares 99CVLM to readers
    return sr


def _private_scheme():
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "CardioVLM local concepts"
    item.CodingSchemeResponsibleOrganization = "CardioVLM project"
    return item


def masks_of_answer(answer: GroundedAnswer, study: Study) -> dict[str, np.ndarray]:
    """The answer's NIfTI mask files read back (for an answer saved as JSON by ``cardiovlm ask``).

    Raises:
        DicomExportError: a mask file is not on the grid of ``study``.
    """
    from cardiovlm.tools.ingest.study import load_nifti

    masks = {}
    for m in answer.masks:
        if m.format == "nifti" and Path(m.path).is_file():
            mask = np.asarray(load_nifti(m.path, labels=True).hu).astype(bool)
            if mask.shape != study.shape:
                raise DicomExportError(f"the {m.name} mask ({m.path}) has shape {mask.shape}, not the study's "
                                       f"{study.shape}: give the study the answer was made on")
            masks[m.name] = mask
    return masks


# --- one answer, both objects ---
@dataclass
class AnswerExport:
    """What :func:`export_answer` wrote: the files to download and, in order, the ones to send to a PACS."""

    seg: Path | None
    sr: Path | None
    reference_written: list[Path]  # CT series written for a study that did not come from DICOM
    note: str

    def files_to_send(self) -> list[Path]:
        """The CT series first (when written here), then the SEG and the SR that reference it."""
        return [*self.reference_written, *(p for p in (self.seg, self.sr) if p is not None)]


def export_answer(answer: GroundedAnswer, study: Study, masks: Mapping[str, np.ndarray],
                  out_dir: str | Path, *, stem: str = "answer",
                  reference: ReferenceSeries | None = None) -> AnswerExport:
    """Write ``<stem>_seg.dcm`` (all ``masks``) and ``<stem>_sr.dcm`` (the findings) into ``out_dir``.

    Either is skipped when there is nothing for it (no masks, no findings); both skipped is an error.
    ``reference``: the headers captured when ``study`` was loaded (:func:`capture_reference`).

    Raises:
        DicomExportError: nothing to export, or a mask off the study grid.
    """
    out_dir = Path(out_dir)
    masks = {name: m for name, m in masks.items() if np.asarray(m).any()}
    if not masks and not answer.findings:
        raise DicomExportError("this answer has neither masks nor findings to send")
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = reference_series(study, out_dir, reference)
    seg_path = sr_path = None
    if masks:
        seg_path = out_dir / f"{stem}_seg.dcm"
        segmentation(masks, study, reference).save_as(seg_path)
    if answer.findings:
        sr_path = out_dir / f"{stem}_sr.dcm"
        structured_report(answer, reference).save_as(sr_path)
    return AnswerExport(seg_path, sr_path, reference.written, reference.note)
