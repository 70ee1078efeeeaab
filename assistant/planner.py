"""The embedded default chat model: a deterministic clinical planner, offline and weight-free.

It is a LangChain chat model like any other backend: given the conversation it either emits tool
calls or, once the tools have answered, writes the final answer from their results. It reads the
question with :mod:`cardiovlm.assistant.question` (intents by meaning, numbers with units, follow-ups,
several requests per question) and plans each part with :func:`part_calls`; the wording of answers lives in
:mod:`cardiovlm.assistant.compose`. It never states a number that is not in a tool result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool

from cardiovlm.assistant.compose import compose_answer, compose_parts
from cardiovlm.assistant.evidence import current_turn
from cardiovlm.assistant.outcomes import ToolOutcome, succeeded
from cardiovlm.assistant.question import ParsedQuestion
from cardiovlm.assistant.slots import LESION_LANDMARKS, landmark_display
from cardiovlm.assistant.tool_errors import read_tool_error
from cardiovlm.tools.core.anatomy import ARTERIES, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.core.settings import get_settings
from cardiovlm.tools.quant.cadrads import worst_lesion as most_severe

if TYPE_CHECKING:
    from cardiovlm.tools.quant.calcium import CalciumScore
    from cardiovlm.tools.quant.stenosis import Lesion

log = logging.getLogger(__name__)

MEASURED_ARTERIES = ("LM", "LAD", "LCx", "RCA")


class ClinicalPlanner(BaseChatModel):
    """Plans tool calls for a clinical question and writes the answer from the results."""

    bound_tools: tuple[str, ...] = ()

    @property
    def _llm_type(self) -> str:
        return "cardiovlm-clinical-planner"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ClinicalPlanner:
        names = tuple(convert_to_openai_tool(t)["function"]["name"] for t in tools)
        return self.model_copy(update={"bound_tools": names})

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        question, done = current_turn(messages)
        available = set(self.bound_tools)
        calls = plan_next(question, done, available) if question is not None else []
        turn = sum(isinstance(m, HumanMessage) for m in messages)
        if calls:
            message = AIMessage(content="", tool_calls=[
                {"name": name, "args": args, "id": f"call_{turn}_{len(done) + i}", "type": "tool_call"}
                for i, (name, args) in enumerate(calls)])
        else:
            message = AIMessage(content=_safe_compose(question, done, available))
        return ChatResult(generations=[ChatGeneration(message=message)])


def _safe_compose(question: ParsedQuestion | None, done: list[ToolOutcome], available: set[str]) -> str:
    """The composed answer; should writing it fail, the tool results are still listed (never a guess)."""
    try:
        if question is not None and len(question.all_parts()) > 1:
            return compose_parts([(part, outcomes_for(part, done, available)) for part in question.all_parts()])
        return compose_answer(question, done)
    except Exception as err:  # a wording bug must not lose the clinician's results
        log.exception("composing the answer failed")
        lines = [f"{o.name}: {'ok' if o.ok else 'failed: ' + read_tool_error(o.error).message}" for o in done]
        return (f"I could not write the answer ({type(err).__name__}); the tool results are in the findings "
                "and the trace: " + "; ".join(lines))


def vessel_of(q: ParsedQuestion) -> str | None:
    """The coronary vessel a question is about: a segment code, else an artery, else None."""
    return q.segment or q.artery


def vessels_of(q: ParsedQuestion) -> list[str]:
    """Every vessel a part names (a comparison names several), else the one of segment / artery."""
    vessel = vessel_of(q)
    return list(q.vessels) or ([vessel] if vessel else [])


def _no_label_map(done: list[ToolOutcome]) -> bool:
    """A label-map tool failed because the session has no segmentation: the VLM is the next resort.
    Decided on the error's code or class, never on the words of its message."""
    return any(not o.ok and read_tool_error(o.error).no_label_map for o in done)


Want = Callable[[str, dict], None]


