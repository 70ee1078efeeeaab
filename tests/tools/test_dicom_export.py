"""Answer masks as one multi-segment DICOM SEG and findings as a TID 1500 SR, both validator-clean."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest

from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, segments_of_artery
from cardiovlm.tools.core.answer import AnswerFinding, GroundedAnswer
from cardiovlm.tools.dicom.dicom_export import (
    DicomExportError,
    anatomy_codes,
    capture_reference,
    export_answer,
    reference_series,
    save_mask_dicom_seg,
)
from cardiovlm.tools.ingest.study import load_study
from tests.assistant.conftest import make_patient_context

FINDINGS = [
    AnswerFinding(name="pLAD diameter stenosis", value=74.0, unit="%", tool="measure_stenosis"),
    AnswerFinding(name="lesion length", value=8.1, unit="mm", tool="measure_stenosis"),
    AnswerFinding(name="CAD-RADS", value="4A", unit="", tool="measure_stenosis"),
    AnswerFinding(name="Agatston score", value=120.5, unit="AU", tool="calcium_score"),
    AnswerFinding(name="calcium volume", value=98.2, unit="mm^3", tool="calcium_score"),
]


@pytest.fixture(scope="module")
def patient():
    return make_patient_context()


def _masks(labels):
    lad = [s.label_id for s in segments_of_artery("LAD")]
    return {"pLAD": labels == SEGMENTS_BY_CODE["pLAD"].label_id, "LAD": np.isin(labels, lad),
            "pRCA": labels == SEGMENTS_BY_CODE["pRCA"].label_id}


def _answer() -> GroundedAnswer:
    return GroundedAnswer(question="How narrow is the proximal LAD?", answer="74 % (CAD-RADS 4A).", findings=FINDINGS)


def _dciodvfy_errors(path) -> list[str]:
    """dciodvfy's error lines, or highdicom's own read-back when dicom3tools is not installed."""
    if shutil.which("dciodvfy") is None:
        ds = pydicom.dcmread(path)
        (hd.seg.Segmentation if ds.Modality == "SEG" else hd.sr.Comprehensive3DSR).from_dataset(ds)
        return []
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_seg_has_one_coded_segment_per_structure_and_references_the_written_ct(patient, tmp_path):
    masks = _masks(patient.labels)
    export = export_answer(_answer(), patient.study, masks, tmp_path)
    assert export.files_to_send()[-2:] == [export.seg, export.sr]
    assert len(export.reference_written) == patient.study.shape[2] and "send both" in export.note
    seg = hd.seg.segread(export.seg)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["pLAD", "LAD", "pRCA"]
    types = [s.SegmentedPropertyTypeCodeSequence[0] for s in seg.SegmentSequence]
    assert types[0].CodeValue == "68787002" and types[0].CodingSchemeDesignator == "SCT"  # CID 3014 pLAD
    assert types[2].CodeValue == SEGMENTS_BY_CODE["pRCA"].snomed
    assert types[1].CodeMeaning.lower().startswith("anterior descending branch of left coronary")
    ct_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in export.reference_written}
    referenced = {i.ReferencedSOPInstanceUID for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= ct_uids
    for number, name in enumerate(masks, start=1):  # each segment holds exactly its mask's voxels
        assert int(seg.get_volume(segment_numbers=[number]).array.sum()) == int(masks[name].sum())
    assert _dciodvfy_errors(export.seg) == []


def test_sr_holds_the_findings_with_ucum_units_and_validates(patient, tmp_path):
    export = export_answer(_answer(), patient.study, {}, tmp_path)
    assert export.seg is None
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(export.sr))
    numbers = {}
    texts = []
    for item in _walk(sr.ContentSequence):
        if item.ValueType == "NUM":
            value = item.MeasuredValueSequence[0]
            numbers[item.ConceptNameCodeSequence[0].CodeMeaning] = (
                float(value.NumericValue), value.MeasurementUnitsCodeSequence[0].CodeValue)
        if item.ValueType == "CODE" and item.ConceptNameCodeSequence[0].CodeMeaning == "CAD-RADS":
            texts.append(item.ConceptCodeSequence[0].CodeMeaning)
    assert numbers["Lumen Diameter Stenosis"] == (74.0, "%")
    assert numbers["Length"] == (8.1, "mm") and numbers["Volume"] == (98.2, "mm3")
    assert numbers["Coronary artery calcium score"] == (120.5, "1")  # Agatston score: a pure number
    assert texts == ["4A"]
    assert _dciodvfy_errors(export.sr) == []


def _walk(sequence):
    for item in sequence:
        yield item
        yield from _walk(getattr(item, "ContentSequence", []))


def test_a_study_loaded_from_dicom_is_referenced_as_it_is(patient, tmp_path):
    from cardiovlm.tools.dicom.dicom_write import write_ct_series

    write_ct_series(patient.study.hu, patient.study.affine, tmp_path / "ct", series_description="CCTA", uid_seed="x")
    study = load_study(tmp_path / "ct")
    reference = reference_series(study, tmp_path / "out")
    assert reference.written == [] and len(reference.datasets) == study.shape[2]
    assert not (tmp_path / "out").exists()
    path, note = save_mask_dicom_seg(_masks(patient.labels)["pLAD"], study, tmp_path / "seg.dcm", name="pLAD",
                                     out_dir=tmp_path / "out")
    assert "references the loaded DICOM series" in note
    assert pydicom.dcmread(path).ReferencedSeriesSequence[0].SeriesInstanceUID == study.metadata["series_uid"]


def test_nothing_to_export_and_empty_masks_are_refused(patient, tmp_path):
    empty = GroundedAnswer(question="q", answer="a")
    with pytest.raises(DicomExportError, match="neither masks nor findings"):
        export_answer(empty, patient.study, {"pLAD": np.zeros(patient.study.shape, bool)}, tmp_path)
    with pytest.raises(DicomExportError, match="empty"):
        save_mask_dicom_seg(np.zeros(patient.study.shape, bool), patient.study, tmp_path / "s.dcm", name="pLAD",
                            out_dir=tmp_path)


def test_an_uploaded_dicom_zip_exports_under_its_own_patient_and_study_after_the_zip_is_gone(patient, tmp_path):
    import zipfile

    from cardiovlm.tools.dicom.dicom_write import write_ct_series

    files = write_ct_series(patient.study.hu, patient.study.affine, tmp_path / "ct", series_description="CCTA",
                            uid_seed="site", patient_id="MRN-4711", patient_name="Doe^Jane")
    original = pydicom.dcmread(files[0], stop_before_pixels=True)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f.name)
    shutil.rmtree(tmp_path / "ct")
    study = load_study(archive)
    captured = capture_reference(study)  # what the session keeps in memory at load time
    archive.unlink()  # the app deletes the upload once it is ingested
    export = export_answer(_answer(), study, _masks(patient.labels), tmp_path / "out", reference=captured)
    assert export.reference_written == [] and "references the loaded DICOM series" in export.note
    for path in (export.seg, export.sr):
        ds = pydicom.dcmread(path)
        assert (ds.PatientID, ds.StudyInstanceUID) == ("MRN-4711", original.StudyInstanceUID)
    seg = pydicom.dcmread(export.seg)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == original.SeriesInstanceUID


def test_a_vlm_mask_is_coded_as_the_structure_it_shows():
    assert anatomy_codes("vlm_aorta")[1] == anatomy_codes("aorta")[1]
    assert anatomy_codes("vlm_aorta")[1].meaning == "Aorta"
