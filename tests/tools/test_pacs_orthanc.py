"""The PACS client and CLI against a real Orthanc on a loopback port (fixtures in ``conftest.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.ingest.pacs import PacsAuthError, PacsClient, PacsTooLargeError, PacsUnreachableError
from cardiovlm.tools.ingest.study import load_study
from tests.tools.conftest import PASSWORD, UPLOADS, USER


def _study_of(client: PacsClient, case: str):
    hit = client.search_studies(patient_id=UPLOADS[case][0])[0]
    return hit, client.search_series(hit.study_uid)[0]


def test_search_finds_the_demo_phantoms_by_patient_accession_date_and_modality(pacs):
    _, client, _ = pacs
    assert {h.patient_id for h in client.search_studies(modality="CT")} == {p for p, _, _ in UPLOADS.values()}
    by_patient = client.search_studies(patient_id="PAT-LAD")
    assert len(by_patient) == 1 and by_patient[0].accession_number == "ACC-1001" and by_patient[0].n_instances
    assert [h.patient_id for h in client.search_studies(accession_number="ACC-1002")] == ["PAT-HEALTHY"]
    assert [h.patient_id for h in client.search_studies(study_date="20240201-20240228")] == ["PAT-HEALTHY"]
    assert client.search_studies(modality="MR") == []
    series = client.search_series(by_patient[0].study_uid)
    assert len(series) == 1 and series[0].modality == "CT" and series[0].description == "CCTA lad_stenosis"


def test_load_gives_the_same_hu_volume_as_loading_the_files(pacs, tmp_path):
    _, client, folders = pacs
    hit, series = _study_of(client, "lad_stenosis")
    progress = []
    from_pacs = client.load_series(hit.study_uid, series.series_uid, tmp_path,
                                   progress=lambda n, total: progress.append((n, total)))
    from_disk = load_study(folders["lad_stenosis"])
    assert np.array_equal(np.asarray(from_pacs.hu), np.asarray(from_disk.hu))
    assert np.allclose(from_pacs.affine, from_disk.affine) and from_pacs.spacing == from_disk.spacing
    assert from_pacs.metadata.get("series_uid") == series.series_uid
    assert progress[-1] == (series.n_instances, series.n_instances) and len(progress) == series.n_instances
    assert [p.name for p in tmp_path.iterdir()] == [series.series_uid]  # no partial folder left


def test_wrong_password_gives_a_clear_message(pacs):
    server, _, _ = pacs
    client = PacsClient(server.dicomweb_url, auth="basic", username=USER, password="wrong")
    with pytest.raises(PacsAuthError, match="refused the credentials \\(HTTP 401\\)"):
        client.search_studies()


def test_unreachable_server_gives_a_clear_message():
    from tests.loopback import free_port

    client = PacsClient(f"http://127.0.0.1:{free_port()}/dicom-web", timeout_s=5)
    with pytest.raises(PacsUnreachableError, match="cannot be reached \\(connection refused\\)"):
        client.search_studies(patient_id="x")


def test_a_series_over_the_size_limit_is_refused_and_nothing_is_kept(pacs, tmp_path):
    server, _, _ = pacs
    small = PacsClient(server.dicomweb_url, auth="basic", username=USER, password=PASSWORD, max_study_mb=0.5)
    hit, series = _study_of(small, "healthy")
    with pytest.raises(PacsTooLargeError, match="larger than this server's PACS limit"):
        small.retrieve_series(hit.study_uid, series.series_uid, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("keep_retrieved", [True, False])  # the library and CLI keep series; the app does not
def test_an_interrupted_transfer_leaves_no_half_study_in_the_session(pacs, tmp_path, monkeypatch, keep_retrieved):
    import requests

    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session

    _, client, _ = pacs
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path / "out", keep_retrieved=keep_retrieved)
    hit, series = _study_of(client, "lad_stenosis")
    first = session.load_from_pacs(client, hit.study_uid, series.series_uid)
    before = np.asarray(first.study.hu).copy()

    real_iter = client._client.iter_series

    def dropped_after_five(*args, **kwargs):
        for n, ds in enumerate(real_iter(*args, **kwargs)):
            if n == 5:
                raise requests.exceptions.ChunkedEncodingError("connection broken: IncompleteRead")
            yield ds

    monkeypatch.setattr(client._client, "iter_series", dropped_after_five)
    other, other_series = _study_of(client, "healthy")
    with pytest.raises(PacsUnreachableError, match="interrupted"):
        session.load_from_pacs(client, other.study_uid, other_series.series_uid)
    assert session.context is first and np.array_equal(np.asarray(session.context.study.hu), before)
    # Only the first, complete series (where kept): no folder of the interrupted one and no hidden
    # ".partial-*" folder it was written into (iterdir lists hidden entries too).
    left = sorted(p.name for p in (tmp_path / "out" / "pacs").iterdir())
    assert left == ([series.series_uid] if keep_retrieved else [])


def test_seg_and_sr_sent_back_are_stored_and_read_back_equal(pacs, tmp_path):
    import highdicom as hd
    import pydicom

    from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
    from cardiovlm.tools.core.answer import AnswerFinding, GroundedAnswer
    from cardiovlm.tools.dicom.dicom_export import export_answer
    from cardiovlm.tools.ingest.study import load_nifti

    _, client, _ = pacs
    hit, series = _study_of(client, "lad_stenosis")
    study = client.load_series(hit.study_uid, series.series_uid, tmp_path / "pacs")
    labels = load_nifti(get_settings().demo_cases_dir / "lad_stenosis" / "labels.nii.gz", labels=True).hu
    masks = {"pLAD": labels == SEGMENTS_BY_CODE["pLAD"].label_id,
             "aorta": labels == STRUCTURES_BY_NAME["aorta"].label_id}
    answer = GroundedAnswer(question="q", answer="a", findings=[
        AnswerFinding(name="pLAD diameter stenosis", value=71.0, unit="%", tool="measure_stenosis")])
    export = export_answer(answer, study, masks, tmp_path / "out")
    assert export.reference_written == []  # the PACS series itself is referenced, nothing new to send
    assert client.send_files(export.files_to_send()) == 2

    sent_seg, sent_sr = pydicom.dcmread(export.seg), pydicom.dcmread(export.sr)
    seg = client.retrieve_instance(hit.study_uid, sent_seg.SeriesInstanceUID, sent_seg.SOPInstanceUID)
    sr = client.retrieve_instance(hit.study_uid, sent_sr.SeriesInstanceUID, sent_sr.SOPInstanceUID)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["pLAD", "aorta"]
    assert int(seg.NumberOfFrames) == int(sent_seg.NumberOfFrames) > 0
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series.series_uid
    assert np.array_equal(seg.pixel_array, sent_seg.pixel_array)
    assert sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID == \
        series.series_uid
    assert hd.sr.Comprehensive3DSR.from_dataset(sr).SOPInstanceUID == sent_sr.SOPInstanceUID
    modalities = {s.modality for s in client.search_series(hit.study_uid)}
    assert modalities == {"CT", "SEG", "SR"}


def test_cli_search_load_and_send_an_answer(pacs_env, tmp_path, capsys):
    import json

    from cardiovlm.ui.cli import main

    assert main(["pacs", "search", "--patient-id", "PAT-LAD", "--json"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert hit["accession_number"] == "ACC-1001"
    assert main(["pacs", "load", hit["study_uid"], "--out", str(tmp_path / "pacs"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [170, 170, 120] and summary["modality"] == "CT"

    case = get_settings().demo_cases_dir / "lad_stenosis"
    assert main(["ask", str(case), "Segment the proximal LAD", "--json", "--out", str(tmp_path / "ask")]) == 0
    (tmp_path / "answer.json").write_text(capsys.readouterr().out)
    (series_folder,) = (tmp_path / "pacs").iterdir()
    assert main(["pacs", "send", "--answer", str(tmp_path / "answer.json"), "--study", str(series_folder)]) == 0
    out = capsys.readouterr().out
    assert "answer_seg.dcm" in out and "references the loaded DICOM series" in out
    assert "the PACS stored 2 object(s)" in out


def test_cli_wrong_password_is_one_clear_line(pacs_env, monkeypatch, capsys):
    from cardiovlm.ui.cli import main

    monkeypatch.setenv("CARDIOVLM_PACS_PASSWORD", "wrong")
    get_settings.cache_clear()
    assert main(["pacs", "search", "--modality", "CT"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cardiovlm pacs: the PACS at") and "refused the credentials" in err and "Traceback" not in err
