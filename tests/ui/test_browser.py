"""The app in a real browser (Debian's chromium driven by Playwright), as a clinician uses it.

Chromium comes from Debian's package (installed here when missing and apt is usable); Playwright
never downloads a browser. Screenshots are saved under test-artifacts/ for review.
"""

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Without these flags Chromium keeps trying to reach the network, which this machine refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _ensure_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("Debian chromium is not installed and apt-get cannot be used here (needs root)")
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True, timeout=600)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=900)
    if done.returncode != 0 or not Path(CHROMIUM).exists():
        pytest.skip(f"could not install Debian chromium: {done.stderr.decode()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def page():
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from ui.server import launch

    app, url = launch("127.0.0.1", _free_port(), block=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        # Gradio pages never reach network idle: wait for load, then for elements.
        page.goto(url, wait_until="load")
        page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
        yield page
        browser.close()
    app.close()


def test_stent_example_on_the_lad_stenosis_case(page):
    page.get_by_label("Demo case").click()
    page.get_by_role("option", name="lad_stenosis").click()
    page.get_by_role("button", name="Load demo case").click()
    page.locator("#study-summary").get_by_text("Modality").wait_for(timeout=120_000)
    page.get_by_role("button", name="Will a 20 mm stent fully cover the proximal LAD lesion?").click()
    # The final answer starts with its verdict; the tool step above it quotes the tool's own message.
    answer = page.locator("#chat").get_by_text(re.compile(r"^(Yes|No)\. A 20 mm stent")).last
    answer.wait_for(timeout=180_000)
    assert answer.inner_text().startswith("Yes. A 20 mm stent covers the pLAD lesion")
    page.locator("#chat img").first.wait_for(timeout=60_000)
    page.locator("#downloads").get_by_text(".html").first.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "stent_answer.png"), full_page=True)


def test_corrupt_zip_upload_shows_a_readable_error(page, tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip at all")
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_role("button", name="Load upload").click()
    message = page.locator("#study-summary").get_by_text("⚠️", exact=False)
    message.wait_for(timeout=60_000)
    assert "Traceback" not in message.inner_text()
    page.screenshot(path=str(ARTIFACTS / "corrupt_upload.png"), full_page=True)


def test_text_that_looks_like_markup_is_shown_as_text(page):
    # Chat text is Markdown: an image, a link or raw HTML in it would make the browser fetch the address.
    fetched = []
    page.on("request", lambda request: fetched.append(request.url) if "evil.example" in request.url else None)
    hostile = ('![scan](http://evil.example/pixel.png) <img src="http://evil.example/i.png"> '
               '[report](http://evil.example/r) www.evil.example/w')
    page.locator("#question textarea").fill(hostile)
    page.locator("#ask").click()
    page.locator("#chat").get_by_text("evil.example/pixel.png", exact=False).first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert page.locator("#chat img[src*='evil.example']").count() == 0
    assert page.locator("#chat a[href*='evil.example']").count() == 0
    assert fetched == []
    page.screenshot(path=str(ARTIFACTS / "inert_markup.png"), full_page=True)


def test_login_page_then_the_app(tmp_path):
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from ui.server import launch

    users = tmp_path / "users.txt"
    users.write_text("alice:alice-pw\n")
    app, url = launch("127.0.0.1", _free_port(), users_file=str(users), block=False)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page()
            page.goto(url, wait_until="load")
            assert "lad_stenosis" not in page.content()  # nothing of the app before login
            page.get_by_label("username").fill("alice")
            page.get_by_label("password").fill("wrong")
            page.get_by_role("button", name="Login").click()
            page.get_by_text("Incorrect", exact=False).first.wait_for(timeout=30_000)
            page.get_by_label("username").fill("alice")  # Gradio's form clears it after a failure
            page.get_by_label("password").fill("alice-pw")
            page.get_by_role("button", name="Login").click()
            page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "after_login.png"), full_page=True)
            browser.close()
    finally:
        app.close()


def _canvas_picture(page):
    """The viewer canvas as the reader sees it (a screenshot: WebGL pixels are not readable from JS)."""
    import io

    import numpy as np
    from PIL import Image

    png = page.locator("#niivue-viewer canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.int16)[3:-3, 3:-3]  # without the border


def test_interactive_viewer_shows_the_ct_scrolls_and_reads_hu(tmp_path):
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from ui.server import launch

    app, url = launch("127.0.0.1", _free_port(), block=False)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            console = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(url, wait_until="load")
            page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
            blank = _canvas_picture(page)
            page.get_by_label("Demo case").click()
            page.get_by_role("option", name="lad_stenosis").click()
            page.get_by_role("button", name="Load demo case").click()
            page.locator("#niivue-viewer canvas[data-loaded]").wait_for(timeout=120_000)
            page.wait_for_timeout(500)
            readout = page.locator("#niivue-viewer .cv-readout")
            assert re.match(r"HU -?\d+ · voxel \d+, \d+, \d+", readout.inner_text()), (readout.inner_text(), console)
            shown = _canvas_picture(page)
            assert blank.std() < 2 and shown.std() > 10  # the CT is drawn: many grey levels, not a flat canvas
            page.screenshot(path=str(ARTIFACTS / "viewer_1280x720.png"))
            # The wheel over the axial tile (top left of the multiplanar layout) moves to another slice.
            box = page.locator("#niivue-viewer canvas").bounding_box()
            before = readout.get_attribute("data-voxel")
            page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.25)
            for _ in range(5):
                page.mouse.wheel(0, 120)
                page.wait_for_timeout(100)
            after = readout.get_attribute("data-voxel")
            assert after != before, (before, after)
            assert not np.array_equal(shown, _canvas_picture(page))
            browser.close()
    finally:
        app.close()
