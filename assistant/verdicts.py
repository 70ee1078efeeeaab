"""Yes / no verdicts decided from tool results, never from the wording of an answer.

One rule per task of a question (:data:`cardiovlm.assistant.question.Task`). A rule reads the typed results of
this turn's tools (:class:`cardiovlm.assistant.outcomes.ToolOutcome`) and returns "yes",
"no" or "unknown" (the tools did not run, failed, or do not decide the question). Because the
verdict never looks at the answer text, it is the same whichever chat model wrote that text, and a
benchmark can score it without parsing prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from cardiovlm.assistant.outcomes import ToolOutcome, succeeded
from cardiovlm.assistant.question import ParsedQuestion
from cardiovlm.tools.quant.cadrads import MILD_PERCENT, OBSTRUCTIVE_PERCENT
from cardiovlm.tools.quant.stenosis import Lesion

Verdict = str  # "yes" | "no" | "unknown"

# Without a qualifier a stenosis is >= 25 % (CAD-RADS >= 2): plaque narrowing the lumen by 1-24 %
# is "minimal" and reported as plaque, not as a stenosis. "Significant" (50 %, obstructive by CT)
# and "severe" (70 %) are read by the question parser and kept by follow-ups. The bands live in
# cardiovlm.tools.quant.cadrads.
ANY_STENOSIS_PERCENT = MILD_PERCENT
_CALCIUM_THRESHOLD = re.compile(r"\b(?:above|over|greater than|more than|exceed(?:s|ing)?|>)\s*(\d+(?:\.\d+)?)", re.I)
_CALCIUM_ZERO = re.compile(r"\b(zero|0)\b", re.I)
_TROPONIN_HIGH = re.compile(r"\b(elevated|high|raised|above|abnormal|positive|increased)\b", re.I)


def _stent_coverage(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    plans = succeeded(done, "stent_coverage")
    if not plans or q.stent_length_mm is None:
        return "unknown"
    plan = plans[-1].value
    if plan.status == "no_lesion":
        return "unknown"  # nothing to cover: the answer says so
    return "yes" if plan.covers else "no"


def _lesion_verdict(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    measured = succeeded(done, "measure_lesion")
    if not measured:
        return "unknown"
    lesions = [o.value.lesion for o in measured if o.value.lesion]
    if q.finding == "occlusion":
        return "yes" if any(les.occluded for les in lesions) else "no"
    threshold = q.stenosis_threshold_percent or ANY_STENOSIS_PERCENT
    return "yes" if any(les.stenosis_percent >= threshold for les in lesions) else "no"


def _finding_verdict(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    masks = succeeded(done, "segment_anatomy")
    if masks:
        return "yes" if any(o.value.present for o in masks) else "no"
    if succeeded(done, "vlm_ask"):
        answer = succeeded(done, "vlm_ask")[-1].value.answer
        return "yes" if answer == "yes" else "no" if answer in ("no", "not present") else "unknown"
    return _lesion_verdict(q, done)


def in_stent_lesions(done: list[ToolOutcome]) -> list[Lesion]:
    """Lesions measured inside a stent this turn."""
    return [o.value.lesion for o in succeeded(done, "measure_lesion") if o.value.lesion and o.value.lesion.in_stent]


def in_stent_graded(done: list[ToolOutcome]) -> bool:
    """Whether a measurement this turn graded the lumen inside the stent it found."""
    return any(o.value.measurement.stent_present and o.value.measurement.in_stent_graded
               for o in succeeded(done, "measure_lesion"))


def _stent_status(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    # In-stent restenosis: a lesion the measuring tool flags in_stent with >= 50 % diameter stenosis
    # (an occluded stent is 100 %). Patency needs the in-stent lumen graded: where the tool did not
    # grade it (metal blooming), neither patency nor restenosis is decided.
    stents = [o for o in succeeded(done, "segment_anatomy") if o.value.target.startswith("stent")]
    if not stents or not succeeded(done, "measure_lesion"):
        return "unknown"
    if not any(o.value.present for o in stents):
        return "unknown" if q.stent_status == "patency" else "no"
    restenosis = any(les.stenosis_percent >= OBSTRUCTIVE_PERCENT for les in in_stent_lesions(done))
    if not restenosis and not in_stent_graded(done):
        return "unknown"
    return ("yes" if restenosis else "no") if q.stent_status == "restenosis" else ("no" if restenosis else "yes")


def _presence(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    if q.stent_status:
        return _stent_status(q, done)
    if q.finding in ("calcification", "plaque", "stent"):
        return _finding_verdict(q, done)
    return _lesion_verdict(q, done)


def _stenosis(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    if q.finding == "stent" and succeeded(done, "segment_anatomy") and not succeeded(done, "measure_lesion"):
        return _finding_verdict(q, done)
    return _lesion_verdict(q, done)


def _calcium(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    scored = succeeded(done, "calcium_score")
    if not scored:
        return "unknown"
    result = scored[-1].value
    if q.artery:
        per = result.per_artery.get(q.artery)
        value = None if per is None else (per.agatston if per.agatston is not None else per.volume_mm3)
        value = value or 0.0
    else:
        value = result.agatston if result.agatston is not None else result.volume_mm3
    if m := _CALCIUM_THRESHOLD.search(q.text):
        if result.agatston is None:
            return "unknown"  # a threshold on the Agatston score cannot be read from a contrast volume
        return "yes" if value > float(m.group(1)) else "no"
    if _CALCIUM_ZERO.search(q.text):
        return "yes" if value == 0 else "no"
    return "yes" if value > 0 else "no"


def _risk(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    # Only the troponin question has a yes/no answer in the established scores; "will this
    # patient have a MACE" has none, and the answer explains why.
    risk = succeeded(done, "risk_context")
    if risk and re.search(r"troponin|tn-?i", q.text, re.I) and _TROPONIN_HIGH.search(q.text) \
            and not re.search(r"\bmace\b|\bevent|\brisk\b", q.text, re.I):
        trop = risk[-1].value.troponin
        if trop:
            return "yes" if trop.above_url else "no"
        both = risk[-1].value.troponin_sex_unknown
        if both:  # sex unknown: decided only when the value is above both limits or below both
            return {"both": "yes", "neither": "no"}.get(both.above, "unknown")
    return "unknown"


VERDICT_RULES: dict[str, Callable[[ParsedQuestion, list[ToolOutcome]], Verdict]] = {
    "stent_coverage": _stent_coverage,
    "presence": _presence,
    "stenosis": _stenosis,
    "cadrads": _stenosis,
    "calcium_score": _calcium,
    "risk": _risk,
}


def verdict_for(q: ParsedQuestion, done: list[ToolOutcome]) -> Verdict:
    """'yes' / 'no' from tool results for a yes/no question; 'unknown' when they do not decide it."""
    rule = VERDICT_RULES.get(q.task)
    return rule(q, done) if rule else "unknown"
