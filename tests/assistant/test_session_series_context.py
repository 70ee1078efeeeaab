"""A session with a multi-series study and the patient's clinical context: the CCTA and the
calcium-scoring series are loaded together, calcium answers are measured on the calcium series, the
user can change the pick, and the clinical values the user edits change the risk answer, which
names them."""

from __future__ import annotations

import shutil

import pytest

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.tools.ingest.series import NO_SERIES
from cardiovlm.tools.ingest.study_errors import SeriesPickError, SeriesSourceGoneError, StudyError
from cardiovlm.tools.quant.calcium import agatston_score
from tests.tools.series_data import demo_exam, zip_folder

VALUES = dict(race="white", systolic_bp_mmhg=150, total_cholesterol_mg_dl=220, hdl_cholesterol_mg_dl=45,
              smoker=True, diabetes=False, hypertension_treatment=True, lipid_lowering=False,
              family_history_mi=False)


@pytest.fixture(scope="module")
def exam_zip(tmp_path_factory):
    """lad_calcified as a scanner exports it: localizer, 3 mm calcium score, contrast CCTA, one zip."""
    root = tmp_path_factory.mktemp("exam")
    uids = demo_exam(root / "files", patient={"PatientAge": "058Y", "PatientSex": "F"})
    return zip_folder(root / "files", root / "exam.zip"), uids


@pytest.fixture(scope="module")
def small_zip(tmp_path_factory):
    """A small three-series examination (random HU, loads in a second) for the pick bookkeeping."""
    import numpy as np

    from tests.tools.series_data import write_exam

    root = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(5)
    uids = write_exam(root / "files", rng.integers(-100, 500, (24, 20, 30)).astype(np.int16), np.eye(4),
                      rng.integers(-100, 300, (24, 20, 10)).astype(np.int16), np.diag([1.0, 1.0, 3.0, 1.0]),
                      patient={"PatientAge": "058Y", "PatientSex": "F"})
    return zip_folder(root / "files", root / "exam.zip"), uids


@pytest.fixture(scope="module")
def loaded(exam_zip, tmp_path_factory):
    path, uids = exam_zip
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path_factory.mktemp("out"))
    session.load_study(path)
    return session, uids


def finding(answer, name):
    return next(f for f in answer.findings if f.name == name)


def test_the_zip_is_listed_and_the_ccta_and_calcium_series_load_together(loaded):
    session, uids = loaded
    kinds = {s.uid: s.kind for s in session.series}
    assert kinds == {uids["localizer"]: "localizer", uids["calcium_scoring"]: "calcium_scoring",
                     uids["ccta"]: "ccta"}
    assert (session.series_pick.ccta, session.series_pick.calcium) == (uids["ccta"], uids["calcium_scoring"])
    ctx = session.context
    assert ctx.study.shape == (170, 170, 120) and ctx.cac.shape == (170, 170, 40)
    assert ctx.cac.metadata["series_description"] == "Calcium Score 3.0 mm"
    assert "calcium scoring: series 2" in ctx.study.series_choice
    assert not any("frame of reference" in w for w in ctx.study.warnings)


def test_the_calcium_answer_is_measured_on_the_calcium_series(loaded):
    session, _ = loaded
    answer = session.ask("What is the calcium score?")
    assert answer.answer.startswith("Coronary calcium on the calcium-scoring series loaded with the CCTA (series 2 "
                                    "'Calcium Score 3.0 mm'), a non-contrast series: Agatston score")
    cac = session.context.cac
    alone = agatston_score(cac.hu, cac.spacing, affine=cac.affine, metadata=cac.metadata)
    assert finding(answer, "Agatston score").value == pytest.approx(alone.agatston, abs=0.5)
    assert alone.agatston > 0


def test_dicom_age_and_sex_fill_the_clinical_context_and_the_risk_answer_names_what_is_missing(loaded):
    session, _ = loaded
    assert (session.clinical.age, session.clinical.sex) == (58, "female")
    answer = session.ask("What is her cardiac risk?")
    assert "measured on the calcium-scoring series loaded with the CCTA (series 2 'Calcium Score 3.0 mm')" \
        in answer.answer
    assert "these values are not known: race, systolic blood pressure, total cholesterol, HDL cholesterol" \
        in answer.answer
    assert not any(f.name == "MESA 10-year hard CHD risk" for f in answer.findings)
    cac = session.context.cac  # the score is the image's, measured on the calcium series
    alone = agatston_score(cac.hu, cac.spacing, affine=cac.affine, metadata=cac.metadata)
    assert finding(answer, "Agatston score").value == pytest.approx(alone.agatston, abs=0.5)


def test_edited_values_change_the_risk_answer_which_names_them(loaded):
    session, _ = loaded
    session.update_clinical(VALUES)
    first = session.ask("What is her cardiac risk?")
    assert "inputs: age 58 years, female, white, systolic BP 150 mmHg, total cholesterol 220 mg/dL, HDL 45 mg/dL" \
        in first.answer
    before = finding(first, "MESA 10-year hard CHD risk").value
    session.update_clinical({"smoker": False, "systolic_bp_mmhg": 120})
    second = session.ask("What is her cardiac risk?")
    assert "systolic BP 120 mmHg" in second.answer and "current smoker" not in second.answer
    assert finding(second, "MESA 10-year hard CHD risk").value < before
    assert session.clinical.sources["systolic_bp_mmhg"] == "entered by the user"
    assert session.clinical.sources["age"] == "DICOM header"


def test_an_explicit_pick_without_calcium_series_gives_no_agatston(exam_zip, tmp_path):
    path, uids = exam_zip
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    session.load_study(path, ccta_series=uids["ccta"], calcium_series=NO_SERIES)
    assert session.context.cac is None and session.series_pick.calcium is None
    session.update_clinical({"race": "hispanic"})
    answer = session.ask("What is the calcium score?")
    assert "no non-contrast calcium-scoring series" in answer.answer
    assert not any(f.name == "Agatston score" for f in answer.findings)
    # the user changes the pick back: the calcium series is loaded beside the CCTA
    session.pick_series(calcium_series=uids["calcium_scoring"])
    assert session.context.cac is not None and session.series_pick.calcium == uids["calcium_scoring"]
    assert session.clinical.race == "hispanic"  # the same patient: the entered values stay
    with pytest.raises(SeriesPickError, match="is a localizer"):
        session.pick_series(ccta_series=uids["localizer"])
    assert session.context.cac is not None  # a refused pick leaves the study as it was


def test_a_pick_after_the_files_are_gone_says_what_to_do(small_zip, tmp_path):
    path, uids = small_zip
    copy = shutil.copy(path, tmp_path / "upload.zip")
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path / "out")
    session.load_study(copy)
    (tmp_path / "upload.zip").unlink()  # the app deletes uploads once they are loaded
    with pytest.raises(SeriesSourceGoneError, match="load the study again and pick its series") as err:
        session.pick_series(calcium_series=NO_SERIES)
    assert isinstance(err.value, StudyError) and err.value.code == "series.source_gone"


def test_the_saved_session_keeps_the_pick_and_the_edited_values(small_zip, tmp_path):
    path, uids = small_zip
    session = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    session.load_study(path, calcium_series=NO_SERIES)
    session.update_clinical({"systolic_bp_mmhg": 135})
    session.save(tmp_path / "s.json")
    resumed = Session(model=ClinicalPlanner(), output_dir=tmp_path)
    resumed.restore(tmp_path / "s.json")
    assert resumed.context.cac is None and resumed.series_pick.ccta == uids["ccta"]
    assert resumed.clinical.systolic_bp_mmhg == 135 and resumed.clinical.age == 58
