"""Evaluation of a CardioVLM checkpoint on curriculum records of phantom cases (issue 5, items 4-5).

Every record of a case folder's curriculum is run through ``model.run(study, instruction)`` on the
study grid and scored against the case's ground truth:

* ``segment`` records -> Dice per structure group (chambers, myocardium, aorta, LM, LAD, LCx, RCA,
  calcifications, plaques, stents); the group comes from the record's target label ids, so the
  artery rows pool whole-artery and single-segment instructions of that artery;
* calcification masks also give a lesion-level detection F1 (connected components: a ground-truth
  lesion is found when the prediction touches it, a predicted component touching no lesion is a
  false positive; on a "not present" record every predicted component is one, unless the model
  answered "not present");
* referring records ("segment the most calcified artery", "segment the diseased artery") -> correct
  when the predicted mask overlaps the named artery more (Dice) than any other artery;
* ``segment`` records of absent findings -> whether the model answers "not present";
* ``yes_no`` / ``choice`` records -> accuracy; ``landmark`` records -> error in mm (LPS).

Records are split into the phrasings seen in training and the held-out phrasings
(``held_out_phrasing``), so one data folder gives two columns: held-out seeds, and held-out seeds
with held-out phrasings. A second folder (e.g. a shifted generator setting) gives a third.

Example::

    from training.evaluate import evaluate_folder
    report = evaluate_folder("vlm/checkpoint", "data/heldout")
    print(format_table([report]))
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlm.validation import ARTERY_IDS, CHAMBER_ROWS, DICE_ROWS, finding_ids_in_text, structure_group

# Issue 5 targets on held-out seeds: (row, minimum).
TARGETS: dict[str, float] = {"chambers": 0.90, "aorta": 0.90, "LM": 0.80, "LAD": 0.80, "LCx": 0.80, "RCA": 0.80,
                             "calcification F1": 0.90, "yes/no accuracy": 0.95}
REFERRING_INTENTS = ("segment_most_calcified", "segment_diseased_artery")


class EvaluationError(ValueError):
    """Evaluation cannot run: no cases, no curriculum records, or an unreadable folder."""


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, truth).sum()) / total


def lesion_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false negatives, false positives) at the connected-component level."""
    from scipy import ndimage

    truth_cc, n_truth = ndimage.label(truth)
    pred_cc, n_pred = ndimage.label(pred)
    hit = set(np.unique(truth_cc[pred & (truth_cc > 0)]).tolist()) - {0}
    touching = set(np.unique(pred_cc[truth & (pred_cc > 0)]).tolist()) - {0}
    return len(hit), n_truth - len(hit), n_pred - len(touching)


@dataclass
class Scores:
    """Accumulated per-record scores of one evaluation split."""

    dice: dict[str, list[float]] = field(default_factory=lambda: {row: [] for row in
                                                                  (*DICE_ROWS, *CHAMBER_ROWS.values())})
    referring: list[bool] = field(default_factory=list)
    not_present: list[bool] = field(default_factory=list)
    yes_no: list[bool] = field(default_factory=list)
    choice: list[bool] = field(default_factory=list)
    landmark_mm: list[float] = field(default_factory=list)
    calc_tp: int = 0
    calc_fn: int = 0
    calc_fp: int = 0
    records: int = 0

    def summary(self) -> dict[str, float | int | None]:
        """Row name -> value (None when the split had no record for that row)."""
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        out: dict[str, float | int | None] = {f"Dice {row}": mean(self.dice[row])
                                              for row in (*DICE_ROWS, *CHAMBER_ROWS.values())}
        denominator = 2 * self.calc_tp + self.calc_fn + self.calc_fp
        out["calcification F1"] = (2 * self.calc_tp / denominator) if denominator else None
        out["referring accuracy"] = mean(self.referring)
        out["not-present accuracy"] = mean(self.not_present)
        out["yes/no accuracy"] = mean(self.yes_no)
        out["multiple-choice accuracy"] = mean(self.choice)
        out["landmark error mm (mean)"] = mean(self.landmark_mm)
        out["landmark error mm (median)"] = float(np.median(self.landmark_mm)) if self.landmark_mm else None
        out["records"] = self.records
        return out


