"""From one turn's messages to the evidence of the answer: outcomes, findings, citations, masks.

Each tool's typed result travels as the ``artifact`` of its ``ToolMessage`` (see
:mod:`cardiovlm.assistant.outcomes`); this module reads those results, never the JSON the chat model saw. The
numbers shown in an answer are taken from here, so every number carries the unit and the tool it
came from.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from cardiovlm.assistant import findings as extract
from cardiovlm.assistant.outcomes import ToolOutcome, outcomes
from cardiovlm.assistant.question import ParsedQuestion, parse_question
from cardiovlm.assistant.verdicts import verdict_for
from cardiovlm.tools.core.answer import AnswerFinding, Citation, GroundedAnswer, MaskFile, PlannedPart, ToolCallRecord

__all__ = ["ToolOutcome", "assemble_answer", "current_turn", "outcomes"]


def current_turn(messages: list[BaseMessage]) -> tuple[ParsedQuestion | None, list[ToolOutcome]]:
    """The question being answered (follow-ups resolved against earlier ones) and its tool outcomes."""
    humans = [i for i, m in enumerate(messages) if isinstance(m, HumanMessage)]
    if not humans:
        return None, []
    question = None
    for i in humans:
        try:
            question = parse_question(str(messages[i].content), previous=question)
        except ValueError:
            question = None
    return question, outcomes(messages[humans[-1] + 1:])


def assemble_answer(messages: list[BaseMessage], new_messages: list[BaseMessage], *, context=None,
                    backend: str = "default", dicom_seg: bool = False) -> GroundedAnswer:
    """The grounded answer of one turn.

    Args:
        messages: the session history up to and including this turn's question.
        new_messages: what the graph produced for this turn (plans, tool results, final answer).
    """
    parsed, _ = current_turn(messages)
    question = str(messages[-1].content)
    turn = outcomes(new_messages)
    final = next((m for m in reversed(new_messages) if isinstance(m, AIMessage) and not m.tool_calls), None)
    text = str(final.content) if final is not None else "No answer was produced."
    found: list[AnswerFinding] = []
    citations: list[Citation] = []
    masks: list[MaskFile] = []
    points: list = []
    landmarks: list[str | None] = [p.landmark for p in parsed.all_parts() if p.landmark] if parsed is not None else []
    for outcome in turn:
        if not outcome.ok or outcome.value is None:
            continue
        found += extract.findings_of(outcome.name, outcome.value)
        citations += extract.citations_of(outcome.name, outcome.value)
        masks += extract.masks_of(outcome.name, outcome.value)
        for landmark in landmarks or [None]:
            points += extract.points_of(outcome.name, outcome.value, landmark)
    if dicom_seg and context is not None:
        masks += _dicom_seg_files(masks, context)
    # The verdict comes from the tool results, not from the wording of the answer, so it is the
    # same whichever chat model wrote the text.
    verdict = verdict_for(parsed, turn) if parsed is not None and parsed.is_yes_no else None
    plan = [PlannedPart(text=p.text, task=p.task, yes_no=p.is_yes_no) for p in parsed.all_parts()] if parsed else []
    return GroundedAnswer(
        question=question, answer=text, verdict=verdict, findings=found, plan=plan,
        tool_calls=[ToolCallRecord(name=o.name, args=o.args, ok=o.ok, message=o.error,
                                   code=None if o.failure is None else o.failure.code, result=o.value)
                    for o in turn],
        citations=citations, masks=masks, overlay_png=extract.overlay_for(masks, context, points), backend=backend,
    )


def _dicom_seg_files(masks: list[MaskFile], context) -> list[MaskFile]:
    """A DICOM SEG beside each NIfTI mask of the answer (see :mod:`cardiovlm.tools.dicom.dicom_export`)."""
    from pathlib import Path

    from cardiovlm.tools.dicom.dicom_export import save_mask_dicom_seg

    out = []
    for m in masks:
        mask = context.extra_masks.get(m.name) if m.format == "nifti" else None
        if mask is None:
            continue
        target = Path(m.path).with_name(Path(m.path).name.removesuffix(".nii.gz") + "_seg.dcm")
        path, note = save_mask_dicom_seg(mask, context.study, target, name=m.name, out_dir=context.outputs())
        out.append(MaskFile(name=m.name, path=str(path), format="dicom-seg", note=note))
    return out
