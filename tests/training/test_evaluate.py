"""``training.evaluate`` and ``cardiovlm evaluate``: scoring helpers, and a tiny untrained checkpoint
evaluated end to end on one small phantom case (CPU, a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tools.anatomy import STRUCTURES_BY_NAME, segments_of_artery
from training.evaluate import (DICE_ROWS, TARGETS, EvaluationError, dice, evaluate_folder, format_table,
                               lesion_counts, structure_group, target_gaps)
from vlm import CardioVLM, CardioVLMConfig

torch.set_num_threads(1)


def _id(name: str) -> int:
    return STRUCTURES_BY_NAME[name].label_id


@pytest.mark.parametrize("ids, row", [
    ([_id("lv_blood")], "chambers"), ([_id("la_blood"), _id("ra_blood")], "chambers"),
    ([_id("lv_myocardium")], "myocardium"), ([_id("aorta")], "aorta"), ([_id("aortic_root")], "aorta"),
    ([s.label_id for s in segments_of_artery("LAD")], "LAD"), ([segments_of_artery("RCA")[0].label_id], "RCA"),
    ([_id("calcified_plaque")], "calcifications"), ([_id("calcified_plaque"), _id("noncalcified_plaque")], "plaques"),
    ([_id("stent")], "stents"), ([_id("liver")], None), ([], None),
])
def test_structure_group(ids, row):
    assert structure_group(ids) == row


def test_dice_and_lesion_counts():
    truth = np.zeros((10, 10, 10), bool)
    truth[1:3, 1:3, 1:3] = True  # lesion 1
    truth[6:8, 6:8, 6:8] = True  # lesion 2
    pred = np.zeros_like(truth)
    pred[1:3, 1:3, 1:3] = True  # finds lesion 1
    pred[6, 0, 0] = True  # a false positive
    assert dice(pred, truth) == pytest.approx(2 * 8 / (9 + 16))
    assert dice(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    assert lesion_counts(pred, truth) == (1, 1, 1)


def test_format_table_and_gaps():
    summary = {f"Dice {r}": 0.5 for r in DICE_ROWS} | {"calcification F1": None, "yes/no accuracy": 0.97,
                                                       "records": 3}
    from training.evaluate import EvaluationReport

    report = EvaluationReport(checkpoint="c", data="d", cases=1, splits={"held-out seeds": summary})
    table = format_table([report])
    assert "Dice chambers" in table and ">= 0.90" in table and "-" in table
    gaps = target_gaps(summary)
    assert gaps["chambers"] == pytest.approx(0.4) and "yes/no accuracy" not in gaps
    assert "calcification F1" not in gaps and set(gaps) <= set(TARGETS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from training.phantoms.generate import generate_case

    root = tmp_path_factory.mktemp("evaluate")
    data = root / "cases"
    generate_case(data, seed=11, size="small", with_dicom=False, with_cac=False)
    torch.manual_seed(0)
    checkpoint = CardioVLM(CardioVLMConfig.tiny()).save(root / "checkpoint")
    return checkpoint, data


def test_evaluate_folder_tiny(tiny_run):
    checkpoint, data = tiny_run
    report = evaluate_folder(checkpoint, data, max_records_per_case=60)
    assert report.cases == 1
    summary = report.splits["held-out seeds"]
    assert 0 < summary["records"] <= 60
    scored = [v for k, v in summary.items() if k != "records" and v is not None]
    assert scored and all(np.isfinite(scored))
    assert all(0.0 <= summary[f"Dice {r}"] <= 1.0 for r in DICE_ROWS if summary[f"Dice {r}"] is not None)
    from vlm.validation import CHAMBER_ROWS

    # Each chamber has its own row next to the pooled one (the assistant judges a chamber by it).
    assert {f"Dice {name}" for name in CHAMBER_ROWS.values()} <= set(summary)
    if summary["Dice chambers"] is not None:
        assert any(summary[f"Dice {name}"] is not None for name in CHAMBER_ROWS.values())
    assert summary["landmark error mm (mean)"] is None or summary["landmark error mm (mean)"] >= 0


def test_evaluate_cli_json_and_table(tiny_run, capsys):
    from ui.cli import main

    checkpoint, data = tiny_run
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--max-records", "8",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["cases"] == 1 and "held-out seeds" in out[0]["splits"]
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--max-records", "8"]) == 0
    text = capsys.readouterr().out
    assert "Dice LAD" in text and "gap to the issue 5 targets" in text
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--max-records", "8",
                 "--name", "shifted generator", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)[0]["splits"]) >= {"shifted generator"}


def test_evaluate_errors(tmp_path, tiny_run):
    from ui.cli import main

    checkpoint, _ = tiny_run
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate_folder(checkpoint, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="no case folders"):
        evaluate_folder(checkpoint, tmp_path / "empty")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing"), "--data", str(tmp_path / "empty")]) == 2
