"""The trained VLM as assistant tools: ``vlm_segment``, ``vlm_locate`` and ``vlm_ask``.

Each tool loads the checkpoint of ``settings.checkpoint_dir`` (once, then kept while the folder is
unchanged) and runs one instruction on the session's study with ``CardioVLM.run``. When no
checkpoint is installed the tools fail with "no trained VLM checkpoint is installed" and where it
was looked for; they never return a made-up answer. Masks are written as NIfTI into the session's
output folder and kept in the context for overlays, like those of ``segment_anatomy``. Every result
carries the note that the weights are synthetic-trained and not for clinical use; masks also carry
the Dice the checkpoint measured for that kind of structure on held-out phantoms (``cardiovlm.vlm.validation``).

Before any mask, landmark or answer the study passes the input check (``cardiovlm.vlm.input_check``): a study
the model was not trained for (not CT, a localizer, thick slices, no contrast, a blank or noise
volume, not a cardiac field of view) gets its typed refusal and no output. A yes/no or multiple-choice
answer is quoted only when the checkpoint's evaluation shows that answers of that kind depend on the
image: its held-out score beats every image control (shuffled images, blank, noise) by
``vlm_min_answer_margin``; otherwise the tool says so and gives no answer.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import tool
from pydantic import BaseModel, Field

from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.ingest.study_errors import StudyError
from cardiovlm.tools.quant.context import StudyContext, context_from_config
from cardiovlm.tools.segmentation.masks import save_mask_nifti

if TYPE_CHECKING:
    from cardiovlm.vlm.validation import MeasuredDice


class VLMUnavailable(StudyError):
    """No usable trained checkpoint: the message says where one was looked for."""

    code = "vlm.unavailable"


class VLMBelowBar(VLMUnavailable):
    """The checkpoint's held-out Dice for the asked kind of structure is below ``settings.vlm_min_dice``."""

    code = "vlm.below_dice_bar"


class VLMAnswerWithheld(VLMUnavailable):
    """The checkpoint's held-out answers to this kind of question were not shown to depend on the image."""

    code = "vlm.answer_withheld"


R = TypeVar("R", bound=BaseModel)
_lock = threading.Lock()
_loaded: dict[str, tuple[float, object]] = {}  # checkpoint folder -> (weights mtime, model)


# The file names of cardiovlm.vlm.checkpoint_io, repeated so that checking for a checkpoint does not import
# torch and MONAI (seconds) when none is installed; test_session checks they agree.
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def checkpoint_installed(checkpoint_dir: Path | None = None) -> bool:
    folder = Path(checkpoint_dir or get_settings().checkpoint_dir)
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def load_vlm(checkpoint_dir: Path | None = None):
    """The trained model of ``checkpoint_dir`` (default: settings), loaded once per weights file.

    Raises:
        VLMUnavailable: no checkpoint is installed there, or it cannot be loaded (the reason is given).
    """
    folder = Path(checkpoint_dir or get_settings().checkpoint_dir)
    if not checkpoint_installed(folder):
        raise VLMUnavailable(
            f"no trained VLM checkpoint is installed (looked in {folder}); train one with `cardiovlm train` "
            "or set CARDIOVLM_CHECKPOINT_DIR to a checkpoint folder")
    from cardiovlm import vlm
    mtime = (folder / WEIGHTS_FILE).stat().st_mtime
    with _lock:
        cached = _loaded.get(str(folder))
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            model = vlm.load(folder, device="cpu")
        except ValueError as err:  # CheckpointError, TextEncoderUnavailable
            raise VLMUnavailable(f"the VLM checkpoint in {folder} cannot be used: {err}") from err
        _loaded[str(folder)] = (mtime, model)
        return model


def _checked_model(ctx: StudyContext):
    """The installed model, once the study passed the input check (``cardiovlm.vlm.input_check.UnsupportedInputError``
    otherwise: the model gives nothing for a study it was not trained for)."""
    from cardiovlm.vlm.input_check import check_input

    model = load_vlm()  # "no checkpoint installed" comes first
    check_input(ctx.study)
    return model


