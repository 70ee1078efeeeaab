"""Free-text CCTA reports for the synthetic phantoms, written from their ground truth by a grammar.

:func:`write_report` turns a :class:`~cardiovlm.tools.core.case_format.Findings` and a
:class:`~cardiovlm.tools.core.case_format.ClinicalContext` into a report in varied radiologist style. The wording is
data (``report_grammar.yaml`` beside this module); this module only chooses, fills and orders it.
Every finding is described in one sentence that names its segment; vessels and segments are negated
only when nothing was placed on them; hedges appear only where they cannot contradict the truth
(blooming, strut artefact, collaterals, functional significance). The report holds no patient
identifiers: age and sex only.

The parts: the grammar's template language (:mod:`cardiovlm.training.phantoms.report_template`), anatomy
phrasings and one sentence per finding (:mod:`cardiovlm.training.phantoms.report_phrasing`), the sections and
their order (this module), and the variety measure (:mod:`cardiovlm.training.phantoms.report_variety`).

Vocabulary, for the report parser's coverage (``tools/reports/parser.py``):

* Segment phrasings (from ``cardiovlm.tools.core.anatomy``, never re-typed): the full name ("the proximal left
  anterior descending artery"), the code ("the pLAD", "the OM1", "the R-PDA"), the registry synonyms
  with abbreviations upper-cased ("the proximal LAD", "the mid RCA", "the first obtuse marginal",
  "the ramus intermedius"), "segment 6", a code with its number ("the proximal LAD (segment 6)"), and
  the same as an inline heading ("Proximal LAD: ...", "Segment 6: ...").
* Artery phrasings (clean vessels only): "the LAD", "the left anterior descending artery", "the
  circumflex", "the LCx", "the right coronary artery", "the left main", ...; lists "the LCx and RCA".
* Grading words with CAD-RADS 2.0 ranges: minimal 1-24%, mild 25-49%, moderate 50-69%, severe
  70-99%, occluded 100% ("total/complete occlusion", "totally/completely occluded"); numbers are the
  truth rounded to 5% within its band ("approximately 60%"), ranges "50-69%" or "50 to 69%". A plaque
  without narrowing (0%) is "minimal", never a number.
* Stenosis nouns: "stenosis", "luminal narrowing", "narrowing", "diameter stenosis",
  "in-stent restenosis"; lesion length: "measuring 12 mm in length", "extending over 12 mm",
  "over 12 mm", "12 mm long", "with a length of 12 mm", "spanning approximately 12 mm".
* Plaque words: calcified ("calcified", "densely calcified", "calcific"); non-calcified
  ("non-calcified", "noncalcified", "soft", "uncalcified", and "low-attenuation" only when the
  CAD-RADS string carries HRP); mixed ("mixed", "partially calcified", "partly calcified", "mixed
  calcified and non-calcified"); nouns "plaque", "atherosclerotic plaque".
* Stents: "3.0 x 18 mm stent" (diameter x length) or "18 mm stent"; "patent", "widely patent",
  "with no evidence of / without in-stent restenosis"; "<grade> in-stent restenosis (<range>)";
  "occluded due to in-stent restenosis"; calcification beside a stent: "with surrounding calcification".
* Negations: "is free of (atherosclerotic) plaque", "no plaque or stenosis in", "is normal /
  unremarkable, without plaque", "no evidence of calcification/plaque in", "<Artery>: no
  atherosclerotic plaque", "the remainder of the vessel is unremarkable", "no coronary calcification".
* Hedges: "Blooming artefact may lead to overestimation of this stenosis.", "Grading is limited by
  blooming artefact.", "Functional significance is uncertain.", "likely/probably via collaterals",
  "the stent appears patent". Hedge sentences name no vessel.
* Dominance: "right/left dominant", "right dominance", "codominant", "co-dominant".
* Impression: restated obstructive findings, stents and occlusions; "CAD-RADS 4A/S",
  "CAD-RADS 2.0: 3"; a management phrase per category (CAD-RADS 2.0 recommendations).

Example::

    >>> import numpy as np
    >>> from cardiovlm.tools.core.case_format import ClinicalContext, Finding, Findings
    >>> f = Findings(cad_rads="3", findings=[Finding(id="f1", segment="pLAD", kind="mixed_plaque",
    ...     stenosis_percent=60, length_mm=12, start_mm=2, calcium_peak_hu=600)])
    >>> c = ClinicalContext(age=61, sex="male", race="white", systolic_bp_mmhg=130,
    ...     total_cholesterol_mg_dl=200, hdl_cholesterol_mg_dl=45, smoker=False, diabetes=False,
    ...     hypertension_treatment=True, lipid_lowering=False, family_history_mi=False)
    >>> "CAD-RADS" in write_report(f, c, dominance="right", rng=np.random.default_rng(0))
    True
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from cardiovlm.tools.core.anatomy import (
    ARTERIES,
    CORONARY_SEGMENTS,
    MAIN_VESSEL_PATHS,
    SEGMENTS_BY_CODE,
    segments_of_artery,
)
from cardiovlm.tools.core.case_format import ClinicalContext, Finding, Findings
from cardiovlm.tools.quant.cadrads import OBSTRUCTIVE_PERCENT, cac_drs
from cardiovlm.tools.quant.troponin import interpret_troponin
from cardiovlm.training.phantoms.clinical import as_generator
from cardiovlm.training.phantoms.report_phrasing import (
    artery_phrasings,
    finding_sentences,
    join_list,
    segment_phrasings,
    segment_slots,
    short_artery,
    stenosis_slots,
)
from cardiovlm.training.phantoms.report_template import TemplateWriter, capitalise, load_grammar

DOMINANCES = ("right", "left", "codominant")


@dataclass
class _Case:
    findings: Findings
    clinical: ClinicalContext
    dominance: str
    calcium_score: float | None

    def segment_findings(self, code: str) -> list[Finding]:
        return [f for f in self.findings.findings if f.segment == code]

    def segment_clean(self, code: str) -> bool:
        """Nothing was placed on the segment: no finding, and a clean summary if there is one."""
        if self.segment_findings(code):
            return False
        s = next((s for s in self.findings.segments if s.segment == code), None)
        return s is None or not (s.plaque_type != "none" or s.calcium or s.stent or s.occluded
                                 or s.max_stenosis_percent > 0)

    def segment_present(self, code: str) -> bool:
        s = next((s for s in self.findings.segments if s.segment == code), None)
        return s.present if s is not None else True

    def artery_clean(self, artery: str) -> bool:
        return all(self.segment_clean(s.code) for s in segments_of_artery(artery))

    def calcified_arteries(self) -> list[str]:
        hit = {SEGMENTS_BY_CODE[f.segment].artery for f in self.findings.findings if f.has_calcium}
        hit |= {SEGMENTS_BY_CODE[s.segment].artery for s in self.findings.segments if s.calcium}
        return [a for a in ARTERIES if a in hit]

    @property
    def hrp(self) -> bool:
        return "HRP" in self.findings.cad_rads.upper().split("/")


def _indication(w: TemplateWriter, case: _Case) -> list[str]:
    c = case.clinical
    elevated = mildly = None
    if c.troponin_value is not None and c.troponin_unit:
        result = interpret_troponin(c.troponin_value, c.troponin_unit, c.sex, c.troponin_assay)
        elevated, mildly = result.above_url, result.times_url < 3
    stented = any(f.kind == "stent" for f in case.findings.findings)
    kind = "follow_up" if stented and w.chance(0.6) else ("acute" if elevated else "stable")
    slots = {"age": str(c.age), "man": "man" if c.sex == "male" else "woman", "male": c.sex,
             "presentation": w.pick(w.g["indication"]["presentation"][kind])}
    out = [w.say("indication.sentence", slots)]
    risks = _risk_factors(w, c, stented)
    if risks:
        out.append(w.say("indication.risk_factors", {"risk_list": join_list(risks)}))
    elif w.chance(0.5):
        out.append(w.say("indication.no_risk_factors"))
    if elevated is not None:
        value = f"{c.troponin_value:g}"
        trend_key = ("trend_mildly_elevated" if mildly else "trend_elevated") if elevated else "trend_normal"
        trend = w.pick(w.g["indication"][trend_key])
        assay = c.troponin_assay or "hs-cTnI"
        out.append(w.say("indication.troponin", {"value": value, "unit": c.troponin_unit or "", "trend": trend,
                                                 "assay": assay}))
    return out


def _risk_factors(w: TemplateWriter, c: ClinicalContext, stented: bool) -> list[str]:
    """One phrase per risk factor the patient has, in random order."""
    has = {"hypertension": c.hypertension_treatment, "diabetes": c.diabetes, "lipid_lowering": c.lipid_lowering,
           "high_cholesterol": not c.lipid_lowering and c.total_cholesterol_mg_dl >= 240, "smoker": c.smoker,
           "family_history": c.family_history_mi, "prior_pci": stented}
    words = w.g["indication"]["risk_words"]
    items = [w.expand(w.pick(words[k]), {"chol": f"{c.total_cholesterol_mg_dl:.0f}"}) for k, v in has.items() if v]
    return [items[i] for i in w.rng.permutation(len(items))]


def _technique(w: TemplateWriter, case: _Case) -> list[str]:
    """One acquisition sentence (naming the calcium-scoring series only when a score exists), then
    a random subset of contrast, heart rate, reconstruction, quality and dose, in that order."""
    slots = {"gating": w.pick(w.g["gating"]), "slices": str(w.pick([64, 128, 256, 320])),
             "kv": str(w.pick([80, 100, 120])), "contrast": str(int(w.rng.integers(50, 91))),
             "rate": w.pick(["4.5", "5", "5.5", "6"]), "hr": str(int(w.rng.integers(50, 73))),
             "beta": w.pick(["25", "50"]), "thickness": w.pick(["0.5", "0.6", "0.625", "0.75"]),
             "phase": w.pick(["40", "70", "75"]), "dlp": str(int(w.rng.integers(80, 600)))}
    with_cac = case.calcium_score is not None and w.chance(0.6)
    out = [w.say("technique.acquisition_with_cac" if with_cac else "technique.acquisition", slots)]
    for group in ("contrast", "heart_rate", "reconstruction", "quality", "dose"):
        if w.chance(0.5):
            out.append(w.say(f"technique.{group}", slots))
    return out


def _coronaries(w: TemplateWriter, case: _Case) -> list[str]:
    """Paragraphs (lines) of the coronary section: dominance, origins, then per vessel."""
    lines: list[str] = []
    intro = [w.say(f"dominance.{case.dominance}")]
    if w.chance(0.6):
        intro.append(w.say("origins"))
    if case.findings.segments and w.chance(0.4) and case.segment_clean("RI"):
        intro.append(w.say("ramus_present" if case.segment_present("RI") else "ramus_absent"))
    lines.append(" ".join(w.rng.permutation(intro).tolist() if len(intro) > 1 else intro))
    headed = w.chance(0.5)
    clean = [a for a in ARTERIES if case.artery_clean(a)]
    grouped = not headed and len(clean) >= 2 and w.chance(0.35)
    for artery in ARTERIES:
        if grouped and artery in clean:
            continue
        sentences = _vessel_sentences(w, case, artery)
        lines.append((w.pick(w.g["vessel_headings"][artery]) + "\n" if headed else "") + " ".join(sentences))
    if grouped:
        arts = [short_artery(a) for a in clean]
        lines.append(w.say("clean_arteries", {"arts": "the " + join_list(arts)}))
    return lines


def _vessel_sentences(w: TemplateWriter, case: _Case, artery: str) -> list[str]:
    if case.artery_clean(artery):
        if artery == "LM" and w.chance(0.5):
            return [w.say("clean_artery_lm")]
        art = w.pick(artery_phrasings(artery))
        head = capitalise(art[4:]) + ":"
        return [w.say("clean_artery", {"art": art, "art_head": head})]
    order = {s.code: i for i, s in enumerate(CORONARY_SEGMENTS)}
    main = MAIN_VESSEL_PATHS[artery]
    codes = sorted({f.segment for f in case.findings.findings if SEGMENTS_BY_CODE[f.segment].artery == artery},
                   key=lambda c: (c not in main, order[c]))
    out: list[str] = []
    for code in codes:
        for f in case.segment_findings(code):
            out.extend(finding_sentences(w, f, case.findings, case.hrp))
    clean_main = [c for c in main if case.segment_clean(c) and case.segment_present(c)]
    if clean_main and w.chance(0.4):
        phrases = [w.pick(segment_phrasings(c)) for c in clean_main]
        out.append(w.say("clean_segments", {"segs": join_list(phrases), "be": "is" if len(phrases) == 1 else "are"}))
    elif w.chance(0.2) and all(case.segment_clean(s.code) for s in segments_of_artery(artery)
                               if s.code not in codes):
        out.append(w.say("rest_clean"))
    return out


def _calcium(w: TemplateWriter, case: _Case) -> list[str]:
    arteries = case.calcified_arteries()
    if case.calcium_score is not None:
        drs = cac_drs(case.calcium_score).category
        if case.calcium_score > 0 and arteries:
            drs += f"/N{len(arteries)}"
        return [w.say("calcium_score", {"score": f"{case.calcium_score:.0f}", "drs": drs})]
    if arteries:
        names = [short_artery(a) for a in arteries]
        return [w.say("calcium_present", {"arteries": join_list(names)})]
    return [w.say("calcium_absent")]


def _cardiac(w: TemplateWriter, case: _Case) -> list[str]:
    count = int(w.rng.integers(1, 4))
    chosen = sorted(w.rng.choice(len(w.g["cardiac"]), size=count, replace=False))
    out = [capitalise(w.expand(w.g["cardiac"][i])) for i in chosen]
    for structure in case.findings.extracoronary_calcium:
        out.append(w.say("valve_calcium", {"structure": structure}))
    if not case.findings.extracoronary_calcium and w.chance(0.4):
        out.append(w.say("no_valve_calcium"))
    return out


def _extracardiac(w: TemplateWriter) -> list[str]:
    chosen = sorted(w.rng.choice(len(w.g["extracardiac"]), size=int(w.rng.integers(1, 3)), replace=False))
    return [capitalise(w.expand(w.g["extracardiac"][i])) for i in chosen]


def _impression(w: TemplateWriter, case: _Case) -> list[str]:
    out: list[str] = []
    findings = sorted(case.findings.findings, key=lambda f: -f.stenosis_percent)
    # The impression names the stents and the obstructive stenoses (CAD-RADS >= 3), worst first.
    key_findings = [f for f in findings if f.kind == "stent" or f.stenosis_percent >= OBSTRUCTIVE_PERCENT][:3]
    for f in key_findings:
        slots = segment_slots(w, SEGMENTS_BY_CODE[f.segment])
        if f.kind == "stent":
            if f.stenosis_percent >= 100:
                out.append(w.say("impression_occlusion", slots))
            elif f.in_stent_restenosis or f.stenosis_percent > 0:
                slots.update(stenosis_slots(w, max(f.stenosis_percent, 1.0)))
                out.append(w.say("impression_isr", slots))
            else:
                out.append(w.say("impression_stent", slots))
        elif f.stenosis_percent >= 100:
            out.append(w.say("impression_occlusion", slots))
        else:
            slots.update(stenosis_slots(w, f.stenosis_percent))
            out.append(w.say("impression_severe", slots))
    rest = [f for f in findings if f not in key_findings and f.kind != "stent"]
    if not findings:
        out.append(w.say("impression_normal"))
    elif not key_findings:
        category = case.findings.cad_rads.split("/")[0].strip()
        out.append(w.say(f"impression_nonobstructive.{category if category in ('1', '2') else 'default'}"))
    elif rest and all(f.stenosis_percent < OBSTRUCTIVE_PERCENT for f in rest) and w.chance(0.6):
        out.append(w.say("impression_elsewhere"))
    out.append(w.say("cadrads", {"cadrads": case.findings.cad_rads}))
    category = case.findings.cad_rads.split("/")[0].strip().upper()
    management = w.g["management"].get(category)
    if management:
        out.append(capitalise(w.expand(w.pick(management))))
    if any(f.kind == "stent" for f in findings) and w.chance(0.4):
        out.append(w.say("management_stent"))
    return out


# --------------------------------------------------------------------------------------------
# Public API.

def write_report(findings: Findings, clinical: ClinicalContext, *, dominance: str,
                 rng: np.random.Generator | random.Random, calcium_score: float | None = None) -> str:
    """A free-text CCTA report of a phantom, in one of many radiologist styles.

    Args:
        findings: the ground truth; every finding is described (segment, kind, severity) and only
            vessels and segments without findings are negated. ``findings.cad_rads`` is reported
            as given.
        clinical: the patient (age, sex, risk factors, hs-cTnI) for the indication section.
        dominance: "right", "left" or "codominant".
        rng: numpy random generator (a ``random.Random`` is accepted and turned into one by drawing
            a seed from it); the same state gives the same report.
        calcium_score: Agatston score when a calcium-scoring series exists; without it the report
            says which arteries are calcified, with no number.

    Raises:
        ValueError: on an unknown dominance, a negative calcium score, or arguments of the wrong type.
    """
    if not isinstance(findings, Findings):
        raise ValueError(f"findings must be a cardiovlm.tools.core.case_format.Findings, got {type(findings).__name__}")
    if not isinstance(clinical, ClinicalContext):
        raise ValueError("clinical must be a cardiovlm.tools.core.case_format.ClinicalContext, got "
                         f"{type(clinical).__name__}")
    if dominance not in DOMINANCES:
        raise ValueError(f"dominance must be one of {', '.join(DOMINANCES)}, got {dominance!r}")
    if calcium_score is not None and not calcium_score >= 0:
        raise ValueError(f"calcium score must be >= 0 (Agatston), got {calcium_score}")
    w = TemplateWriter(load_grammar(), as_generator(rng))
    case = _Case(findings, clinical, dominance, calcium_score)

    sub = {"coronaries": _coronaries(w, case), "calcium": _calcium(w, case), "cardiac": _cardiac(w, case),
           "extracardiac": _extracardiac(w)}
    body = {"indication": _indication(w, case), "technique": _technique(w, case), "impression": _impression(w, case)}
    headings = {k: w.pick(v) for k, v in w.g["headings"].items()}
    numbered = w.chance(0.3)

    blocks: list[str] = []
    for section in w.pick(w.g["section_orders"]):
        if section == "findings":
            parts = []
            for name in w.pick(w.g["findings_orders"]):
                lines = sub[name]
                text = "\n".join(lines) if name == "coronaries" else " ".join(lines)
                parts.append(f"{headings[name]}\n{text}")
            blocks.append(headings["findings"] + "\n" + "\n\n".join(parts))
        elif section == "impression" and numbered:
            items = "\n".join(f"{i}. {s}" for i, s in enumerate(body[section], 1))
            blocks.append(f"{headings[section]}\n{items}")
        else:
            blocks.append(f"{headings[section]}\n{' '.join(body[section])}")
    return "\n\n".join(blocks) + "\n"



__all__ = ["DOMINANCES", "write_report"]
