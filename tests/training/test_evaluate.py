"""``cardiovlm.training.evaluate`` and ``cardiovlm evaluate``: scoring helpers; the scoring of one small phantom case
checked with models whose scores are known (an oracle answering from the ground truth scores 1.0, a
model answering nothing scores 0); the CLI end to end with a tiny untrained checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cardiovlm.tools.core.anatomy import STRUCTURES_BY_NAME, segments_of_artery
from cardiovlm.training.evaluate import (
    TARGETS,
    EvaluationError,
    balanced_accuracy,
    control_gaps,
    derangement,
    dice,
    evaluate_folder,
    expected_calibration_error,
    format_table,
    lesion_counts,
    referring_correct,
    target_gaps,
)
from cardiovlm.vlm import CardioVLM, CardioVLMConfig
from cardiovlm.vlm.validation import ARTERY_IDS, DICE_ROWS, structure_group

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
    from cardiovlm.training.evaluate import EvaluationReport

    report = EvaluationReport(checkpoint="c", data="d", cases=1, splits={"held-out seeds": summary})
    table = format_table([report])
    assert "Dice chambers" in table and ">= 0.90" in table and "-" in table
    gaps = target_gaps(summary)
    assert gaps["chambers"] == pytest.approx(0.4) and "yes/no accuracy" not in gaps
    assert "calcification F1" not in gaps and set(gaps) <= set(TARGETS)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, phantom_case):
    """An untrained tiny checkpoint, a one-case data folder and that case's curriculum, built once.

    The curriculum is written next to the checkpoint (the shared case folder stays untouched) and handed
    to the evaluations that are not about building it: building it takes longer than scoring it."""
    from cardiovlm.training.curriculum.jsonl import write_curriculum
    from cardiovlm.training.evaluate import load_records

    root = tmp_path_factory.mktemp("evaluate")
    # the shared case's parent holds that case only: a one-case data folder
    data = phantom_case(seed=11, size="small", with_dicom=False, with_cac=False).parent
    torch.manual_seed(0)
    checkpoint = CardioVLM(CardioVLMConfig.tiny()).save(root / "checkpoint")
    curriculum = root / "curriculum.jsonl"
    write_curriculum(load_records(data), curriculum, llm="default", seed=0)
    return checkpoint, data, curriculum


class _GroundTruthModel:
    """Answers each record of one case from that case's ground truth, read here independently of the
    evaluator: the label map through ``cardiovlm.tools.core.case_format``, the landmarks from their file.

    ``mode`` "oracle" gives the right answer to everything; "empty" an empty mask, "no", and the origin
    for every request; "aorta" segments the aorta whatever is asked and is otherwise an oracle; "first
    artery" draws, of a target spanning several arteries, the part in the first of them only."""

    def __init__(self, case, records, mode: str):
        from cardiovlm.tools.core import case_format as cf
        from cardiovlm.tools.ingest.study import load_study

        self.mode = mode
        self.spacing = load_study(case).spacing
        self.labels = cf.read_labels(case)
        self.landmarks = json.loads((case / cf.LANDMARKS_FILE).read_text())
        self.records = {(r.instruction, tuple(r.target.choices)): r for r in records}
        assert len(self.records) == len(records), "two records share an instruction: the oracle would guess"

    def run(self, study, instruction, choices=None):
        from types import SimpleNamespace

        from cardiovlm.tools.segmentation.masks import mask_from_labels

        record = self.records[(instruction, tuple(choices or ()))]
        target = record.target
        mask = np.zeros(self.labels.shape, bool)
        answer, landmark = target.answer or "yes", (0.0, 0.0, 0.0)
        if record.task == "segment" and target.mask is None:
            answer = "not present"
        elif record.task == "segment" and self.mode == "aorta":
            mask = self.labels == _id("aorta")
        elif record.task == "segment":
            mask = mask_from_labels(self.labels, target.mask.label_ids, spacing=self.spacing,
                                    near_segments=target.mask.near_segments or None, near_mm=target.mask.near_mm)
            if self.mode == "first artery" and _arteries_named(target.mask.label_ids):
                mask &= np.isin(self.labels, list(ARTERY_IDS[_arteries_named(target.mask.label_ids)[0]]))
        if record.task == "landmark":
            landmark = tuple(self.landmarks[target.landmark])
        if self.mode == "empty":
            mask, answer, landmark = np.zeros_like(mask), "no", (0.0, 0.0, 0.0)
        return SimpleNamespace(answer=answer, answer_confidence=1.0, mask=mask, mask_confidence=1.0,
                               landmark_mm=landmark)

    def clear_cache(self):
        pass


