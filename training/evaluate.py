"""Evaluation of a CardioVLM checkpoint on curriculum records of phantom cases, with its controls.

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
  when the predicted mask overlaps each artery the target names more (Dice) than any artery it does not
  name (a target names several when e.g. two arteries carry calcium);
* ``segment`` records of absent findings -> whether the model answers "not present";
* ``yes_no`` / ``choice`` records -> accuracy; ``landmark`` records -> error in mm (LPS).

Records are split into the phrasings seen in training and the held-out phrasings
(``held_out_phrasing``), so one data folder gives two columns: held-out seeds, and held-out seeds
with held-out phrasings. A second folder (e.g. a shifted generator setting) gives a third.

Yes/no questions are scored by raw accuracy and by balanced accuracy (the mean of the recalls of
"yes" and "no", so always answering the commoner one scores 0.5), overall and per kind of question
(``cardiovlm.vlm.validation.question_kind``), with the expected calibration error of the answer confidence.

Controls that can fail (``controls``): the same records, scored against the same ground truth, with
the image replaced by another case's (``shuffled``: a derangement, no case keeps its own image), by a
blank air volume (``blank``) or by Gaussian noise (``noise``). A model whose answers read the image
falls to chance (balanced accuracy ~0.5) under each; one that answers from the wording does not, and
the gap between a column and its controls says so.

Example::

    from cardiovlm.training.evaluate import evaluate_folder
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

from cardiovlm.tools.core.errors import CardioVLMError
from cardiovlm.vlm.validation import (
    ARTERY_IDS,
    CHAMBER_ROWS,
    CONTROL_SPLITS,
    DICE_ROWS,
    QUESTION_KINDS,
    finding_ids_in_text,
    question_kind,
    structure_group,
)

# The project's targets on held-out seeds: (row, minimum); a checkpoint below one is not ready to ship.
TARGETS: dict[str, float] = {"chambers": 0.90, "aorta": 0.90, "LM": 0.80, "LAD": 0.80, "LCx": 0.80, "RCA": 0.80,
                             "calcification F1": 0.90, "yes/no accuracy": 0.95, "yes/no balanced accuracy": 0.95}
# The shuffled-image control must fall to about chance for the yes/no figures to be readings of the image.
SHUFFLED_CONTROL_MAX = 0.60
REFERRING_INTENTS = ("segment_most_calcified", "segment_diseased_artery")
BLANK_HU = -1000.0  # the blank control: all air
NOISE_HU = (100.0, 400.0)  # the noise control: Gaussian mean and SD, HU (spans air to bone)
ECE_BINS = 10
USABLE_DICE = 0.5  # a mask counts as usable at this Dice (the assistant's default bar to draw one)


class EvaluationError(CardioVLMError):
    """Evaluation cannot run: no cases, no curriculum records, or an unreadable folder."""

    code = "evaluation.cannot_run"


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1.0 when both are empty."""
    total = int(pred.sum()) + int(truth.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, truth).sum()) / total


def referring_correct(pred: np.ndarray, labels: np.ndarray, target_ids: list[int]) -> bool:
    """Whether ``pred`` picks out the arteries a referring target names: each named artery overlaps it
    (Dice) more than any artery not named. A target with ids outside the coronary arteries names none."""
    ids = set(target_ids)
    named = {artery for artery, artery_ids in ARTERY_IDS.items() if ids & artery_ids}
    if not named or not ids <= set().union(*ARTERY_IDS.values()):
        return False
    overlap = {artery: dice(pred, np.isin(labels, list(artery_ids))) for artery, artery_ids in ARTERY_IDS.items()}
    return min(overlap[a] for a in named) > max((v for a, v in overlap.items() if a not in named), default=0.0)