def _check_answer_evidence(question: str, choices: list[str] | None):
    """The evidence that answers of ``question``'s kind read the image; raises :class:`VLMAnswerWithheld`
    without it. An answer the model gives just as well on another patient's image is its prior, not a
    reading of this one."""
    from cardiovlm.vlm.validation import answer_evidence

    margin = get_settings().vlm_min_answer_margin
    evidence = answer_evidence(get_settings().checkpoint_dir, question, choices=choices, margin=margin)
    if margin <= 0 or evidence.depends_on_image:
        return evidence
    if evidence.control is not None and evidence.accuracy is not None:
        lead = (f"the installed checkpoint's answers to {evidence.kind} questions do not depend on the image on "
                "held-out tests")
    else:
        lead = (f"it is not shown that the installed checkpoint's answers to {evidence.kind} questions depend on "
                "the image")
    raise VLMAnswerWithheld(f"the VLM gives no answer: {lead} ({evidence.reason()}, "
                            "CARDIOVLM_VLM_MIN_ANSWER_MARGIN); the measuring tools or a label map answer it instead")


def _measured_dice(target: str) -> MeasuredDice | None:
    """The Dice a VLM mask of ``target`` is gated on and quoted with: the lowest of the installed checkpoint's
    held-out and realistic-phantom figures (``cardiovlm.vlm.validation.gating_dice``), None when not evaluated."""
    from cardiovlm.vlm.validation import gating_dice

    return gating_dice(get_settings().checkpoint_dir, target)


def _measured_accuracy(choices: list[str] | None) -> float | None:
    """Held-out phantom accuracy of the installed checkpoint on yes/no (or multiple-choice) questions."""
    from cardiovlm.vlm.validation import measured_scores

    scores = measured_scores(get_settings().checkpoint_dir) or {}
    value = scores.get("multiple-choice accuracy" if choices else "yes/no accuracy")
    return None if value is None else round(float(value), 3)


def _check_mask_quality(target: str) -> float | None:
    """The checkpoint's gating Dice for ``target``; raises :class:`VLMBelowBar` when it is below the bar.

    A mask drawn on a patient's images reads as a finding, so one the model cannot draw reliably (on
    its own held-out phantoms, schematic or realistic) is not drawn at all.
    """
    from cardiovlm.vlm.validation import SPLIT_WORDS, scored_row

    measured, bar = _measured_dice(target), get_settings().vlm_min_dice
    if bar <= 0 or (measured is not None and round(measured.value, 3) >= bar):
        return None if measured is None else round(measured.value, 3)
    group = scored_row(target) or target
    if measured is None:
        reason = f"has no held-out evaluation for '{group}' (no score in its evaluation.json)"
    else:
        reason = f"reached Dice {measured.value:.2f} for '{group}' on {SPLIT_WORDS.get(measured.split, measured.split)}"
    raise VLMBelowBar(f"no VLM mask of the {target} is drawn: the installed checkpoint {reason}, below the "
                      f"{bar:.2f} required (CARDIOVLM_VLM_MIN_DICE); a label map or TotalSegmentator can "
                      "segment it instead")


def _note() -> str:
    from cardiovlm.vlm.validation import SYNTHETIC_NOTE

    return SYNTHETIC_NOTE


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")[:60] or "mask"


# ------------------------------------------------------------------------------------------ schemas
class VLMSegmentInput(BaseModel):
    target: str = Field(description="what to segment, in words: 'LAD', 'proximal RCA', 'calcified plaque of the "
                        "LAD', 'left ventricle'")


class VLMLocateInput(BaseModel):
    target: str = Field(description="landmark or finding to locate: 'left coronary ostium', 'the pLAD lesion', "
                        "'crux cordis'")


class VLMAskInput(BaseModel):
    question: str = Field(description="a question about the image, e.g. 'is there a stent in the RCA?'")
    choices: list[str] | None = Field(None, description="options of a multiple-choice question, if any")


class VLMSegmentResult(BaseModel):
    target: str
    present: bool = Field(description="false when the model's mask is empty")
    voxels: int
    volume_mm3: float
    mask_confidence: float = Field(description="mean probability inside the mask, 0-1")
    mask_path: str | None = Field(None, description="NIfTI file of the mask on the study grid")
    mask_name: str | None = Field(None, description="the mask's name among the session's masks (its overlay and "
                                  "DICOM SEG segment); 'vlm_' + target, apart from label-map masks; None when empty")
    labels_source: str = "VLM"
    measured_dice: float | None = Field(None, description="Dice this checkpoint reached for this kind of structure "
                                        "on held-out synthetic phantoms (its model card): the lowest of the "
                                        "schematic and realistic ones; None when not evaluated")
    note: str = Field(description="where the weights come from and what they are not for")


class VLMLocateResult(BaseModel):
    target: str
    landmark_mm: tuple[float, float, float] = Field(description="patient LPS position, mm")
    landmark_confidence: float = Field(description="1 for a sharp heatmap, 0 for a uniform one")
    note: str = Field(description="where the weights come from and what they are not for")