def _arteries_named(label_ids: list[int]) -> list[str]:
    return [a for a, ids in ARTERY_IDS.items() if ids & set(label_ids)]


def _kind(record) -> tuple:
    """What a record exercises in the scoring: its task and intent, its column, the row its mask lands in
    and, for questions, the answer wanted."""
    from cardiovlm.vlm.validation import CHAMBER_ROWS

    ids = record.target.mask.label_ids if record.target.mask is not None else []
    chamber = CHAMBER_ROWS.get(ids[0]) if len(ids) == 1 else None
    return (record.task, record.intent, record.held_out_phrasing, structure_group(ids), chamber,
            record.target.answer if record.task == "yes_no" else None)


@pytest.fixture(scope="module")
def sample_curriculum(tiny_run):
    """One record of each kind of the case's curriculum: every row of the scoring at a fifth of the cost
    (scoring a mask reads the 3.5 M voxel label map each time)."""
    from cardiovlm.training.curriculum.jsonl import read_curriculum, write_curriculum

    _, _, curriculum = tiny_run
    records, kinds = [], set()
    for record in read_curriculum(curriculum):
        if _kind(record) not in kinds:
            kinds.add(_kind(record))
            records.append(record)
    path = curriculum.with_name("sample.jsonl")
    write_curriculum(records, path, llm="default", seed=0)
    return path


def _scored(tiny_run, curriculum, mode: str) -> dict:
    from cardiovlm.training.curriculum.jsonl import read_curriculum

    _, data, _ = tiny_run
    model = _GroundTruthModel(next(data.iterdir()), read_curriculum(curriculum), mode)
    report = evaluate_folder("ground truth", data, curriculum=curriculum, model=model)
    assert report.cases == 1
    return report.splits


@pytest.fixture(scope="module")
def oracle_splits(tiny_run):
    """Every record of the case answered from its ground truth."""
    return _scored(tiny_run, tiny_run[2], "oracle")


def test_an_oracle_model_scores_perfectly_in_every_row(oracle_splits):
    from cardiovlm.vlm.validation import CHAMBER_ROWS

    assert set(oracle_splits) == {"held-out seeds", "held-out seeds, held-out phrasings"}
    assert oracle_splits["held-out seeds, held-out phrasings"]["records"] > 0
    summary = oracle_splits["held-out seeds"]
    dice_rows = {k: v for k, v in summary.items() if k.startswith("Dice ") and v is not None}
    # The case has chambers, aorta and all four arteries; each chamber also has a row of its own.
    assert {"Dice chambers", "Dice aorta", "Dice LM", "Dice LAD", "Dice LCx", "Dice RCA"} <= set(dice_rows)
    assert {f"Dice {name}" for name in CHAMBER_ROWS.values()} & set(dice_rows)
    assert dice_rows == {k: 1.0 for k in dice_rows}
    for row in ("yes/no accuracy", "yes/no balanced accuracy", "multiple-choice accuracy", "not-present accuracy"):
        assert summary[row] == 1.0, row
    assert summary["calcification F1"] == 1.0  # the case has calcium in the dRCA and the pCx
    assert summary["landmark error mm (mean)"] == 0.0 and summary["yes/no ECE"] == 0.0
    assert target_gaps(summary) == {}


def test_an_oracle_model_is_right_on_every_referring_record(oracle_splits):
    assert oracle_splits["held-out seeds"]["referring accuracy"] == 1.0


