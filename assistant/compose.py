"""The embedded planner's final answer: clinical text written from this turn's tool results only.

Every number in the text is rendered from an :class:`~cardiovlm.tools.core.answer.AnswerFinding` produced by
:mod:`cardiovlm.assistant.findings` (same value, same rounding, same unit), or quoted from a tool's own
message, so the text never holds a number that no tool returned. Refusals and uncertainty are
stated: a tool's failure message is passed on, a missing input is named, and a MACE question is
answered with the established scores and their limits, never with an invented probability.
Yes/no answers start with the verdict of :mod:`cardiovlm.assistant.verdicts`, so text and verdict agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cardiovlm.assistant.findings import findings_of, show
from cardiovlm.assistant.outcomes import ToolOutcome, failed, succeeded
from cardiovlm.assistant.question import PROVENANCE_CUE, ParsedQuestion
from cardiovlm.assistant.slots import LESION_LANDMARKS, landmark_display
from cardiovlm.assistant.tools.study_info import StudyInfo
from cardiovlm.assistant.verdicts import in_stent_graded, verdict_for
from cardiovlm.tools.core.anatomy import ARTERIES, SEGMENTS_BY_CODE, STRUCTURES_BY_NAME
from cardiovlm.tools.quant.cadrads import cad_rads, shown_percent, worst_lesion
from cardiovlm.tools.quant.calcium import CalciumScore

CAPABILITIES = (
    "I can answer questions about the loaded coronary CT study, for example: "
    "\"What is the calcium score?\", \"How severe is the stenosis in the proximal LAD?\", "
    "\"Will a 20 mm stent cover the pLAD lesion?\", \"Is there a stent in the RCA?\", "
    "\"Segment the most calcified artery\", \"What is his cardiac risk with a troponin I of 40 ng/L?\", "
    "\"Show prior reports with LAD stenosis\" and \"Which study is loaded?\". "
    "Follow-ups such as \"and the RCA?\" or \"what about a 24 mm one?\" refer to the previous question."
)


def _facts(outcome: ToolOutcome) -> dict[str, str]:
    """Finding name -> rendered value with unit, for one successful tool call."""
    return {f.name: show(f) for f in findings_of(outcome.name, outcome.value)}


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _failure_notes(done: list[ToolOutcome], explained: set[int] | None = None) -> list[str]:
    """One sentence per failed tool call not already explained in the answer."""
    notes, seen = [], set()
    for i, o in enumerate(done):
        if o.failure is None or (explained and i in explained) or o.failure.message in seen:
            continue
        seen.add(o.failure.message)
        notes.append(_sentence(f"{o.name} could not answer: {o.failure.message}"))
    return notes


def _a(phrase: str) -> str:
    """'a 71% ...' but 'an 81% ...', 'an 8 mm ...', 'an 18 mm ...'."""
    an = re.match(r"(8|11|18)(\D|$)|8\d(\D|$)|[aeio]", phrase, re.I)
    return ("an " if an else "a ") + phrase


def display(target: str) -> str:
    """A registry name as a clinician reads it: 'calcified_plaque_LAD' -> 'calcified plaque on the LAD'."""
    base, _, on = target.rpartition("_")
    if base and (on in ARTERIES or on in SEGMENTS_BY_CODE):
        return f"{display(base)} on the {on}"
    if target in STRUCTURES_BY_NAME:
        return STRUCTURES_BY_NAME[target].display
    return target.replace("_", " ")


def _lead(verdict: str | None) -> str:
    return {"yes": "Yes. ", "no": "No. ", "unknown": "Undetermined. "}.get(verdict or "", "")


def _source_name(labels_source: str) -> str:
    """'image-derived coronary tree (half-maximum lumen threshold …)' -> the name before the method."""
    return labels_source.split(" (")[0]


def _source_note(results: list) -> str:
    """One short sentence naming the masks an answer rests on: which vessels, from which source.

    The source's method and per-segment tracing confidence stay in the tool step: appended to every
    answer they pushed its verdict out of the chat's view."""
    with_source = [r for r in results if getattr(r, "labels_source", None)]
    sources = sorted({_source_name(r.labels_source) for r in with_source})
    if not sources:
        return ""
    vessels = list(dict.fromkeys(name for r in with_source
                                 if (name := getattr(r, "vessel", None) or getattr(r, "target", None))))
    if not vessels:
        return f" Masks: {', '.join(sources)}."
    return f" Masks: {', '.join(display(v) for v in vessels)} ({', '.join(sources)})."


