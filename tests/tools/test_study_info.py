"""The study_info tool describes the session's study, or says that none is loaded."""

import numpy as np
import pytest

from cardiovlm.assistant.tools.study_info import StudySummary, study_info, study_info_tool
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext


def test_describes_the_loaded_study():
    study = Study(hu=np.zeros((8, 6, 4), np.int16), spacing=(0.5, 0.5, 1.0), affine=np.eye(4), modality="CT",
                  warnings=["slices resampled to an even 1.0 mm grid"])
    out = study_info_tool.invoke({}, config=StudyContext(study=study).as_config())
    assert out["summary"]["shape"] == [8, 6, 4]
    assert out["summary"]["spacing_mm"] == [0.5, 0.5, 1.0]
    assert out["summary"]["warnings"] == ["slices resampled to an even 1.0 mm grid"]
    assert out["labels_source"] is None and not out["has_calcium_scoring_series"]


def test_the_summary_is_typed_and_keeps_the_header_values_apart():
    study = Study(hu=np.zeros((8, 6, 4), np.int16), spacing=(0.5, 0.5, 1.0), affine=np.eye(4), modality="CT",
                  series_choice="series 3 (thinnest)", metadata={"series_description": "CCTA 0.6 mm",
                                                                 "kvp": 100.0, "contrast": True, "bad": [1, 2]})
    summary = study_info(StudyContext(study=study)).summary
    assert isinstance(summary, StudySummary)
    assert (summary.modality, summary.shape, summary.series_choice) == ("CT", [8, 6, 4], "series 3 (thinnest)")
    assert summary.header == {"series_description": "CCTA 0.6 mm", "kvp": 100.0, "contrast": True}


def test_without_a_study_it_says_to_load_one():
    with pytest.raises(ValueError, match="no study is loaded"):
        study_info_tool.invoke({})


def test_values_the_clinician_entered_count_as_clinical_context():
    from cardiovlm.tools.quant.clinical_context import ClinicalContext
    from cardiovlm.tools.quant.risk import CLINICAL_CONFIG_KEY

    study = Study(hu=np.zeros((8, 6, 4), np.int16), spacing=(0.5, 0.5, 1.0), affine=np.eye(4), modality="CT")
    config = StudyContext(study=study).as_config()
    assert not study_info_tool.invoke({}, config=config)["has_clinical_context"]
    entered = ClinicalContext().updated({"age": 61, "systolic_bp_mmhg": 142})
    config["configurable"][CLINICAL_CONFIG_KEY] = entered
    assert study_info_tool.invoke({}, config=config)["has_clinical_context"]


def test_the_answer_reads_the_typed_summary(tmp_path):
    from cardiovlm.assistant.planner import ClinicalPlanner
    from cardiovlm.assistant.session import Session

    study = Study(hu=np.zeros((8, 6, 4), np.int16), spacing=(0.5, 0.5, 1.0), affine=np.eye(4), modality="CT",
                  series_choice="series 3 (thinnest of 2)", warnings=["slices resampled to an even 1.0 mm grid"])
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    session.use_context(StudyContext(study=study))
    answer = session.ask("What is the slice thickness of this study?")
    assert "voxel spacing 0.5 x 0.5 x 1 mm. Series: series 3 (thinnest of 2)." in answer.answer
    assert answer.answer.endswith("Warning: slices resampled to an even 1.0 mm grid.")
    assert {f.name: f.value for f in answer.findings}["matrix"] == "8 x 6 x 4"