def test_a_referring_mask_missing_one_of_the_named_arteries_is_wrong(tiny_run):
    """The case has calcium in two arteries, so "the artery with a calcification" names both: drawing only
    the first of them fails that record, and only the records naming one artery stay right."""
    from cardiovlm.training.curriculum.jsonl import read_curriculum, write_curriculum
    from cardiovlm.training.evaluate import REFERRING_INTENTS

    _, _, curriculum = tiny_run
    records = [r for r in read_curriculum(curriculum) if r.intent in REFERRING_INTENTS]
    several = [r for r in records if len(_arteries_named(r.target.mask.label_ids)) > 1]
    assert several and len(several) < len(records), "the case must have referring records naming one and two arteries"
    path = curriculum.with_name("referring.jsonl")
    write_curriculum(records, path, llm="default", seed=0)
    scored = _scored(tiny_run, path, "first artery")
    splits = {"held-out seeds": False, "held-out seeds, held-out phrasings": True}
    expected = {split: [len(_arteries_named(r.target.mask.label_ids)) == 1 for r in records
                        if r.held_out_phrasing == held_out] for split, held_out in splits.items()}
    got = {split: scored[split]["referring accuracy"] for split in splits if expected[split]}
    assert got == {split: pytest.approx(np.mean(expected[split])) for split in got}
    assert min(got.values()) < 1.0


def test_referring_is_right_only_for_every_named_artery_and_no_other():
    ids = {a: min(ARTERY_IDS[a]) for a in ("LM", "LAD", "LCx", "RCA")}
    labels = np.zeros((4, 3, 3), np.int16)
    for i, a in enumerate(ids):  # one equal block per artery
        labels[i] = ids[a]
    both = [ids["LCx"], ids["RCA"]]
    assert referring_correct(np.isin(labels, both), labels, both)
    assert not referring_correct(labels == ids["RCA"], labels, both)  # one named artery missed
    assert not referring_correct(np.isin(labels, [ids["LM"], ids["LAD"]]), labels, both)  # the other two
    assert not referring_correct(labels > 0, labels, both)  # every artery: no better than the ones not named
    assert referring_correct(labels == ids["RCA"], labels, [ids["RCA"]])
    assert not referring_correct(labels == ids["LAD"], labels, [ids["RCA"]])
    assert not referring_correct(np.zeros_like(labels, bool), labels, [ids["RCA"]])
    assert not referring_correct(labels == ids["RCA"], labels, [ids["RCA"], _id("aorta")])  # not only arteries


def test_a_model_that_answers_nothing_scores_zero(tiny_run, sample_curriculum):
    summary = _scored(tiny_run, sample_curriculum, "empty")["held-out seeds"]
    dice_rows = {k: v for k, v in summary.items() if k.startswith("Dice ") and v is not None}
    assert {"Dice chambers", "Dice aorta", "Dice LAD"} <= set(dice_rows)
    assert dice_rows == {k: 0.0 for k in dice_rows}
    assert summary["referring accuracy"] == 0.0 and summary["multiple-choice accuracy"] == 0.0
    assert summary["calcification F1"] == 0.0  # every calcified lesion missed
    # Always "no": right on the no questions only, which balanced accuracy reads as chance.
    assert 0.0 < summary["yes/no accuracy"] < 1.0 and summary["yes/no balanced accuracy"] == 0.5
    assert summary["landmark error mm (mean)"] > 10  # the origin is far from the heart
    assert {"chambers", "aorta", "LAD", "yes/no accuracy"} <= set(target_gaps(summary))


def test_a_mask_is_scored_in_the_row_of_the_structure_asked_for(tiny_run, sample_curriculum):
    """A model that draws the aorta for every request scores on the aorta row and nowhere else."""
    summary = _scored(tiny_run, sample_curriculum, "aorta")["held-out seeds"]
    assert 0.0 < summary["Dice aorta"] and summary["Dice chambers"] == 0.0
    assert all(summary[f"Dice {artery}"] == 0.0 for artery in ("LM", "LAD", "LCx", "RCA"))
    assert summary["yes/no accuracy"] == 1.0  # the answers stay the oracle's


def test_evaluate_cli_json_and_table(tiny_run, capsys):
    from cardiovlm.ui.cli import main

    checkpoint, data, curriculum = tiny_run
    # This call builds the curriculum from the case folder, as a user's first run does; the others reuse it.
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--max-records", "8",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out[0]["cases"] == 1 and "held-out seeds" in out[0]["splits"]
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--curriculum", str(curriculum),
                 "--max-records", "8"]) == 0
    text = capsys.readouterr().out
    assert "Dice LAD" in text and "gap to the targets" in text
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--curriculum", str(curriculum),
                 "--max-records", "8", "--name", "shifted generator", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)[0]["splits"]) >= {"shifted generator"}


