"""Phantom report phrases: anatomy named as radiologists write it, and one sentence per finding.

Segment and artery phrasings come from the anatomy registry (:mod:`cardiovlm.tools.core.anatomy`), never re-typed,
and each is checked to read back to its segment or artery. Grading words and their written bands
come from the CAD-RADS table of :mod:`cardiovlm.tools.quant.cadrads`, so the report and the measuring tools put a
stenosis in the same band.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

from cardiovlm.tools.core.anatomy import ARTERY_NAMES, ARTERY_SYNONYMS, SEGMENTS_BY_CODE, SYNONYM_INDEX, CoronarySegment
from cardiovlm.tools.core.case_format import Finding, Findings
from cardiovlm.tools.quant.cadrads import OBSTRUCTIVE_PERCENT, SEVERE_PERCENT, stenosis_band
from cardiovlm.training.phantoms.report_template import TemplateWriter, capitalise

# Abbreviations as radiologists write them; every other word of a registry synonym stays lower case.
_CASING = {"lad": "LAD", "rca": "RCA", "lcx": "LCx", "cx": "Cx", "pda": "PDA", "plb": "PLB", "om": "OM",
           "om1": "OM1", "om2": "OM2", "d1": "D1", "d2": "D2", "lm": "LM", "lmca": "LMCA", "lms": "LMS",
           "r-pda": "R-PDA", "l-pda": "L-PDA", "r-plb": "R-PLB", "l-plb": "L-PLB", "ri": "RI"}
# Registry synonyms that no radiologist writes in a report (collapsed codes, odd spellings).
_UNWRITTEN = re.compile(r"^(?:[pmd]-?(?:lad|rca|lcx|cx)|[pmd]lcx|p-lcx|lmcx|lcflx|lcx artery|left diagonal|"
                        r"rpda|lpda|rplb|lplb|segment \d+)$")



def _case(phrase: str) -> str:
    return " ".join(_CASING.get(w, w) for w in phrase.split())


def _maps_to(phrase: str, kind: str, key: str) -> bool:
    norm = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9\- ]+", " ", phrase.lower())).strip()
    hit = SYNONYM_INDEX.get(norm)
    return hit is not None and hit[1] == key and (hit[0] == kind or kind == "artery" and hit[0] == "segment")


@cache
def segment_phrasings(code: str) -> tuple[str, ...]:
    """Noun phrases (with article) that name segment ``code`` unambiguously, e.g. 'the proximal LAD'."""
    seg = SEGMENTS_BY_CODE[code]
    words = [seg.name, seg.code] + [s for s in seg.synonyms if not _UNWRITTEN.match(s)]
    phrases = []
    for word in dict.fromkeys(words):
        if word != seg.code and word == seg.code.lower():
            continue
        if _maps_to(word, "segment", code):
            # "the pLAD", "the first diagonal", but "diagonal 1" and "OM 1" without an article.
            article = "" if re.search(r" \d+$", word) else "the "
            phrases.append(article + (word if word == seg.code else _case(word)))
    phrases.append(f"segment {seg.number}")
    return tuple(phrases)


@cache
def artery_phrasings(artery: str) -> tuple[str, ...]:
    """Noun phrases (with article) for a whole artery, e.g. 'the LAD', 'the right coronary artery'."""
    words = [ARTERY_NAMES[artery], *ARTERY_SYNONYMS[artery]]
    return tuple("the " + _case(w) for w in dict.fromkeys(words)
                 if not _UNWRITTEN.match(w) and w not in ("main stem",) and _maps_to(w, "artery", artery))


def segment_slots(w: TemplateWriter, seg: CoronarySegment) -> dict[str, str]:
    phrase = w.pick(segment_phrasings(seg.code))
    if phrase.startswith("the ") and w.chance(0.1):
        phrase = f"{phrase} (segment {seg.number})"
    head = capitalise(phrase[4:] if phrase.startswith("the ") else phrase)
    return {"seg": phrase, "seg_head": head.split(" (")[0] + ":"}


def short_artery(artery: str) -> str:
    return {"LM": "left main", "LAD": "LAD", "LCx": "LCx", "RCA": "RCA"}[artery]


def join_list(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# --------------------------------------------------------------------------------------------
# Findings to sentences.

def grade_of(percent: float) -> tuple[str, int, int]:
    """Grading word and written band (lowest %, highest %) of a stenosis in (0, 100), from the one
    CAD-RADS table (:data:`cardiovlm.tools.quant.cadrads.STENOSIS_BANDS`): 24.5 % is minimal, 69.5 % moderate and 99.5 %
    severe. A stated stenosis is at least 1 %, so the minimal band is written "1-24%" (0 % is a plaque
    without narrowing, described with no number).

    Raises:
        ValueError: outside 0-100 %, or 100 % (occlusions are described apart).
    """
    band = stenosis_band(percent)
    if band.grade == "occluded":
        raise ValueError(f"no grading word for a stenosis of {percent}% (occlusions are described apart)")
    return band.grade, max(1, band.written[0]), band.written[1]


def stenosis_slots(w: TemplateWriter, percent: float) -> dict[str, str]:
    word, low, high = grade_of(percent)
    shown = int(min(high, max(low, 5 * round(percent / 5))))  # rounded as reported, never across bands
    written = w.pick([f"{low}-{high}%", f"{low}-{high}%", f"{low} to {high}%"])
    return {"grade": word, "pct": str(shown), "range": written}


_PLAQUE_WORDS = {
    "calcified_plaque": ["calcified", "calcified", "densely calcified", "calcific"],
    "noncalcified_plaque": ["non-calcified", "non-calcified", "noncalcified", "soft", "uncalcified"],
    "mixed_plaque": ["mixed", "mixed", "partially calcified", "partly calcified", "mixed calcified and non-calcified"],
}
_SUMMARY_KIND = {"calcified": "calcified_plaque", "noncalcified": "noncalcified_plaque", "mixed": "mixed_plaque"}


def _plaque_slots(w: TemplateWriter, kind: str, hrp: bool) -> dict[str, str]:
    words = _PLAQUE_WORDS[kind] + (["low-attenuation"] if hrp and kind == "noncalcified_plaque" else [])
    adj = w.pick(words)
    noun = w.pick(["plaque", "plaque", "plaque", "atherosclerotic plaque"])
    a_plaque = w.pick([f"a {adj} {noun}", f"{adj} {noun}"])
    return {"plaque": adj, "a_plaque": a_plaque}


def _stent_dims(w: TemplateWriter, f: Finding) -> str:
    length = f"{f.length_mm:.0f}"
    if f.stent_diameter_mm is not None and w.chance(0.8):
        return f"{f.stent_diameter_mm:.1f} x {length} mm"
    return w.pick([f"{length} mm", f"{length} mm", ""])


def finding_sentences(w: TemplateWriter, f: Finding, findings: Findings, hrp: bool) -> list[str]:
    """One sentence describing ``f`` (its segment named), sometimes followed by a vessel-free hedge."""
    seg = SEGMENTS_BY_CODE[f.segment]
    slots = segment_slots(w, seg)
    slots["length"] = w.expand(w.pick(w.g["length"]), {"mm": f"{f.length_mm:.0f}"})
    hedge: list[str] = []
    if f.kind == "stent":
        slots["stent_dims"] = _stent_dims(w, f)
        isr_percent = f.stenosis_percent
        if isr_percent >= 100:
            sentence = w.say("stent_occluded", slots)
        elif f.in_stent_restenosis or isr_percent > 0:
            sten = stenosis_slots(w, max(isr_percent, 1.0))
            form = w.pick(w.g["isr"] if isr_percent > 0 else [t for t in w.g["isr"] if "{" + "grade}" in t
                                                                and "{range}" not in t and "{pct}" not in t])
            slots["isr"] = w.expand(form, sten)
            sentence = w.say("stent_restenosis", slots)
        else:
            sentence = w.say("stent", slots)
            if w.chance(0.15):
                hedge.append(w.say("stent_hedge"))
        if f.has_calcium:
            sentence = sentence[:-1] + w.pick(w.g["stent_calcium"]) + "."
        return [sentence, *hedge]
    if f.kind == "occlusion":
        plaque_kind = _occlusion_plaque(f, findings)
        calcium = f.has_calcium and plaque_kind not in ("calcified_plaque", "mixed_plaque")
        slots["calcium"] = w.pick(w.g["calcium_with_occlusion"]) if calcium else ""
        if plaque_kind:
            slots.update(_plaque_slots(w, plaque_kind, hrp))
            sentence = w.say("occlusion_plaque", slots)
        else:
            sentence = w.say("occlusion", slots)
        if w.chance(0.3):
            hedge.append(w.say("occlusion_hedge"))
        return [sentence, *hedge]
    slots.update(_plaque_slots(w, f.kind, hrp))
    if f.stenosis_percent <= 0:
        return [w.say("plaque_minimal", slots)]
    slots["sten"] = w.expand(w.pick(w.g["stenosis"]), stenosis_slots(w, f.stenosis_percent))
    sentence = w.say("plaque", slots)
    if f.stenosis_percent >= OBSTRUCTIVE_PERCENT and f.kind != "noncalcified_plaque" and w.chance(0.2):
        hedge.append(w.say("calcium_hedge"))
    elif OBSTRUCTIVE_PERCENT <= f.stenosis_percent < SEVERE_PERCENT and w.chance(0.2):
        hedge.append(w.say("moderate_hedge"))
    return [sentence, *hedge]


def _occlusion_plaque(f: Finding, findings: Findings) -> str | None:
    """The plaque kind to name with an occlusion: its segment's summary type, unless another finding
    on the segment already describes a plaque (then the occlusion sentence names none)."""
    if any(o.segment == f.segment and o.kind in _PLAQUE_WORDS for o in findings.findings):
        return None
    summary = next((s for s in findings.segments if s.segment == f.segment), None)
    if summary is None or summary.plaque_type == "none":
        return None
    return _SUMMARY_KIND[summary.plaque_type]


