"""A PACS study of several series (a real Orthanc on a loopback port, fixtures in ``conftest.py``):
every CT series is retrieved, listed, and the CCTA and the calcium-scoring series are loaded together;
the files are deleted once loaded, and another pick retrieves them again."""

from __future__ import annotations

import numpy as np

from cardiovlm.assistant.planner import ClinicalPlanner
from cardiovlm.assistant.session import Session
from cardiovlm.tools.ingest.series import NO_SERIES
from tests.tools.series_data import STUDY_UID, write_exam


def test_a_pacs_study_loads_its_ccta_and_calcium_series_and_takes_another_pick(pacs, tmp_path):
    _, client, _ = pacs
    rng = np.random.default_rng(4)
    ccta = rng.integers(-100, 500, (24, 20, 30)).astype(np.int16)
    cac = rng.integers(-100, 300, (24, 20, 10)).astype(np.int16)
    uids = write_exam(tmp_path / "exam", ccta, np.eye(4), cac, np.diag([1.0, 1.0, 3.0, 1.0]),
                      patient={"PatientID": "PAT-SERIES", "PatientAge": "070Y", "PatientSex": "F"})
    files = sorted(p for p in (tmp_path / "exam").rglob("*.dcm"))
    assert client.send_files(files) == len(files)

    session = Session(model=ClinicalPlanner(), output_dir=tmp_path / "out", keep_retrieved=False)
    session.load_from_pacs(client, STUDY_UID)
    assert {s.uid: s.kind for s in session.series} == {uids["localizer"]: "localizer", uids["ccta"]: "ccta",
                                                        uids["calcium_scoring"]: "calcium_scoring"}
    np.testing.assert_array_equal(session.context.study.hu, ccta)
    np.testing.assert_array_equal(session.context.cac.hu, cac)
    assert (session.clinical.age, session.clinical.sex) == (70, "female")
    assert not any((tmp_path / "out" / "pacs").rglob("*.dcm"))  # the patient's files are gone once loaded

    session.pick_series(calcium_series=NO_SERIES)  # retrieved again for the new pick
    assert session.context.cac is None and session.series_pick.ccta == uids["ccta"]
    assert not any((tmp_path / "out" / "pacs").rglob("*.dcm"))