class VLMAskResult(BaseModel):
    question: str
    answer: str = Field(description="'yes', 'no', 'not present', or the chosen option")
    answer_confidence: float
    answer_probabilities: dict[str, float]
    choice_probabilities: dict[str, float] | None = None
    measured_accuracy: float | None = Field(None, description="share of such questions (yes/no, or multiple "
                                            "choice) this checkpoint answered right on held-out synthetic phantoms")
    question_kind: str = Field(description="kind of question the answer was judged as: findings, anatomy, stent "
                               "sizing, or multiple choice")
    measured_balanced_accuracy: float | None = Field(None, description="held-out score of this kind of question on "
                                                     "the cases' own images (balanced accuracy for yes/no)")
    control_accuracy: float | None = Field(None, description="the same score with the closest image control "
                                           "(another case's image, a blank or a noise volume): near it = no reading")
    note: str = Field(description="where the weights come from and what they are not for")


# -------------------------------------------------------------------------------------------- tools
def _content_and_artifact(result: R) -> tuple[dict, R]:
    # the dump is the JSON the chat model reads; the typed result travels beside it as the artifact
    return result.model_dump(), result


def vlm_segment(ctx: StudyContext, target: str) -> VLMSegmentResult:
    model = _checked_model(ctx)  # before any judgement of the checkpoint's scores
    measured = _check_mask_quality(target)
    result = model.run(ctx.study, f"segment the {target}")
    mask = np.asarray(result.mask, dtype=bool)
    voxels = int(mask.sum())
    name = f"vlm_{_file_safe(target)}"
    path = None
    if voxels:
        path = str(save_mask_nifti(mask, ctx.study, ctx.outputs() / f"{name}.nii.gz"))
        ctx.extra_masks[name] = mask
    return VLMSegmentResult(target=target, present=voxels > 0, voxels=voxels,
                            volume_mm3=round(voxels * float(np.prod(ctx.study.spacing)), 1),
                            mask_confidence=round(result.mask_confidence, 3), mask_path=path,
                            mask_name=name if voxels else None, measured_dice=measured, note=_note())


@tool("vlm_segment", args_schema=VLMSegmentInput, response_format="content_and_artifact")
def vlm_segment_tool(target: str, *, config: RunnableConfig) -> tuple[dict, VLMSegmentResult]:
    """Segment a structure or finding described in words with the trained CardioVLM model; returns
    its volume, the model's confidence and the mask file. Use when the study has no label map."""
    return _content_and_artifact(vlm_segment(context_from_config(config), target))


@tool("vlm_locate", args_schema=VLMLocateInput, response_format="content_and_artifact")
def vlm_locate_tool(target: str, *, config: RunnableConfig) -> tuple[dict, VLMLocateResult]:
    """Locate a landmark or finding described in words with the trained CardioVLM model; returns its
    position in patient coordinates (LPS mm) and the model's confidence."""
    ctx = context_from_config(config)
    result = _checked_model(ctx).run(ctx.study, f"locate the {target}")
    return _content_and_artifact(VLMLocateResult(
        target=target, landmark_mm=tuple(round(v, 2) for v in result.landmark_mm),
        landmark_confidence=round(result.landmark_confidence, 3), note=_note()))


@tool("vlm_ask", args_schema=VLMAskInput, response_format="content_and_artifact")
def vlm_ask_tool(question: str, choices: list[str] | None = None, *,
                 config: RunnableConfig) -> tuple[dict, VLMAskResult]:
    """Ask the trained CardioVLM model a yes/no or multiple-choice question about the image; returns
    its answer and confidence. A model reading, not a measurement: prefer the measuring tools."""
    return _content_and_artifact(vlm_ask(context_from_config(config), question, choices))


def vlm_ask(ctx: StudyContext, question: str, choices: list[str] | None = None) -> VLMAskResult:
    model = _checked_model(ctx)
    evidence = _check_answer_evidence(question, choices)
    result = model.run(ctx.study, question, choices)
    rounded = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    return VLMAskResult(question=question, answer=result.answer, answer_confidence=round(result.answer_confidence, 3),
                        answer_probabilities={k: round(v, 3) for k, v in result.answer_probabilities.items()},
                        choice_probabilities=None if result.choice_probabilities is None else
                        {k: round(v, 3) for k, v in result.choice_probabilities.items()},
                        measured_accuracy=_measured_accuracy(choices), question_kind=evidence.kind,
                        measured_balanced_accuracy=rounded(evidence.accuracy),
                        control_accuracy=rounded(evidence.control_accuracy), note=_note())
