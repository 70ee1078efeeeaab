"""A seeded mutation fuzz of ingest: every hostile input ends as a sane load or a typed error, never a
traceback or a hang (the long run is ``benchmarks/fuzz_ingest.py``)."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from cardiovlm.tools.ingest.study import load_study
from cardiovlm.tools.ingest.study_errors import StudyError

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_ingest.py"


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_ingest", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_ingest"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


fuzz_ingest = _fuzz_module()


def _report(counts) -> str:
    return "\n".join(f"{k}: {v}" for k, v in counts.as_dict().items())


@pytest.mark.slow
def test_two_thousand_mutations_give_no_traceback_and_no_hang():
    counts = fuzz_ingest.fuzz(2000, seed=0, timeout_s=10.0)
    assert counts.runs == 2000
    assert not counts.untyped, _report(counts)
    assert counts.hangs == 0, _report(counts)
    assert not counts.insane, _report(counts)
    assert not counts.internal_message, _report(counts)
    # The mutations reach both ends: many inputs still load, many are refused, with many different codes.
    assert counts.loaded > 400 and sum(counts.typed.values()) > 400, _report(counts)
    assert len(counts.typed) >= 12, _report(counts)


def test_the_fuzz_counts_a_traceback_as_untyped(monkeypatch):
    """Control: an ingest that crashes is caught and placed at its code site, not counted as typed."""

    def crash(path):
        raise TypeError("unsupported operand type(s) for *: 'NoneType' and 'float'")

    monkeypatch.setattr(fuzz_ingest, "load_study", crash)
    counts = fuzz_ingest.fuzz(3, seed=0)
    assert sum(counts.untyped.values()) == 3 and counts.loaded == 0 and not counts.typed
    site = next(iter(counts.untyped))
    assert site.startswith("test_ingest_fuzz.py:") and site.endswith("TypeError")


def test_the_fuzz_counts_a_hang(monkeypatch):
    """Control: a load that blocks is stopped by the deadline and counted as a hang."""
    import time

    monkeypatch.setattr(fuzz_ingest, "load_study", lambda path: time.sleep(30))
    counts = fuzz_ingest.fuzz(1, seed=0, timeout_s=0.5)
    assert counts.hangs == 1 and counts.slowest_s < 5


def test_the_fuzz_counts_a_hang_that_swallows_the_alarm(monkeypatch):
    """Control: a reader that catches everything around a blocking call (as ingest did around pydicom
    on a named pipe) still counts as a hang, not as a quiet load."""
    import time

    def swallowing(path):
        try:
            time.sleep(30)
        except BaseException:  # noqa: BLE001 (the point of the test)
            pass
        raise ValueError("unreadable")

    monkeypatch.setattr(fuzz_ingest, "load_study", swallowing)
    counts = fuzz_ingest.fuzz(1, seed=0, timeout_s=0.5)
    assert counts.hangs == 1 and not counts.untyped


def test_the_fuzz_rejects_an_insane_load(monkeypatch):
    """Control: a 'successful' load with values no CT holds is not counted as loaded."""
    from cardiovlm.tools.ingest.study_value import Study

    bad = Study(hu=np.full((4, 4, 3), 1e12, np.float32), spacing=(1.0, 1.0, 1.0), affine=np.eye(4))
    monkeypatch.setattr(fuzz_ingest, "load_study", lambda path: bad)
    counts = fuzz_ingest.fuzz(2, seed=0)
    assert counts.loaded == 0 and counts.insane == {"HU out of range": 2}


def test_two_flipped_header_bytes_in_one_slice_of_six_leave_the_rest_loaded(tmp_path):
    base = fuzz_ingest.make_base(tmp_path)
    expected = fuzz_ingest.SHAPE
    left_out = 0
    for seed in range(60):
        rng = random.Random(seed)
        slices = list(base.slices)
        k = rng.randrange(len(slices))
        slices[k] = fuzz_ingest._flip(rng, slices[k], 2, fuzz_ingest._header_end(slices[k]))
        folder = tmp_path / f"case{seed}"
        folder.mkdir()
        for n, data in enumerate(slices):
            (folder / f"slice_{n + 1:03d}.dcm").write_bytes(data)
        try:
            study = load_study(folder)
        except StudyError as err:
            pytest.fail(f"seed {seed}: slice {k + 1} with two flipped header bytes aborted the series: {err}")
        assert study.shape[:2] == expected[:2] and study.shape[2] >= expected[2] - 1, (seed, study.shape)
        left_out += any("left out" in w or "skipped" in w for w in study.warnings)
    assert left_out >= 3  # some flips do break their slice: those slices were left out, the series kept
