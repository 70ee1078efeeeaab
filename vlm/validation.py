"""What a checkpoint's own evaluation says, for the places that quote it next to a model output.

The evaluation table (``cardiovlm.training.evaluate``) scores masks per structure group; this module holds that
vocabulary (the Dice rows and which label ids fall in each), reads the ``evaluation.json`` shipped
beside the weights (``cardiovlm evaluate --json``) and names the group a free-text target belongs to,
so an answer from the VLM can carry the Dice it measured on held-out phantoms for that kind of structure.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    HEART_CHAMBERS,
    SEGMENTS_BY_CODE,
    STRUCTURES_BY_NAME,
    find_anatomy,
    segments_of_artery,
)

# Dice rows of the evaluation table, in order.
DICE_ROWS = ("chambers", "myocardium", "aorta", "LM", "LAD", "LCx", "RCA", "calcifications", "plaques", "stents")
# Each chamber also gets its own row (the pooled "chambers" row can hide one chamber the model misses).
CHAMBER_ROWS: dict[int, str] = {STRUCTURES_BY_NAME[n].label_id: STRUCTURES_BY_NAME[n].display for n in HEART_CHAMBERS}
EVALUATION_FILE = "evaluation.json"  # `cardiovlm evaluate --json` of the checkpoint, next to its weights
HELD_OUT_SPLIT = "held-out seeds"  # the column the targets are set on
# Held-out phantoms of the realistic generator (thorax, kernel-textured noise): weights trained on the
# schematic phantoms can score far lower there, so a mask is gated on both columns.
REALISTIC_SPLIT = "realistic phantoms (generator 2.0)"
GATING_SPLITS = (HELD_OUT_SPLIT, REALISTIC_SPLIT)
# How an answer names the phantoms a figure was measured on.
SPLIT_WORDS: dict[str, str] = {HELD_OUT_SPLIT: "held-out synthetic phantoms",
                               REALISTIC_SPLIT: "realistic synthetic phantoms (generator 2.0)"}
# Controls of `cardiovlm evaluate --controls`: key -> what its column is called after the split's name
# ("held-out seeds, shuffled images"). Each shows the model another image in place of the case's own.
CONTROL_SPLITS: dict[str, str] = {"shuffled": "shuffled images", "blank": "blank volumes", "noise": "noise volumes"}
SYNTHETIC_NOTE = ("CardioVLM weights trained on synthetic phantoms only, on a CPU; research use only, "
                  "not for clinical use.")

_CHAMBER_IDS = {STRUCTURES_BY_NAME[n].label_id for n in HEART_CHAMBERS}
_AORTA_IDS = {STRUCTURES_BY_NAME["aorta"].label_id, STRUCTURES_BY_NAME["aortic_root"].label_id}
MYOCARDIUM_ID = STRUCTURES_BY_NAME["lv_myocardium"].label_id
CALCIFICATION_ID = STRUCTURES_BY_NAME["calcified_plaque"].label_id
PLAQUE_ID = STRUCTURES_BY_NAME["noncalcified_plaque"].label_id
STENT_ID = STRUCTURES_BY_NAME["stent"].label_id
ARTERY_IDS: dict[str, set[int]] = {a: {s.label_id for s in segments_of_artery(a)} for a in ARTERIES}


def structure_group(label_ids: list[int]) -> str | None:
    """Dice row of a segmentation target given by its label ids (None: a target the table has no row for)."""
    ids = set(label_ids)
    if not ids:
        return None
    if STENT_ID in ids:
        return "stents"
    if PLAQUE_ID in ids:
        return "plaques"
    if CALCIFICATION_ID in ids:
        return "calcifications"
    if ids <= _CHAMBER_IDS:
        return "chambers"
    if ids == {MYOCARDIUM_ID}:
        return "myocardium"
    if ids <= _AORTA_IDS:
        return "aorta"
    for artery, artery_ids in ARTERY_IDS.items():
        if ids <= artery_ids:
            return artery
    return None


def finding_ids_in_text(text: str) -> list[int]:
    """Label ids of the finding a text asks about ("calcified plaque of the LAD" -> calcification)."""
    text = text.lower()
    if "stent" in text:
        return [STENT_ID]
    if "calc" in text:
        return [CALCIFICATION_ID]
    if "plaque" in text:
        return [PLAQUE_ID]
    return []


# Kinds of yes/no question, scored and gated each on its own: a model can learn the anatomy ones from the
# wording alone (which artery a segment belongs to), while the findings ones need the image.
QUESTION_KINDS = ("findings", "anatomy", "stent sizing")
_STENT_SIZE = re.compile(r"\d+(?:\.\d+)?\s*mm\s+stent", re.IGNORECASE)
# Findings the curriculum does not ask about by name still need the image, never the anatomy evidence.
_OTHER_FINDINGS = re.compile(r"stenos|narrow|occlu|lesion|block|disease", re.IGNORECASE)


def question_kind(text: str) -> str:
    """Kind of a yes/no question: 'stent sizing' ("will a 26 mm stent cover the pLAD lesion?"), 'findings'
    (is there a calcification, plaque or stent), else 'anatomy' ("is the pRCA a segment of the LAD?")."""
    if _STENT_SIZE.search(text):
        return "stent sizing"
    return "findings" if finding_ids_in_text(text) or _OTHER_FINDINGS.search(text) else "anatomy"


def structure_group_of_text(text: str) -> str | None:
    """Dice row of a target named in words: 'proximal LAD' -> 'LAD', 'left ventricle' -> 'chambers'."""
    finding = finding_ids_in_text(text)
    if finding:
        return structure_group(finding)
    for kind, key, _ in find_anatomy(text):
        if kind == "segment":
            group = structure_group([SEGMENTS_BY_CODE[key].label_id])
        elif kind == "artery":
            group = structure_group(sorted(ARTERY_IDS[key]))
        else:
            group = structure_group([STRUCTURES_BY_NAME[key].label_id])
        if group is not None:
            return group
    return None


def _evaluation_splits(checkpoint_dir: str | Path) -> dict[str, dict]:
    """Every column of the checkpoint's ``evaluation.json`` by name (the first report that has it wins);
    empty when there is no readable file."""
    path = Path(checkpoint_dir) / EVALUATION_FILE
    if not path.is_file():
        return {}
    try:
        reports = json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}
    splits: dict[str, dict] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        for name, split in report.get("splits", {}).items():
            splits.setdefault(name, split)
    return splits


def measured_scores(checkpoint_dir: str | Path, split: str = HELD_OUT_SPLIT) -> dict | None:
    """The summary of one column (default: the held-out seeds) of the checkpoint's ``evaluation.json``;
    None when it has none."""
    return _evaluation_splits(checkpoint_dir).get(split)


def measured_controls(checkpoint_dir: str | Path) -> dict[str, dict]:
    """The image controls of the held-out-seed column in ``evaluation.json``: control column label
    ("shuffled images", ...) -> its summary; empty when the evaluation ran without controls."""
    path = Path(checkpoint_dir) / EVALUATION_FILE
    try:
        reports = json.loads(path.read_text()) if path.is_file() else []
    except json.JSONDecodeError:
        return {}
    for report in reports if isinstance(reports, list) else [reports]:
        splits = report.get("splits", {})
        if HELD_OUT_SPLIT in splits:
            return {label: splits[f"{HELD_OUT_SPLIT}, {label}"] for label in CONTROL_SPLITS.values()
                    if f"{HELD_OUT_SPLIT}, {label}" in splits}
    return {}


@dataclass(frozen=True)
class AnswerEvidence:
    """Whether the checkpoint's answers to one kind of question were shown, on held-out phantoms, to
    depend on the image: its score on the cases' own images against the best image control."""

    kind: str  # question_kind, or "multiple choice"
    row: str  # the evaluation row compared
    accuracy: float | None  # on the cases' own images (balanced for yes/no)
    control: str | None  # the control that came closest ("shuffled images", ...)
    control_accuracy: float | None  # its score
    margin: float  # the lead over every control required
    depends_on_image: bool

    def reason(self) -> str:
        """Why the answer is (not) quoted, in words."""
        if self.accuracy is None:
            return f"its evaluation has no held-out score for {self.kind} questions ('{self.row}')"
        if self.control is None:
            return (f"its evaluation scored {self.kind} questions ({self.accuracy:.2f}) without image controls, so it "
                    "does not show that the answers depend on the image")
        verb = "leads" if self.depends_on_image else "does not lead"
        return (f"on held-out synthetic phantoms its {self.row} is {self.accuracy:.2f} on the cases' own images and "
                f"{self.control_accuracy:.2f} with {self.control}: it {verb} the control by the {self.margin:.2f} "
                "required")


