"""From one turn's messages to the evidence of the answer: outcomes, findings, citations, masks.

Tool results are JSON (every tool returns a pydantic model dumped to a dict); this module reads
them back with ``json.loads`` and never evaluates anything. The numbers shown in an answer are
taken from here, so every number carries the unit and the tool it came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage

from assistant.answer import AnswerFinding, Citation, GroundedAnswer, MaskFile, ToolCallRecord
from assistant.question import ParsedQuestion, parse_question


@dataclass
class ToolOutcome:
    """One tool call of the current turn and what came back."""

    name: str
    args: dict
    ok: bool
    result: dict | None  # the parsed JSON result when ok
    error: str | None  # the message when not ok


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


def outcomes(messages: list[BaseMessage]) -> list[ToolOutcome]:
    """Pair each tool call of the AI messages with its ToolMessage."""
    calls = {}
    for m in messages:
        if isinstance(m, AIMessage):
            for call in m.tool_calls:
                calls[call["id"]] = call
    found = []
    for m in messages:
        if not isinstance(m, ToolMessage) or m.tool_call_id not in calls:
            continue
        call = calls[m.tool_call_id]
        text = m.content if isinstance(m.content, str) else json.dumps(m.content)
        ok = m.status != "error"
        result = None
        if ok:
            try:
                result = json.loads(text)
            except json.JSONDecodeError:
                result = {"text": text}
            if isinstance(result, list):  # list-valued tools (report hits)
                result = {"items": result}
        found.append(ToolOutcome(call["name"], dict(call["args"]), ok, result if ok else None,
                                 None if ok else text.removeprefix("error: ")))
    return found


def assemble_answer(messages: list[BaseMessage], new_messages: list[BaseMessage], *, context=None,
                    backend: str = "default", dicom_seg: bool = False) -> GroundedAnswer:
    """The grounded answer of one turn.

    Args:
        messages: the session history up to and including this turn's question.
        new_messages: what the graph produced for this turn (plans, tool results, final answer).
    """
    from assistant import findings as extract

    parsed, _ = current_turn(messages)
    question = str(messages[-1].content)
    turn = outcomes(new_messages)
    final = next((m for m in reversed(new_messages) if isinstance(m, AIMessage) and not m.tool_calls), None)
    text = str(final.content) if final is not None else "No answer was produced."
    found: list[AnswerFinding] = []
    citations: list[Citation] = []
    masks: list[MaskFile] = []
    points: list = []
    landmarks = [p.landmark for p in parsed.all_parts() if p.landmark] if parsed is not None else []
    for outcome in turn:
        if not outcome.ok or outcome.result is None:
            continue
        found += extract.findings_of(outcome.name, outcome.result)
        citations += extract.citations_of(outcome.name, outcome.result)
        masks += extract.masks_of(outcome.name, outcome.result)
        for landmark in landmarks or [None]:
            points += extract.points_of(outcome.name, outcome.result, landmark)
    if dicom_seg and context is not None:
        masks += _dicom_seg_files(masks, context)
    # The verdict comes from the tool results, not from the wording of the answer, so it is the
    # same whichever chat model wrote the text.
    verdict = extract.verdict_for(parsed, turn) if parsed is not None and parsed.is_yes_no else None
    return GroundedAnswer(
        question=question, answer=text, verdict=verdict, findings=found,
        tool_calls=[ToolCallRecord(name=o.name, args=o.args, ok=o.ok, message=o.error) for o in turn],
        citations=citations, masks=masks, overlay_png=extract.overlay_for(masks, context, points), backend=backend,
    )


def _dicom_seg_files(masks: list[MaskFile], context) -> list[MaskFile]:
    """A DICOM SEG beside each NIfTI mask of the answer (see :mod:`tools.dicom_export`)."""
    from pathlib import Path

    from tools.dicom_export import save_mask_dicom_seg

    out = []
    for m in masks:
        mask = context.extra_masks.get(m.name) if m.format == "nifti" else None
        if mask is None:
            continue
        target = Path(m.path).with_name(Path(m.path).name.removesuffix(".nii.gz") + "_seg.dcm")
        path, note = save_mask_dicom_seg(mask, context.study, target, name=m.name, out_dir=context.outputs())
        out.append(MaskFile(name=m.name, path=str(path), format="dicom-seg", note=note))
    return out
