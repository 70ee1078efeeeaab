"""The interactive viewer's files: the session's CT and masks, in Gradio's served folder, gone with the session."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cardiovlm.tools.core.settings import get_settings

CASE = get_settings().demo_cases_dir / "lad_stenosis"
needs_case = pytest.mark.skipif(not (CASE / "case.json").is_file(), reason="the lad_stenosis demo case is not bundled")


@needs_case
def test_the_viewer_reads_the_loaded_ct_and_the_answer_mask_and_no_answer_shows_a_server_path():
    from cardiovlm.tools.core.anatomy import mask_color
    from cardiovlm.ui.app import _answer, _viewer_value
    from cardiovlm.ui.session_state import UiSession
    from cardiovlm.ui.workdir import gradio_dir

    state = UiSession()
    try:
        state.session.load_study(CASE)
        study = state.session.context.study
        payload = json.loads(_viewer_value(state, []))
        volume = Path(payload["volume"])
        # In Gradio's upload folder (served, and bound to the login by AccessGuard), in a folder of its own.
        assert volume.parent.parent == gradio_dir().resolve() / "viewer"
        assert len(volume.parent.name) >= 32
        img = nib.load(volume)
        assert np.array_equal(np.asarray(img.dataobj), study.hu)  # HU as loaded: the readout is true HU
        assert payload["overlays"] == [] and payload["windows"]["cardiac"] == [-150.0, 450.0]

        *_, final = _answer(state, "Segment the LAD", [])
        shown = final[5]["value"]
        texts = [m.content for m in final[1] if isinstance(m.content, str)]
        roots = [str(Path(get_settings().ui_work_dir)), "/tmp/"]
        assert texts and not any(root.replace("/", "\\/") in t or root in t for t in texts for root in roots)

        payload = json.loads(_viewer_value(state, shown))
        assert payload["volume"] == str(volume)  # the same study: the CT is not written again
        overlay = payload["overlays"][0]
        assert overlay["name"] == shown[0] and overlay["color"] == list(mask_color(shown[0]))
        mask = np.asarray(nib.load(overlay["path"]).dataobj)
        assert np.array_equal(mask > 0, state.session.context.extra_masks[shown[0]] > 0)
    finally:
        state.close()
    assert not volume.exists() and not Path(overlay["path"]).exists()


@needs_case
def test_a_landmark_answer_moves_the_crosshair_to_the_point_it_names():
    from cardiovlm.ui.app import _answer, _viewer_value
    from cardiovlm.ui.session_state import UiSession

    state = UiSession()
    try:
        state.session.load_study(CASE)
        study = state.session.context.study
        list(_answer(state, "How severe is the LAD stenosis?", []))
        # a stenosis answer lists its lesion's points among its findings but names none: no move
        assert json.loads(_viewer_value(state, []))["focus"] is None
        list(_answer(state, "Where does the LAD lesion start?", []))
        text = state.answer.answer
        start = next(f for f in state.answer.findings if f.name.endswith("lesion start (LPS)"))
        assert f"{start.value} mm (patient LPS)" in text
        payload = json.loads(_viewer_value(state, []))
        xyz = np.array([float(v) for v in start.value.split(",")])
        assert payload["focus"] == [int(v) for v in np.rint(study.mm_to_index(xyz)[0])]
        assert payload["landmark"] == start.name.replace(" (LPS)", "")
    finally:
        state.close()


def test_a_point_outside_the_study_moves_nothing():
    from types import SimpleNamespace

    from cardiovlm.tools.core.answer import AnswerFinding
    from cardiovlm.ui.viewer import _voxel_of, answer_point

    study = SimpleNamespace(shape=(10, 10, 10), mm_to_index=lambda xyz: np.asarray(xyz, float).reshape(-1, 3))
    assert _voxel_of(study, (2.2, 3.7, 9.0)) == [2, 4, 9]
    assert _voxel_of(study, (2.0, 3.0, 12.0)) is None
    said = SimpleNamespace(answer="It is at 1, 2, 3 mm (patient LPS).",
                           findings=[AnswerFinding(name="RCA ostium position (VLM)", value="1, 2, 3", unit="mm",
                                                   tool="vlm_locate")])
    assert answer_point(said) == ("RCA ostium", (1.0, 2.0, 3.0))
    said.answer = "A lesion was measured."  # listed among the findings, not named in the text
    assert answer_point(said) is None


def test_nothing_to_show_before_a_study_is_loaded():
    from cardiovlm.ui.app import _viewer_value
    from cardiovlm.ui.session_state import UiSession

    state = UiSession()
    try:
        assert _viewer_value(state, []) == {"__type__": "update"}
    finally:
        state.close()


def test_the_niivue_script_ships_with_its_licence():
    from cardiovlm.ui.viewer import NIIVUE_JS, STATIC_DIR

    assert 500_000 < NIIVUE_JS.stat().st_size < 4_000_000
    assert "BSD 2-Clause" in (STATIC_DIR / "niivue" / "LICENSE").read_text()
    assert "niivue" in NIIVUE_JS.read_text()[:2000]


def test_cardiovlm_demo_prints_no_share_hint(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out.txt"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    with open(out, "w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "cardiovlm.ui.cli", "demo", "--port", str(port)], stdout=sink,
                                stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parents[2])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, out.read_text()
                time.sleep(1)
        else:
            pytest.fail("the demo server did not answer within 120 s")
        time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    printed = out.read_text()
    assert f"http://127.0.0.1:{port}" in printed
    assert "share=True" not in printed and "public link" not in printed.lower()
