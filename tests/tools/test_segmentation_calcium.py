""""Show the calcium in the LAD" draws the lesions the calcium score counts for the LAD, when the label
map (traced from the image) outlines vessels but no calcium."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.assistant.tools.calcium_score import calcium_score_tool
from cardiovlm.assistant.tools.segment_anatomy import segment_anatomy_tool
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext

PLAD = SEGMENTS_BY_CODE["pLAD"].label_id
PRCA = SEGMENTS_BY_CODE["pRCA"].label_id
PIXEL = 0.5


@pytest.fixture
def ctx(tmp_path):
    """A 3 mm calcium-scoring series with calcium beside the pLAD (420 HU) and the pRCA (250 HU), and a
    CCTA grid of 1 mm slices whose label map has the two vessels and no calcium label."""
    cac_hu = np.full((48, 40, 6), 40, np.int16)  # soft tissue: a non-contrast series
    cac_hu[12:16, 15:19, 2] = 420
    cac_hu[32:36, 10:14, 3] = 250
    cac = Study(hu=cac_hu, spacing=(PIXEL, PIXEL, 3.0), affine=np.diag([PIXEL, PIXEL, 3.0, 1.0]))
    # the CCTA's 1 mm slices centred on the 3 mm slabs: slab k holds slices 3k-1 .. 3k+1
    affine = np.diag([PIXEL, PIXEL, 1.0, 1.0])
    affine[2, 3] = -1.0
    labels = np.zeros((48, 40, 18), np.uint8)
    labels[10:12, 5:35] = PLAD
    labels[30:32, 5:35] = PRCA
    ccta = Study(hu=np.full(labels.shape, 40, np.int16), spacing=(PIXEL, PIXEL, 1.0), affine=affine)
    return StudyContext(study=ccta, cac=cac, labels=labels, labels_source="image-derived coronary tree",
                        output_dir=tmp_path)


# Where each lesion lies on the CCTA grid: its 4 x 4 pixels on the three 1 mm slices of its 3 mm slab.
BOXES = {"LAD": np.s_[12:16, 15:19, 6:9], "RCA": np.s_[32:36, 10:14, 9:12]}


@pytest.mark.parametrize("artery", ["LAD", "RCA"])
def test_the_calcium_shown_is_the_calcium_counted(ctx, artery):
    config = ctx.as_config()
    score = calcium_score_tool.invoke({"artery": artery}, config=config)
    shown = segment_anatomy_tool.invoke({"target": "calcification", "on_artery": artery}, config=config)
    assert score["per_artery"][artery]["volume_mm3"] > 0
    assert shown["present"] and shown["volume_mm3"] == pytest.approx(score["per_artery"][artery]["volume_mm3"])
    assert "calcium score" in shown["labels_source"]
    expected = np.zeros(ctx.study.shape, bool)
    expected[BOXES[artery]] = True
    assert np.array_equal(ctx.extra_masks[f"calcified_plaque_{artery}"], expected)


def test_an_artery_without_calcium_shows_none(ctx):
    shown = segment_anatomy_tool.invoke({"target": "calcification", "on_artery": "LCx"}, config=ctx.as_config())
    assert not shown["present"] and shown["voxels"] == 0