def lesion_counts(pred: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(true positives, false negatives, false positives) at the connected-component level."""
    from scipy import ndimage

    truth_cc, n_truth = ndimage.label(truth)
    pred_cc, n_pred = ndimage.label(pred)
    hit = set(np.unique(truth_cc[pred & (truth_cc > 0)]).tolist()) - {0}
    touching = set(np.unique(pred_cc[truth & (pred_cc > 0)]).tolist()) - {0}
    return len(hit), n_truth - len(hit), n_pred - len(touching)


def balanced_accuracy(truth: list[str], predicted: list[str]) -> float | None:
    """Mean over the answers present in ``truth`` of the share predicted right; None unless both
    "yes" and "no" occur (with one class only it is plain accuracy, and says nothing about the image)."""
    classes = sorted(set(truth))
    if len(classes) < 2:
        return None
    truth_a, pred_a = np.asarray(truth), np.asarray(predicted)
    return float(np.mean([np.mean(pred_a[truth_a == c] == c) for c in classes]))


def expected_calibration_error(confidence: list[float], correct: list[bool], bins: int = ECE_BINS) -> float | None:
    """ECE: |accuracy - mean confidence| per equal-width confidence bin, weighted by the bin's share."""
    if not confidence:
        return None
    conf, hit = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    index = np.minimum((conf * bins).astype(int), bins - 1)
    return float(sum(abs(hit[index == b].mean() - conf[index == b].mean()) * np.mean(index == b)
                     for b in range(bins) if np.any(index == b)))


def reliability(confidence: list[float], correct: list[bool], bins: int = ECE_BINS) -> dict:
    """Reliability table: per non-empty equal-width confidence bin its records, mean confidence and
    share right; with the ECE over all bins."""
    conf, hit = np.asarray(confidence, dtype=float), np.asarray(correct, dtype=float)
    index = np.minimum((conf * bins).astype(int), bins - 1)
    rows = [{"confidence from": b / bins, "to": (b + 1) / bins, "records": int(np.sum(index == b)),
             "mean confidence": round(float(conf[index == b].mean()), 4),
             "share right": round(float(hit[index == b].mean()), 4)} for b in range(bins) if np.any(index == b)]
    ece = expected_calibration_error(list(conf), list(hit.astype(bool)), bins)
    return {"ECE": None if ece is None else round(ece, 4), "records": int(conf.size), "bins": rows}


def derangement(n: int, seed: int = 0) -> list[int]:
    """A random permutation without fixed points (Sattolo's algorithm: one cycle through all n)."""
    if n < 2:
        raise EvaluationError("the shuffled-image control needs at least two cases")
    order = list(range(n))
    rng = np.random.default_rng(seed)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))
        order[i], order[j] = order[j], order[i]
    return order


