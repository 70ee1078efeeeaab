"""The series picker and the clinical context panel in a real browser (Debian's chromium via Playwright).

The two panels are mounted in a small Gradio page wired as the docstrings of ``cardiovlm.ui.series_panel`` and
``cardiovlm.ui.context_panel`` describe (an upload box, a load button, one session), so they are tested as a
user drives them whatever the main app does around them. A screenshot is saved under test-artifacts/.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.loopback import free_port
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, FLAGS, _ensure_chromium

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    from tests.tools.series_data import write_exam, zip_folder

    root = tmp_path_factory.mktemp("exam")
    rng = np.random.default_rng(2)
    a1, a3 = np.diag([1.0, 1.0, 1.0, 1.0]), np.diag([1.0, 1.0, 3.0, 1.0])
    uids = write_exam(root / "files", rng.integers(-100, 500, (24, 20, 30)).astype(np.int16), a1,
                      rng.integers(-100, 300, (24, 20, 10)).astype(np.int16), a3,
                      patient={"PatientAge": "061Y", "PatientSex": "M"})
    return zip_folder(root / "files", root / "exam.zip"), uids


@pytest.fixture(scope="module")
def page_and_session(tmp_path_factory):
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    import gradio as gr

    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session
    from cardiovlm.ui.context_panel import build_context_panel, context_view, save_context
    from cardiovlm.ui.series_panel import apply_pick, build_series_panel, load_kwargs, preview_upload, series_view

    session = Session(model=ClinicalPlanner(), output_dir=tmp_path_factory.mktemp("out"))

    def load(path, ccta, calcium):
        session.load_study(path, **load_kwargs(ccta, calcium))
        return "Study loaded."

    with gr.Blocks() as demo:
        upload = gr.File(label="Study (zip)", elem_id="upload")
        load_button = gr.Button("Load study", elem_id="load")
        status = gr.Markdown("", elem_id="status")
        series = build_series_panel(open=True)
        clinical = build_context_panel(open=True)
        upload.change(preview_upload, upload, series.outputs)
        load_button.click(load, [upload, series.ccta, series.calcium], status).then(
            lambda: series_view(session), None, series.outputs).then(
            lambda: context_view(session), None, clinical.outputs)
        series.apply.click(lambda c, k: apply_pick(session, c, k), [series.ccta, series.calcium], series.outputs)
        clinical.save.click(lambda *v: save_context(session, *v), clinical.fields, clinical.outputs)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")
            page.locator("#series-table").wait_for(timeout=60_000)
            yield page, session
            browser.close()
    finally:
        demo.close()


def _roles(page) -> list[str]:
    """The table's "loaded as" column (Gradio names each cell cell-<row>-<column>)."""
    table = page.locator("#series-table")
    return [table.get_by_test_id(f"cell-{row}-6").first.inner_text().strip() for row in range(3)]


def test_pick_series_before_loading_then_change_the_pick_and_edit_the_clinical_context(page_and_session, exam):
    page, session = page_and_session
    path, uids = exam
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.wait_for_function("() => document.querySelector('#series-table [data-testid=\"cell-1-2\"]')"
                           "?.innerText.trim() === 'Calcium Score 3.0 mm'", timeout=60_000)
    page.locator("#series-message").get_by_text("3 series found").wait_for(timeout=30_000)
    assert _roles(page) == ["not loaded", "calcium scoring", "CCTA"]
    # the user drops the calcium series before loading
    page.get_by_label("Calcium-scoring series").click()
    page.get_by_role("option", name="none (no calcium-scoring series)").click()
    page.locator("#load").click()
    page.locator("#status").get_by_text("Study loaded.").wait_for(timeout=60_000)
    page.locator("#series-message").get_by_text("none, as picked by the user").wait_for(timeout=30_000)
    assert session.context.cac is None and session.series_pick.ccta == uids["ccta"]
    assert _roles(page) == ["not loaded", "not loaded", "CCTA"]

    # ...and takes it back after loading
    page.get_by_label("Calcium-scoring series").click()
    page.get_by_role("option", name="series 2 · calcium scoring").click()
    page.locator("#series-apply").click()
    page.wait_for_function("() => document.querySelector('#series-table [data-testid=\"cell-1-6\"]')"
                           "?.innerText.trim() === 'calcium scoring'", timeout=60_000)
    assert _roles(page) == ["not loaded", "calcium scoring", "CCTA"]
    assert session.context.cac is not None and session.context.cac.shape == (24, 20, 10)

    # the clinical context shows the header's age and sex; an edit is saved into the session
    assert page.locator("#clinical-age input").input_value() == "61"
    page.locator("#clinical-systolic-bp-mmhg input").fill("152")
    page.locator("#clinical-save").click()
    page.locator("#clinical-message").get_by_text("Entered by the user:").wait_for(timeout=30_000)
    message = page.locator("#clinical-message").inner_text()
    assert "From the DICOM header: age, sex" in message and "Entered by the user: systolic blood pressure" in message
    assert "Missing for the MESA risk score: race, total cholesterol" in message
    assert session.clinical.systolic_bp_mmhg == 152 and session.clinical.sources["age"] == "DICOM header"
    page.screenshot(path=str(ARTIFACTS / "series_and_clinical_panels.png"), full_page=True)
