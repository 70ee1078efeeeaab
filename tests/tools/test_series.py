"""Series of a multi-series examination: listed by kind, picked automatically or by the user, both
the CCTA and the calcium-scoring series loaded; bad picks are typed errors with clear messages."""

from __future__ import annotations

import numpy as np
import pytest

from cardiovlm.tools.ingest.series import NO_SERIES, list_series, load_series, pick_series
from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import SeriesNotFoundError, SeriesPickError, StudyNotFoundError
from tests.tools.series_data import write_exam, zip_folder

SHAPE = (24, 20, 30)


def affine(spacing, origin=(-12.0, -10.0, 0.0)):
    a = np.diag([*spacing, 1.0])
    a[:3, 3] = origin
    return a


@pytest.fixture
def exam(tmp_path):
    """Localizer + 3 mm non-contrast calcium series (10 slices) + 1 mm contrast CCTA (30 slices), zipped."""
    rng = np.random.default_rng(0)
    ccta = rng.integers(-100, 500, SHAPE).astype(np.int16)
    cac = rng.integers(-100, 300, (24, 20, 10)).astype(np.int16)
    folder = tmp_path / "exam"
    uids = write_exam(folder, ccta, affine((1.0, 1.0, 1.0)), cac, affine((1.0, 1.0, 3.0)),
                      patient={"PatientAge": "058Y", "PatientSex": "F"})
    return zip_folder(folder, tmp_path / "exam.zip"), uids, ccta, cac


def test_a_zip_lists_every_series_with_kind_slices_thickness_and_kvp(exam):
    path, uids, _, _ = exam
    listing = {s.uid: s for s in list_series(path)}
    assert set(listing) == set(uids.values())
    ccta, cac, scout = listing[uids["ccta"]], listing[uids["calcium_scoring"]], listing[uids["localizer"]]
    assert (ccta.kind, ccta.n_slices, ccta.slice_thickness_mm, ccta.kvp) == ("ccta", 30, 1.0, 100.0)
    assert (cac.kind, cac.n_slices, cac.slice_thickness_mm, cac.kvp) == ("calcium_scoring", 10, 3.0, 120.0)
    assert scout.kind == "localizer" and not scout.loadable
    assert cac.description == "Calcium Score 3.0 mm" and "names a calcium score" in cac.kind_reason
    assert "calcium scoring" in cac.label() and "3 mm" in cac.label() and "120 kVp" in cac.label()


def test_a_thick_series_without_contrast_is_calcium_scoring_whatever_its_name(tmp_path):
    ccta, cac = np.zeros(SHAPE, np.int16), np.zeros((24, 20, 10), np.int16)
    uids = write_exam(tmp_path, ccta, affine((1.0, 1.0, 1.0)), cac, affine((1.0, 1.0, 3.0)),
                      calcium_description="Cardiac 3.0 Qr36", localizer=False)
    kinds = {s.uid: s for s in list_series(tmp_path)}
    assert kinds[uids["calcium_scoring"]].kind == "calcium_scoring"
    assert "3 mm slices and no contrast agent" in kinds[uids["calcium_scoring"]].kind_reason
    assert kinds[uids["ccta"]].kind == "ccta"


def test_automatic_pick_loads_the_ccta_and_the_calcium_series_together(exam):
    path, uids, ccta, cac = exam
    loaded = load_series(path)
    assert loaded.pick.ccta == uids["ccta"] and loaded.pick.calcium == uids["calcium_scoring"]
    assert loaded.pick.automatic
    np.testing.assert_array_equal(loaded.ccta.hu, ccta)
    np.testing.assert_array_equal(loaded.calcium.hu, cac)
    assert loaded.calcium.spacing[2] == pytest.approx(3.0)
    choice = loaded.ccta.series_choice
    assert "CCTA: series 3" in choice and "calcium scoring: series 2" in choice and "not loaded: series 1" in choice
    # the plain loader still gives the CCTA alone, as before
    np.testing.assert_array_equal(load_study(path).hu, ccta)


def test_dicom_age_and_sex_are_kept_without_the_birth_date(exam):
    study = load_series(exam[0]).ccta
    assert study.metadata["patient_age_years"] == 58 and study.metadata["patient_sex"] == "female"


def test_an_explicit_pick_is_loaded_as_given(exam):
    path, uids, ccta, cac = exam
    swapped = load_series(path, ccta_series=uids["calcium_scoring"], calcium_series=NO_SERIES)
    np.testing.assert_array_equal(swapped.ccta.hu, cac)
    assert swapped.calcium is None and not swapped.pick.automatic
    assert "picked by the user" in swapped.pick.reason
    none = load_series(path, calcium_series=NO_SERIES)
    assert none.calcium is None and none.pick.ccta == uids["ccta"]
    # a pick that is what the automatic choice would be stays automatic (a picker sends its preselection)
    same = pick_series(list_series(path), ccta_series=uids["ccta"], calcium_series=uids["calcium_scoring"])
    assert same.automatic and "picked by the user" not in same.reason