def answer_evidence(checkpoint_dir: str | Path, question: str, *, choices: list[str] | None = None,
                    margin: float = 0.10) -> AnswerEvidence:
    """Compare the checkpoint's held-out score for ``question``'s kind with its image controls.

    A yes/no question is judged by the balanced accuracy of its kind (``question_kind``), a multiple-
    choice one by the multiple-choice accuracy. The answer depends on the image when that score beats
    every control (shuffled images, blank and noise volumes) by at least ``margin``; no score, or no
    control, is no evidence.
    """
    kind = "multiple choice" if choices else question_kind(question)
    row = "multiple-choice accuracy" if choices else f"yes/no balanced accuracy ({kind})"
    accuracy = (measured_scores(checkpoint_dir) or {}).get(row)
    measured = [(label, float(split[row])) for label, split in measured_controls(checkpoint_dir).items()
                if split.get(row) is not None]
    control, control_accuracy = max(measured, key=lambda item: item[1]) if measured else (None, None)
    depends = (accuracy is not None and control_accuracy is not None
               and round(accuracy - control_accuracy, 6) >= margin)
    return AnswerEvidence(kind=kind, row=row, accuracy=accuracy, control=control, control_accuracy=control_accuracy,
                          margin=margin, depends_on_image=bool(depends))


