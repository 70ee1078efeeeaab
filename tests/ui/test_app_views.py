"""The viewer follows the reader: an answer's mask opens in the plane and window being read."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.views.render import best_slice, plane_size

CASE = get_settings().demo_cases_dir / "lad_stenosis"


@pytest.mark.skipif(not (CASE / "case.json").is_file(), reason="the lad_stenosis demo case is not bundled")
def test_an_answer_mask_is_shown_in_the_plane_being_read():
    from cardiovlm.ui.app import _answer, _render
    from cardiovlm.ui.session_state import UiSession

    state = UiSession()
    try:
        state.session.load_study(CASE)
        shape = state.session.context.study.shape
        coronal = _render(state, "coronal", 10, "calcium", [])  # the reader switches plane and window
        assert coronal is not None and (state.plane, state.preset) == ("coronal", "calcium")
        *_, final = _answer(state, "Segment the LAD", [])
        index, viewer = final[6], final[7]  # outputs: state, chat, question, findings, downloads, overlays, ...
        shown = final[5]["value"]
        mask = state.session.context.extra_masks[shown[0]]
        assert index["maximum"] == plane_size(shape, "coronal") - 1
        assert index["value"] == best_slice(mask, "coronal")
        # the coronal slice with the mask drawn, in the calcium window the reader chose
        assert np.array_equal(viewer, _render(state, "coronal", index["value"], "calcium", shown))
    finally:
        state.close()