def part_calls(q: ParsedQuestion, done: list[ToolOutcome], available: set[str]) -> list[tuple[str, dict]]:
    """Every tool call one part of a question needs, given what already ran this turn (done or not).

    Each task is a short plan; a step whose tool is unavailable is skipped and the answer says so.
    Plans can take two rounds: e.g. a stent question without a vessel first measures every artery,
    then places the stent on the worst lesion found.
    """
    calls: list[tuple[str, dict]] = []

    def want(name: str, args: dict) -> None:
        if name in available and (name, args) not in calls:
            calls.append((name, args))

    if q.problem:
        return calls  # the question is refused as asked (e.g. a negative length): no tool runs
    vessels = vessels_of(q)
    if q.task == "study_info":
        want("study_info", {})
    elif q.task == "calcium_score":
        want("calcium_score", {"artery": q.artery} if q.artery and len(vessels) == 1 else {})
    elif q.task == "stenosis":
        if q.finding == "stent":
            want("segment_anatomy", {"target": "stent", **({"on_artery": vessels[0]} if vessels else {})})
        for vessel in vessels or MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": vessel})
    elif q.task == "cadrads":
        for artery in MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": artery})
    elif q.task == "stent_coverage":
        _plan_stent(q, done, want)
    elif q.task == "presence":
        _plan_presence(q, done, want)
    elif q.task == "segment":
        _plan_segment(q, done, want)
    elif q.task == "locate":
        _plan_locate(q, done, want)
    elif q.task == "risk":
        args: dict = {}
        if q.troponin_value is not None and q.troponin_unit:
            args = {"troponin_value": q.troponin_value, "troponin_unit": q.troponin_unit}
            if q.sex:
                args["sex"] = q.sex
        want("risk_context", args)
    elif q.task == "reports":
        similar = re.search(r"\bsimilar\b|\bother patients\b|\blike this\b|\bcomparable\b", q.text, re.I)
        want("retrieve_reports", {"query": q.text, "scope": "other_patients" if similar else "this_patient"})
    mine = [o for o in done if (o.name, o.args) in calls]
    if _no_label_map(mine) and q.task in ("segment", "presence", "stenosis"):
        # No label map: ask the trained VLM instead (it says so when no checkpoint is installed).
        if q.task == "segment":
            want("vlm_segment", {"target": _segment_target_text(q)})
        else:
            want("vlm_ask", {"question": q.text})
    return calls


def plan_next(q: ParsedQuestion, done: list[ToolOutcome], available: set[str]) -> list[tuple[str, dict]]:
    """The next tool calls for question ``q`` (every part of it) given what already ran; [] means answer now."""
    ran = [(o.name, o.args) for o in done]
    calls: list[tuple[str, dict]] = []
    for part in q.all_parts():
        for call in part_calls(part, done, available):
            if call not in ran and call not in calls:
                calls.append(call)
    return calls


def outcomes_for(q: ParsedQuestion, done: list[ToolOutcome], available: set[str] | None = None) \
        -> list[ToolOutcome]:
    """The outcomes of this turn that answer part ``q`` (a compound question's parts share one turn)."""
    names = available if available is not None else {o.name for o in done}
    wanted = part_calls(q, done, names)
    return [o for o in done if (o.name, o.args) in wanted]


def _plan_stent(q: ParsedQuestion, done: list[ToolOutcome], want: Want) -> None:
    """Stent on the named vessel; without one, on the most severe lesion of the coronary tree."""
    asked = q.stent_lengths_mm or ([q.stent_length_mm] if q.stent_length_mm is not None else [])
    catalogue = get_settings().stent_lengths_mm
    # No length asked: a first call with the shortest catalogue length measures the lesion and finds
    # the length to recommend; that length is then placed last, so the verdict and the vessel view
    # (both read the last stent call) show the stent the answer recommends, not the probe.
    lengths = asked or [min(catalogue)]
    vessels = vessels_of(q)
    if not vessels:
        for artery in MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": artery})
        worst = worst_lesion(done)
        if worst is None:
            return
        vessels = [worst.segment]
    for vessel in vessels:
        for length in lengths:
            args = {"vessel": vessel, "stent_length_mm": length}
            if q.stent_diameter_mm is not None:
                args["stent_diameter_mm"] = q.stent_diameter_mm
            want("stent_coverage", args)
        if not asked:
            probe = next((o.value for o in succeeded(done, "stent_coverage") if o.args == args), None)
            if probe is not None and probe.status != "no_lesion":
                # None covers: the longest catalogue stent, drawn "does not cover" as the answer says.
                best = probe.shortest_catalogue_length_mm or max(catalogue)
                if best != lengths[0]:
                    want("stent_coverage", {**args, "stent_length_mm": float(best)})
    # Show where: the mask of the lesion's segment, drawn on the images with the answer.
    placed = [o.value.lesion for o in succeeded(done, "stent_coverage")]
    if placed and placed[-1] is not None:
        want("segment_anatomy", {"target": placed[-1].segment})


