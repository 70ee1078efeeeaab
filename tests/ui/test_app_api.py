"""The app's API endpoints through gradio_client on loopback, as a browser session would use them."""

import shutil

import pytest
from gradio_client import Client, handle_file

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.ui.server import launch
from tests.loopback import chat_texts, free_port

DEMO_CASES = get_settings().demo_cases_dir



@pytest.fixture(scope="module")
def client(tmp_path_factory):
    app, url = launch("127.0.0.1", free_port(), block=False)
    yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))
    app.close()



def test_stent_question_on_the_lad_stenosis_demo(client):
    summary, *_ = client.predict("lad_stenosis", "axial", "cardiac", api_name="/load_demo")
    assert "Modality** CT" in summary
    chat, _, findings, downloads, *_ = client.predict(
        "Will a 20 mm stent fully cover the proximal LAD lesion?", [], api_name="/ask")
    answer = chat_texts(chat)[-1]
    assert answer.startswith("Yes") and "pLAD" in answer
    assert any(row[0] == "lesion length" and row[2] == "mm" for row in findings["data"])
    assert any(str(p).endswith(".json") for p in downloads) and any(str(p).endswith(".html") for p in downloads)


def test_corrupt_zip_gives_a_readable_message_and_keeps_the_study(client, tmp_path):
    client.predict("healthy", "axial", "cardiac", api_name="/load_demo")
    bad = tmp_path / "study.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    summary, *_ = client.predict([handle_file(str(bad))], "axial", "cardiac", None, None,  # series: automatic
                                 api_name="/load_upload")
    assert summary.startswith("⚠️") and "Traceback" not in summary
    chat, *_ = client.predict("What is the calcium score?", [], api_name="/ask")
    assert "Agatston" in chat_texts(chat)[-1]


def test_load_pressed_before_the_upload_preview_loads_the_upload(client, tmp_path):
    # The demo's series pick is still in the dropdowns when Load is pressed before the new upload's
    # preview replaced them: the upload is loaded by kind, the corrupt one refused in words.
    client.predict("healthy", "axial", "cardiac", api_name="/load_demo")
    bad = tmp_path / "study.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    summary, *_ = client.predict([handle_file(str(bad))], "axial", "cardiac", "ccta.nii.gz", "calcium.nii.gz",
                                 api_name="/load_upload")
    assert summary.startswith("⚠️") and "not in the list of choices" not in summary
    upload = tmp_path / "upload" / "study.nii.gz"
    upload.parent.mkdir()
    shutil.copy(DEMO_CASES / "lad_stenosis" / "ccta.nii.gz", upload)
    summary, *_ = client.predict([handle_file(str(upload))], "axial", "cardiac", "1.2.826.0.1.999", "1.2.826.0.1.998",
                                 api_name="/load_upload")
    assert "Modality** CT" in summary and not summary.startswith("⚠️")


def test_nonsense_question_is_answered_with_what_the_assistant_can_do(client):
    client.predict("healthy", "axial", "cardiac", api_name="/load_demo")
    chat, *_ = client.predict("banana rocket?", [], api_name="/ask")
    assert "Traceback" not in chat_texts(chat)[-1] and len(chat_texts(chat)[-1]) > 20