def _fit(hu: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``hu`` centre-cropped or air-padded to ``shape`` (another case's image on this case's grid)."""
    out = np.full(shape, BLANK_HU, dtype=np.float32)
    src, dst = [], []
    for have, want in zip(hu.shape, shape):
        lo_src, lo_dst = max(0, (have - want) // 2), max(0, (want - have) // 2)
        n = min(have, want)
        src.append(slice(lo_src, lo_src + n))
        dst.append(slice(lo_dst, lo_dst + n))
    out[tuple(dst)] = np.asarray(hu, dtype=np.float32)[tuple(src)]
    return out


def control_study(control: str, study, *, other=None, seed: int = 0):
    """The image a control shows the model in place of ``study``'s, on ``study``'s grid and affine.

    ``shuffled``: ``other`` (another case's study); ``blank``: all air; ``noise``: Gaussian noise.
    """
    import dataclasses

    if control == "shuffled":
        if other is None:
            raise EvaluationError("the shuffled-image control needs another case's image")
        hu = _fit(other.hu, study.shape)
    elif control == "blank":
        hu = np.full(study.shape, BLANK_HU, dtype=np.float32)
    elif control == "noise":
        hu = np.random.default_rng(seed).normal(*NOISE_HU, size=study.shape).astype(np.float32)
    else:
        raise EvaluationError(f"unknown control '{control}'; choose from {', '.join(CONTROL_SPLITS)}")
    return dataclasses.replace(study, hu=hu, source=f"{control} control of {study.source}")


@dataclass
class Scores:
    """Accumulated per-record scores of one evaluation split."""

    dice: dict[str, list[float]] = field(default_factory=lambda: {row: [] for row in
                                                                  (*DICE_ROWS, *CHAMBER_ROWS.values())})
    referring: list[bool] = field(default_factory=list)
    not_present: list[bool] = field(default_factory=list)
    yes_no_truth: list[str] = field(default_factory=list)
    yes_no_answer: list[str] = field(default_factory=list)
    yes_no_kind: list[str] = field(default_factory=list)
    yes_no_confidence: list[float] = field(default_factory=list)
    # Per Dice row: (the mask's confidence, 0 for an empty mask; whether its Dice reached USABLE_DICE).
    mask_calibration: dict[str, list[tuple[float, bool]]] = field(default_factory=dict)
    choice: list[bool] = field(default_factory=list)
    landmark_mm: list[float] = field(default_factory=list)
    calc_tp: int = 0
    calc_fn: int = 0
    calc_fp: int = 0
    records: int = 0

    def calibration(self) -> dict:
        """Reliability of the confidences: the yes/no answer's (probability of the answer given) and,
        per Dice row, the mask's (mean probability inside it, read as the chance the mask is usable)."""
        correct = [a == t for a, t in zip(self.yes_no_answer, self.yes_no_truth)]
        return {"yes/no answers": reliability(self.yes_no_confidence, correct),
                "masks (usable = Dice >= 0.5)": {row: reliability([c for c, _ in pairs], [u for _, u in pairs])
                                                 for row, pairs in self.mask_calibration.items() if pairs}}

    def summary(self) -> dict[str, float | int | None]:
        """Row name -> value (None when the split had no record for that row)."""
        mean = lambda xs: float(np.mean(xs)) if xs else None  # noqa: E731
        out: dict[str, float | int | None] = {f"Dice {row}": mean(self.dice[row])
                                              for row in (*DICE_ROWS, *CHAMBER_ROWS.values())}
        denominator = 2 * self.calc_tp + self.calc_fn + self.calc_fp
        out["calcification F1"] = (2 * self.calc_tp / denominator) if denominator else None
        out["referring accuracy"] = mean(self.referring)
        out["not-present accuracy"] = mean(self.not_present)
        correct = [a == t for a, t in zip(self.yes_no_answer, self.yes_no_truth)]
        out["yes/no accuracy"] = mean(correct)
        out["yes/no balanced accuracy"] = balanced_accuracy(self.yes_no_truth, self.yes_no_answer)
        for kind in QUESTION_KINDS:
            chosen = [i for i, k in enumerate(self.yes_no_kind) if k == kind]
            out[f"yes/no balanced accuracy ({kind})"] = balanced_accuracy(
                [self.yes_no_truth[i] for i in chosen], [self.yes_no_answer[i] for i in chosen])
        out["yes/no ECE"] = expected_calibration_error(self.yes_no_confidence, correct)
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
    calibration: dict[str, dict] = field(default_factory=dict)  # split -> Scores.calibration()

    def to_dict(self) -> dict:
        return {"checkpoint": self.checkpoint, "data": self.data, "cases": self.cases, "splits": self.splits,
                "calibration": self.calibration, "seconds": round(self.seconds, 1), "targets": TARGETS}


def _case_arrays(folder: Path):
    from cardiovlm.tools.core import case_format as cf
    from cardiovlm.tools.ingest.study import load_study

    study = load_study(folder)
    if not (folder / cf.LABELS_NIFTI).is_file():
        raise EvaluationError(f"case {folder.name} has no {cf.LABELS_NIFTI}; evaluation needs ground truth")
    labels = cf.read_labels(folder)  # in the image's voxel order, however the file stores it
    if labels.shape != study.shape:
        raise EvaluationError(f"case {folder.name}: label map {labels.shape} and image {study.shape} differ")
    landmarks_path = folder / cf.LANDMARKS_FILE
    landmarks = json.loads(landmarks_path.read_text()) if landmarks_path.is_file() else {}
    return study, labels, landmarks


def _load_image(folder: Path):
    from cardiovlm.tools.ingest.study import load_study

    return load_study(folder)


def score_record(model, record, study, labels: np.ndarray, landmarks: dict, scores: Scores, *,
                 image=None) -> None:
    """Run one curriculum record on its study (or on ``image``, a control shown in its place, scored
    against the same ground truth) and add its scores to ``scores``."""
    from cardiovlm.tools.segmentation.masks import mask_from_labels

    target = record.target
    choices = list(target.choices) or None
    result = model.run(study if image is None else image, record.instruction, choices=choices)
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
            scores.referring.append(referring_correct(result.mask, labels, target.mask.label_ids))
            return
        group = structure_group(target.mask.label_ids)
        value = dice(result.mask, truth)
        confidence = (float(result.mask_confidence) if result.mask.any() else 0.0, value >= USABLE_DICE)
        rows = [group] if group is not None else []
        if len(target.mask.label_ids) == 1 and target.mask.label_ids[0] in CHAMBER_ROWS:
            rows.append(CHAMBER_ROWS[target.mask.label_ids[0]])
        for row in rows:
            scores.dice[row].append(value)
            scores.mask_calibration.setdefault(row, []).append(confidence)
        if group == "calcifications":
            tp, fn, fp = lesion_counts(result.mask, truth)
            scores.calc_tp += tp
            scores.calc_fn += fn
            scores.calc_fp += fp
    elif record.task == "yes_no":
        scores.yes_no_truth.append(target.answer)
        scores.yes_no_answer.append(result.answer)
        scores.yes_no_kind.append(question_kind(record.instruction))
        scores.yes_no_confidence.append(result.answer_confidence)
    elif record.task == "choice":
        scores.choice.append(result.answer == target.answer)
    elif record.task == "landmark" and target.landmark in landmarks:
        truth_mm = np.asarray(landmarks[target.landmark], dtype=np.float64)
        scores.landmark_mm.append(float(np.linalg.norm(np.asarray(result.landmark_mm) - truth_mm)))


def load_records(data_dir: Path, curriculum: str | Path | None = None, seed: int = 0) -> list:
    """Curriculum records of the cases in ``data_dir``: from ``curriculum`` (or ``data_dir/curriculum.jsonl``
    when present), else built now with the embedded (offline) report reader."""
    from cardiovlm.training.curriculum.jsonl import read_curriculum

    path = Path(curriculum) if curriculum is not None else data_dir / "curriculum.jsonl"
    if path.is_file():
        return read_curriculum(path, include_held_out=True)
    if curriculum is not None:
        raise EvaluationError(f"curriculum file {path} does not exist")
    from cardiovlm.tools.core.case_format import iter_cases
    from cardiovlm.training.curriculum.builder import build_curriculum

    cases = iter_cases(data_dir)
    if not cases:
        raise EvaluationError(f"no case folders under {data_dir}")
    return build_curriculum(cases, llm="default", seed=seed, measure=False)


def evaluate_folder(checkpoint: str | Path, data_dir: str | Path, *, curriculum: str | Path | None = None,
                    name: str = "held-out seeds", max_records_per_case: int | None = None, model=None,
                    controls: tuple[str, ...] = (), control_seed: int = 0,
                    progress: bool = False) -> EvaluationReport:
    """Evaluate a checkpoint on every case folder of ``data_dir``.

    Args:
        checkpoint: checkpoint folder (``config.json`` + ``model.safetensors``); ignored when ``model`` is given.
        data_dir: folder of case folders with ground truth (``labels.nii.gz``, ``landmarks.json``).
        curriculum: curriculum JSONL of those cases; default ``data_dir/curriculum.jsonl``, else built now.
        name: column name of the records with training phrasings; held-out phrasings get
            ``"<name>, held-out phrasings"``.
        max_records_per_case: evaluate only the first N records of each case (quick runs).
        model: an already loaded ``CardioVLM`` (or any object with its ``run`` and ``clear_cache``).
        controls: any of ``cardiovlm.vlm.validation.CONTROL_SPLITS`` ("shuffled", "blank", "noise"); each scores the
            records of the ``name`` column again with that image in place of the case's own, as the
            column ``"<name>, <control>"`` (e.g. "held-out seeds, shuffled images").
        control_seed: seed of the shuffle (a derangement of the cases) and of the noise volumes.

    Returns:
        :class:`EvaluationReport` with one summary per split.

    Raises:
        EvaluationError: no cases or records; CheckpointError: an unreadable checkpoint.
    """
    import torch

    from cardiovlm import vlm

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EvaluationError(f"data folder {data_dir} does not exist")
    if max_records_per_case is not None and max_records_per_case < 1:
        raise EvaluationError("max_records_per_case must be >= 1")
    unknown = sorted(set(controls) - set(CONTROL_SPLITS))
    if unknown:
        raise EvaluationError(f"unknown control(s) {', '.join(unknown)}; choose from {', '.join(CONTROL_SPLITS)}")
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
    controlled = {control: Scores() for control in controls}
    case_ids = sorted(by_case)
    shuffle = derangement(len(case_ids), control_seed) if "shuffled" in controls else None
    for index, case_id in enumerate(case_ids):
        case_records = by_case[case_id][:max_records_per_case]
        study, labels, landmarks = _case_arrays(data_dir / case_id)
        for record in case_records:
            score_record(model, record, study, labels, landmarks, held_out if record.held_out_phrasing else seen)
        model.clear_cache()
        for control, scores in controlled.items():
            other = None
            if control == "shuffled" and shuffle is not None:  # the derangement is drawn exactly for this control
                other = _load_image(data_dir / case_ids[shuffle[index]])
            image = control_study(control, study, other=other, seed=control_seed * 100_003 + index)
            for record in case_records:
                if not record.held_out_phrasing:  # the records of the ``name`` column, nothing else
                    score_record(model, record, study, labels, landmarks, scores, image=image)
            model.clear_cache()
        if progress:
            print(f"  {name}: case {index + 1}/{len(by_case)} {case_id}", flush=True)
    report = EvaluationReport(checkpoint=str(checkpoint), data=str(data_dir), cases=len(by_case))
    report.splits[name] = seen.summary()
    report.calibration[name] = seen.calibration()
    if held_out.records:
        report.splits[f"{name}, held-out phrasings"] = held_out.summary()
    for control, scores in controlled.items():
        report.splits[f"{name}, {CONTROL_SPLITS[control]}"] = scores.summary()
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


def control_gaps(report: EvaluationReport, name: str) -> dict[str, dict[str, float | None]]:
    """Per control column of split ``name``: yes/no balanced accuracy of the split minus the control's,
    overall and per kind of question (None where either has no figure). Near 0: the answers do not
    depend on the image."""
    rows = ["yes/no balanced accuracy", *(f"yes/no balanced accuracy ({k})" for k in QUESTION_KINDS),
            "multiple-choice accuracy"]
    base = report.splits.get(name, {})
    out: dict[str, dict[str, float | None]] = {}
    for label in CONTROL_SPLITS.values():
        control = report.splits.get(f"{name}, {label}")
        if control is not None:
            out[label] = {row: (None if base.get(row) is None or control.get(row) is None
                                else round(base[row] - control[row], 3)) for row in rows}
    return out


__all__ = ["DICE_ROWS", "SHUFFLED_CONTROL_MAX", "TARGETS", "EvaluationError", "EvaluationReport", "Scores",
           "balanced_accuracy", "control_gaps", "control_study", "derangement", "dice", "evaluate_folder",
           "expected_calibration_error", "format_table", "lesion_counts", "reliability", "structure_group",
           "target_gaps"]
