"""Part of the benchmark question suite as a test: the lad_stenosis demo case, answers from its ground truth."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tools.settings import get_settings

ROOT = Path(__file__).resolve().parents[2]
CASE = get_settings().demo_cases_dir / "lad_stenosis"


def _benchmark():
    spec = importlib.util.spec_from_file_location("assistant_questions", ROOT / "benchmarks" / "assistant_questions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (CASE / "case.json").is_file(), reason="the lad_stenosis demo case is not bundled")
def test_lad_stenosis_questions_are_answered_as_the_ground_truth_says():
    rows = _benchmark().run_case(CASE)
    assert len(rows) >= 20
    wrong = [(r.question, r.expected, r.got) for r in rows if not r.ok]
    assert not wrong, wrong
    categories = {r.category for r in rows}
    assert {"stent coverage", "follow-up", "stenosis", "MACE", "unanswerable", "presence"} <= categories