def test_evaluate_errors(tmp_path, tiny_run):
    from cardiovlm.ui.cli import main

    checkpoint, _, _ = tiny_run
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate_folder(checkpoint, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvaluationError, match="no case folders"):
        evaluate_folder(checkpoint, tmp_path / "empty")
    assert main(["evaluate", "--checkpoint", str(tmp_path / "missing"), "--data", str(tmp_path / "empty")]) == 2


# ------------------------------------------------------------------ controls that can fail (toy world)
# A toy world where the answer is in the image: a stent is a bright 3-voxel cube in one of 16 small volumes.
TOY_CASES = 16
STENT_HU = 2000


class _ImageReader:
    """Answers by reading the image: a stent is there when some voxel is brighter than 1500 HU."""

    def run(self, study, instruction, choices=None):
        from types import SimpleNamespace

        bright = np.asarray(study.hu) > 1500
        answer = "yes" if bright.any() else "no"
        return SimpleNamespace(answer=answer, answer_confidence=0.9, mask=bright, mask_confidence=0.8,
                               landmark_mm=(0.0, 0.0, 0.0))

    def clear_cache(self):
        pass


class _WordingReader(_ImageReader):
    """Answers from the wording alone (stents of the toy world are all in the LAD): the failure the
    shuffled-image control exists to expose."""

    def run(self, study, instruction, choices=None):
        result = super().run(study, instruction, choices)
        result.answer = "yes" if "LAD" in instruction else "no"
        return result


@pytest.fixture(scope="module")
def toy_world(tmp_path_factory):
    from cardiovlm.tools.core import case_format as cf
    from cardiovlm.tools.ingest.nifti_io import write_nifti
    from cardiovlm.training.curriculum.schema import InstructionRecord, MaskTarget, Provenance, Target

    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(3)
    stent_id = _id("stent")
    records = []
    for n in range(TOY_CASES):
        case = root / f"toy_{n:02d}"
        case.mkdir()
        (case / cf.MANIFEST_FILE).write_text("{}")
        hu = rng.normal(40, 20, (24, 24, 24)).astype(np.int16)
        labels = np.zeros(hu.shape, np.uint8)
        has_stent = n % 2 == 0
        if has_stent:
            i, j, k = rng.integers(2, 19, 3)
            hu[i:i + 3, j:j + 3, k:k + 3] = STENT_HU
            labels[i:i + 3, j:j + 3, k:k + 3] = stent_id
        write_nifti(hu, np.eye(4), case / cf.CCTA_NIFTI)
        write_nifti(labels, np.eye(4), case / cf.LABELS_NIFTI)
        common = dict(study_id=case.name, stage=3, provenance=Provenance(source="ground_truth"), phrasing_id="p0")
        artery = "LAD" if has_stent else "RCA"
        records.append(InstructionRecord(id=f"{n}-ask", task="yes_no", intent="presence",
                                         instruction=f"Is there a stent in the {artery}?",
                                         target=Target(answer="yes" if has_stent else "no"), **common))
        if has_stent:
            records.append(InstructionRecord(id=f"{n}-seg", task="segment", intent="segment_finding",
                                             instruction="segment the stent",
                                             target=Target(mask=MaskTarget(label_ids=[stent_id])), **common))
    curriculum = root / "curriculum.jsonl"
    curriculum.write_text("\n".join(r.model_dump_json() for r in records) + "\n")
    return root, curriculum


def _toy_report(toy_world, model):
    root, curriculum = toy_world
    report = evaluate_folder("toy", root, curriculum=curriculum, model=model,
                             controls=("shuffled", "blank", "noise"))
    return {name.removeprefix("held-out seeds").strip(", ") or "own": s for name, s in report.splits.items()}, report


