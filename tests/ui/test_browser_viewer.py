"""The interactive NiiVue viewer in a real browser (Debian's chromium via Playwright) at 1280x720.

The canvas is WebGL (SwiftShader when there is no GPU); its pixels are read from screenshots, as
the reader sees them. Screenshots are saved under test-artifacts/ for review.
"""

import io
import re

import numpy as np
import pytest

from tests.loopback import free_port
from tests.ui.test_browser import ARTIFACTS, CHROMIUM, FLAGS, _ensure_chromium

pytestmark = pytest.mark.browser


def _canvas(page, mode: str = "L") -> np.ndarray:
    from PIL import Image

    png = page.locator("#niivue-viewer canvas").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert(mode), dtype=np.int16)[3:-3, 3:-3]  # without the border


@pytest.fixture(scope="module")
def viewer_page():
    _ensure_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    from cardiovlm.ui.server import launch

    app, url = launch("127.0.0.1", free_port(), block=False)
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            page.goto(url, wait_until="load")
            page.get_by_text("not for clinical use").first.wait_for(timeout=60_000)
            yield page
            browser.close()
    finally:
        app.close()


def test_the_viewer_draws_the_ct_scrolls_windows_and_reads_hu(viewer_page):
    page = viewer_page
    blank = _canvas(page)
    page.get_by_label("Demo case").click()
    page.get_by_role("option", name="lad_stenosis").click()
    page.get_by_role("button", name="Load demo case").click()
    page.locator("#niivue-viewer canvas[data-loaded]").wait_for(timeout=120_000)
    page.wait_for_timeout(500)
    readout = page.locator("#niivue-viewer .cv-readout")
    # The readout is the study's own HU at the study's own [i, j, k] (NiiVue indexes RAS internally).
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.tools.ingest.study import load_study

    hu = load_study(get_settings().demo_cases_dir / "lad_stenosis").hu
    i, j, k = map(int, readout.get_attribute("data-voxel").split(","))
    assert readout.inner_text() == f"HU {int(hu[i, j, k])} · voxel {i}, {j}, {k}"
    assert abs(i - hu.shape[0] / 2) <= 1 and abs(k - hu.shape[2] / 2) <= 1  # opens at the centre
    shown = _canvas(page)
    assert blank.std() < 2 and shown.std() > 10  # the CT is drawn: many grey levels, not a flat canvas
    page.screenshot(path=str(ARTIFACTS / "viewer_1280x720.png"))
    # Image, controls and the chat's question box on one 1280x720 screen.
    for selector in ("#niivue-viewer canvas", "#niivue-viewer .cv-readout", "#question textarea", "#ask"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["y"] + box["height"] <= 720, (selector, box)

    # The wheel over the axial tile (bottom left of NiiVue's multiplanar layout) moves to another axial slice.
    box = page.locator("#niivue-viewer canvas").bounding_box()
    before = readout.get_attribute("data-voxel")
    page.mouse.move(box["x"] + box["width"] * 0.33, box["y"] + box["height"] * 0.7)
    for _ in range(5):
        page.mouse.wheel(0, 120)
        page.wait_for_timeout(100)
    after = readout.get_attribute("data-voxel")
    assert after.split(",")[2] != before.split(",")[2], (before, after)  # another axial slice (k)
    scrolled = _canvas(page)
    assert not np.array_equal(shown, scrolled)

    # The lung preset widens the window: the same slices in other grey levels.
    page.locator("#niivue-viewer [data-preset=lung]").click()
    page.wait_for_timeout(300)
    lung = _canvas(page)
    assert np.abs(lung - scrolled).mean() > 2
    # A right-button drag sets window/level by hand.
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.25)
    page.mouse.down(button="right")
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4, steps=5)
    page.mouse.up(button="right")
    page.wait_for_timeout(300)
    assert np.abs(_canvas(page) - lung).mean() > 2
    # Zoom in: the picture is enlarged.
    before_zoom = _canvas(page)
    page.locator("#niivue-viewer [data-zoom='1.25']").click()
    page.wait_for_timeout(300)
    zoomed = _canvas(page)
    assert np.abs(zoomed - before_zoom).mean() > 2
    # The 3D box adds a volume rendering in the empty fourth tile (bottom right).
    page.locator("#niivue-viewer .cv-3d").check()
    page.wait_for_timeout(800)
    rendered = _canvas(page)
    h, w = rendered.shape
    assert zoomed[h // 2:, w // 2:].std() < 2 and rendered[h // 2:, w // 2:].std() > 10
    page.locator("#niivue-viewer .cv-3d").uncheck()


def test_an_answer_mask_is_drawn_in_its_registry_colour(viewer_page):
    from cardiovlm.tools.core.anatomy import mask_color

    page = viewer_page
    page.locator("#niivue-viewer [data-preset=cardiac]").click()
    page.locator("#question textarea").fill("Segment the LAD")
    page.locator("#ask").click()
    page.locator("#niivue-viewer canvas[data-overlays='1']").wait_for(timeout=180_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(ARTIFACTS / "viewer_lad_mask_1280x720.png"))
    # The crosshair moved into the mask, and the readout says so.
    assert " · in LAD" in page.locator("#niivue-viewer .cv-readout").inner_text()
    rgb = _canvas(page, "RGB")
    r, g, b = mask_color("LAD")  # orange: red well above blue, unlike grey CT or the green crosshair
    assert r - b > 150
    tinted = (rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > rgb[..., 1] + 30)
    assert tinted.sum() > 50, tinted.sum()


def _tinted(page) -> int:
    """Canvas pixels drawn in the LAD's orange: red well above blue and green (grey CT and the green
    crosshair are not)."""
    rgb = _canvas(page, "RGB")
    return int(((rgb[..., 0] - rgb[..., 2] > 60) & (rgb[..., 0] > rgb[..., 1] + 30)).sum())


def test_an_answer_mask_stands_out_enlarged_and_opaque(viewer_page):
    """After "Segment the LAD" the mask opens enlarged around it and nearly opaque; at the earlier
    view (whole volume, 0.6 opacity) the same mask covered a few dozen pixels."""
    page = viewer_page
    page.locator("#niivue-viewer canvas[data-overlays='1']").wait_for(timeout=180_000)
    page.wait_for_timeout(300)
    shown = _tinted(page)
    assert page.locator("#niivue-viewer .cv-opacity").input_value() == "0.9"
    page.locator("#niivue-viewer [data-zoom='0']").click()  # the unzoomed view, at the earlier opacity
    page.locator("#niivue-viewer .cv-opacity").fill("0.6")
    page.wait_for_timeout(300)
    before = _tinted(page)
    print(f"LAD mask pixels: {shown} as opened, {before} unzoomed at opacity 0.6")
    assert shown >= 3 * before, (shown, before)
    page.locator("#niivue-viewer .cv-opacity").fill("0.9")


def test_a_landmark_answer_moves_the_crosshair_to_the_landmark(viewer_page):
    page = viewer_page
    readout = page.locator("#niivue-viewer .cv-readout")
    before = readout.get_attribute("data-voxel")
    # This answer's point, not one an earlier answer of the module left on the page: the n-th of its kind.
    earlier = page.get_by_text("(patient LPS)").count()
    page.locator("#question textarea").fill("Where does the LAD lesion start?")
    page.locator("#ask").click()
    answer = page.get_by_text("(patient LPS)").nth(earlier)
    answer.wait_for(timeout=180_000)
    from cardiovlm.tools.core.settings import get_settings
    from cardiovlm.tools.ingest.study import load_study

    said = re.search(r"at (-?[\d.]+, -?[\d.]+, -?[\d.]+) mm \(patient LPS\)", answer.inner_text())
    xyz = [float(v) for v in said.group(1).split(",")]
    study = load_study(get_settings().demo_cases_dir / "lad_stenosis")
    expected = ",".join(str(int(v)) for v in np.rint(study.mm_to_index(np.array(xyz))[0]))
    page.wait_for_function(
        "(voxel) => { const c = document.querySelector('#niivue-viewer canvas');"
        " const r = document.querySelector('#niivue-viewer .cv-readout');"
        " return c.dataset.focus === voxel && r.dataset.voxel === voxel; }", arg=expected, timeout=60_000)
    assert expected != before
    page.screenshot(path=str(ARTIFACTS / "viewer_landmark_1280x720.png"))
