"""The embedded default chat model: a deterministic clinical planner, offline and weight-free.

It is a LangChain chat model like any other backend: given the conversation it either emits tool
calls or, once the tools have answered, writes the final answer from their results. It reads the
question with :mod:`assistant.question` (the coronary ontology, numbers with units, follow-ups) and
plans with the table in :func:`plan_next`; the wording of answers lives in
:mod:`assistant.compose`. It never states a number that is not in a tool result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from assistant.compose import compose_answer
from assistant.evidence import ToolOutcome, current_turn
from assistant.question import ParsedQuestion
from tools.anatomy import ARTERIES, MAIN_VESSEL_PATHS

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
        if calls:
            message = AIMessage(content="", tool_calls=[
                {"name": name, "args": args, "id": f"call_{len(done) + i}", "type": "tool_call"}
                for i, (name, args) in enumerate(calls)])
        else:
            message = AIMessage(content=compose_answer(question, done))
        return ChatResult(generations=[ChatGeneration(message=message)])


def _called(done: list[ToolOutcome], name: str) -> list[ToolOutcome]:
    return [o for o in done if o.name == name]


def _vessel_args(q: ParsedQuestion) -> dict:
    if q.segment:
        return {"segment": q.segment}
    if q.artery:
        return {"artery": q.artery}
    return {}


def plan_next(q: ParsedQuestion, done: list[ToolOutcome], available: set[str]) -> list[tuple[str, dict]]:
    """The next tool calls for question ``q`` given what already ran this turn; [] means answer now.

    Each intent is a short plan; a step whose tool is unavailable is skipped and the answer says so.
    """
    calls: list[tuple[str, dict]] = []

    def once(name: str, args: dict) -> None:
        if name in available and not any(o.name == name and o.args == args for o in done):
            calls.append((name, args))

    if q.intent == "study_info":
        once("study_info", {})
    elif q.intent == "calcium_score":
        once("calcium_score", {})
    elif q.intent == "stenosis":
        if q.segment or q.artery:
            once("measure_lesion", _vessel_args(q))
        else:
            for artery in MEASURED_ARTERIES:
                once("measure_lesion", {"artery": artery})
    elif q.intent == "stent_coverage":
        if q.stent_length_mm is not None and (q.segment or q.artery):
            args = {**_vessel_args(q), "stent_length_mm": q.stent_length_mm}
            if q.stent_diameter_mm is not None:
                args["stent_diameter_mm"] = q.stent_diameter_mm
            once("stent_coverage", args)
    elif q.intent == "presence":
        _plan_presence(q, done, once)
    elif q.intent == "segment":
        _plan_segment(q, done, once)
    elif q.intent == "risk":
        once("calcium_score", {})
        if _called(done, "calcium_score"):
            args: dict = {}
            if q.troponin_value is not None:
                args = {"troponin_value": q.troponin_value, "troponin_unit": q.troponin_unit}
            once("risk_context", args)
    elif q.intent == "reports":
        once("retrieve_reports", {"query": q.text})
    return calls


def _plan_presence(q: ParsedQuestion, done: list[ToolOutcome], once) -> None:
    """Presence of a finding on a vessel: measured from the masks of that vessel."""
    if q.finding == "calcification":
        once("calcium_score", {})
        return
    where = _vessel_args(q)
    if where:
        once("measure_lesion", where)
    else:
        for artery in MEASURED_ARTERIES:
            once("measure_lesion", {"artery": artery})


def _plan_segment(q: ParsedQuestion, done: list[ToolOutcome], once) -> None:
    if q.superlative == "most_calcified":
        once("calcium_score", {})
        scored = [o for o in _called(done, "calcium_score") if o.ok and o.result]
        if scored:
            artery = most_calcified_artery(scored[-1].result)
            if artery:
                once("segment_anatomy", {"target": artery})
        return
    if q.superlative == "most_stenosed":
        for artery in MEASURED_ARTERIES:
            once("measure_lesion", {"artery": artery})
        return
    target = q.segment or q.artery or q.structure
    if q.finding in ("calcification", "plaque", "stent") and target in (*ARTERIES, *_segment_codes()):
        once("segment_anatomy", {"target": q.finding, "on_artery": target})
    elif q.finding in ("calcification", "plaque", "stent") and target is None:
        once("segment_anatomy", {"target": q.finding})
    elif target:
        once("segment_anatomy", {"target": target})


def _segment_codes() -> tuple[str, ...]:
    return tuple(code for path in MAIN_VESSEL_PATHS.values() for code in path)


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