@dataclass
class EvaluationReport:
    """Scores of one data folder: ``splits`` maps a column name to its summary."""

    checkpoint: str
    data: str
    cases: int
    splits: dict[str, dict] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "data": self.data, "cases": self.cases, "splits": self.splits,
                "seconds": round(self.seconds, 1), "targets": TARGETS}


def _case_arrays(folder: Path):
    import nibabel as nib

    from tools import case_format as cf
    from tools.study import load_study

    study = load_study(folder)
    labels_path = folder / cf.LABELS_NIFTI
    if not labels_path.is_file():
        raise EvaluationError(f"case {folder.name} has no {cf.LABELS_NIFTI}; evaluation needs ground truth")
    labels = np.asarray(nib.load(str(labels_path)).dataobj)
    if labels.shape != study.shape:
        raise EvaluationError(f"case {folder.name}: label map {labels.shape} and image {study.shape} differ")
    landmarks_path = folder / cf.LANDMARKS_FILE
    landmarks = json.loads(landmarks_path.read_text()) if landmarks_path.is_file() else {}
    return study, labels, landmarks


def score_record(model, record, study, labels: np.ndarray, landmarks: dict, scores: Scores) -> None:
    """Run one curriculum record on its study and add its scores to ``scores``."""
    from tools.masks import mask_from_labels

    target = record.target
    choices = list(target.choices) or None
    result = model.run(study, record.instruction, choices=choices)
    scores.records += 1
    if record.task == "segment":
        if target.mask is None:  # an absent finding: the target answer is "not present"
            scores.not_present.append(result.answer == "not present")
            group = structure_group(finding_ids_in_text(record.instruction))
            if group == "calcifications" and result.answer != "not present":
                scores.calc_fp += lesion_counts(result.mask, np.zeros_like(result.mask))[2]
            return
        truth = mask_from_labels(labels, target.mask.label_ids, spacing=study.spacing,
                                 near_segments=target.mask.near_segments or None, near_mm=target.mask.near_mm)
        if record.intent in REFERRING_INTENTS:
            overlap = {a: dice(result.mask, np.isin(labels, list(ids))) for a, ids in ARTERY_IDS.items()}
            wanted = structure_group(target.mask.label_ids)
            scores.referring.append(wanted is not None and max(overlap, key=overlap.get) == wanted
                                    and overlap[wanted] > 0)
            return
        group = structure_group(target.mask.label_ids)
        if group is not None:
            scores.dice[group].append(dice(result.mask, truth))
        if len(target.mask.label_ids) == 1 and target.mask.label_ids[0] in CHAMBER_ROWS:
            scores.dice[CHAMBER_ROWS[target.mask.label_ids[0]]].append(scores.dice[group][-1])
        if group == "calcifications":
            tp, fn, fp = lesion_counts(result.mask, truth)
            scores.calc_tp += tp
            scores.calc_fn += fn
            scores.calc_fp += fp
    elif record.task == "yes_no":
        scores.yes_no.append(result.answer == target.answer)
    elif record.task == "choice":
        scores.choice.append(result.answer == target.answer)
    elif record.task == "landmark" and target.landmark in landmarks:
        truth_mm = np.asarray(landmarks[target.landmark], dtype=np.float64)
        scores.landmark_mm.append(float(np.linalg.norm(np.asarray(result.landmark_mm) - truth_mm)))


def load_records(data_dir: Path, curriculum: str | Path | None = None, seed: int = 0) -> list:
    """Curriculum records of the cases in ``data_dir``: from ``curriculum`` (or ``data_dir/curriculum.jsonl``
    when present), else built now with the embedded (offline) report reader."""
    from training.train import read_curriculum

    path = Path(curriculum) if curriculum is not None else data_dir / "curriculum.jsonl"
    if path.is_file():
        return read_curriculum(path, include_held_out=True)
    if curriculum is not None:
        raise EvaluationError(f"curriculum file {path} does not exist")
    from tools.case_format import iter_cases
    from training.curriculum.builder import build_curriculum

    cases = iter_cases(data_dir)
    if not cases:
        raise EvaluationError(f"no case folders under {data_dir}")
    return build_curriculum(cases, llm="default", seed=seed, measure=False)