def test_the_shuffled_image_control_drops_an_image_dependent_task_to_chance(toy_world):
    splits, report = _toy_report(toy_world, _ImageReader())
    row = "yes/no balanced accuracy"
    assert splits["own"][row] == 1.0 and splits["own"]["Dice stents"] == 1.0
    # Another case's image: right only where that case happens to have the same answer.
    assert splits["shuffled images"][row] <= 0.65 and splits["shuffled images"]["Dice stents"] < 0.3
    # Blank: never a stent; noise: bright voxels everywhere. One answer for every case is chance.
    assert splits["blank volumes"][row] == 0.5 and splits["noise volumes"][row] == 0.5
    assert splits["blank volumes"]["yes/no accuracy"] == 0.5  # 8 yes, 8 no: raw accuracy is chance here too
    gaps = control_gaps(report, "held-out seeds")
    assert gaps["shuffled images"]["yes/no balanced accuracy (findings)"] >= 0.35
    # Calibration of the own-image column: answers right at 0.9 confidence, every stent mask usable at 0.8.
    calibration = report.calibration["held-out seeds"]
    assert calibration["yes/no answers"]["ECE"] == pytest.approx(0.1)
    stents = calibration["masks (usable = Dice >= 0.5)"]["stents"]
    assert stents["records"] == TOY_CASES // 2 and stents["ECE"] == pytest.approx(0.2)
    assert stents["bins"] == [{"confidence from": 0.8, "to": 0.9, "records": 8, "mean confidence": 0.8,
                               "share right": 1.0}]


def test_a_model_answering_from_the_wording_does_not_pass_the_shuffled_control(toy_world):
    splits, report = _toy_report(toy_world, _WordingReader())
    row = "yes/no balanced accuracy"
    assert splits["own"][row] == 1.0  # as good as the image reader on its own column...
    assert splits["shuffled images"][row] == 1.0 and splits["blank volumes"][row] == 1.0  # ...and the controls show why
    assert control_gaps(report, "held-out seeds")["shuffled images"][row] == 0.0


@pytest.mark.parametrize("n", [2, 3, 8, 17])
def test_derangement_leaves_no_case_with_its_own_image(n):
    order = derangement(n, seed=n)
    assert sorted(order) == list(range(n)) and all(order[i] != i for i in range(n))


def test_balanced_accuracy_and_ece():
    truth = ["yes"] * 2 + ["no"] * 8
    assert balanced_accuracy(truth, ["no"] * 10) == 0.5  # raw accuracy 0.8: the prior, not a reading
    assert balanced_accuracy(truth, truth) == 1.0 and balanced_accuracy(["no", "no"], ["no", "no"]) is None
    assert expected_calibration_error([0.9] * 10, [True] * 9 + [False]) == pytest.approx(0.0)
    assert expected_calibration_error([0.95] * 4, [True, False, True, False]) == pytest.approx(0.45)


def test_controls_need_two_cases_and_known_names(tiny_run):
    checkpoint, data, curriculum = tiny_run
    with pytest.raises(EvaluationError, match="at least two cases"):
        evaluate_folder(checkpoint, data, curriculum=curriculum, max_records_per_case=2, controls=("shuffled",))
    with pytest.raises(EvaluationError, match="unknown control"):
        evaluate_folder(checkpoint, data, controls=("mirror",))


def test_evaluate_cli_controls(tiny_run, capsys):
    from cardiovlm.ui.cli import main

    checkpoint, data, curriculum = tiny_run
    given = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--curriculum", str(curriculum)]
    assert main([*given, "--max-records", "6", "--controls", "blank", "noise", "--json"]) == 0
    splits = json.loads(capsys.readouterr().out)[0]["splits"]
    assert {"held-out seeds, blank volumes", "held-out seeds, noise volumes"} <= set(splits)
    assert "yes/no balanced accuracy" in splits["held-out seeds, blank volumes"]
    assert main([*given, "--max-records", "6", "--controls", "blank"]) == 0
    text = capsys.readouterr().out
    assert "held-out seeds, blank volumes" in text and "held-out seeds minus blank volumes:" in text
    # One case cannot be shuffled: a clear refusal, exit code 2, no traceback.
    assert main([*given, "--controls"]) == 2
    assert "at least two cases" in capsys.readouterr().err
