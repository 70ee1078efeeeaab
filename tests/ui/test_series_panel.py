"""The series picker: an upload's series listed before loading with the automatic pick preselected,
the loaded study's series and roles after loading, another pick loaded, bad picks as messages."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.tools.ingest.series import NO_SERIES
from cardiovlm.ui.series_panel import COLUMNS, apply_pick, build_series_panel, load_kwargs, preview_upload, series_view
from tests.tools.series_data import write_exam, zip_folder


def _affine(spacing):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = (-12.0, -10.0, 0.0)
    return a


@pytest.fixture
def exam(tmp_path):
    rng = np.random.default_rng(1)
    uids = write_exam(tmp_path / "files", rng.integers(-100, 500, (24, 20, 30)).astype(np.int16),
                      _affine((1.0, 1.0, 1.0)), rng.integers(-100, 300, (24, 20, 10)).astype(np.int16),
                      _affine((1.0, 1.0, 3.0)))
    return tmp_path / "files", zip_folder(tmp_path / "files", tmp_path / "exam.zip"), uids


def test_the_panel_builds_its_components():
    with gr.Blocks():
        panel = build_series_panel()
    assert [c.elem_id for c in panel.outputs] == ["series-table", "series-ccta", "series-calcium", "series-message"]
    assert panel.table.headers == COLUMNS


def test_an_upload_is_listed_before_loading_with_the_automatic_pick(exam):
    folder, path, uids = exam
    rows, ccta, calcium, message = preview_upload(str(path))
    assert [r[:6] for r in rows] == [["1", "localizer", "Topogram 0.6 T20f", 1, "1", "120"],
                                     ["2", "calcium scoring", "Calcium Score 3.0 mm", 10, "3", "120"],
                                     ["3", "CCTA", "CCTA 0.75 mm Bv40", 30, "1", "100"]]
    assert [r[6] for r in rows] == ["not loaded", "calcium scoring", "CCTA"]
    assert ccta["value"] == uids["ccta"] and calcium["value"] == uids["calcium_scoring"]
    assert uids["localizer"] not in [uid for _, uid in ccta["choices"]]  # a localizer is never offered
    assert (NO_SERIES in [uid for _, uid in calcium["choices"]]) and "3 series found" in message
    # loose files (a multi-file upload) are listed the same
    loose = sorted(p for p in folder.rglob("*.dcm"))
    assert len(preview_upload([str(p) for p in loose])[0]) == 3
    assert load_kwargs(ccta["value"], calcium["value"]) == {"ccta_series": uids["ccta"],
                                                           "calcium_series": uids["calcium_scoring"]}
    assert load_kwargs(None, None) == {}


def test_a_bad_upload_is_a_message(tmp_path):
    (tmp_path / "notes.zip").write_bytes(b"not a zip at all")
    rows, _, _, message = preview_upload(str(tmp_path / "notes.zip"))
    assert rows == [] and message.startswith("⚠️") and "Traceback" not in message


def test_after_loading_the_roles_show_and_another_pick_loads(exam, tmp_path):
    _, path, uids = exam
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path / "out")
    assert series_view(session)[3] == "No study is loaded."
    session.load_study(path)
    rows, ccta, calcium, message = series_view(session)
    assert [r[6] for r in rows] == ["not loaded", "calcium scoring", "CCTA"] and "calcium scoring: series 2" in message
    rows, _, calcium, _ = apply_pick(session, uids["ccta"], NO_SERIES)
    assert session.context.cac is None and calcium["value"] == NO_SERIES
    assert [r[6] for r in rows] == ["not loaded", "not loaded", "CCTA"]
    *_, message = apply_pick(session, uids["localizer"], NO_SERIES)
    assert message.startswith("⚠️") and "is a localizer" in message
    assert session.series_pick.ccta == uids["ccta"]  # the refused pick changed nothing