def _plan_presence(q: ParsedQuestion, done: list[ToolOutcome], want: Want) -> None:
    """Presence of a finding: finding masks for calcium, plaque and stents; measurement for narrowing."""
    vessels = vessels_of(q)
    places = [{"on_artery": v} for v in vessels] or [{}]
    if q.stent_status:
        # Patency / in-stent restenosis: where the stent is, then the lumen measured through it.
        for where in places:
            want("segment_anatomy", {"target": "stent", **where})
        for v in vessels or MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": v})
        return
    if q.finding in ("calcification", "stent"):
        for where in places:
            want("segment_anatomy", {"target": q.finding, **where})
    elif q.finding == "plaque":
        for where in places:
            want("segment_anatomy", {"target": "calcification", **where})
            want("segment_anatomy", {"target": "plaque", **where})
    else:
        for vessel in vessels or MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": vessel})


def _plan_segment(q: ParsedQuestion, done: list[ToolOutcome], want: Want) -> None:
    if q.superlative == "most_calcified":
        want("calcium_score", {})
        scored = succeeded(done, "calcium_score")
        if scored:
            artery = most_calcified_artery(scored[-1].value)
            if artery:
                want("segment_anatomy", {"target": artery})
        return
    if q.superlative == "most_stenosed":
        for artery in MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": artery})
        worst = worst_lesion(done)
        if worst is not None:
            want("segment_anatomy", {"target": worst.segment})
        return
    targets = [*vessels_of(q), *(q.structures or ([q.structure] if q.structure else []))]
    if q.finding in ("calcification", "plaque", "stent"):
        on = [t for t in targets if t in (*ARTERIES, *SEGMENTS_BY_CODE)]
        for where in ([{"on_artery": t} for t in on] or [{}]):
            want("segment_anatomy", {"target": q.finding, **where})
        return
    for target in targets:
        want("segment_anatomy", {"target": target})


def _plan_locate(q: ParsedQuestion, done: list[ToolOutcome], want: Want) -> None:
    """Lesion ends come from the measured lesion; anatomical landmarks from the VLM's landmark head."""
    if q.landmark in LESION_LANDMARKS:
        for vessel in vessels_of(q) or MEASURED_ARTERIES:
            want("measure_lesion", {"vessel": vessel})
    elif q.landmark:
        want("vlm_locate", {"target": landmark_display(q.landmark)})


def _segment_target_text(q: ParsedQuestion) -> str:
    """What the VLM is asked to segment, in the words of its curriculum ('left atrium', not 'la_blood')."""
    structure = STRUCTURES_BY_NAME[q.structure].display if q.structure in STRUCTURES_BY_NAME else q.structure
    target = q.segment or q.artery or structure or q.finding or "coronary arteries"
    return f"{q.finding} of the {target}" if q.finding and target != q.finding else str(target)


def worst_lesion(done: list[ToolOutcome]) -> Lesion | None:
    """The most severe lesion among this turn's measure_lesion results (None when there is none), by
    the one rule the answer also names it by (:func:`cardiovlm.tools.quant.cadrads.worst_lesion`)."""
    return most_severe(o.value.lesion for o in succeeded(done, "measure_lesion") if o.value.lesion is not None)


def most_calcified_artery(calcium: CalciumScore) -> str | None:
    """The artery with the highest calcium score in a calcium_score result, or None without calcium."""
    # Agatston on a calcium-scoring series; calcium volume on a contrast CCTA.
    scores = {artery: (value.agatston if value.agatston is not None else value.volume_mm3) or 0
              for artery, value in calcium.per_artery.items()}
    if not scores or max(scores.values()) <= 0:
        return None
    return max(scores, key=scores.__getitem__)