# ------------------------------------------------------------------------------------- per intent
def _study_info(q: ParsedQuestion, done: list[ToolOutcome]) -> str:
    info = succeeded(done, "study_info")
    if not info:
        return "I could not read the study. " + " ".join(_failure_notes(done))
    r, facts = info[-1].value, _facts(info[-1])
    summary = r.summary
    parts = [f"The loaded study is {facts['modality']}"]
    if "matrix" in facts:
        parts.append(f"{facts['matrix']}")
    if "voxel spacing" in facts:
        parts.append(f"voxel spacing {facts['voxel spacing']}")
    text = ", ".join(parts) + "."
    if summary.series_choice:
        text += f" Series: {summary.series_choice}."
    text += (" A non-contrast calcium-scoring series is loaded." if r.has_calcium_scoring_series
             else " No non-contrast calcium-scoring series is loaded (no Agatston score possible).")
    text += (f" Masks: {r.labels_source}." if r.labels_source
             else " No segmentation is available for this study.")
    text += " Clinical context (risk factors, labs) is known." if r.has_clinical_context else \
        " No clinical context (risk factors, labs) is known."
    asked = q is not None and PROVENANCE_CUE.search(q.text)
    if not asked:  # a synthetic study is said so whenever the study is described, asked or not
        text += f" Provenance: {r.provenance.description}."
    for warning in summary.warnings:  # warnings close the description, where they are seen
        text += f" Warning: {_sentence(warning)}"
    # the question asked is answered first; the description of the study follows
    return _provenance(r) + " " + text if asked else text


def _provenance(r: StudyInfo) -> str:
    """Whether the images are a patient's, as the study records it (a case folder's manifest, the file format)."""
    p = r.provenance
    where = f" (case {r.case_id})" if r.case_id else ""
    if p.synthetic:
        made_by = (f"the CardioVLM generator {p.generator_version}" if p.generator_version
                   else "the CardioVLM generator (version not recorded)")
        return f"These images are a synthetic phantom made by {made_by}{where}, not a patient."
    if p.synthetic is False:
        return (f"These images are a real scan: the case folder{where} records real data, not a phantom. "
                "No answer here is for clinical use.")
    loaded = "" if p.kind == "not_recorded" else f"These images were loaded as {p.description}. "
    return (f"{loaded}Whether they are a real patient's images or a synthetic phantom is not recorded with the "
            "study (provenance: not recorded); the bundled demo studies are synthetic phantoms, and no answer "
            "here is for clinical use.")


