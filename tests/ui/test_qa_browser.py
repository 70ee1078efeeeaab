"""Wrong files, as a clinician drops them on the app in a real browser (Debian's chromium) at 1280x720.

One launched app and one page for the module: the healthy demo is loaded, then a picture and a text
file named ``.dcm`` are uploaded. Each gets a message saying what the file is not, and the study
loaded before stays loaded (the summary says so).
"""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core.settings import get_settings
from tests.loopback import free_port
from tests.ui.test_browser import CHROMIUM, FLAGS, _ensure_chromium

pytestmark = [pytest.mark.browser, pytest.mark.skipif(
    not (get_settings().demo_cases_dir / "healthy" / "case.json").is_file(),
    reason="the healthy demo case is not bundled")]
W, H = 1280, 720


@pytest.fixture(scope="module")
def page():
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from cardiovlm.ui.server import launch

    app, url = launch("127.0.0.1", free_port(), block=False)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": W, "height": H})
            page.goto(url, wait_until="load")
            page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
            page.get_by_label("Demo case").click()
            page.get_by_role("option", name="healthy").click()
            page.get_by_role("button", name="Load demo case").click()
            page.locator("#status").get_by_text("loaded in").wait_for(timeout=120_000)
            yield page
            browser.close()
    finally:
        app.close()


def _upload(page, path) -> str:
    """Upload one file and load it; the study summary's text once the load has been refused."""
    if not page.locator("#upload").is_visible():
        page.get_by_role("button", name="Upload a study").click()
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.wait_for_timeout(1500)  # the upload and its series preview
    page.get_by_role("button", name="Load upload").click()
    page.wait_for_function("(n) => document.querySelector('#status').innerText.includes('not loaded') && "
                           "document.querySelector('#study-summary').innerText.includes(n)", arg=path.name,
                           timeout=60_000)
    return page.locator("#study-summary").inner_text()


@pytest.mark.parametrize("name", ["scan.png", "notes.dcm"])
def test_a_file_that_is_not_a_ct_study_is_named_as_such(page, tmp_path, name):
    from PIL import Image

    path = tmp_path / name
    if name.endswith(".png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    else:
        path.write_text("a text file, not DICOM\n" * 20)
    summary = _upload(page, path)
    # The file the user chose is named and said not to be a study; never "choose a file first" or "nothing".
    assert summary.startswith(f"⚠️ {name}: not a") and "NIfTI" in summary, summary  # what to upload instead
    assert "choose a file" not in summary and "nothing" not in summary, summary
    assert "the study loaded before stays loaded" in summary, summary
    assert "/tmp" not in page.locator("body").inner_text()
    page.get_by_role("button", name="Upload a study").click()  # folded again for the next upload


@pytest.mark.xfail(strict=False, reason="known gap: under load a later chat update scrolls the chat back to its end "
                   "after the answer was brought to its first line (seen in CI at 9e735e6); the scroll must be "
                   "the chat's last update")
def test_a_long_answer_opens_at_its_first_line(page):
    # The chat scrolls to its end; an answer taller than the chat must still show its verdict, not its method.
    page.locator("#question textarea").fill("Is there any coronary artery disease, and what is the calcium score?")
    page.locator("#ask").click()
    page.locator("#status").get_by_text("answered in").wait_for(timeout=180_000)
    page.wait_for_timeout(2000)  # the answer's panels, then the scroll
    row = page.locator("#chat .message-row").last
    assert "not for clinical use" in row.inner_text()  # the answer itself, not a tool step
    answer, chat = row.bounding_box(), page.locator("#chat").bounding_box()
    if answer["height"] <= chat["height"]:
        pytest.skip("the answer fits the chat: nothing to scroll")
    for _ in range(20):  # on a loaded machine the scroll may come later than the 2 s above
        if chat["y"] <= answer["y"] <= chat["y"] + chat["height"] / 2:
            break
        page.wait_for_timeout(500)
        answer, chat = row.bounding_box(), page.locator("#chat").bounding_box()
    assert chat["y"] <= answer["y"] <= chat["y"] + chat["height"] / 2, (answer, chat)
