"""The app's "Load from PACS" panel and "Send to PACS" action against a real local Orthanc."""

from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client

from cardiovlm.ui.server import launch
from tests.loopback import chat_texts, free_port
from tests.tools.conftest import pacs, pacs_env  # noqa: F401 (fixtures: Orthanc with two demo phantoms)


@pytest.fixture
def client(pacs_env, tmp_path):  # noqa: F811 (pacs_env is the imported fixture)
    app, url = launch("127.0.0.1", free_port(), block=False)  # built while CARDIOVLM_PACS_URL is set
    yield Client(url, verbose=False, download_files=str(tmp_path))
    app.close()


def test_search_and_load_a_study_from_the_pacs(client):
    rows, choice, message = client.predict("PAT-LAD", "", "", "CT", api_name="/pacs_search")
    assert message == "1 study found" and rows["data"][0][:3] == ["PAT-LAD", "20240105", "ACC-1001"]
    study_uid = choice if isinstance(choice, str) else choice["value"]
    summary, *_ = client.predict(study_uid, "axial", "cardiac", api_name="/load_pacs")
    assert "Modality** CT" in summary and "170 x 170 x 120" in summary
    from cardiovlm.ui.workdir import sessions_dir

    # The retrieved images carry the patient's details: deleted once loaded (headers stay in memory).
    assert [p for p in sessions_dir().rglob("*") if p.is_file() and "pacs" in p.parts] == []
    chat, *_ = client.predict("Is this a real patient?", [], api_name="/ask")
    assert "PACS" in chat_texts(chat)[-1]  # the answer says where the study came from


def test_an_answer_with_masks_is_sent_to_the_pacs_with_its_ct_series(client):
    # A demo case brings its label map, so the answer has a mask; being NIfTI, its CT goes along.
    client.predict("lad_stenosis", "axial", "cardiac", api_name="/load_demo")
    chat, *_ = client.predict("Segment the proximal LAD", [], api_name="/ask")
    assert "pLAD" in chat_texts(chat)[-1]
    saved, status = client.predict(None, api_name="/save_dicom")
    assert status.startswith("Saved lad_stenosis_answer01_") and "_seg.dcm" in status and "_sr.dcm" in status
    downloads, status = client.predict(None, api_name="/send_pacs")  # the same files, not a second export
    assert status.startswith("Sent to the PACS: 122 object(s) stored") and "send both" in status  # 120 CT + SEG + SR
    assert sorted(Path(p).name for p in downloads) == sorted(Path(p).name for p in saved)
    assert any(str(p).endswith("_seg.dcm") for p in downloads) and any(str(p).endswith("_sr.dcm") for p in downloads)


def test_a_pacs_error_is_a_readable_message(client, monkeypatch):
    from cardiovlm.tools.core.settings import get_settings

    monkeypatch.setenv("CARDIOVLM_PACS_PASSWORD", "wrong")
    get_settings.cache_clear()
    rows, _, message = client.predict("", "", "", "CT", api_name="/pacs_search")
    assert message.startswith("⚠️") and "refused the credentials" in message and "Traceback" not in message


@pytest.mark.parametrize("url", [None, "https://pacs.example.org/dicom-web"])
def test_the_pacs_panel_is_shown_only_when_a_pacs_is_configured(url, monkeypatch):
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.ui.app import build_app

    monkeypatch.delenv("CARDIOVLM_PACS_URL", raising=False)
    if url:
        monkeypatch.setenv("CARDIOVLM_PACS_URL", url)
    get_settings.cache_clear()
    try:
        app = build_app()
    finally:
        get_settings.cache_clear()
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    assert ("pacs-panel" in ids) == bool(url)
