"""Masks by anatomy name and the segment_anatomy tool."""

import nibabel as nib
import numpy as np
import pytest

from cardiovlm.assistant.tools.segment_anatomy import segment_anatomy_tool
from cardiovlm.tools.core.anatomy import SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext
from cardiovlm.tools.segmentation.masks import label_ids_for, mask_from_labels

PLAD = SEGMENTS_BY_CODE["pLAD"].label_id
PRCA = SEGMENTS_BY_CODE["pRCA"].label_id
CALCIUM = STRUCTURES_BY_NAME["calcified_plaque"].label_id


@pytest.fixture
def context(tmp_path):
    labels = np.zeros((40, 30, 20), np.uint8)
    labels[5:10, 5:10, 5:15] = PLAD
    labels[10:12, 6:8, 8:10] = CALCIUM  # touches the pLAD lumen
    labels[30:35, 20:25, 5:15] = PRCA
    labels[20, 15, 2] = CALCIUM  # far from any coronary
    affine = np.diag([0.5, 0.5, 1.0, 1.0])
    affine[:3, 3] = (-10.0, 20.0, 5.0)
    study = Study(hu=np.zeros(labels.shape, np.int16), spacing=(0.5, 0.5, 1.0), affine=affine)
    return StudyContext(study=study, labels=labels, labels_source="supplied label map", output_dir=tmp_path)


def test_an_artery_is_the_union_of_its_segments():
    lad = label_ids_for("left anterior descending")
    assert PLAD in lad and SEGMENTS_BY_CODE["D1"].label_id in lad and PRCA not in lad


def test_calcium_near_an_artery_excludes_calcium_elsewhere(context):
    mask = mask_from_labels(context.labels, [CALCIUM], spacing=context.study.spacing, near_segments=["LAD"])
    assert mask.sum() == 8 and not mask[20, 15, 2]


def test_tool_writes_a_mask_file_on_the_study_grid(context):
    out = segment_anatomy_tool.invoke({"target": "proximal LAD"}, config=context.as_config())
    assert out["present"] and out["voxels"] == 250 and out["volume_mm3"] == 62.5
    image = nib.load(out["mask_path"])
    assert image.shape == context.labels.shape
    # NIfTI stores RAS: the first two axes of the LPS affine are negated.
    assert np.allclose(image.affine, np.diag([-1, -1, 1, 1]) @ context.study.affine)
    assert np.array_equal(np.asarray(image.dataobj) > 0, context.labels == PLAD)


def test_absent_finding_is_reported_absent(context):
    out = segment_anatomy_tool.invoke({"target": "stent", "on_artery": "RCA"}, config=context.as_config())
    assert out == {**out, "present": False, "voxels": 0, "mask_path": None}


def test_without_label_map_the_tool_says_why(context):
    context.labels = None
    with pytest.raises(ValueError, match="no label map was supplied"):
        segment_anatomy_tool.invoke({"target": "LAD"}, config=context.as_config())


def test_unknown_anatomy_is_refused(context):
    with pytest.raises(ValueError, match="not an anatomy name"):
        segment_anatomy_tool.invoke({"target": "spleen"}, config=context.as_config())