def scored_row(target: str) -> str | None:
    """The evaluation row that scores ``target``: one chamber's own row ('left atrium'), else its group."""
    if not finding_ids_in_text(target):
        for kind, key, _ in find_anatomy(target):
            if kind == "structure" and STRUCTURES_BY_NAME[key].label_id in CHAMBER_ROWS:
                return CHAMBER_ROWS[STRUCTURES_BY_NAME[key].label_id]
    return structure_group_of_text(target)


def measured_dice(checkpoint_dir: str | Path, target: str, split: str = HELD_OUT_SPLIT) -> float | None:
    """Dice the checkpoint reached for ``target`` in one column (default: the held-out seeds): its chamber's
    row when the evaluation has one, else its structure group's (None: unknown)."""
    scores = measured_scores(checkpoint_dir, split)
    if scores is None:
        return None
    row = scored_row(target)
    value = scores.get(f"Dice {row}") if row else None
    if value is None and row in CHAMBER_ROWS.values():  # an evaluation from before the per-chamber rows
        value = scores.get("Dice chambers")
    return None if value is None else float(value)


@dataclass(frozen=True)
class MeasuredDice:
    """The Dice a mask is gated on and quoted with, and the column it comes from."""

    value: float
    split: str  # a name of GATING_SPLITS


def gating_dice(checkpoint_dir: str | Path, target: str) -> MeasuredDice | None:
    """The lowest Dice the checkpoint reached for ``target`` over the held-out seeds and the realistic
    phantoms, where each was evaluated (None: neither has a score).

    A study that looks like the realistic phantoms gets no better mask than those scored, so the held-out
    figure alone would overstate it; the lowest one holds for both kinds of study.
    """
    measured = [MeasuredDice(value, split) for split in GATING_SPLITS
                if (value := measured_dice(checkpoint_dir, target, split)) is not None]
    return min(measured, key=lambda m: m.value) if measured else None