def evaluate_folder(checkpoint: str | Path, data_dir: str | Path, *, curriculum: str | Path | None = None,
                    name: str = "held-out seeds", max_records_per_case: int | None = None, model=None,
                    progress: bool = False) -> EvaluationReport:
    """Evaluate a checkpoint on every case folder of ``data_dir``.

    Args:
        checkpoint: checkpoint folder (``config.json`` + ``model.safetensors``); ignored when ``model`` is given.
        data_dir: folder of case folders with ground truth (``labels.nii.gz``, ``landmarks.json``).
        curriculum: curriculum JSONL of those cases; default ``data_dir/curriculum.jsonl``, else built now.
        name: column name of the records with training phrasings; held-out phrasings get
            ``"<name>, held-out phrasings"``.
        max_records_per_case: evaluate only the first N records of each case (quick runs).
        model: an already loaded ``CardioVLM``.

    Returns:
        :class:`EvaluationReport` with one summary per split.

    Raises:
        EvaluationError: no cases or records; CheckpointError: an unreadable checkpoint.
    """
    import torch

    import vlm

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EvaluationError(f"data folder {data_dir} does not exist")
    if max_records_per_case is not None and max_records_per_case < 1:
        raise EvaluationError("max_records_per_case must be >= 1")
    started = time.time()
    model = model if model is not None else vlm.load(checkpoint, device="cpu" if not torch.cuda.is_available()
                                                     else "cuda")
    records = load_records(data_dir, curriculum)
    by_case: dict[str, list] = {}
    for record in records:
        by_case.setdefault(record.study_id, []).append(record)
    missing = sorted(c for c in by_case if not (data_dir / c).is_dir())
    if missing:
        raise EvaluationError(f"case folder(s) missing under {data_dir}: {', '.join(missing[:5])}")
    seen, held_out = Scores(), Scores()
    for index, (case_id, case_records) in enumerate(sorted(by_case.items())):
        study, labels, landmarks = _case_arrays(data_dir / case_id)
        for record in case_records[:max_records_per_case]:
            score_record(model, record, study, labels, landmarks, held_out if record.held_out_phrasing else seen)
        model.clear_cache()
        if progress:
            print(f"  {name}: case {index + 1}/{len(by_case)} {case_id}", flush=True)
    report = EvaluationReport(checkpoint=str(checkpoint), data=str(data_dir), cases=len(by_case))
    report.splits[name] = seen.summary()
    if held_out.records:
        report.splits[f"{name}, held-out phrasings"] = held_out.summary()
    report.seconds = time.time() - started
    return report


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"


def format_table(reports: list[EvaluationReport]) -> str:
    """One column per split of every report, one row per metric, then the issue's target."""
    columns: list[tuple[str, dict]] = [(name, s) for r in reports for name, s in r.splits.items()]
    rows = list(columns[0][1]) if columns else []
    header = ["metric"] + [name for name, _ in columns] + ["target"]
    table = [header]
    for row in rows:
        target_key = row.removeprefix("Dice ")
        target = TARGETS.get(target_key)
        table.append([row] + [_cell(s.get(row)) for _, s in columns] + [f">= {target:.2f}" if target else ""])
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
             for line in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def target_gaps(report: dict[str, float | int | None]) -> dict[str, float]:
    """Target minus reached value for every target row a split missed (positive = short of target)."""
    gaps = {}
    for key, target in TARGETS.items():
        value = report.get(f"Dice {key}", report.get(key))
        if value is not None and not math.isnan(value) and value < target:
            gaps[key] = round(target - value, 3)
    return gaps


__all__ = ["DICE_ROWS", "TARGETS", "EvaluationError", "EvaluationReport", "Scores", "dice", "evaluate_folder",
           "format_table", "lesion_counts", "structure_group", "target_gaps"]