def test_bad_picks_are_typed_errors_naming_the_series(exam):
    path, uids, _, _ = exam
    listing = list_series(path)
    with pytest.raises(SeriesNotFoundError, match="there is no series '1.2.3' in this study") as err:
        pick_series(listing, ccta_series="1.2.3")
    assert "Calcium Score 3.0 mm" in str(err.value) and err.value.code == "series.not_found"
    with pytest.raises(SeriesPickError, match="is a localizer, not a volume"):
        pick_series(listing, ccta_series=uids["localizer"])
    with pytest.raises(SeriesPickError, match="cannot be both"):
        pick_series(listing, ccta_series=uids["ccta"], calcium_series=uids["ccta"])
    with pytest.raises(StudyNotFoundError):
        list_series(path.with_name("missing.zip"))


def test_a_study_of_one_calcium_series_loads_it_as_the_study(tmp_path):
    cac = np.zeros((24, 20, 10), np.int16)
    write_exam(tmp_path / "a", cac, affine((1.0, 1.0, 3.0)), None, None, ccta_description="CaSc 3 mm",
               localizer=False)
    loaded = load_series(tmp_path / "a")
    assert loaded.calcium is None and loaded.listing[0].kind == "calcium_scoring"
    assert loaded.ccta.shape == (24, 20, 10)


def test_a_case_folder_lists_its_ccta_and_calcium_series():
    from cardiovlm.tools.core.settings import get_settings

    listing = list_series(get_settings().demo_cases_dir / "lad_calcified")
    assert [(s.uid, s.kind, s.n_slices) for s in listing] == [("ccta.nii.gz", "ccta", 120),
                                                             ("cac.nii.gz", "calcium_scoring", 40)]
    assert listing[1].slice_thickness_mm == pytest.approx(3.0)
    # a NIfTI file has no series number: the table shows a dash and the description says why, never "series ?"
    assert [s.number for s in listing] == ["—", "—"]
    assert listing[0].description == "CCTA, NIfTI file ccta.nii.gz (no series number)"
    assert all("?" not in s.label() and s.label().startswith(("CCTA · ", "calcium scoring · ")) for s in listing)


def test_a_calcium_series_of_another_frame_of_reference_is_loaded_with_a_warning(tmp_path):
    ccta, cac = np.zeros(SHAPE, np.int16), np.zeros((24, 20, 10), np.int16)
    write_exam(tmp_path, ccta, affine((1.0, 1.0, 1.0)), cac, affine((1.0, 1.0, 3.0)), shared_frame=False)
    loaded = load_series(tmp_path)
    assert loaded.calcium is not None
    assert any("another frame of reference than the CCTA" in w for w in loaded.ccta.warnings)
    write_exam(tmp_path / "same", ccta, affine((1.0, 1.0, 1.0)), cac, affine((1.0, 1.0, 3.0)))
    assert not any("frame of reference" in w for w in load_series(tmp_path / "same").ccta.warnings)


def test_a_phantom_case_folder_with_dicom_series_loads_both(tmp_path):
    """A case folder as the phantom generator writes it, with ccta_dicom/ and cac_dicom/."""
    from cardiovlm.tools.core import case_format as cf
    from cardiovlm.tools.core.settings import get_settings

    demo = get_settings().demo_cases_dir / "lad_calcified"
    case = tmp_path / "case"
    case.mkdir()
    (case / cf.MANIFEST_FILE).write_text((demo / cf.MANIFEST_FILE).read_text())
    ccta, cac = load_study(demo / "ccta.nii.gz"), load_study(demo / "cac.nii.gz")
    write_exam(case / "unused", ccta.hu, ccta.affine, None, None, localizer=False)
    (case / "unused" / "3").rename(case / cf.CCTA_DICOM_DIR)
    write_exam(case / "unused2", cac.hu, cac.affine, None, None, localizer=False, ccta_description="CaSc 3 mm")
    (case / "unused2" / "3").rename(case / cf.CAC_DICOM_DIR)
    loaded = load_series(case)
    assert [s.kind for s in loaded.listing] == ["ccta", "calcium_scoring"]
    np.testing.assert_array_equal(loaded.ccta.hu, ccta.hu)
    np.testing.assert_array_equal(loaded.calcium.hu, cac.hu)


def test_an_empty_zip_is_named_by_its_own_name(tmp_path):
    import zipfile

    from cardiovlm.tools.ingest.study_errors import EmptyFolderError

    with zipfile.ZipFile(tmp_path / "nothing.zip", "w"):
        pass
    with pytest.raises(EmptyFolderError, match="^nothing.zip: the zip holds no files"):
        load_series(tmp_path / "nothing.zip")
