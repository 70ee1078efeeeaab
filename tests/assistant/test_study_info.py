"""``study_info`` states the study's provenance from what the study records: a case folder's manifest,
the file format, a PACS retrieval mark; never from the pixels or from a phantom's ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.assistant.tools.study_info import StudyProvenance, study_info
from cardiovlm.tools.core import case_format as cf
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_value import Study
from cardiovlm.tools.quant.context import StudyContext

HEALTHY = Path(__file__).resolve().parents[2] / "tools" / "demo_cases" / "healthy"


def _ask(path: Path, question: str):
    session = Session(model=ClinicalPlanner())
    session.load_study(path)
    return session.ask(question)


def _tiny(metadata: dict | None = None) -> Study:
    return Study(hu=np.zeros((4, 4, 4), np.int16), spacing=(1.0, 1.0, 1.0), affine=np.eye(4), modality="CT",
                 hu_calibrated=True, metadata=metadata or {})


def test_the_healthy_demo_case_is_answered_as_a_synthetic_phantom():
    session = Session(model=ClinicalPlanner())
    session.load_study(HEALTHY)
    answer = session.ask("is this a real patient?")
    assert [c.name for c in answer.tool_calls] == ["study_info"]
    provenance = answer.tool_calls[0].result.provenance
    assert (provenance.kind, provenance.synthetic, provenance.generator_version) == ("synthetic_phantom", True, "1.0")
    assert answer.answer.startswith("These images are a synthetic phantom made by the CardioVLM generator 1.0")
    assert "not a patient" in answer.answer and "not recorded" not in answer.answer
    described = session.ask("what study is this?")
    assert [c.name for c in described.tool_calls] == ["study_info"]
    assert "Provenance: synthetic phantom (CardioVLM generator 1.0)." in described.answer


def test_a_nifti_copied_out_of_the_case_says_its_provenance_is_not_recorded(tmp_path):
    shutil.copy(HEALTHY / cf.CCTA_NIFTI, tmp_path / cf.CCTA_NIFTI)
    answer = _ask(tmp_path / cf.CCTA_NIFTI, "are these images synthetic?")
    assert [c.name for c in answer.tool_calls] == ["study_info"]
    provenance = answer.tool_calls[0].result.provenance
    assert (provenance.kind, provenance.synthetic, provenance.generator_version) == ("nifti", None, None)
    assert "NIfTI upload" in answer.answer and "not recorded with the study" in answer.answer
    assert "synthetic phantom made by" not in answer.answer and "not a patient" not in answer.answer


def _case_copy(tmp_path: Path, **manifest_changes) -> StudyContext:
    """The healthy case's manifest and CCTA only: no label map, no findings, nothing a phantom's truth holds."""
    root = tmp_path / "case"
    root.mkdir(parents=True)
    shutil.copy(HEALTHY / cf.CCTA_NIFTI, root / cf.CCTA_NIFTI)
    manifest = json.loads((HEALTHY / cf.MANIFEST_FILE).read_text()) | manifest_changes
    (root / cf.MANIFEST_FILE).write_text(json.dumps(manifest))
    return StudyContext(study=load_study(root), case=cf.load_case(root))


def test_provenance_is_read_from_the_manifest_alone(tmp_path):
    # the same pixels: only the manifest's words change the answer
    ctx = _case_copy(tmp_path, generator_version="2.0")
    assert not ctx.case.has(cf.LABELS_NIFTI) and not ctx.case.has(cf.FINDINGS_FILE)
    info = study_info(ctx)
    assert (info.provenance.kind, info.provenance.description) == (
        "synthetic_phantom", "synthetic phantom (CardioVLM generator 2.0)")
    real = study_info(_case_copy(tmp_path / "real", source="real", generator_version=None))
    assert (real.provenance.kind, real.provenance.synthetic) == ("real_case", False)


def test_a_phantom_manifest_without_a_generator_version_says_so():
    manifest = cf.load_case(HEALTHY).manifest.model_copy(update={"generator_version": None})
    p = StudyProvenance.of(_tiny(), manifest)
    assert p.synthetic is True and p.description == "synthetic phantom (CardioVLM generator, version not recorded)"


@pytest.mark.parametrize("metadata, kind, transfer, words", [
    ({"format": "DICOM", "pacs_study_uid": "1.2.3"}, "dicom", "pacs", "DICOM from PACS"),
    ({"format": "DICOM"}, "dicom", "file", "DICOM from a file or folder"),
    ({"format": "NIfTI"}, "nifti", "file", "NIfTI upload"),
    ({}, "not_recorded", None, "not recorded"),
])
def test_a_file_without_a_manifest_never_claims_real_or_synthetic(metadata, kind, transfer, words):
    p = StudyProvenance.of(_tiny(metadata), None)
    assert (p.kind, p.transfer, p.synthetic) == (kind, transfer, None)
    assert words in p.description


@pytest.mark.parametrize("manifest_source, metadata, says, never", [
    ("real", {}, "These images are a real scan", "synthetic phantom made by"),
    (None, {"format": "DICOM", "pacs_study_uid": "1.2.3"}, "loaded as DICOM from PACS", "not a patient"),
    (None, {}, "not recorded with the study", "loaded as"),
])
def test_a_provenance_question_is_answered_first_with_what_is_recorded(manifest_source, metadata, says, never):
    from cardiovlm.assistant.compose import compose_answer
    from cardiovlm.assistant.outcomes import ToolOutcome
    from cardiovlm.assistant.question import parse_question

    manifest = (cf.load_case(HEALTHY).manifest.model_copy(update={"source": manifest_source, "generator_version": None})
                if manifest_source else None)
    study = _tiny(metadata)
    case = cf.Case(root=HEALTHY, manifest=manifest) if manifest else None
    info = study_info(StudyContext(study=study, case=case))
    answer = compose_answer(parse_question("are these images of a real person?"),
                            [ToolOutcome(name="study_info", args={}, value=info)])
    provenance, _, description = answer.partition(" The loaded study is")
    assert says in provenance and description and never not in answer
