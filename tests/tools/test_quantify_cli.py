"""``cardiovlm measure|calcium --reference``: the image-only value first, the case's truth beside it."""

from __future__ import annotations

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.ui.cli import main

CASE = get_settings().demo_cases_dir / "lad_calcified"


def test_calcium_is_scored_from_the_image_and_the_reference_is_shown_beside_it(capsys):
    assert main(["calcium", str(CASE), "--reference"]) == 0
    out = capsys.readouterr().out
    measured, _, reference = out.partition("reference (phantom ground truth)")
    assert "Agatston" in measured and "ground truth" not in measured
    assert "image-derived" not in reference.split("\n")[0]  # the reference line is the truth's own score
    assert "Dice" in reference


def test_measure_names_the_image_derived_anatomy_and_lists_the_true_findings(capsys):
    assert main(["measure", str(CASE), "--segment", "RCA", "--reference"]) == 0
    out = capsys.readouterr().out
    assert "masks: image-derived coronary tree" in out
    assert "reference findings" in out or "reference finding " in out


def test_without_reference_nothing_of_the_truth_is_printed(capsys):
    assert main(["measure", str(CASE), "--segment", "RCA"]) == 0
    assert "reference" not in capsys.readouterr().out.lower()