def _calcium(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    scored = succeeded(done, "calcium_score")
    if not scored:
        messages = [o.failure.message for o in failed(done) if o.failure]
        return "I could not measure coronary calcium: " + " ".join(messages) if messages \
            else "No calcium score was measured."
    outcome = scored[-1]
    r, facts = outcome.value, _facts(outcome)
    per_artery = r.per_artery or {}
    if r.kind == "agatston":
        if q.artery:
            key = f"{q.artery} Agatston score"
            value = facts.get(key, "0 AU")
            text = (f"{_lead(verdict)}The {q.artery} has an Agatston score of {value} "
                    f"(total coronary Agatston score {facts['Agatston score']}")
            text += f", CAC-DRS {facts['CAC-DRS']})." if "CAC-DRS" in facts else ")."
        else:
            # the series actually scored: the calcium series loaded with a CCTA, or a non-contrast study alone
            series = r.scored_series or "the non-contrast series"
            text = (f"{_lead(verdict)}Coronary calcium on {series}, a non-contrast series: "
                    f"Agatston score {facts['Agatston score']}, volume {facts['calcium volume']}")
            if "calcium mass" in facts:
                text += f", mass {facts['calcium mass']}"
            text += "."
            if "CAC-DRS" in facts:
                text += f" CAC-DRS {facts['CAC-DRS']}"
                text += f", CAD-RADS plaque burden {facts['plaque burden']}." if "plaque burden" in facts else "."
            scored_arteries = [a for a in ARTERIES if getattr(per_artery.get(a), "agatston", None)]
            if scored_arteries:
                text += " Per artery: " + ", ".join(
                    f"{a} {facts[f'{a} Agatston score']}" for a in scored_arteries) + "."
    else:
        target = q.artery
        if target:
            value = facts.get(f"{target} calcium volume", "0 mm³")
            text = f"{_lead(verdict)}Calcium volume on the {target}: {value}."
        else:
            volume = facts["calcium volume (contrast CCTA)"]
            text = f"{_lead(verdict)}Coronary calcium volume on the contrast CCTA: {volume}."
            with_calcium = [a for a in ARTERIES if getattr(per_artery.get(a), "volume_mm3", None)]
            if with_calcium:
                text += " Per artery: " + ", ".join(f"{a} {facts[f'{a} calcium volume']}" for a in with_calcium) + "."
        text += (" This study has no non-contrast calcium-scoring series, so no Agatston score, CAC-DRS or "
                 "MESA risk can be given; a contrast CCTA calcium volume is not an Agatston score.")
    if q.superlative == "most_calcified":
        text = _most_calcified_line(r, facts) + " " + text
    excluded = r.excluded or []
    if excluded:
        places = sorted({e.location for e in excluded})
        text += (f" Not counted as coronary calcium: {facts['calcifications not counted']} "
                 f"({', '.join(places)}).")
    return text + _source_note([r]) + "".join(" " + n for n in _failure_notes(done))


def _most_calcified_line(r: CalciumScore, facts: dict[str, str]) -> str:
    scores: dict[str, float] = {}
    for artery, calcium in r.per_artery.items():
        amount = calcium.agatston if calcium.agatston is not None else calcium.volume_mm3
        if amount:
            scores[artery] = amount
    if not scores:
        return "There is no coronary calcium, so no artery is the most calcified."
    artery = max(scores, key=lambda a: scores[a])
    shown = facts.get(f"{artery} Agatston score") or facts.get(f"{artery} calcium volume")
    return f"The most calcified artery is the {artery} ({shown})."


def _lesion_line(outcome: ToolOutcome) -> str:
    r, facts = outcome.value, _facts(outcome)
    where = r.segment or r.vessel
    lesion = r.lesion
    if lesion is None:
        threshold = r.measurement.lesion_threshold_percent
        return f"no lesion was found on the {where} (threshold {threshold:g}% diameter stenosis or plaque)"
    percent, category = facts[f"{where} diameter stenosis"], facts[f"{where} CAD-RADS"]
    text = f"the {where} has {_a(percent)} diameter stenosis (CAD-RADS {category})"
    if lesion.segment != where:
        text += f" in the {lesion.segment}"
    text += (f", {facts[f'{where} lesion length']} long, minimal lumen diameter "
             f"{facts[f'{where} minimal lumen diameter']} vs reference {facts[f'{where} reference diameter']}")
    if lesion.occluded:
        text += "; the vessel is occluded"
    if lesion.in_stent:
        text += "; the narrowing lies inside a stent (in-stent restenosis)"
    return text


def _worst_outcome(measured: list[ToolOutcome]) -> ToolOutcome | None:
    """The measurement holding the most severe lesion (:func:`cardiovlm.tools.quant.cadrads.worst_lesion`)."""
    lesion = worst_lesion(o.value.lesion for o in measured if o.value.lesion)
    return None if lesion is None else next(o for o in measured if o.value.lesion is lesion)


def _stent_presence_line(done: list[ToolOutcome]) -> str | None:
    masks = [o for o in succeeded(done, "segment_anatomy") if o.value.target.startswith("stent")]
    if not masks:
        return None
    r = masks[-1].value
    on = r.target.removeprefix("stent").lstrip("_")
    if not r.present:
        return f"No stent is present {'on the ' + on if on else 'in this study'}."
    volume = _facts(masks[-1])[r.target + " volume"]
    return f"A stent is present{' on the ' + on if on else ''} ({volume} of stent voxels)."


def _stenosis(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    measured = succeeded(done, "measure_lesion")
    stent_line = _stent_presence_line(done) if q.finding == "stent" else None
    if not measured:
        if stent_line:
            return f"{_lead(verdict)}{stent_line}"
        return _could_not(done, "measure the stenosis")
    lines = [_lesion_line(o) for o in measured]
    with_lesion = [o for o in measured if o.value.lesion]
    if len(measured) == 1:
        text = _lead(verdict) + _sentence(lines[0][0].upper() + lines[0][1:])
    else:
        worst = _worst_outcome(with_lesion)
        head = (f"The most severe narrowing is on the {worst.value.vessel}. " if worst is not None
                else "No lesion was found on the measured vessels. ")
        if q.task == "cadrads":
            head = _patient_cad_rads(measured) + head
        text = _lead(verdict) + head + " ".join(_sentence(line[0].upper() + line[1:]) for line in lines)
    if stent_line:
        text = stent_line + " " + text
        if re.search(r"\bhow long\b|\blength\b", q.text, re.I):
            text += " The stent's own length is not measured by the available tools."
    return text + _source_note([o.value for o in measured]) + "".join(" " + n for n in _failure_notes(done))


def _patient_cad_rads(measured: list[ToolOutcome]) -> str:
    """The patient-level CAD-RADS 2.0 category over the measured arteries' worst lesions, by the
    guideline's rules in :func:`cardiovlm.tools.quant.cadrads.cad_rads` (left main and three-vessel 4B included)."""
    per_segment: dict[str, float] = {}
    for les in (o.value.lesion for o in measured if o.value.lesion):
        per_segment[les.segment] = max(per_segment.get(les.segment, 0.0), les.stenosis_percent)
    worst = cad_rads(per_segment, stent=any(o.value.measurement.stent_present for o in measured))
    vessels = ", ".join(o.value.vessel for o in measured)
    return (f"Patient-level CAD-RADS {worst.category}{''.join('/' + m for m in worst.modifiers)} "
            f"({worst.reason}) over the {vessels} main vessels measured here; side branches are not measured. ")


def _stent(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    plans = succeeded(done, "stent_coverage")
    if not plans:
        measured = succeeded(done, "measure_lesion")
        if measured and not any(o.value.lesion for o in measured):
            names = ", ".join(o.value.vessel for o in measured)
            return f"No lesion was found on the {names}: there is nothing for a stent to cover."
        return _could_not(done, "check the stent")
    outcome = plans[-1]
    r, facts = outcome.value, _facts(outcome)
    where = outcome.args.get("vessel", "vessel")
    if r.status == "no_lesion":
        return _sentence(f"Undetermined. No lesion was found on the {where}: there is nothing for a stent to cover")
    at = f"the {r.lesion.segment if r.lesion else where} lesion"
    if q.stent_length_mm is None:
        text = (f"For {at} ({facts['lesion length']} long, {facts['lesion diameter stenosis']} diameter stenosis), "
                f"the stent must cover {facts['required stent length']} (lesion plus "
                f"{facts['landing zone per end']} of healthy landing zone at each end). ")
        text += (f"The shortest catalogue length that covers it is {facts['shortest covering catalogue length']}"
                 if "shortest covering catalogue length" in facts else "No catalogue length covers it")
        text += f"; suggested diameter {facts['suggested stent diameter']} (reference {facts['reference diameter']})."
    else:
        covers = "covers" if r.covers else "does not cover"
        stent = _a(f"{facts['stent length']} stent")
        text = (f"{_lead(verdict)}{stent[0].upper()}{stent[1:]} {covers} {at} "
                f"({facts['lesion length']} long, {facts['lesion diameter stenosis']} diameter stenosis) with "
                f"{facts['landing zone per end']} landing zones: best-centred margins {facts['proximal margin']} "
                f"proximal and {facts['distal margin']} distal; it needs {facts['required stent length']}.")
        for reason in r.reasons or []:
            text += " " + _sentence(reason[0].upper() + reason[1:])
        text += (f" Shortest catalogue length that covers: {facts['shortest covering catalogue length']}"
                 if "shortest covering catalogue length" in facts else " No catalogue length covers it")
        text += f"; suggested diameter {facts['suggested stent diameter']} (reference {facts['reference diameter']})."
    if r.status == "no_stent_needed":
        text = (f"No stent is needed by CT criteria: the stenosis is {facts['lesion diameter stenosis']} "
                "(below 50%, non-obstructive). Geometry for reference: " + text)
    if r.ostial:
        text += " The lesion involves an ostium."
    if r.bifurcation:
        text += f" It touches a bifurcation ({', '.join(r.bifurcation)})."
    if len(succeeded(done, "measure_lesion")) > 1 and not (q.segment or q.artery):
        text += f" (No vessel was named: the most severe lesion, on the {where}, was used.)"
    return text + "".join(" " + n for n in _failure_notes(done))


def _stent_status(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    stent_line = _stent_presence_line(done)
    if stent_line is None or not succeeded(done, "measure_lesion"):
        return _could_not(done, "assess the stent")
    if stent_line.startswith("No stent"):
        return _lead(verdict) + stent_line
    inside = [o for o in succeeded(done, "measure_lesion") if o.value.lesion and o.value.lesion.in_stent]
    if inside:
        detail = " ".join(_sentence(_lesion_line(o)[0].upper() + _lesion_line(o)[1:]) for o in inside)
    elif in_stent_graded(done):
        detail = "No narrowing was measured inside the stent: it is patent on CT."
    else:
        notes = [o.value.measurement.in_stent_note for o in succeeded(done, "measure_lesion")]
        why = next((n for n in notes if n), "the stent's metal was not found along the measured vessel, so the "
                   "lumen inside it could not be located")
        detail = (f"The lumen inside the stent cannot be graded from this CT: {why}. Patency and in-stent "
                  "restenosis are neither confirmed nor excluded.")
    masks = [o.value for o in succeeded(done, "measure_lesion")]
    return f"{_lead(verdict)}{stent_line} {detail}" + _source_note(masks)


def _presence(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    if q.stent_status:
        return _stent_status(q, done, verdict)
    where = q.segment or q.artery
    masks = succeeded(done, "segment_anatomy")
    if q.finding in ("calcification", "plaque", "stent") and masks:
        if q.finding == "stent":
            return _lead(verdict) + (_stent_presence_line(done) or "") + _source_note([o.value for o in masks])
        present = [o for o in masks if o.value.present]
        place = f"on the {where}" if where else "in the coronary arteries"
        if not present:
            kind = "calcified or non-calcified plaque" if q.finding == "plaque" else "coronary calcification"
            return f"{_lead(verdict)}No {kind} was found {place}." + _source_note([o.value for o in masks])
        parts = []
        for o in present:
            label = "calcified plaque" if o.value.target.startswith("calcified") else "non-calcified plaque"
            parts.append(f"{label} ({_facts(o)[o.value.target + ' volume']})")
        return (f"{_lead(verdict)}Found {place}: " + ", ".join(parts) + "."
                + _source_note([o.value for o in masks]))
    if succeeded(done, "vlm_ask"):
        return _vlm_answer(done, verdict)
    if succeeded(done, "measure_lesion"):
        return _stenosis(q, done, verdict)
    return _could_not(done, "tell")


def _segment(q: ParsedQuestion, done: list[ToolOutcome]) -> str:
    masks = succeeded(done, "segment_anatomy") + succeeded(done, "vlm_segment")
    prefix = ""
    if q.superlative == "most_calcified":
        scored = succeeded(done, "calcium_score")
        if scored and not succeeded(done, "segment_anatomy"):
            return "There is no coronary calcium in this study, so no artery is the most calcified." \
                if not failed(done) else _could_not(done, "find the most calcified artery")
        if scored:
            artery = masks[-1].value.target
            facts = _facts(scored[-1])
            value = facts.get(f"{artery} Agatston score") or facts.get(f"{artery} calcium volume")
            prefix = f"The most calcified artery is the {artery} ({value}). "
    if q.superlative == "most_stenosed":
        worst = worst_lesion(o.value.lesion for o in succeeded(done, "measure_lesion") if o.value.lesion)
        if worst is None:
            return "No lesion was found on the measured vessels, so none is the most stenosed." \
                if succeeded(done, "measure_lesion") else _could_not(done, "find the most stenosed vessel")
        prefix = (f"The most stenosed segment is the {worst.segment} ({shown_percent(worst.stenosis_percent)}% "
                  "diameter stenosis). ")
    if not masks:
        if q.intent == "segment" and not (q.segment or q.artery or q.structure or q.finding or q.superlative):
            return "Which structure should I segment? For example: the LAD, the proximal RCA, the aorta, " \
                   "the left ventricle, calcification or a stent."
        return prefix + _could_not(done, "segment it")
    parts = []
    for o in masks:
        r, facts = o.value, _facts(o)
        if o.name == "vlm_segment":
            dice = facts.get("VLM held-out phantom Dice")
            measured = ("" if dice is None
                        else f"; this checkpoint's Dice for such structures on held-out phantoms is {dice}")
            if not r.present:
                parts.append(f"The VLM found no {r.target} in this study (its mask is empty{measured}). {r.note}")
                continue
            parts.append(f"The VLM segmented the {r.target}: {facts[r.target + ' volume (VLM)']} "
                         f"(mask confidence {facts['VLM mask confidence']}{measured}). {r.note}")
        elif not r.present:
            parts.append(f"No {display(r.target)} was found in this study's masks ({_source_name(r.labels_source)}).")
        else:
            parts.append(f"Segmented the {display(r.target)}: {facts[r.target + ' volume']} "
                         f"(masks: {_source_name(r.labels_source)}); mask file: {Path(r.mask_path).name}.")
    return prefix + " ".join(parts) + "".join(" " + n for n in _failure_notes(done))


def _risk(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    risk = succeeded(done, "risk_context")
    if not risk:
        return _could_not(done, "gather the risk context")
    r, facts = risk[-1].value, _facts(risk[-1])
    text = _lead(verdict) if verdict in ("yes", "no") else ""
    trop = r.troponin
    both = r.troponin_sex_unknown
    if verdict in ("yes", "no") and both and not trop:
        text += (f"hs-cTnI {facts['hs-cTnI']} is "
                 + ("above both sex-specific 99th-percentile limits. " if both.above == "both"
                    else "not above either sex-specific 99th-percentile limit. "))
    if verdict in ("yes", "no") and trop:  # "is the troponin elevated?": that answer first
        limit = facts[f"hs-cTnI 99th-percentile URL ({trop.sex})"]
        text += (f"hs-cTnI {facts['hs-cTnI']} is {'above' if trop.above_url else 'not above'} the {trop.sex} "
                 f"99th-percentile URL of {limit}. ")
    text += ("No validated model turns this CT and a troponin into a probability of a major adverse cardiac "
             "event (MACE), so I do not give one. The established pieces are: ")
    pieces = []
    if "Agatston score" in facts:
        piece = f"Agatston score {facts['Agatston score']} ({r.agatston_source or 'source not stated'})"
        if "CAC-DRS" in facts:
            piece += f", CAC-DRS {facts['CAC-DRS']}"
        if "plaque burden" in facts:
            piece += f", CAD-RADS plaque burden {facts['plaque burden']}"
        pieces.append(piece)
    mesa = r.mesa
    if mesa:
        inputs = mesa.inputs
        flags = [name for flag, name in ((inputs.diabetes, "diabetes"), (inputs.current_smoker, "current smoker"),
                                         (inputs.lipid_lowering, "lipid-lowering treatment"),
                                         (inputs.bp_medication, "BP treatment"),
                                         (inputs.family_history_mi, "family history of MI")) if flag]
        pieces.append(
            f"MESA 10-year hard CHD risk {facts['MESA 10-year hard CHD risk']} (McClelland et al., JACC 2015; inputs: "
            f"age {facts['age']}, {inputs.sex}, {inputs.race.replace('_', ' ')}, systolic BP "
            f"{facts['systolic BP']}, total cholesterol {facts['total cholesterol']}, HDL {facts['HDL cholesterol']}"
            + (", " + ", ".join(flags) if flags else ", no diabetes, smoking, treatment or family history flags")
            + "; it predicts 10-year hard CHD events, not 1-year MACE)")
    trop = r.troponin
    if trop:
        above = "above" if trop.above_url else "not above"
        url = facts[f"hs-cTnI 99th-percentile URL ({trop.sex})"]
        pieces.append(
            f"hs-cTnI {facts['hs-cTnI']} (given as {trop.given}) is {above} the {trop.sex} 99th-percentile "
            f"URL of {url} ({trop.assay}; "
            f"{facts['hs-cTnI / URL']} x URL): "
            + ("myocardial injury; serial values and the clinical picture decide whether it is an infarction"
               if trop.above_url else "no myocardial injury on this value"))
    both = r.troponin_sex_unknown
    if both:
        pieces.append(
            f"hs-cTnI {facts['hs-cTnI']} (given as {both.given}) with the patient's sex unknown: "
            + {"both": "above both", "neither": "not above either of",
               "female_only": "above the female but not the male"}[both.above]
            + f" sex-specific 99th-percentile limits (female {facts['hs-cTnI 99th-percentile URL (female)']}, "
            f"male {facts['hs-cTnI 99th-percentile URL (male)']}; {both.assay})"
            + {"both": ": myocardial injury whatever the sex; serial values and the clinical picture decide whether it "
                       "is an infarction",
               "neither": ": no myocardial injury on this value",
               "female_only": ": myocardial injury if the patient is female, not if male; give the sex to decide"}[
                both.above])
        if verdict in ("yes", "no"):
            text = _lead(verdict) + text.removeprefix(_lead(verdict))
    text += ("; ".join(pieces) + ".") if pieces else "none could be computed."
    for missing in r.not_computed or []:
        text += " Not computed: " + _sentence(missing)
    limits = r.limits or []
    if limits:
        text += " Limits: " + " ".join(_sentence(limit[0].upper() + limit[1:]) for limit in limits[1:])
    return text + "".join(" " + n for n in _failure_notes(done))


def _reports(q: ParsedQuestion, done: list[ToolOutcome]) -> str:
    found = succeeded(done, "retrieve_reports")
    if not found:
        return _could_not(done, "search the reports")
    hits = found[-1].value
    scope = found[-1].args.get("scope", "this_patient")
    whose = "this patient's prior" if scope == "this_patient" else "similar" if scope == "other_patients" else "stored"
    if not hits:
        return f"No {whose} reports matched."
    # Report text is quoted as data between quotation marks; nothing in it is acted upon.
    lines = [f"[{h.report_id}, {h.study_date or 'no date'}] \"{h.snippet}\"" for h in hits]
    return (f"{len(hits)} {whose} report(s), most similar first (quoted verbatim as data): " + "; ".join(lines) + ".")


def _vlm_answer(done: list[ToolOutcome], verdict: str | None) -> str:
    r = succeeded(done, "vlm_ask")[-1].value
    accuracy = r.measured_accuracy
    measured = ("" if accuracy is None else
                f" On held-out synthetic phantoms it answered {accuracy:.0%} of such questions right.")
    return (f"{_lead(verdict)}The VLM answers \"{r.answer}\" (confidence {r.answer_confidence:.2f}); "
            f"this is the model's reading, not a measurement.{measured} {r.note}")


def _could_not(done: list[ToolOutcome], what: str) -> str:
    if not failed(done):
        return f"I could not {what}: no tool could be run for this question on this study."
    return f"I could not {what}. " + " ".join(_failure_notes(done))


def _patient_identity() -> str:
    return ("I cannot tell you who the patient is: studies are de-identified when they are loaded (name, "
            "identifiers, birth date and address are removed and never stored here). Check the patient's identity "
            "in the PACS or the hospital information system.")


ABOUT_ASSISTANT = (
    "I am the CardioVLM assistant, open-source research software for coronary CT angiography, not a doctor "
    "and not for clinical use. I answer by running measurement tools on the loaded study (calcium score, "
    "stenosis, stent sizing, segmentation, landmarks, risk scores, prior reports) and state only numbers those "
    "tools measured; the trained vision-language model is asked only where no tool measures, and says so. "
)


def _unknown(q: ParsedQuestion | None, done: list[ToolOutcome]) -> str:
    named = q and (q.segment or q.artery or q.structure)
    if named:
        return (f"I am not sure what you want to know about the {named}. " + CAPABILITIES)
    return "I did not understand the question. " + CAPABILITIES


def _locate(q: ParsedQuestion, done: list[ToolOutcome], verdict: str | None) -> str:
    what = landmark_display(q.landmark) if q.landmark else "landmark"
    if q.landmark in LESION_LANDMARKS:
        measured = [o for o in succeeded(done, "measure_lesion") if o.value.lesion]
        if not measured:
            if succeeded(done, "measure_lesion"):
                names = ", ".join(o.value.vessel for o in succeeded(done, "measure_lesion"))
                return f"No lesion was found on the {names}, so there is no {what} to point to."
            return _could_not(done, f"find the {what}")
        best = _worst_outcome(measured)
        if best is None:  # every outcome here holds a lesion, so one is the worst
            return _could_not(done, f"find the {what}")
        where = best.value.segment or best.value.vessel
        lesion, facts = best.value.lesion, _facts(best)
        key = {"lesion_start": "lesion start", "lesion_end": "lesion end", "lesion_mld": "minimal lumen position"}[
            q.landmark]
        text = (f"The {what} on the {where} ({_a(facts[f'{where} diameter stenosis'])} stenosis in the "
                f"{lesion.segment}) is at {facts[f'{where} {key} (LPS)']} (patient LPS), marked on the image.")
        if len(measured) > 1 and not q.vessels:
            text += f" No vessel was named: this is the most severe lesion, on the {best.value.vessel}."
        return text + _source_note([best.value])
    located = succeeded(done, "vlm_locate")
    if not located:
        return _could_not(done, f"locate the {what}")
    r, facts = located[-1].value, _facts(located[-1])
    return (f"The VLM places the {what} at {facts[r.target + ' position (VLM)']} (patient LPS), marked on the "
            f"image; landmark confidence {facts['VLM landmark confidence']}. This is the model's estimate, not a "
            f"measurement. {r.note}")


def _cannot(q: ParsedQuestion) -> str:
    """Why a question outside what the tools measure cannot be answered, and what would answer it."""
    from cardiovlm.assistant.intents import default_matcher

    topic = default_matcher().bank.cannot_topics.get(q.cannot_topic or "")
    if topic is None:
        return "I cannot answer that from this study with the available tools. " + CAPABILITIES
    return (f"I cannot tell you {topic.what} from this study: {topic.why}. What would answer it: {topic.instead}. "
            + CAPABILITIES)


WRITERS: dict[str, Callable[..., str]] = {
    "study_info": lambda q, done, verdict: _study_info(q, done),
    "calcium_score": _calcium,
    "stenosis": _stenosis,
    "cadrads": _stenosis,
    "locate": _locate,
    "cannot": lambda q, done, verdict: _cannot(q),
    "stent_coverage": _stent,
    "presence": _presence,
    "segment": lambda q, done, verdict: _segment(q, done),
    "risk": _risk,
    "reports": lambda q, done, verdict: _reports(q, done),
    "patient_identity": lambda q, done, verdict: _patient_identity(),
    "about_assistant": lambda q, done, verdict: ABOUT_ASSISTANT + CAPABILITIES,
}


def compose_answer(q: ParsedQuestion | None, done: list[ToolOutcome]) -> str:
    """The final answer for one request ``q`` from its tool outcomes (see the module docstring)."""
    if q is not None and q.problem:
        return _sentence(q.problem[0].upper() + q.problem[1:])
    if q is None or q.task not in WRITERS:
        return _unknown(q, done)
    verdict = None
    if q.is_yes_no:
        verdict = verdict_for(q, done)
    return WRITERS[q.task](q, done, verdict).strip()


def compose_parts(answered: list[tuple[ParsedQuestion, list[ToolOutcome]]]) -> str:
    """The answer to a question with several requests: each part answered in turn, or named as not answered."""
    lines = []
    for i, (part, done) in enumerate(answered, 1):
        words = part.text.strip().rstrip("?.!")
        if part.task in ("unknown",) and not part.problem:
            lines.append(f"({i}) \u201c{words}\u201d: not answered, I did not understand this part.")
            continue
        lines.append(f"({i}) \u201c{words}\u201d: {compose_answer(part, done)}")
    return "\n".join(lines)
