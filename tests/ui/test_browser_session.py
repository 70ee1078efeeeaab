"""The app's session, progress, vessel view and prior reports in a real browser (Debian's chromium) at 1280x720.

One page goes through a reading as a clinician does: load the stenosis demo (the status line names the
stage and counts seconds), ask about the stenosis (the vessel view takes the viewer's place; picture,
controls and answer on one screen), look for similar prior reports (cited sentences marked, a
report's markup inert), clear the chat, reload the page. Screenshots go to test-artifacts/ and, when
it exists, /work/notes/screens/.
"""

from __future__ import annotations

import re
import time
from datetime import date
from pathlib import Path

import pytest

from cardiovlm.tools.core.settings import get_settings
from tests.loopback import free_port
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, FLAGS, _ensure_chromium

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not (get_settings().demo_cases_dir / "lad_stenosis" / "case.json").is_file(),
    reason="the lad_stenosis demo case is not bundled")]
SCREENS = [ARTIFACTS, Path("/work/notes/screens")]
W, H = 1280, 720
HOSTILE = '<img src="http://evil.example/report.png"> [link](http://evil.example/l)'


def _shot(page, name: str) -> None:
    for folder in SCREENS:
        if folder.is_dir() or folder == ARTIFACTS:
            folder.mkdir(exist_ok=True)
            page.screenshot(path=str(folder / name))


def _on_screen(page, selector: str) -> None:
    box = page.locator(selector).last.bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0, (selector, box)
    assert box["x"] + box["width"] <= W and box["y"] + box["height"] <= H, (selector, box)


def _statuses(page, until: str, timeout_s: float) -> list[str]:
    """The status line's texts, read every 0.3 s until one contains ``until``."""
    seen, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = page.locator("#status").inner_text()
        if not seen or seen[-1] != text:
            seen.append(text)
        if until in text:
            return seen
        page.wait_for_timeout(300)
    raise AssertionError(f"the status never said {until!r}: {seen}")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from cardiovlm.tools.reports import api as rs
    from cardiovlm.ui.server import launch

    # A report store of other patients' reports (one with markup in it) for the prior reports panel.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARDIOVLM_REPORTS_DIR", str(tmp_path_factory.mktemp("reports")))
        get_settings.cache_clear()
        rs._default_store.cache_clear()
        rs._default_store().ingest([
            rs.ReportRecord(report_id="prior-7", patient_hash="patient-b", study_date=date(2022, 3, 4),
                            text=f"Indication: chest pain. Severe stenosis of the proximal LAD. {HOSTILE}"),
            rs.ReportRecord(report_id="prior-8", patient_hash="patient-c", study_date=date(2021, 1, 5),
                            text="Mild plaque in the mid RCA. No LAD stenosis."),
        ])
        app, url = launch("127.0.0.1", free_port(), block=False)
        try:
            with sync_api.sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
                page = browser.new_page(viewport={"width": W, "height": H})
                page.fetched = []
                page.on("request", lambda r: page.fetched.append(r.url) if "evil.example" in r.url else None)
                page.goto(url, wait_until="load")
                page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
                yield page
                browser.close()
        finally:
            app.close()
            rs._default_store.cache_clear()
    get_settings.cache_clear()


