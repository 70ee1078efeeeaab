"""The vessel view opens with a stent answer (the browser test shows it for a stenosis answer), and not
with an answer about something else."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from cardiovlm.tools.core.settings import get_settings

CASE = get_settings().demo_cases_dir / "lad_stenosis"
ALICE = SimpleNamespace(username="alice")


@pytest.mark.skipif(not (CASE / "case.json").is_file(), reason="the lad_stenosis demo case is not bundled")
def test_a_stent_answer_opens_its_vessel_view_and_a_calcium_answer_does_not():
    from cardiovlm.ui.app import _answer
    from cardiovlm.ui.panels import show_vessel_view
    from cardiovlm.ui.session_state import UiSession

    state = UiSession(owner="alice")
    try:
        state.session.load_study(CASE)
        *_, final = _answer(state, "Will a 20 mm stent fully cover the proximal LAD lesion?", [], ALICE)
        assert "stent_coverage" in [t.name for t in state.answer.tool_calls]
        *_, (image, caption, tabs, downloads, status) = show_vessel_view(state, final[4], final[8], ALICE)
        assert Path(image).name == "lad_stenosis_pLAD_stent-20mm_vessel_view.png" and Path(image).is_file()
        assert tabs.selected == "vessel" and image in downloads and "stent" in caption
        assert "vessel view drawn in" in status and Path(image).parent.name not in caption  # no server folder
        *_, final = _answer(state, "What is the calcium score?", [], ALICE)
        updates = list(show_vessel_view(state, final[4], final[8], ALICE))
        assert len(updates) == 1 and all(not getattr(u, "selected", None) for u in updates[0])  # nothing opens
    finally:
        state.close()
