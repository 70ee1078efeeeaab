"""The embedded default chat model: a deterministic clinical planner, offline and weight-free.

It is a LangChain chat model like any other backend: given the conversation it either emits tool
calls or, once the tools have answered, writes the final answer from their results. It reads the
question with :mod:`assistant.question` (the coronary ontology, numbers with units, follow-ups) and
plans with the table in :func:`plan_next`; the wording of answers lives in
:mod:`assistant.compose`. It never states a number that is not in a tool result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from assistant.compose import compose_answer
from assistant.evidence import ToolOutcome, current_turn
from assistant.question import ParsedQuestion
from tools.anatomy import ARTERIES, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from tools.settings import get_settings

log = logging.getLogger(__name__)

MEASURED_ARTERIES = ("LM", "LAD", "LCx", "RCA")


class ClinicalPlanner(BaseChatModel):
    """Plans tool calls for a clinical question and writes the answer from the results."""

    bound_tools: tuple[str, ...] = ()

    @property
    def _llm_type(self) -> str:
        return "cardiovlm-clinical-planner"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> "ClinicalPlanner":
        names = tuple(convert_to_openai_tool(t)["function"]["name"] for t in tools)
        return self.model_copy(update={"bound_tools": names})

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        question, done = current_turn(messages)
        calls = plan_next(question, done, set(self.bound_tools)) if question is not None else []
        turn = sum(isinstance(m, HumanMessage) for m in messages)
        if calls:
            message = AIMessage(content="", tool_calls=[
                {"name": name, "args": args, "id": f"call_{turn}_{len(done) + i}", "type": "tool_call"}
                for i, (name, args) in enumerate(calls)])
        else:
            message = AIMessage(content=_safe_compose(question, done))
        return ChatResult(generations=[ChatGeneration(message=message)])


def _safe_compose(question: ParsedQuestion | None, done: list[ToolOutcome]) -> str:
    """The composed answer; should writing it fail, the tool results are still listed (never a guess)."""
    try:
        return compose_answer(question, done)
    except Exception as err:  # noqa: BLE001 - a wording bug must not lose the clinician's results
        log.exception("composing the answer failed")
        lines = [f"{o.name}: {'ok' if o.ok else 'failed: ' + str(o.error)}" for o in done]
        return (f"I could not write the answer ({type(err).__name__}); the tool results are in the findings "
                "and the trace: " + "; ".join(lines))


def _called(done: list[ToolOutcome], name: str) -> list[ToolOutcome]:
    return [o for o in done if o.name == name]


def _ok(done: list[ToolOutcome], name: str) -> list[ToolOutcome]:
    return [o for o in done if o.name == name and o.ok and o.result is not None]


def vessel_of(q: ParsedQuestion) -> str | None:
    """The coronary vessel a question is about: a segment code, else an artery, else None."""
    return q.segment or q.artery


def _no_label_map(done: list[ToolOutcome]) -> bool:
    """A label-map tool failed because the session has no segmentation: the VLM is the next resort."""
    return any(not o.ok and o.error and "segmentation" in o.error for o in done)


def plan_next(q: ParsedQuestion, done: list[ToolOutcome], available: set[str]) -> list[tuple[str, dict]]:
    """The next tool calls for question ``q`` given what already ran this turn; [] means answer now.

    Each intent is a short plan; a step whose tool is unavailable is skipped and the answer says so.
    Plans can take two rounds: e.g. a stent question without a vessel first measures every artery,
    then places the stent on the worst lesion found.
    """
    calls: list[tuple[str, dict]] = []

    def once(name: str, args: dict) -> None:
        if name in available and not any(o.name == name and o.args == args for o in done) \
                and (name, args) not in calls:
            calls.append((name, args))

    vessel = vessel_of(q)
    if q.intent == "study_info":
        once("study_info", {})
    elif q.intent == "calcium_score":
        once("calcium_score", {"artery": q.artery} if q.artery else {})
    elif q.intent == "stenosis":
        if q.finding == "stent":
            once("segment_anatomy", {"target": "stent", **({"on_artery": vessel} if vessel else {})})
        if vessel:
            once("measure_lesion", {"vessel": vessel})
        else:
            for artery in MEASURED_ARTERIES:
                once("measure_lesion", {"vessel": artery})
    elif q.intent == "stent_coverage":
        _plan_stent(q, done, once)
    elif q.intent == "presence":
        _plan_presence(q, done, once)
    elif q.intent == "segment":
        _plan_segment(q, done, once)
    elif q.intent == "risk":
        args: dict = {}
        if q.troponin_value is not None:
            args = {"troponin_value": q.troponin_value, "troponin_unit": q.troponin_unit}
        once("risk_context", args)
    elif q.intent == "reports":
        similar = re.search(r"\bsimilar\b|\bother patients\b|\blike this\b", q.text, re.I)
        once("retrieve_reports", {"query": q.text, "scope": "other_patients" if similar else "this_patient"})
    if not calls and _no_label_map(done) and q.intent in ("segment", "presence", "stenosis") \
            and not _called(done, "vlm_segment") and not _called(done, "vlm_ask"):
        # No label map: ask the trained VLM instead (it says so when no checkpoint is installed).
        if q.intent == "segment":
            once("vlm_segment", {"target": _segment_target_text(q)})
        else:
            once("vlm_ask", {"question": q.text})
    return calls


def _plan_stent(q: ParsedQuestion, done: list[ToolOutcome], once) -> None:
    """Stent on the named vessel; without one, on the most severe lesion of the coronary tree."""
    length = q.stent_length_mm if q.stent_length_mm is not None else min(get_settings().stent_lengths_mm)
    vessel = vessel_of(q)
    if vessel is None:
        for artery in MEASURED_ARTERIES:
            once("measure_lesion", {"vessel": artery})
        worst = worst_lesion(done)
        if worst is None:
            return
        vessel = worst["segment"]
    args = {"vessel": vessel, "stent_length_mm": length}
    if q.stent_diameter_mm is not None:
        args["stent_diameter_mm"] = q.stent_diameter_mm
    once("stent_coverage", args)
    # Show where: the mask of the lesion's segment, drawn on the images with the answer.
    placed = [o.result.get("lesion") for o in _ok(done, "stent_coverage")]
    if placed and placed[-1] and placed[-1].get("segment"):
        once("segment_anatomy", {"target": placed[-1]["segment"]})


def _plan_presence(q: ParsedQuestion, done: list[ToolOutcome], once) -> None:
    """Presence of a finding: finding masks for calcium, plaque and stents; measurement for narrowing."""
    vessel = vessel_of(q)
    where = {"on_artery": vessel} if vessel else {}
    if q.stent_status:
        # Patency / in-stent restenosis: where the stent is, then the lumen measured through it.
        once("segment_anatomy", {"target": "stent", **where})
        for v in ([vessel] if vessel else MEASURED_ARTERIES):
            once("measure_lesion", {"vessel": v})
        return
    if q.finding in ("calcification", "stent"):
        once("segment_anatomy", {"target": q.finding, **where})
    elif q.finding == "plaque":
        once("segment_anatomy", {"target": "calcification", **where})
        once("segment_anatomy", {"target": "plaque", **where})
    elif vessel:
        once("measure_lesion", {"vessel": vessel})
    else:
        for artery in MEASURED_ARTERIES:
            once("measure_lesion", {"vessel": artery})


def _plan_segment(q: ParsedQuestion, done: list[ToolOutcome], once) -> None:
    if q.superlative == "most_calcified":
        once("calcium_score", {})
        scored = _ok(done, "calcium_score")
        if scored:
            artery = most_calcified_artery(scored[-1].result)
            if artery:
                once("segment_anatomy", {"target": artery})
        return
    if q.superlative == "most_stenosed":
        for artery in MEASURED_ARTERIES:
            once("measure_lesion", {"vessel": artery})
        worst = worst_lesion(done)
        if worst is not None:
            once("segment_anatomy", {"target": worst["segment"]})
        return
    target = q.segment or q.artery or q.structure
    if q.finding in ("calcification", "plaque", "stent") and target in (*ARTERIES, *SEGMENTS_BY_CODE):
        once("segment_anatomy", {"target": q.finding, "on_artery": target})
    elif q.finding in ("calcification", "plaque", "stent") and target is None:
        once("segment_anatomy", {"target": q.finding})
    elif target:
        once("segment_anatomy", {"target": target})


def _segment_target_text(q: ParsedQuestion) -> str:
    """What the VLM is asked to segment, in the words of its curriculum ('left atrium', not 'la_blood')."""
    structure = STRUCTURES_BY_NAME[q.structure].display if q.structure in STRUCTURES_BY_NAME else q.structure
    target = q.segment or q.artery or structure or q.finding or "coronary arteries"
    return f"{q.finding} of the {target}" if q.finding and target != q.finding else str(target)


def worst_lesion(done: list[ToolOutcome]) -> dict | None:
    """The most severe lesion among this turn's measure_lesion results (None when there is none)."""
    lesions = [o.result["lesion"] for o in _ok(done, "measure_lesion") if o.result.get("lesion")]
    return max(lesions, key=lambda les: (les["stenosis_percent"], les["length_mm"]), default=None)


def most_calcified_artery(calcium: dict) -> str | None:
    """The artery with the highest calcium score in a calcium_score result, or None without calcium."""
    per_artery = calcium.get("per_artery") or {}
    scores = {}
    for artery, value in per_artery.items():
        if isinstance(value, dict):
            # Agatston on a calcium-scoring series; calcium volume on a contrast CCTA.
            value = value["agatston"] if value.get("agatston") is not None else value.get("volume_mm3")
        scores[artery] = value or 0
    if not scores or max(scores.values()) <= 0:
        return None
    return max(scores, key=scores.get)