def test_a_reading_at_1280x720(page):
    # Load: the status line names the stage and counts the seconds, then says how long it took.
    page.get_by_label("Demo case").click()
    page.get_by_role("option", name="lad_stenosis").click()
    page.get_by_role("button", name="Load demo case").click()
    page.locator("#status").get_by_text("Working: loading the study").wait_for(timeout=30_000)
    _shot(page, "loading_progress_1280x720.png")
    seen = _statuses(page, "loaded in", 120)
    assert any(re.fullmatch(r"Working: loading the study.* · \d+ s", s) for s in seen), seen
    assert re.match(r"✓ loaded in \d+ s", seen[-1]), seen
    page.locator("#niivue-viewer canvas[data-loaded]").wait_for(timeout=60_000)

    # A stenosis answer: its stages on the status line, then the vessel view in the viewer's place.
    page.locator("#question textarea").fill("How severe is the stenosis in the proximal LAD?")
    page.locator("#ask").click()
    seen = _statuses(page, "vessel view drawn", 180)
    assert any(s.startswith("Working: measuring the lesion") for s in seen) or any(
        "measuring the lesion" in s for s in seen), seen
    page.locator("#vessel-view img").wait_for(timeout=10_000)
    page.wait_for_timeout(500)
    for selector in ("#vessel-view img", "#question textarea", "#ask", "#clear", "#status",
                     "#chat .message-row"):  # the picture, the controls and the latest answer together
        _on_screen(page, selector)
    assert "pLAD" in page.locator("#chat .message-row").last.inner_text()
    assert "pLAD" in page.locator("#vessel-caption").inner_text()
    _shot(page, "stenosis_answer_vessel_view_1280x720.png")
    names = page.locator("#downloads").inner_text().replace("\n", "")  # each name is shown as stem, suffix
    assert "lad_stenosis_answer01_measure_lesion.json" in names and "vessel_view.png" in names, names

    # Nothing of it is kept in the browser's run history.
    keys = page.evaluate("() => Object.keys(localStorage).filter(k => k.includes('run-history'))")
    stored = page.evaluate("(ks) => ks.map(k => localStorage.getItem(k)).join('')", keys)
    assert "lad_stenosis" not in stored and "pLAD" not in stored and "data:image" not in stored
    assert page.evaluate("async () => (await fetch('gradio_api/runs')).status") == 404

    # Prior reports: the panel lists what was retrieved, the cited sentence marked, report markup inert.
    page.locator("#question textarea").fill("Find similar cases from other patients with proximal LAD stenosis")
    page.locator("#ask").click()
    _statuses(page, "answered in", 120)
    panel = page.locator("#prior-reports")
    panel.get_by_text("prior-7").first.wait_for(timeout=10_000)  # its tab comes to the front by itself
    assert panel.locator("mark").count() >= 1 and "stenosis" in panel.locator("mark").first.inner_text().lower()
    assert "<img" in panel.inner_text()  # the report's markup is shown as the text it is
    assert panel.locator("img").count() == 0 and panel.locator("a").count() == 0 and page.fetched == []
    panel.scroll_into_view_if_needed()
    _shot(page, "prior_reports_1280x720.png")
    page.mouse.wheel(0, -2000)

    # Clear: the chat, the panels and the vessel view go; the study stays.
    page.locator("#clear").click()
    page.locator("#status").get_by_text("Conversation cleared").wait_for(timeout=10_000)
    assert page.locator("#chat .message-row").count() == 0
    assert "No prior reports" in panel.inner_text()
    page.locator("#niivue-viewer canvas").wait_for(state="visible", timeout=10_000)  # the viewer is back in front

    # Reload: a new session, and the page says so plainly.
    page.reload(wait_until="load")
    page.locator("#study-summary").get_by_text("New session").wait_for(timeout=60_000)
    assert "lad_stenosis, 2 questions" in page.locator("#study-summary").inner_text()
    _shot(page, "reload_new_session_1280x720.png")


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    """A scanner's export of one examination: localizer, calcium-scoring series and CCTA in one zip."""
    import numpy as np

    from tests.tools.series_data import write_exam, zip_folder

    root = tmp_path_factory.mktemp("exam")
    rng = np.random.default_rng(2)
    write_exam(root / "files", rng.integers(-100, 500, (24, 20, 30)).astype(np.int16), np.eye(4),
               rng.integers(-100, 300, (24, 20, 10)).astype(np.int16), np.diag([1.0, 1.0, 3.0, 1.0]),
               patient={"PatientAge": "061Y", "PatientSex": "M"})
    return zip_folder(root / "files", root / "exam.zip")


def test_an_examination_upload_its_series_and_an_edited_clinical_value_in_the_risk_answer(page, exam):
    # Runs on the page the reading above reloaded: a new session.
    page.get_by_role("button", name="Upload a study").click()
    page.locator("#upload input[type=file]").set_input_files(str(exam))
    # several series: the panel opens by itself, so the user sees the pick before loading
    page.locator("#series-message").get_by_text("3 series found").wait_for(timeout=60_000)
    page.get_by_role("button", name="Load upload").click()
    _statuses(page, "loaded in", 60)
    table = page.locator("#series-table")
    page.wait_for_function("() => document.querySelector('#series-table [data-testid=\"cell-2-6\"]')"
                           "?.innerText.trim() === 'CCTA'", timeout=30_000)
    assert table.get_by_test_id("cell-1-6").first.inner_text().strip() == "calcium scoring"

    # The clinical context comes from the header; an edited value is what the risk answer uses.
    page.get_by_role("button", name="Clinical context").click()
    assert page.locator("#clinical-age input").input_value() == "61"
    question = "What is this patient's risk of a MACE within 1 year?"

    def risk_answer() -> str:
        rows = page.locator("#chat .message-row").count()
        page.locator("#question textarea").fill(question)
        page.locator("#ask").click()
        # this question's answer: two more rows (the question; the tool steps and the answer, grouped)
        page.wait_for_function(
            "(n) => { const r = document.querySelectorAll('#chat .message-row');"
            " return r.length >= n + 2 && r[r.length - 1].innerText.includes('not for clinical use'); }",
            arg=rows, timeout=120_000)
        return page.locator("#chat .message-row").last.inner_text()

    before = risk_answer()
    assert "total cholesterol" in before.split("not known")[1]  # control: the value is missing at first
    page.locator("#clinical-total-cholesterol-mg-dl input").fill("210")
    page.locator("#clinical-save").click()
    page.locator("#clinical-message").get_by_text("Entered by the user:").wait_for(timeout=30_000)
    after = risk_answer()
    missing = after.split("not known")[1].split(".")[0]
    assert "total cholesterol" not in missing and "HDL cholesterol" in missing, after
    page.locator("#series-panel").scroll_into_view_if_needed()
    _shot(page, "series_and_clinical_context_1280x720.png")

    # The chat's own bin icon makes the assistant forget too, like Clear.
    page.locator("#chat").get_by_role("button", name="Clear").click()
    page.locator("#status").get_by_text("Conversation cleared").wait_for(timeout=10_000)
