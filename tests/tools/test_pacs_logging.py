"""PACS logging: each search, retrieval and store says which server and how many, and never a patient."""

from __future__ import annotations

import json
import logging

import pydicom
import pytest
import requests
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from cardiovlm.tools.ingest.pacs import PacsClient, PacsTooLargeError, PacsUnreachableError

PATIENT_NAME, PATIENT_ID = "DOE^JANE", "PID-4711"
STUDY_UID, SERIES_UID = "1.2.826.0.1.3680043.8.498.111111111111111", "1.2.826.0.1.3680043.8.498.222222222222222"


def _instance() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
    ds.PatientName, ds.PatientID, ds.Modality = PATIENT_NAME, PATIENT_ID, "CT"
    return ds


@pytest.fixture
def client(monkeypatch) -> PacsClient:
    """A client whose DICOMweb calls answer from memory: one study of Jane Doe, a series of 3 images."""
    client = PacsClient("http://scanner-user:secret@pacs.hospital.example:8042/dicom-web")
    study = {"0020000D": {"vr": "UI", "Value": [STUDY_UID]}, "00100010": {"vr": "PN", "Value": [
        {"Alphabetic": PATIENT_NAME}]}, "00100020": {"vr": "LO", "Value": [PATIENT_ID]}}
    series = {"0020000E": {"vr": "UI", "Value": [SERIES_UID]}, "00201209": {"vr": "IS", "Value": [3]}}
    stored = Dataset()
    stored.ReferencedSOPSequence = [Dataset(), Dataset()]
    monkeypatch.setattr(client._client, "search_for_studies", lambda **_: json.loads(json.dumps([study])))
    monkeypatch.setattr(client._client, "search_for_series", lambda **_: [series])
    monkeypatch.setattr(client._client, "iter_series", lambda *_: (_instance() for _ in range(3)))
    monkeypatch.setattr(client._client, "store_instances", lambda *_, **__: stored)
    return client


def test_search_retrieve_and_store_are_logged_with_server_and_counts_but_no_patient(client, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="cardiovlm.tools.ingest.pacs"):
        hits = client.search_studies(patient_name="DOE*", patient_id=PATIENT_ID, modality="CT")
        client.retrieve_series(STUDY_UID, SERIES_UID, tmp_path)
        client.send([_instance(), _instance()])
    assert hits[0].patient_name == PATIENT_NAME  # the caller gets the patient; the log must not
    logged = caplog.text
    server = "pacs.hospital.example:8042/dicom-web"
    assert f"PACS {server}: study search by ModalitiesInStudy, PatientID, PatientName found 1 studies" in logged
    assert f"PACS {server}: retrieved series ...222222222222, 3 images" in logged
    assert f"PACS {server}: stored 2 of 2 objects for study ...111111111111" in logged
    for secret in ("DOE", "JANE", PATIENT_ID, "secret", "scanner-user", STUDY_UID, SERIES_UID):
        assert secret not in logged, secret
    assert len(list((tmp_path / SERIES_UID).iterdir())) == 3
    assert pydicom.dcmread(next((tmp_path / SERIES_UID).iterdir())).PatientName == PATIENT_NAME


def test_a_stopped_retrieval_is_logged_as_a_warning(client, tmp_path, caplog):
    client.max_bytes = 1  # the first image is already over the limit
    with caplog.at_level(logging.INFO, logger="cardiovlm.tools.ingest.pacs"), pytest.raises(PacsTooLargeError):
        client.retrieve_series(STUDY_UID, SERIES_UID, tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["PACS pacs.hospital.example:8042/dicom-web: retrieval of series ...222222222222 stopped "
                        "(PacsTooLargeError); nothing kept"]


def test_an_unreachable_pacs_is_logged_with_the_error_class(client, monkeypatch, caplog):
    def refuse(**_):
        raise requests.exceptions.ConnectionError("[Errno 111] Connection refused")

    monkeypatch.setattr(client._client, "search_for_studies", refuse)
    with caplog.at_level(logging.INFO, logger="cardiovlm.tools.ingest.pacs"), pytest.raises(PacsUnreachableError):
        client.search_studies(patient_name="DOE*")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith(
        "PACS pacs.hospital.example:8042/dicom-web: PacsUnreachableError: ") and "connection refused" in warnings[0]
    assert "DOE" not in caplog.text
