"""TotalSegmentator is looked for in one place: the curriculum's pseudo-labelling and the check that
offers it as a tool find the weights where TotalSegmentator does and give the same reason."""

from __future__ import annotations

import sys
import types

import pytest

from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.segmentation.totalseg import (
    TotalSegmentatorUnavailable,
    require_totalsegmentator,
    unavailable_reason,
    weights_dir,
    weights_installed,
)
from cardiovlm.training.curriculum import real_data


def test_weights_are_looked_for_where_totalsegmentator_looks(tmp_path, monkeypatch):
    monkeypatch.delenv("TOTALSEG_WEIGHTS_PATH", raising=False)
    monkeypatch.setenv("TOTALSEG_HOME_DIR", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / "nnunet" / "results" and not weights_installed()
    (tmp_path / "weights" / "Dataset291").mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))  # wins over the home folder
    assert weights_dir() == tmp_path / "weights" and weights_installed()


def _installed_package(monkeypatch):
    """TotalSegmentator's package as an installed one looks (a spec), without its torch import."""
    import importlib.machinery

    package = types.ModuleType("totalsegmentator")
    package.__spec__ = importlib.machinery.ModuleSpec("totalsegmentator", None)
    api = types.ModuleType("totalsegmentator.python_api")
    monkeypatch.setitem(sys.modules, "totalsegmentator", package)
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", api)


def test_the_offer_and_the_run_give_the_same_reason_for_missing_weights(tmp_path, monkeypatch):
    _installed_package(monkeypatch)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "empty"))
    reason = unavailable_reason()
    assert reason is not None and "weights are not installed" in reason and "totalseg_download_weights" in reason
    with pytest.raises(TotalSegmentatorUnavailable) as err:
        real_data.pseudo_label(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    assert str(err.value) == reason and isinstance(err.value, StudyError)
    (tmp_path / "weights" / "Dataset297").mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))
    assert unavailable_reason() is None
    require_totalsegmentator()


def test_without_the_package_both_say_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "totalsegmentator", None)
    monkeypatch.setitem(sys.modules, "totalsegmentator.python_api", None)
    (tmp_path / "weights" / "Dataset297").mkdir(parents=True)
    monkeypatch.setenv("TOTALSEG_WEIGHTS_PATH", str(tmp_path / "weights"))
    reason = unavailable_reason()
    assert reason is not None and "pip install" in reason
    with pytest.raises(TotalSegmentatorUnavailable, match="pip install") as err:
        require_totalsegmentator()
    assert str(err.value) == reason and err.value.code == "totalsegmentator.unavailable"
