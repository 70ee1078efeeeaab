"""The app in a real browser (Debian's chromium driven by Playwright), as a clinician uses it.

Chromium comes from Debian's package, installed beforehand by scripts/install_test_services.sh (the
README's test command runs it); the tests never install anything and Playwright never downloads a
browser. Screenshots are saved under test-artifacts/ for review.
"""

import re
from pathlib import Path

import pytest

from tests.loopback import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Without these flags Chromium keeps trying to reach the network, which this machine refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _ensure_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium is not installed ({CHROMIUM} missing): run "
                    "`bash scripts/install_test_services.sh` first (the README's test command does)")



@pytest.fixture(scope="module")
def browser():
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:  # one Playwright per module: a second one cannot start beside it
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(browser):
    from cardiovlm.ui.server import launch

    app, url = launch("127.0.0.1", free_port(), block=False)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    # Gradio pages never reach network idle: wait for load, then for elements.
    page.goto(url, wait_until="load")
    page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
    yield page
    page.close()
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
    page.get_by_role("button", name="Upload a study").click()  # the upload box is in a closed accordion
    page.locator("#upload input[type=file]").set_input_files(str(bad))
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


def test_login_page_then_the_app(browser, tmp_path):
    from cardiovlm.ui.server import launch

    users = tmp_path / "users.txt"
    users.write_text("alice:alice-pw\n")
    app, url = launch("127.0.0.1", free_port(), users_file=str(users), block=False)
    page = browser.new_page()
    try:
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
    finally:
        page.close()
        app.close()


def test_viewer_files_are_served_only_to_the_login_that_loaded_them(browser, tmp_path):
    from cardiovlm.ui.server import launch

    users = tmp_path / "users.txt"
    users.write_text("alice:alice-pw\nbob:bob-pw\n")
    app, url = launch("127.0.0.1", free_port(), users_file=str(users), block=False)
    contexts = []

    def login(user):
        contexts.append(browser.new_context())
        page = contexts[-1].new_page()
        page.goto(url, wait_until="load")
        page.get_by_label("username").fill(user)
        page.get_by_label("password").fill(f"{user}-pw")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
        return page

    try:
        alice = login("alice")
        alice.get_by_label("Demo case").click()
        alice.get_by_role("option", name="healthy").click()
        alice.get_by_role("button", name="Load demo case").click()
        canvas = alice.locator("#niivue-viewer canvas[data-loaded]")
        canvas.wait_for(timeout=120_000)
        volume = canvas.get_attribute("data-volume")
        fetch = "async (u) => (await fetch(u)).status"
        assert alice.evaluate(fetch, volume) == 200
        bob = login("bob")
        assert bob.evaluate(fetch, volume) == 403
    finally:
        for context in contexts:
            context.close()
        app.close()
