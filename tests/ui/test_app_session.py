"""One browser session, one login, one study load: what is shown, exported and kept on disk belongs to it."""

from __future__ import annotations

import shutil
import zipfile
from types import SimpleNamespace

import pydicom
import pytest
from markdown_it import MarkdownIt

from cardiovlm.tools.core.settings import get_settings

DEMOS = get_settings().demo_cases_dir
pytestmark = pytest.mark.skipif(not (DEMOS / "healthy" / "case.json").is_file() or
                                not (DEMOS / "lad_stenosis" / "case.json").is_file(),
                                reason="the healthy and lad_stenosis demo cases are not bundled")


@pytest.fixture
def state():
    from cardiovlm.ui.session_state import UiSession

    s = UiSession(owner="alice")
    yield s
    s.close()


def _ask(state, question, user="alice"):
    from cardiovlm.ui.app import _answer

    *_, final = _answer(state, question, [], SimpleNamespace(username=user))
    return final


def _sr_series(path) -> str:
    sr = pydicom.dcmread(path)
    return sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].SeriesInstanceUID


def _written_series(export) -> set[str]:
    return {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in export.reference_written}


def test_after_a_study_switch_exports_reference_the_new_study_and_keep_the_old_files(state):
    from cardiovlm.ui.app import _export_dicom

    alice = SimpleNamespace(username="alice")
    state.session.load_study(DEMOS / "healthy")
    _ask(state, "What is the calcium score?")
    _, status = _export_dicom(state, [], send=False, request=alice)
    assert status.startswith("Saved"), status
    first = state.exported[1]
    first_bytes = first.sr.read_bytes()
    state.session.load_study(DEMOS / "lad_stenosis")
    _, status = _export_dicom(state, [], send=False, request=alice)  # the healthy study's answer is not exported
    assert "previous study" in status and state.exported[1] is first
    _ask(state, "What is the calcium score?")
    _, status = _export_dicom(state, [], send=False, request=alice)
    second = state.exported[1]
    assert second is not first and second.sr != first.sr
    assert _sr_series(second.sr) in _written_series(second) and _written_series(second) != _written_series(first)
    assert first.sr.read_bytes() == first_bytes  # the first study's files are untouched


def test_a_study_switch_during_a_question_drops_its_answer(state):
    from cardiovlm.ui.app import _answer

    state.session.load_study(DEMOS / "healthy")
    stream = _answer(state, "What is the calcium score?", [], SimpleNamespace(username="alice"))
    next(stream), next(stream)  # the question is shown, the planner has chosen its tool
    state.session.load_study(DEMOS / "lad_stenosis")  # the clinician loads another study meanwhile
    *_, final = stream
    last = final[1][-1].content
    assert "answer was dropped" in last and state.answer is None


def test_another_login_cannot_use_the_session(state):
    from cardiovlm.ui.app import _export_dicom, _render

    state.session.load_study(DEMOS / "healthy")
    bob = SimpleNamespace(username="bob")
    assert _render(state, "axial", 10, "cardiac", [], bob) is None
    assert _render(state, "axial", 10, "cardiac", [], SimpleNamespace(username="alice")) is not None
    final = _ask(state, "What is the calcium score?", user="bob")
    assert "belongs to another login" in final[1][-1].content and state.session.history == []
    assert "another login" in _export_dicom(state, [], send=False, request=bob)[1]


def test_quoted_report_text_is_inert(state):
    from cardiovlm.tools.core.answer import Citation, GroundedAnswer
    from cardiovlm.ui.app import _show_answer

    state.session.load_study(DEMOS / "healthy")
    hostile = ('Prior CT. ![scan](http://evil.example/pixel.png) <img src="http://evil.example/i.png"> '
               '<a href="http://evil.example">click</a> [more](http://evil.example/x) <script>alert(1)</script>')
    answer = GroundedAnswer(question="prior reports?", answer=f'The prior report says: "{hostile}"',
                            citations=[Citation(report_id="r1", date="2023-01-02", snippet=hostile)])
    history, *_ = _show_answer(state, [], answer, state.session.load_id)
    html = MarkdownIt("commonmark", {"html": True}).render(history[-1].content)
    assert "<img" not in html and "<a " not in html and "<script" not in html
    assert html.count("![scan](http://evil.example/pixel.png)") == 2  # shown as the text it is: answer, citation


def _dicom_zip(folder, context):
    from cardiovlm.tools.dicom.dicom_write import write_ct_series

    files = write_ct_series(context.study.hu, context.study.affine, folder / "ct", series_description="CCTA",
                            uid_seed="site", patient_id="MRN-4711", patient_name="Doe^Jane")
    archive = folder / "cache" / "0a1b2c" / "patient.zip"  # as Gradio keeps an upload: a folder of its own
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f.name)
    original = pydicom.dcmread(files[0], stop_before_pixels=True)
    shutil.rmtree(folder / "ct")
    return archive, original


def test_an_upload_is_deleted_once_ingested_and_exports_under_its_own_identifiers(state, tmp_path):
    from cardiovlm.tools.core.answer import AnswerFinding, GroundedAnswer
    from cardiovlm.ui.app import _export_dicom, _load_upload
    from tests.assistant.conftest import make_patient_context

    archive, original = _dicom_zip(tmp_path, make_patient_context())
    ctx = _load_upload(state, [str(archive)], max_upload_mb=100)
    assert not archive.exists() and not archive.parent.exists()  # Gradio's cached original is gone
    assert not (state.folder / "upload").exists()
    assert ctx.study.metadata["study_uid"] == original.StudyInstanceUID
    state.answer = GroundedAnswer(question="q", answer="a", findings=[
        AnswerFinding(name="Agatston score", value=0.0, unit="AU", tool="calcium_score")])
    state.answer_load = state.session.load_id
    _, status = _export_dicom(state, [], send=False, request=SimpleNamespace(username="alice"))
    sr = pydicom.dcmread(state.exported[1].sr)
    assert (sr.PatientID, sr.StudyInstanceUID) == ("MRN-4711", original.StudyInstanceUID), status
    assert state.exported[1].reference_written == []


def test_a_failed_upload_is_deleted_too(state, tmp_path):
    from cardiovlm.tools.ingest.study_errors import StudyError
    from cardiovlm.ui.app import _load_upload

    bad = tmp_path / "cache" / "ff00" / "broken.zip"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(StudyError):
        _load_upload(state, [str(bad)], max_upload_mb=100)
    assert not bad.exists() and not (state.folder / "upload").exists()
