"""Tool errors carry a code of their own (never the catch-all ``study.error``), and routing follows it."""

import dataclasses

import numpy as np
import pytest

from cardiovlm.assistant.tool_errors import read_tool_error, tool_error_text
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext


@pytest.fixture
def context(tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    study = Study(hu=np.zeros((20, 20, 20), np.int16), spacing=(1.0, 1.0, 1.0), affine=affine)
    return StudyContext(study=study, labels=None, output_dir=tmp_path)


def _tag(err: BaseException):
    return read_tool_error(tool_error_text(err).removeprefix("error: "))


def test_no_label_map_has_its_code_and_sends_the_question_to_the_vlm(context):
    from cardiovlm.assistant.tools.segment_anatomy import NoSegmentationAvailable, segment_anatomy_tool

    with pytest.raises(NoSegmentationAvailable) as err:
        segment_anatomy_tool.invoke({"target": "LAD"}, config=context.as_config())
    info = _tag(err.value)
    assert (info.code, info.no_label_map) == ("segmentation.unavailable", True)
    assert "no label map was supplied" in info.message and "[code:" not in info.message


def test_routing_reads_the_code_not_the_class_name():
    from cardiovlm.assistant.tools.segment_anatomy import NoSegmentationAvailable

    class MasksFromNowhere(NoSegmentationAvailable):  # another name, the same meaning: routed the same way
        pass

    assert _tag(MasksFromNowhere("no label map")).no_label_map
    # A class that merely shares the name but carries another code is not a missing label map.
    impostor = type("NoSegmentationAvailable", (StudyError,), {"code": "study.other"})
    assert not _tag(impostor("the LAD is absent")).no_label_map
    assert not _tag(StudyError("no segmentation of this kind")).no_label_map  # the words alone do nothing


def test_totalsegmentator_refusals_say_which(context):
    from cardiovlm.assistant.tools.totalseg import TotalSegmentatorError, totalsegmentator_tool

    mr = dataclasses.replace(context, study=dataclasses.replace(context.study, modality="MR", hu_calibrated=False))
    with pytest.raises(TotalSegmentatorError, match="needs CT") as not_ct:
        totalsegmentator_tool.invoke({"target": "aorta"}, config=mr.as_config())
    with pytest.raises(TotalSegmentatorError, match="does not label 'LAD'") as coronary:
        totalsegmentator_tool.invoke({"target": "LAD"}, config=context.as_config())
    assert _tag(not_ct.value).code == "totalsegmentator.not_ct"
    assert _tag(coronary.value).code == "totalsegmentator.target_unsupported"
    assert not _tag(coronary.value).no_label_map


def test_vlm_refusals_carry_their_own_codes(tmp_path):
    from cardiovlm.assistant.tools.vlm import VLMAnswerWithheld, VLMBelowBar, VLMUnavailable, load_vlm

    with pytest.raises(VLMUnavailable, match="no trained VLM checkpoint is installed") as missing:
        load_vlm(tmp_path / "no_checkpoint_here")
    assert _tag(missing.value).code == "vlm.unavailable"
    codes = {cls.code for cls in (VLMUnavailable, VLMBelowBar, VLMAnswerWithheld)}
    assert codes == {"vlm.unavailable", "vlm.below_dice_bar", "vlm.answer_withheld"}


def test_every_tool_error_class_has_a_specific_code():
    from cardiovlm.assistant.tools.segment_anatomy import NoSegmentationAvailable
    from cardiovlm.assistant.tools.totalseg import TotalSegmentatorNotCT, TotalSegmentatorTargetUnsupported
    from cardiovlm.assistant.tools.vlm import VLMAnswerWithheld, VLMBelowBar, VLMUnavailable

    classes = [NoSegmentationAvailable, TotalSegmentatorNotCT, TotalSegmentatorTargetUnsupported, VLMUnavailable,
               VLMBelowBar, VLMAnswerWithheld]
    codes = [cls.code for cls in classes]
    assert StudyError.code not in codes and len(set(codes)) == len(codes)


def test_totalsegmentator_weights_are_looked_for_where_it_looks(tmp_path, monkeypatch):
    from cardiovlm.tools.segmentation.totalseg import weights_dir, weights_installed

    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / "nnunet" / "results" and not weights_installed()
    (tmp_path / "weights" / "Dataset291").mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))
    assert weights_dir() == tmp_path / "weights" and weights_installed()
